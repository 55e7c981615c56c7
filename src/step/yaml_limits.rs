//! Bounds on a step's `podSpec` before it is deserialized, so that a hostile step ConfigMap
//! cannot make the service's memory grow past its limit.
//!
//! serde_yaml expands every alias into a copy of its anchored node, and its own guard only
//! counts alias uses (up to a hundred per event of the document): about 200 KB of anchors
//! and aliases still expand to hundreds of megabytes. A PodSpec has no use for anchors, so
//! they are refused outright by scanning the YAML event stream (which allocates no tree and
//! expands nothing) before serde_yaml sees the text; with a size cap on top, what a podSpec
//! can cost is proportional to its length.

use saphyr_parser::{Event, Parser, ScanError};

/// The largest `podSpec` accepted, in bytes. The chart's largest is under 2 KiB; scripts
/// belong in the ConfigMap's other keys, which the PodSpec mounts and which are never
/// parsed.
pub const MAX_POD_SPEC_BYTES: usize = 64 * 1024;

/// Why a `podSpec` is refused before it is parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum YamlLimit {
    /// Longer than [`MAX_POD_SPEC_BYTES`].
    #[error(
        "{bytes} bytes, more than the {MAX_POD_SPEC_BYTES} a podSpec may hold: \
         move scripts into their own keys of the ConfigMap and mount them"
    )]
    TooLarge {
        /// The length found.
        bytes: usize,
    },
    /// An anchor (`&name`) or alias (`*name`): a PodSpec needs neither, and aliases are how
    /// a small document expands into a huge one.
    #[error(
        "YAML {what} at line {line} column {column}: anchors and aliases are not allowed in \
         a podSpec (they let a small document expand without bound); write the values out"
    )]
    Anchor {
        /// `anchor` or `alias`.
        what: &'static str,
        /// 1-based line within the podSpec value.
        line: usize,
        /// 1-based column.
        column: usize,
    },
    /// Not YAML at all.
    #[error("{info} at line {line} column {column}")]
    Syntax {
        /// The byte offset where the scanner gave up: the text before it holds no anchor
        /// (the scan refuses the first one it meets), so it is safe to parse for a message.
        offset: usize,
        /// The scanner's message.
        info: String,
        /// 1-based line within the podSpec value.
        line: usize,
        /// 1-based column.
        column: usize,
    },
}

fn syntax(raw: &str, err: &ScanError) -> YamlLimit {
    let offset = raw
        .char_indices()
        .nth(err.marker().index())
        .map_or(raw.len(), |(at, _)| at);
    YamlLimit::Syntax {
        offset,
        info: err.info().to_owned(),
        line: err.marker().line(),
        column: err.marker().col() + 1,
    }
}

/// Checks `raw` against the limits without building anything from it. Pure.
pub fn check(raw: &str) -> Result<(), YamlLimit> {
    if raw.len() > MAX_POD_SPEC_BYTES {
        return Err(YamlLimit::TooLarge { bytes: raw.len() });
    }
    for event in Parser::new_from_str(raw) {
        let (event, span) = event.map_err(|err| syntax(raw, &err))?;
        let what = match event {
            Event::Alias(_) => "alias",
            Event::Scalar(_, _, anchor, _)
            | Event::SequenceStart(anchor, _)
            | Event::MappingStart(anchor, _)
                if anchor != 0 =>
            {
                "anchor"
            }
            _ => continue,
        };
        return Err(YamlLimit::Anchor {
            what,
            line: span.start.line(),
            column: span.start.col() + 1,
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_pod_specs_pass() {
        let spec = "containers:\n- name: main\n  image: alpine\n  command: [\"sh\", \"-c\", \"ls * && sleep 1 &\"]\n  args:\n  - |\n    echo *x &y\n";
        assert_eq!(check(spec), Ok(()));
    }

    #[test]
    fn anchors_and_aliases_are_refused_with_their_place() {
        let anchored = "containers:\n- &c\n  name: main\n  image: alpine\n";
        assert!(matches!(
            check(anchored),
            Err(YamlLimit::Anchor {
                what: "anchor",
                line: 2,
                ..
            })
        ));
        let scalar_anchor = "hostname: &h x\nsubdomain: y\n";
        assert!(matches!(
            check(scalar_anchor),
            Err(YamlLimit::Anchor { what: "anchor", .. })
        ));
        // An alias of an anchor that is not there still names the alias.
        let alias = "hostname: x\nsubdomain: *h\n";
        assert!(matches!(
            check(alias),
            Err(YamlLimit::Syntax { .. } | YamlLimit::Anchor { what: "alias", .. })
        ));
    }

    #[test]
    fn size_is_capped() {
        let big = format!("hostname: {}\n", "x".repeat(MAX_POD_SPEC_BYTES));
        assert_eq!(check(&big), Err(YamlLimit::TooLarge { bytes: big.len() }));
    }

    #[test]
    fn syntax_errors_carry_line_and_column() {
        let err = check("containers:\n- name: main\n  image: [unclosed\n").unwrap_err();
        assert!(matches!(err, YamlLimit::Syntax { .. }), "{err}");
        assert!(err.to_string().contains("line"), "{err}");
    }
}
