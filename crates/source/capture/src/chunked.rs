//! Skipping a `Transfer-Encoding: chunked` body as it streams past: chunk sizes are parsed,
//! chunk data and trailers are skipped, and nothing is kept but a few counters.

/// Longest chunk-size line we accept (hex digits, extensions and all).
const MAX_SIZE_LINE: u32 = 4096;
/// At most this many hex digits: a chunk of 2^60 bytes is already absurd.
const MAX_DIGITS: u8 = 15;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading the hex size; `digits` so far.
    Size { value: u64, digits: u8 },
    /// After the size: extensions up to the end of the line.
    Extension { value: u64 },
    /// Inside a chunk's data.
    Data(u64),
    /// The CRLF after a chunk's data: `\r` not yet seen.
    DataEnd,
    /// The CRLF after a chunk's data: `\r` seen.
    DataEndLf,
    /// Trailer fields after the last chunk; bytes in the current line.
    Trailer { line: u32 },
}

/// How far a chunk of input took the body.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Progress {
    /// The body ended after this many bytes of the input.
    Done(usize),
    /// All input consumed; the body goes on.
    More,
    /// Not a chunked body: the stream must resynchronize.
    Malformed,
}

/// A chunked body being skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Chunked {
    state: State,
    /// Bytes in the current size or trailer section, bounded.
    line_bytes: u32,
}

impl Chunked {
    pub(crate) fn new() -> Chunked {
        Chunked {
            state: State::Size {
                value: 0,
                digits: 0,
            },
            line_bytes: 0,
        }
    }

    /// Bytes of chunk data still to come in the current chunk, if inside one (a lost packet
    /// within a chunk can then be skipped without losing sync).
    pub(crate) fn data_left(&self) -> Option<u64> {
        match self.state {
            State::Data(n) => Some(n),
            _ => None,
        }
    }

    /// Skips `n` bytes of chunk data lost by the capture; the caller checked `data_left`.
    pub(crate) fn skip_data(&mut self, n: u64) {
        if let State::Data(left) = self.state {
            self.state = if n >= left {
                State::DataEnd
            } else {
                State::Data(left - n)
            };
        }
    }

    /// Consumes body bytes.
    pub(crate) fn feed(&mut self, input: &[u8]) -> Progress {
        let mut i = 0;
        while i < input.len() {
            if let State::Data(left) = self.state {
                let take = usize::try_from(left)
                    .unwrap_or(usize::MAX)
                    .min(input.len() - i);
                i += take;
                let left = left - take as u64;
                self.state = if left == 0 {
                    State::DataEnd
                } else {
                    State::Data(left)
                };
                continue;
            }
            let byte = input[i];
            i += 1;
            self.line_bytes += 1;
            if self.line_bytes > MAX_SIZE_LINE {
                return Progress::Malformed;
            }
            self.state = match (self.state, byte) {
                (State::Size { value, digits }, b) if b.is_ascii_hexdigit() => {
                    if digits == MAX_DIGITS {
                        return Progress::Malformed;
                    }
                    let digit = u64::from(hex_value(b));
                    State::Size {
                        value: value << 4 | digit,
                        digits: digits + 1,
                    }
                }
                (State::Size { digits: 0, .. }, _) => return Progress::Malformed,
                (State::Size { value, .. }, b';' | b' ' | b'\t' | b'\r') => {
                    State::Extension { value }
                }
                (State::Size { value, .. } | State::Extension { value }, b'\n') => {
                    self.line_bytes = 0;
                    if value == 0 {
                        State::Trailer { line: 0 }
                    } else {
                        State::Data(value)
                    }
                }
                (State::Extension { value }, _) => State::Extension { value },
                (State::DataEnd, b'\r') => State::DataEndLf,
                (State::DataEnd | State::DataEndLf, b'\n') => {
                    self.line_bytes = 0;
                    State::Size {
                        value: 0,
                        digits: 0,
                    }
                }
                (State::Size { .. } | State::DataEnd | State::DataEndLf, _) => {
                    return Progress::Malformed
                }
                (State::Trailer { line }, b'\n') => {
                    if line == 0 {
                        *self = Chunked::new();
                        return Progress::Done(i);
                    }
                    State::Trailer { line: 0 }
                }
                (State::Trailer { line }, b'\r') => State::Trailer { line },
                (State::Trailer { line }, _) => State::Trailer { line: line + 1 },
                // Chunk data never reaches here: it is skipped above.
                (state @ State::Data(_), _) => state,
            };
        }
        Progress::More
    }
}

fn hex_value(b: u8) -> u8 {
    match b {
        b'0'..=b'9' => b - b'0',
        b'a'..=b'f' => b - b'a' + 10,
        _ => b - b'A' + 10,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &[u8] = b"4\r\nWiki\r\n5;name=val\r\npedia\r\nE\r\n in\r\n\r\nchunks.\r\n0\r\nTrailer: x\r\n\r\nNEXT";

    #[test]
    fn a_whole_body_then_the_next_message() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(BODY), Progress::Done(BODY.len() - 4));
    }

    #[test]
    fn byte_by_byte() {
        let mut c = Chunked::new();
        let end = BODY.len() - 4;
        for (i, b) in BODY.iter().enumerate().take(end) {
            let expect = if i + 1 == end {
                Progress::Done(1)
            } else {
                Progress::More
            };
            assert_eq!(c.feed(std::slice::from_ref(b)), expect, "at byte {i}");
        }
    }

    #[test]
    fn bare_newlines_and_no_trailer() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"3\nabc\n0\n\nGET"), Progress::Done(9));
    }

    #[test]
    fn malformed_sizes() {
        for bad in [
            &b"zz\r\n"[..],
            b"\r\n",
            b"1\r\nab",
            b"1234567890abcdef0\r\n",
        ] {
            assert_eq!(Chunked::new().feed(bad), Progress::Malformed, "{bad:?}");
        }
        let mut long = b"1;".to_vec();
        long.resize(5000, b'x');
        assert_eq!(Chunked::new().feed(&long), Progress::Malformed);
    }

    #[test]
    fn lost_data_is_skipped() {
        let mut c = Chunked::new();
        assert_eq!(c.feed(b"a\r\nabc"), Progress::More);
        assert_eq!(c.data_left(), Some(7));
        c.skip_data(7);
        assert_eq!(c.feed(b"\r\n0\r\n\r\n"), Progress::Done(7));
    }
}
