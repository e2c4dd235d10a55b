//! Opening replay inputs: plain files, gzip files (by their magic bytes), or standard input;
//! and reading a file's first lines alone.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::lines::Counted;
use crate::{BoundedLine, BoundedLines, MAX_LINE};

/// How many lines [`head_lines`] looks at, at most.
const HEAD_LINES: u64 = 64;

/// An opened input: a buffered reader and the bytes read from the underlying file so far.
pub struct Input {
    /// The text, decompressed.
    pub reader: Box<dyn BufRead + Send>,
    /// Compressed bytes read so far (for progress against the file's size).
    pub read: Arc<AtomicU64>,
    /// The file's size on disk, if known.
    pub size: Option<u64>,
}

impl std::fmt::Debug for Input {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Input")
            .field("size", &self.size)
            .finish_non_exhaustive()
    }
}

/// Opens `path` (`-` is standard input); gzip is recognised by its first two bytes.
pub fn open(path: &Path) -> io::Result<Input> {
    let read = Arc::new(AtomicU64::new(0));
    if path == Path::new("-") {
        let stdin = Counted::new(io::stdin(), Arc::clone(&read));
        return Ok(wrap(Box::new(stdin), read, None));
    }
    let file = File::open(path)?;
    let size = file.metadata().ok().map(|m| m.len());
    let counted = Counted::new(file, Arc::clone(&read));
    Ok(wrap(Box::new(counted), read, size))
}

fn wrap(inner: Box<dyn Read + Send>, read: Arc<AtomicU64>, size: Option<u64>) -> Input {
    let mut buffered = BufReader::with_capacity(256 * 1024, inner);
    let gz = buffered
        .fill_buf()
        .is_ok_and(|b| b.starts_with(&[0x1f, 0x8b]));
    let reader: Box<dyn BufRead + Send> = if gz {
        Box::new(BufReader::with_capacity(
            256 * 1024,
            MultiGzDecoder::new(buffered),
        ))
    } else {
        Box::new(buffered)
    };
    Input { reader, read, size }
}

/// Hands the first lines of `path` (plain or gzip, at most 64) to `each`, numbered from 1,
/// while it returns true: for choosing a format from a file's start when reading starts
/// elsewhere (a followed file, read from its end). A file that does not exist has no lines.
pub fn head_lines(
    path: &Path,
    mut each: impl FnMut(u64, BoundedLine<'_>) -> bool,
) -> io::Result<()> {
    let input = match open(path) {
        Ok(input) => input,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(e),
    };
    let mut lines = BoundedLines::new(input.reader, MAX_LINE);
    let mut number = 0;
    while number < HEAD_LINES {
        let Some(line) = lines.next_line()? else {
            break;
        };
        number += 1;
        if !each(number, line) {
            break;
        }
    }
    Ok(())
}
