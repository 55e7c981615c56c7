//! The bounded tail of a log read chunk by chunk: only the last [`MAX_TAIL_BYTES`] are
//! held, however long the log, and the kept text starts on a UTF-8 character boundary.

/// Most bytes of a step's log kept once its pod is gone (a ConfigMap holds at most 1 MiB).
pub const MAX_TAIL_BYTES: usize = 64 * 1024;

/// The last `max` bytes of a byte stream, fed in chunks.
#[derive(Debug, Clone)]
pub struct Tail {
    max: usize,
    held: Vec<u8>,
    cut: bool,
}

impl Tail {
    /// An empty tail keeping at most `max` bytes.
    pub fn new(max: usize) -> Self {
        Tail {
            max,
            held: Vec::new(),
            cut: false,
        }
    }

    /// Appends `chunk`, dropping what falls out of the window. The buffer may hold up to
    /// twice the window so that dropping happens once per window, not once per chunk.
    pub fn push(&mut self, chunk: &[u8]) {
        if chunk.len() >= self.max {
            self.cut |= !self.held.is_empty() || chunk.len() > self.max;
            self.held.clear();
            self.held
                .extend_from_slice(&chunk[chunk.len() - self.max..]);
            return;
        }
        self.held.extend_from_slice(chunk);
        if self.held.len() > 2 * self.max {
            let excess = self.held.len() - self.max;
            self.held.drain(..excess);
            self.cut = true;
        }
    }

    /// The kept text: at most `max` bytes from the end, starting on a character boundary
    /// (a character cut in two by the window is left out whole), and whether anything
    /// before it was left out. Bytes that are not UTF-8 become U+FFFD.
    pub fn finish(self) -> (String, bool) {
        let start = self.held.len().saturating_sub(self.max);
        let mut cut = self.cut || start > 0;
        let window = &self.held[start..];
        // A UTF-8 continuation byte (0b10xx_xxxx) belongs to a character that began before
        // the window; a character is at most four bytes, so at most three are skipped.
        let skip = if cut {
            window
                .iter()
                .take(3)
                .take_while(|b| (**b & 0b1100_0000) == 0b1000_0000)
                .count()
        } else {
            0
        };
        cut |= skip > 0;
        (String::from_utf8_lossy(&window[skip..]).into_owned(), cut)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn tail_of(chunks: &[&[u8]], max: usize) -> (String, bool) {
        let mut tail = Tail::new(max);
        for chunk in chunks {
            tail.push(chunk);
        }
        tail.finish()
    }

    #[test]
    fn a_short_log_is_kept_whole() {
        assert_eq!(
            tail_of(&[b"one\n", b"two\n"], 64),
            ("one\ntwo\n".to_owned(), false)
        );
        assert_eq!(tail_of(&[], 64), (String::new(), false));
    }

    #[test]
    fn a_long_log_keeps_its_last_bytes_whatever_the_chunking() {
        let log: Vec<u8> = (0..1000u32)
            .flat_map(|i| format!("{i}\n").into_bytes())
            .collect();
        let expected = String::from_utf8(log[log.len() - 100..].to_vec()).unwrap();
        for size in [1, 7, 99, 100, 101, 250, 1000, 5000] {
            let chunks: Vec<&[u8]> = log.chunks(size).collect();
            assert_eq!(
                tail_of(&chunks, 100),
                (expected.clone(), true),
                "chunks of {size}"
            );
        }
    }

    #[test]
    fn exactly_the_window_is_not_cut() {
        assert_eq!(tail_of(&[b"abcd"], 4), ("abcd".to_owned(), false));
        assert_eq!(tail_of(&[b"ab", b"cd"], 4), ("abcd".to_owned(), false));
        assert_eq!(tail_of(&[b"ab", b"cde"], 4), ("bcde".to_owned(), true));
    }

    #[test]
    fn the_cut_never_splits_a_character() {
        // "é" is two bytes, "€" three, "😀" four: a window starting inside any of them drops
        // the character's remaining bytes rather than keep a broken one.
        for text in ["xé", "x€", "x😀", "aé€😀z"] {
            let bytes = text.as_bytes();
            for max in 1..=bytes.len() {
                let (kept, cut) = tail_of(&[bytes], max);
                assert!(text.ends_with(&kept), "{kept:?} of {text:?} ({max})");
                assert!(!kept.contains('\u{FFFD}'), "{kept:?} of {text:?} ({max})");
                assert!(kept.len() <= max);
                assert_eq!(cut, max < bytes.len());
            }
        }
    }

    #[test]
    fn invalid_bytes_of_the_program_itself_are_replaced() {
        let (kept, cut) = tail_of(&[b"ok \xff\n"], 64);
        assert_eq!(kept, "ok \u{FFFD}\n");
        assert!(!cut);
    }
}
