//! Text that came from outside (a step's termination message, a caller's name, a rollback
//! reason) on its way to a terminal. Control characters (C0, DEL, C1: ANSI escape
//! sequences, carriage returns) and the invisible or bidirectional-formatting characters
//! (U+200B–U+200F, U+202A–U+202E, U+2066–U+2069, and their kin U+061C, U+2028, U+2029,
//! U+FEFF) can make a terminal or a page show something other than what the text says:
//! "cutover complete" printed over a failure, a name read backwards. What is recorded
//! replaces them ([`recorded`]), what is printed escapes them ([`escaped`]), what is asked
//! for refuses them ([`first_unsafe`]). Pure.

use std::borrow::Cow;
use std::fmt::Write as _;

/// What an unsafe character becomes in recorded text: U+FFFD, the replacement character,
/// so that the record shows that something was there.
pub const REPLACEMENT: char = '\u{FFFD}';

/// Whether `c` may change how the text around it is shown: a control character or an
/// invisible or bidirectional-formatting one.
pub fn is_unsafe(c: char) -> bool {
    c.is_control()
        || matches!(
            c,
            '\u{061C}'
                | '\u{200B}'..='\u{200F}'
                | '\u{2028}'..='\u{202E}'
                | '\u{2066}'..='\u{2069}'
                | '\u{FEFF}'
        )
}

/// Which line breaks a text may keep.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lines {
    /// `\n` stays (a multi-line reason, such as the preflight's one line per failed check).
    Keep,
    /// One line: `\n` is unsafe too.
    One,
}

fn unsafe_in(c: char, lines: Lines) -> bool {
    is_unsafe(c) && !(c == '\n' && lines == Lines::Keep)
}

/// `text` as it may be recorded: every unsafe character replaced by [`REPLACEMENT`].
/// Borrowed when there was nothing to replace.
pub fn recorded(text: &str, lines: Lines) -> Cow<'_, str> {
    if !text.chars().any(|c| unsafe_in(c, lines)) {
        return Cow::Borrowed(text);
    }
    Cow::Owned(
        text.chars()
            .map(|c| if unsafe_in(c, lines) { REPLACEMENT } else { c })
            .collect(),
    )
}

/// `text` as a terminal may print it: every unsafe character written as a visible escape
/// (`\e`, `\r`, `\t`, `\n` for one line, else `\u{202e}`), and each backslash doubled so an
/// escape cannot be forged. Borrowed when there was nothing to escape.
pub fn escaped(text: &str, lines: Lines) -> Cow<'_, str> {
    if !text.chars().any(|c| c == '\\' || unsafe_in(c, lines)) {
        return Cow::Borrowed(text);
    }
    let mut out = String::with_capacity(text.len() + 8);
    for c in text.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            c if !unsafe_in(c, lines) => out.push(c),
            '\u{1b}' => out.push_str("\\e"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\n' => out.push_str("\\n"),
            c => {
                let _ = write!(out, "\\u{{{:x}}}", u32::from(c));
            }
        }
    }
    Cow::Owned(out)
}

/// The first unsafe character of `text` and its position in characters (from 0), for a
/// refusal that says where.
pub fn first_unsafe(text: &str, lines: Lines) -> Option<(usize, char)> {
    text.chars().enumerate().find(|(_, c)| unsafe_in(*c, lines))
}

/// How [`first_unsafe`]'s character is named in a message: `U+202E`.
pub fn code_point(c: char) -> String {
    format!("U+{:04X}", u32::from(c))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// One of every kind the issue names, and the neighbours that must stay.
    const HOSTILE: &[char] = &[
        '\0', '\u{7}', '\u{8}', '\t', '\r', '\u{1b}', '\u{7f}', '\u{80}', '\u{85}', '\u{9b}',
        '\u{9f}', '\u{61c}', '\u{200b}', '\u{200c}', '\u{200d}', '\u{200e}', '\u{200f}',
        '\u{2028}', '\u{2029}', '\u{202a}', '\u{202b}', '\u{202c}', '\u{202d}', '\u{202e}',
        '\u{2066}', '\u{2067}', '\u{2068}', '\u{2069}', '\u{feff}',
    ];

    #[test]
    fn every_control_and_bidi_character_is_unsafe_and_ordinary_text_is_not() {
        for c in HOSTILE {
            assert!(is_unsafe(*c), "{}", code_point(*c));
        }
        for c in [
            'a', ' ', 'é', 'ß', '中', '\u{a0}', '\u{2010}', '\u{2030}', '\u{2065}', '\u{206a}',
            '\u{fffd}', '😀',
        ] {
            assert!(!is_unsafe(c), "{}", code_point(c));
        }
    }

    #[test]
    fn recorded_text_replaces_each_unsafe_character_and_keeps_lines_only_when_asked() {
        let ansi = "ok\u{1b}[2K\r\u{1b}[1Acutover complete\u{202e}gnp.exe\nnext";
        assert_eq!(
            recorded(ansi, Lines::Keep),
            "ok\u{fffd}[2K\u{fffd}\u{fffd}[1Acutover complete\u{fffd}gnp.exe\nnext"
        );
        assert_eq!(
            recorded("a\nb", Lines::One),
            "a\u{fffd}b",
            "a one-line field keeps no break"
        );
        for c in HOSTILE {
            let text = format!("x{c}y");
            assert_eq!(
                recorded(&text, Lines::One),
                "x\u{fffd}y",
                "{}",
                code_point(*c)
            );
        }
        assert!(matches!(
            recorded("plain é text\n", Lines::Keep),
            Cow::Borrowed(_)
        ));
    }

    #[test]
    fn escaped_text_shows_every_unsafe_character_and_cannot_be_forged() {
        assert_eq!(
            escaped("\u{1b}[31mred\r\t\u{202e}x\u{0}", Lines::Keep),
            "\\e[31mred\\r\\t\\u{202e}x\\u{0}"
        );
        assert_eq!(escaped("a\nb", Lines::Keep), "a\nb");
        assert_eq!(escaped("a\nb", Lines::One), "a\\nb");
        // A literal "\e" in the text is not an escape the reader could mistake.
        assert_eq!(escaped("C:\\e", Lines::One), "C:\\\\e");
        assert!(matches!(escaped("fine", Lines::One), Cow::Borrowed(_)));
        for c in HOSTILE {
            let text = c.to_string();
            let shown = escaped(&text, Lines::One);
            assert!(!shown.chars().any(is_unsafe), "{}", code_point(*c));
        }
    }

    #[test]
    fn the_first_unsafe_character_is_found_where_it_is() {
        assert_eq!(first_unsafe("abc", Lines::One), None);
        assert_eq!(first_unsafe("a\nb", Lines::Keep), None);
        assert_eq!(first_unsafe("a\nb", Lines::One), Some((1, '\n')));
        assert_eq!(
            first_unsafe("ééé\u{200b}", Lines::Keep),
            Some((3, '\u{200b}'))
        );
        assert_eq!(code_point('\u{202e}'), "U+202E");
    }
}
