//! A pod's log as the log route sends it: line by line, each line at most
//! [`MAX_LINE_BYTES`] (the rest of a longer one dropped and the cut marked), any byte
//! sequence that is not UTF-8 replaced by U+FFFD. A step that prints a gigabyte without a
//! newline, or binary, costs the service 64 KiB and ends nothing. Pure: the route feeds it
//! the bytes as they come.

/// The longest line sent; the chart's memory limit is 256 MiB and many clients may follow.
pub const MAX_LINE_BYTES: usize = 64 * 1024;

/// Splits bytes into lines of at most `max` bytes each.
#[derive(Debug)]
pub struct CappedLines {
    max: usize,
    line: Vec<u8>,
    dropped: usize,
}

impl CappedLines {
    /// No byte seen yet; lines of at most `max` bytes.
    pub fn new(max: usize) -> Self {
        CappedLines {
            max,
            line: Vec::new(),
            dropped: 0,
        }
    }

    /// The lines `chunk` completes (each ending in `\n`), and how many of its bytes it
    /// used: up to and including its first newline, or all of it.
    pub fn feed(&mut self, chunk: &[u8]) -> (Option<String>, usize) {
        let (take, newline) = match chunk.iter().position(|&b| b == b'\n') {
            Some(at) => (at, true),
            None => (chunk.len(), false),
        };
        let room = self.max.saturating_sub(self.line.len());
        self.line.extend_from_slice(&chunk[..take.min(room)]);
        self.dropped += take.saturating_sub(room);
        let used = take + usize::from(newline);
        if newline {
            (Some(self.take_line()), used)
        } else {
            (None, used)
        }
    }

    /// The last line, when the log ended without a newline after it.
    pub fn finish(mut self) -> Option<String> {
        (!self.line.is_empty() || self.dropped > 0).then(|| self.take_line())
    }

    fn take_line(&mut self) -> String {
        let mut text = String::from_utf8_lossy(&self.line).into_owned();
        if self.dropped > 0 {
            // A cut inside a character leaves U+FFFD at the end, never a broken string.
            text.push_str(&format!(
                " [catalyst-cutover: line cut at {} bytes, {} more dropped]",
                self.max, self.dropped
            ));
        }
        text.push('\n');
        self.line.clear();
        self.dropped = 0;
        text
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every line of `chunks` fed in order.
    fn lines(max: usize, chunks: &[&[u8]]) -> Vec<String> {
        let mut capped = CappedLines::new(max);
        let mut out = Vec::new();
        for chunk in chunks {
            let mut rest = *chunk;
            while !rest.is_empty() {
                let (line, used) = capped.feed(rest);
                out.extend(line);
                rest = &rest[used..];
            }
        }
        out.extend(capped.finish());
        out
    }

    #[test]
    fn lines_across_chunks_and_a_last_line_without_newline() {
        assert_eq!(
            lines(100, &[b"one\ntw", b"o\n", b"three"]),
            ["one\n", "two\n", "three\n"]
        );
        assert_eq!(lines(100, &[b"\n\n"]), ["\n", "\n"]);
        assert!(lines(100, &[]).is_empty());
    }

    #[test]
    fn a_long_line_is_cut_with_a_marker_and_the_next_is_whole() {
        let long = vec![b'x'; 250];
        let out = lines(100, &[&long[..120], &long[120..], b"\nnext\n"]);
        assert_eq!(out.len(), 2);
        assert!(out[0].starts_with(&"x".repeat(100)), "{}", out[0]);
        assert!(
            out[0].ends_with("[catalyst-cutover: line cut at 100 bytes, 150 more dropped]\n"),
            "{}",
            out[0]
        );
        assert_eq!(out[1], "next\n");
        let unended = lines(10, &[&long[..]]);
        assert!(unended[0].contains("240 more dropped"), "{unended:?}");
    }

    #[test]
    fn bytes_that_are_not_utf8_are_replaced_and_the_log_goes_on() {
        let out = lines(
            100,
            &[
                b"ok \xff\xfe bytes\n",
                b"\xe2\x82",
                b"\xac euro\n",
                b"after\n",
            ],
        );
        assert_eq!(
            out,
            ["ok \u{fffd}\u{fffd} bytes\n", "\u{20ac} euro\n", "after\n"]
        );
        // A cut inside a character.
        let out = lines(4, &["abc\u{20ac}\n".as_bytes()]);
        assert!(out[0].starts_with("abc\u{fffd}"), "{out:?}");
    }
}
