//! Reading input line by line without letting a long line grow memory without bound.

use std::io::{self, BufRead};

/// One line of input, or why it could not be read as one.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum Line {
    /// The line's text, without its line ending.
    Text(String),
    /// The line was longer than the limit; it was skipped up to its end.
    TooLong,
    /// The line was not UTF-8.
    NotUtf8,
}

/// Lines of `reader`, each at most `max` bytes; longer lines are consumed and reported.
pub(crate) struct BoundedLines<R> {
    reader: R,
    max: usize,
    buf: Vec<u8>,
}

impl<R: BufRead> BoundedLines<R> {
    pub(crate) fn new(reader: R, max: usize) -> Self {
        BoundedLines {
            reader,
            max,
            buf: Vec::new(),
        }
    }

    /// The next line, `None` at the end of input.
    pub(crate) fn next_line(&mut self) -> io::Result<Option<Line>> {
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
            let (chunk, done) = match available.iter().position(|&b| b == b'\n') {
                Some(i) => (&available[..i], Some(i + 1)),
                None => (available, None),
            };
            if !too_long {
                if self.buf.len() + chunk.len() > self.max {
                    too_long = true;
                    self.buf.clear();
                } else {
                    self.buf.extend_from_slice(chunk);
                }
            }
            let used = done.unwrap_or(available.len());
            self.reader.consume(used);
            if done.is_some() {
                break;
            }
        }
        if too_long {
            return Ok(Some(Line::TooLong));
        }
        if self.buf.last() == Some(&b'\r') {
            self.buf.pop();
        }
        match String::from_utf8(std::mem::take(&mut self.buf)) {
            Ok(s) => Ok(Some(Line::Text(s))),
            Err(_) => Ok(Some(Line::NotUtf8)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn all(input: &[u8], max: usize) -> Vec<Line> {
        let mut r = BoundedLines::new(io::BufReader::with_capacity(4, input), max);
        let mut out = Vec::new();
        while let Some(l) = r.next_line().unwrap() {
            out.push(l);
        }
        out
    }

    #[test]
    fn splits_lines_and_keeps_a_last_line_without_newline() {
        assert_eq!(
            all(b"a\r\nbb\n\nccc", 10),
            [
                Line::Text("a".into()),
                Line::Text("bb".into()),
                Line::Text(String::new()),
                Line::Text("ccc".into())
            ]
        );
    }

    #[test]
    fn long_lines_are_skipped_whole() {
        assert_eq!(
            all(b"12345678901\nok\n", 10),
            [Line::TooLong, Line::Text("ok".into())]
        );
    }

    #[test]
    fn invalid_utf8_is_reported() {
        assert_eq!(
            all(b"\xff\xfe\nok", 10),
            [Line::NotUtf8, Line::Text("ok".into())]
        );
    }
}
