//! Opening replay inputs: plain files, gzip files (by their magic bytes), or standard input.

use std::fs::File;
use std::io::{self, BufRead, BufReader, Read};
use std::path::Path;
use std::sync::atomic::AtomicU64;
use std::sync::Arc;

use flate2::read::MultiGzDecoder;

use crate::lines::Counted;

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
