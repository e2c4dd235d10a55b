//! `Follower`: reads a growing log file like `tail -F`, across rotation and truncation, also
//! those that happened while nobody followed it (a restart from a saved [`Position`]).

use std::collections::VecDeque;
use std::fmt;
use std::fs::{self, File, Metadata};
use std::io::{self, Read, Seek, SeekFrom};
use std::os::unix::fs::{DirEntryExt, FileExt, MetadataExt};
use std::path::{Path, PathBuf};

use crate::BoundedLine;

/// One line read by a follower, with its 1-based line number in its file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FollowedLine {
    /// A whole line, without its `\n`.
    Line(u64, Vec<u8>),
    /// A line longer than the limit; it was skipped up to its end.
    TooLong(u64),
}

impl FollowedLine {
    /// Its line number and the line as [`BoundedLines`](crate::BoundedLines) gives it, so that
    /// followed and replayed lines go through the same [`LinePipeline`](crate::LinePipeline).
    pub fn numbered(&self) -> (u64, BoundedLine<'_>) {
        match self {
            FollowedLine::Line(n, bytes) => (*n, BoundedLine::Line(bytes)),
            FollowedLine::TooLong(n) => (*n, BoundedLine::TooLong),
        }
    }
}

/// Which file a follower reads and how far it has consumed whole lines.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Position {
    /// Device of the file.
    pub dev: u64,
    /// Inode of the file.
    pub ino: u64,
    /// Bytes of whole lines consumed: where a restart resumes.
    pub offset: u64,
    /// The file's first bytes as read: a file truncated and written again in place
    /// (copytruncate), or a new file that got the old one's inode, has other first bytes.
    pub head: Fingerprint,
}

/// The first bytes of a file, by length and hash (64-bit FNV-1a, the same in every build, as
/// it is saved across restarts). A length of 0 says nothing: any file matches it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Fingerprint {
    /// How many leading bytes were hashed (at most 256).
    pub len: u64,
    /// Their hash.
    pub hash: u64,
}

impl Fingerprint {
    /// The fingerprint of `head`, a file's first bytes.
    pub fn of(head: &[u8]) -> Self {
        let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
        for &b in head {
            hash ^= u64::from(b);
            hash = hash.wrapping_mul(0x0100_0000_01b3);
        }
        Fingerprint {
            len: head.len() as u64,
            hash,
        }
    }

    /// Whether `file` starts with the bytes this fingerprint was taken of.
    fn matches(&self, file: &File) -> io::Result<bool> {
        if self.len == 0 {
            return Ok(true);
        }
        let len = usize::try_from(self.len).unwrap_or(HEAD).min(HEAD);
        Ok(Fingerprint::of(&read_head(file, len)?) == *self)
    }
}

/// Something the caller should log: where reading went on across a rotation or truncation,
/// and whether lines may have been lost.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum Notice {
    /// The file was rotated while nobody followed it: the rest of the old file, found under
    /// another name in the same directory (same device and inode, same first bytes), is read
    /// from the saved offset before the new file. Nothing is lost.
    RotatedWhileStopped {
        /// Where the old file is now (`access.log.1`).
        rotated: PathBuf,
        /// Where its reading resumes.
        offset: u64,
    },
    /// The file read before is no longer in the directory (rotated and then deleted or
    /// compressed, or moved elsewhere): lines written to it after `offset` were not read.
    Gone {
        /// How far it had been read.
        offset: u64,
    },
    /// A file named like the followed one was written after the file read before had been
    /// rotated: the file was rotated more than once while nobody followed it. Reading goes
    /// from the old file to the current one; this one's lines are not read.
    NotRead {
        /// The rotated file not read (`access.log.1`, when the old one is `access.log.2`).
        rotated: PathBuf,
    },
    /// The file is shorter than what had been read, or its first bytes changed: it was
    /// truncated (copytruncate) or replaced in place, and is read again from its start.
    /// Lines written after `offset` and before the truncation were not read.
    Truncated {
        /// How far it had been read.
        offset: u64,
    },
}

impl Notice {
    /// Whether lines may have been lost (a warning), rather than only a change of file.
    pub fn may_lose_lines(&self) -> bool {
        !matches!(self, Notice::RotatedWhileStopped { .. })
    }
}

impl fmt::Display for Notice {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Notice::RotatedWhileStopped { rotated, offset } => write!(
                f,
                "rotated while not followed: reading the rest of {} from byte {offset}, then \
                 the new file",
                rotated.display()
            ),
            Notice::Gone { offset } => write!(
                f,
                "the file read before is gone from the directory: lines written to it after \
                 byte {offset} may have been lost; reading the new file from its start"
            ),
            Notice::NotRead { rotated } => write!(
                f,
                "{} was rotated after the file read before and is not read: its lines may \
                 have been lost",
                rotated.display()
            ),
            Notice::Truncated { offset } => write!(
                f,
                "truncated or replaced in place (shorter than byte {offset}, or its first bytes \
                 changed): reading it again from its start; lines written after byte {offset} \
                 and before the truncation may have been lost"
            ),
        }
    }
}

#[derive(Debug)]
struct OpenFile {
    file: File,
    dev: u64,
    ino: u64,
    /// Where the next read starts.
    read_pos: u64,
    /// The start of the line being assembled: everything before it has been handed out.
    line_start: u64,
    partial: Vec<u8>,
    /// The line being assembled is past the limit; skip to its end.
    too_long: bool,
    /// Lines before `line_start`.
    lines: u64,
    /// The file's first bytes as read: if they change, the file was truncated and written
    /// again (copytruncate), even when it has already grown back past where we were.
    head: Vec<u8>,
}

/// How many leading bytes identify a file's content.
const HEAD: usize = 256;
/// Notices kept until the caller takes them; older ones are dropped past this.
const MAX_NOTICES: usize = 64;
/// Directory entries looked at, at most, for a file rotated while nobody followed it.
const MAX_SCAN: usize = 100_000;

/// Follows the file at a path: survives a file that does not exist yet, rotation by rename
/// (the old file is read to its end, then the new one from its start), copy-truncate (read
/// again from the start), and partial last lines (held until their newline arrives).
#[derive(Debug)]
pub struct Follower {
    path: PathBuf,
    max_line: usize,
    current: Option<OpenFile>,
    /// Where to resume when the file is first opened, if it is still the same file.
    resume: Option<Position>,
    /// Start the first file at its end (after its last whole line), like `tail -F`.
    from_end: bool,
    buf: Vec<u8>,
    notices: VecDeque<Notice>,
}

impl Follower {
    /// Follows `path` from its start; lines longer than `max_line` bytes are skipped.
    pub fn new(path: impl Into<PathBuf>, max_line: usize) -> Self {
        Follower::resume(path, max_line, None)
    }

    /// Follows `path` from a saved position. If the file there is still the same file (device
    /// and inode, at least that long, the same first bytes), reading resumes at the saved
    /// offset. If another file is there, the saved one was rotated while nobody followed it:
    /// if it is still in the directory under another name, the rest of it is read first, then
    /// the new file from its start. If the same file is shorter or starts otherwise, it was
    /// truncated (copytruncate) and is read from its start. Each case gives a [`Notice`].
    pub fn resume(path: impl Into<PathBuf>, max_line: usize, saved: Option<Position>) -> Self {
        Follower {
            path: path.into(),
            max_line,
            current: None,
            resume: saved,
            from_end: false,
            buf: vec![0; 64 * 1024],
            notices: VecDeque::new(),
        }
    }

    /// Starts at the end of the file if it exists now (when there is no saved position):
    /// only lines written from now on are read. A file created later is read whole.
    #[must_use]
    pub fn from_end(mut self) -> Self {
        self.from_end = self.path.exists();
        self
    }

    /// The followed path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Where a restart should resume: everything before it has been handed out.
    pub fn position(&self) -> Option<Position> {
        self.current.as_ref().map(|o| Position {
            dev: o.dev,
            ino: o.ino,
            offset: o.line_start,
            head: Fingerprint::of(&o.head),
        })
    }

    /// Takes what happened to the file since the last call (rotations, truncations, lost
    /// lines), oldest first, for the caller to log. At most the last 64 are kept.
    pub fn take_notices(&mut self) -> Vec<Notice> {
        self.notices.drain(..).collect()
    }

    /// Reads what has been written since the last call, at most about `budget` bytes, and
    /// appends whole lines to `out`. Returns true if more may be waiting (the budget ran out).
    pub fn poll(&mut self, out: &mut Vec<FollowedLine>, budget: usize) -> io::Result<bool> {
        let mut read = 0usize;
        // At most two files per call: the rotated one's tail, then the new one.
        for _ in 0..2 {
            if self.current.is_none() && !self.open()? {
                return Ok(false);
            }
            let more = self.read_current(out, budget.saturating_sub(read), &mut read)?;
            if more {
                return Ok(true);
            }
            if !self.switch_if_rotated(out)? {
                return Ok(false);
            }
        }
        Ok(false)
    }

    fn open(&mut self) -> io::Result<bool> {
        if let Some(saved) = self.resume.take() {
            if let Some((file, meta)) = self.saved_file(saved)? {
                self.start(file, &meta, saved.offset, saved.head.len)?;
                return Ok(true);
            }
        }
        let mut file = match File::open(&self.path) {
            Ok(f) => f,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        let meta = file.metadata()?;
        let start = if std::mem::take(&mut self.from_end) {
            count_lines(&mut file, meta.len(), &mut self.buf)?.1
        } else {
            0
        };
        self.start(file, &meta, start, 0)?;
        Ok(true)
    }

    /// Makes `file` the one read, from `start` (after a whole line), keeping its first
    /// `head` bytes (already checked) to notice a later truncation.
    fn start(&mut self, mut file: File, meta: &Metadata, start: u64, head: u64) -> io::Result<()> {
        // Count the lines before the start, so line numbers in reports are the file's own.
        let lines = count_lines(&mut file, start, &mut self.buf)?.0;
        file.seek(SeekFrom::Start(start))?;
        let head = read_head(&file, usize::try_from(head).unwrap_or(HEAD).min(HEAD))?;
        self.current = Some(OpenFile {
            file,
            dev: meta.dev(),
            ino: meta.ino(),
            read_pos: start,
            line_start: start,
            partial: Vec::new(),
            too_long: false,
            lines,
            head,
        });
        Ok(())
    }

    /// The file a saved position names, if it can still be read from there: the file at the
    /// path if it is the same one, or the same file rotated to another name in the directory.
    /// `None` (with a notice) if it was truncated or is gone: reading starts anew at the path.
    fn saved_file(&mut self, saved: Position) -> io::Result<Option<(File, Metadata)>> {
        let same = |meta: &Metadata| meta.dev() == saved.dev && meta.ino() == saved.ino;
        match File::open(&self.path) {
            Ok(file) => {
                let meta = file.metadata()?;
                if same(&meta) {
                    if meta.len() >= saved.offset && saved.head.matches(&file)? {
                        return Ok(Some((file, meta)));
                    }
                    push_notice(
                        &mut self.notices,
                        Notice::Truncated {
                            offset: saved.offset,
                        },
                    );
                    return Ok(None);
                }
            }
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => return Err(e),
        }
        // Another file, or none, at the path: the saved one was rotated away meanwhile.
        let dir = match self.path.parent() {
            Some(d) if !d.as_os_str().is_empty() => d.to_path_buf(),
            _ => PathBuf::from("."),
        };
        for entry in fs::read_dir(&dir)?.take(MAX_SCAN) {
            let Ok(entry) = entry else { continue };
            // By type before opening: opening a FIFO would block.
            if entry.ino() != saved.ino || !entry.file_type().is_ok_and(|t| t.is_file()) {
                continue;
            }
            let Ok(file) = File::open(entry.path()) else {
                continue;
            };
            let meta = file.metadata()?;
            // The inode may have been given to another file since: check what it holds.
            if same(&meta) && meta.len() >= saved.offset && saved.head.matches(&file)? {
                push_notice(
                    &mut self.notices,
                    Notice::RotatedWhileStopped {
                        rotated: entry.path(),
                        offset: saved.offset,
                    },
                );
                self.note_newer_rotations(&dir, &meta)?;
                return Ok(Some((file, meta)));
            }
        }
        push_notice(
            &mut self.notices,
            Notice::Gone {
                offset: saved.offset,
            },
        );
        Ok(None)
    }

    /// After finding the file read before rotated to another name: notes the files named like
    /// the followed one (`access.log.1`, `access.log-20190207`) that were written after it,
    /// other than the file at the path. They are generations rotated after it (the file was
    /// rotated twice while nobody followed it): reading goes from the old file to the current
    /// one, and their lines are not read.
    fn note_newer_rotations(&mut self, dir: &Path, rotated: &Metadata) -> io::Result<()> {
        let (Some(name), Ok(since)) = (self.path.file_name(), rotated.modified()) else {
            return Ok(());
        };
        let current = fs::metadata(&self.path).ok().map(|m| (m.dev(), m.ino()));
        for entry in fs::read_dir(dir)?.take(MAX_SCAN) {
            let Ok(entry) = entry else { continue };
            let named_like = entry
                .file_name()
                .as_encoded_bytes()
                .starts_with(name.as_encoded_bytes());
            // Not following links: a link is not a rotated file.
            let Ok(meta) = entry.metadata() else { continue };
            let id = Some((meta.dev(), meta.ino()));
            if named_like
                && meta.is_file()
                && id != Some((rotated.dev(), rotated.ino()))
                && id != current
                && meta.modified().is_ok_and(|m| m > since)
            {
                push_notice(
                    &mut self.notices,
                    Notice::NotRead {
                        rotated: entry.path(),
                    },
                );
            }
        }
        Ok(())
    }

    /// Reads the open file to its end (or the budget). Returns true if the budget ran out.
    fn read_current(
        &mut self,
        out: &mut Vec<FollowedLine>,
        budget: usize,
        read: &mut usize,
    ) -> io::Result<bool> {
        let max_line = self.max_line;
        let Some(open) = self.current.as_mut() else {
            return Ok(false);
        };
        // Copy-truncate: the file is now shorter than what was read, or its first bytes are no
        // longer those read. Start again from 0.
        let len = open.file.metadata()?.len();
        if len < open.read_pos || !head_unchanged(&open.file, &open.head)? {
            let offset = open.line_start;
            push_notice(&mut self.notices, Notice::Truncated { offset });
            open.file.seek(SeekFrom::Start(0))?;
            open.read_pos = 0;
            open.line_start = 0;
            open.partial.clear();
            open.too_long = false;
            open.lines = 0;
            open.head.clear();
        }
        let mut spent = 0usize;
        loop {
            if spent >= budget {
                return Ok(true);
            }
            let n = match open.file.read(&mut self.buf) {
                Ok(0) => return Ok(false),
                Ok(n) => n,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            spent += n;
            *read += n;
            let chunk = &self.buf[..n];
            let mut start = 0;
            for (i, &b) in chunk.iter().enumerate() {
                if b != b'\n' {
                    continue;
                }
                let piece = &chunk[start..i];
                open.lines += 1;
                if open.too_long || open.partial.len() + piece.len() > max_line {
                    out.push(FollowedLine::TooLong(open.lines));
                } else {
                    let mut line = std::mem::take(&mut open.partial);
                    line.extend_from_slice(piece);
                    if line.last() == Some(&b'\r') {
                        line.pop();
                    }
                    out.push(FollowedLine::Line(open.lines, line));
                }
                open.partial.clear();
                open.too_long = false;
                open.line_start = open.read_pos + i as u64 + 1;
                start = i + 1;
            }
            let rest = &chunk[start..];
            if !open.too_long {
                if open.partial.len() + rest.len() > max_line {
                    open.too_long = true;
                    open.partial = Vec::new();
                } else {
                    open.partial.extend_from_slice(rest);
                }
            }
            open.read_pos += n as u64;
            if open.head.len() < HEAD && open.read_pos > open.head.len() as u64 {
                let want = usize::try_from(open.read_pos).unwrap_or(HEAD).min(HEAD);
                open.head = read_head(&open.file, want)?;
            }
        }
    }

    /// After reading the open file to its end: if the path now names another file, hands out
    /// the old file's unterminated last line and moves to the new file. Returns true if it did.
    fn switch_if_rotated(&mut self, out: &mut Vec<FollowedLine>) -> io::Result<bool> {
        let Some(open) = self.current.as_ref() else {
            return Ok(false);
        };
        let meta = match fs::metadata(&self.path) {
            Ok(m) => m,
            // Renamed away and not yet recreated: keep reading the old file.
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
            Err(e) => return Err(e),
        };
        if meta.dev() == open.dev && meta.ino() == open.ino {
            return Ok(false);
        }
        if open.too_long {
            out.push(FollowedLine::TooLong(open.lines + 1));
        } else if !open.partial.is_empty() {
            out.push(FollowedLine::Line(open.lines + 1, open.partial.clone()));
        }
        self.current = None;
        Ok(true)
    }
}

/// Keeps `notice` for the caller, dropping the oldest past [`MAX_NOTICES`].
fn push_notice(notices: &mut VecDeque<Notice>, notice: Notice) {
    if notices.len() == MAX_NOTICES {
        notices.pop_front();
    }
    notices.push_back(notice);
}

/// The first `len` bytes of `file`, read without moving its position.
fn read_head(file: &File, len: usize) -> io::Result<Vec<u8>> {
    let mut head = vec![0; len];
    let mut got = 0;
    while got < len {
        match file.read_at(&mut head[got..], got as u64) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    head.truncate(got);
    Ok(head)
}

fn head_unchanged(file: &File, head: &[u8]) -> io::Result<bool> {
    if head.is_empty() {
        return Ok(true);
    }
    Ok(read_head(file, head.len())? == head)
}

/// Counts the newlines in the first `len` bytes of `file`; also returns the offset just after
/// the last one (0 if none).
fn count_lines(file: &mut File, len: u64, buf: &mut [u8]) -> io::Result<(u64, u64)> {
    file.seek(SeekFrom::Start(0))?;
    let (mut lines, mut after_last, mut pos) = (0u64, 0u64, 0u64);
    while pos < len {
        let want = usize::try_from(len - pos)
            .unwrap_or(usize::MAX)
            .min(buf.len());
        let n = file.read(&mut buf[..want])?;
        if n == 0 {
            break;
        }
        for (i, &b) in buf[..n].iter().enumerate() {
            if b == b'\n' {
                lines += 1;
                after_last = pos + i as u64 + 1;
            }
        }
        pos += n as u64;
    }
    Ok((lines, after_last))
}

#[cfg(test)]
mod tests;
