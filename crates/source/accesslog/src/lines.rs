//! Reading input line by line without letting a long line grow memory without bound.

use std::io::{self, BufRead, Read};

/// Lines of a reader, each at most `max` bytes; a longer line is consumed and reported.
#[derive(Debug)]
pub struct BoundedLines<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
}

/// One line from [`BoundedLines`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BoundedLine<'a> {
    /// The line, without `\n` or `\r\n`.
    Line(&'a [u8]),
    /// The line was longer than the limit and was skipped to its end.
    TooLong,
}

impl<R: BufRead> BoundedLines<R> {
    /// Lines of `reader`, at most `max` bytes each.
    pub fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line, `None` at the end of input. A last line without `\n` counts.
    pub fn next_line(&mut self) -> io::Result<Option<BoundedLine<'_>>> {
        self.buf.clear();
        let mut too_long = false;
        let mut saw_any = false;
        loop {
            let available = match self.reader.fill_buf() {
                Ok(b) => b,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => return Err(e),
            };
            if available.is_empty() {
                if !saw_any {
                    return Ok(None);
                }
                break;
            }
            saw_any = true;
            let newline = available.iter().position(|&b| b == b'\n');
            let chunk = &available[..newline.unwrap_or(available.len())];
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf = Vec::new();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = newline.map_or(available.len(), |i| i + 1);
            self.reader.consume(used);
            if newline.is_some() {
                break;
            }
        }
        if too_long {
            return Ok(Some(BoundedLine::TooLong));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        Ok(Some(BoundedLine::Line(&self.buf)))
    }
}

/// A reader that counts the bytes read through it (for progress reports).
#[derive(Debug)]
pub struct Counted<R> {
    inner: R,
    count: std::sync::Arc<std::sync::atomic::AtomicU64>,
}

impl<R> Counted<R> {
    /// Counts what is read from `inner` into `count`.
    pub fn new(inner: R, count: std::sync::Arc<std::sync::atomic::AtomicU64>) -> Self {
        Counted { inner, count }
    }
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count
            .fetch_add(n as u64, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<Option<Vec<u8>>> {
        let mut r = BoundedLines::new(io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(match l {
                BoundedLine::Line(b) => Some(b.to_vec()),
                BoundedLine::TooLong => None,
            });
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(
            all(b"a\r\nbb\n\nccc", 10),
            [
                Some(b"a".to_vec()),
                Some(b"bb".to_vec()),
                Some(vec![]),
                Some(b"ccc".to_vec())
            ]
        );
    }

    #[test]
    fn long_lines_are_skipped_whole() {
        assert_eq!(all(b"12345678901\nok\n", 10), [None, Some(b"ok".to_vec())]);
    }
}
