//! What a step reports: a small JSON object of strings that its container writes to its
//! termination message on success (`{"mirroredCommitSHA": "…"}`), recorded in the status
//! ConfigMap as `step.<name>.output.<key>`, and the figures the console shows copied to the
//! top level. The message is whatever the pod wrote, so it is hostile input: bounded in size
//! and count, keys checked, values made safe for terminals. Pure.

use crate::contract::key;
use crate::sanitize::{self, Lines};
use serde::de::{Deserializer, MapAccess, Visitor};
use std::collections::BTreeMap;
use std::fmt;

/// The largest termination message read as outputs: the kubelet keeps at most 4096 bytes of
/// a container's message.
pub const MAX_MESSAGE_BYTES: usize = 4096;
/// The most outputs one step records.
pub const MAX_OUTPUTS: usize = 16;
/// The longest output key, in characters.
pub const MAX_KEY_CHARS: usize = 63;
/// The longest output value, in bytes.
pub const MAX_VALUE_BYTES: usize = 1024;
/// Per-step field holding the outputs: `step.<name>.output.<key>`.
pub const FIELD_OUTPUT: &str = "output";

/// The console's figures: (step, its output key, the top-level status key it is copied to).
/// Only the named step may set a figure, so no other step can forge it.
pub const FIGURES: [(&str, &str, &str); 2] = [
    (
        "gitea-mirror",
        "mirroredCommitSHA",
        key::MIRRORED_COMMIT_SHA,
    ),
    (
        "harbor-projects",
        "harborProjectCount",
        key::HARBOR_PROJECT_COUNT,
    ),
];

/// A step's outputs, checked: at most [`MAX_OUTPUTS`], keys matching
/// `[A-Za-z][A-Za-z0-9_-]*` of at most [`MAX_KEY_CHARS`], values one line of at most
/// [`MAX_VALUE_BYTES`] with every control or bidirectional-formatting character replaced.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct StepOutputs(BTreeMap<String, String>);

/// Why a termination message is not a step's outputs. Nothing of it is recorded then.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum OutputError {
    /// Larger than [`MAX_MESSAGE_BYTES`].
    #[error(
        "the termination message is {0} bytes, more than the {MAX_MESSAGE_BYTES} read as outputs"
    )]
    TooLarge(usize),
    /// Not a JSON object of strings.
    #[error("the termination message is not a JSON object of strings: {0}")]
    NotAnObject(String),
    /// More than [`MAX_OUTPUTS`] keys.
    #[error("the termination message holds {0} outputs, more than {MAX_OUTPUTS}")]
    TooMany(usize),
    /// A key off the pattern.
    #[error(
        "output key \"{0}\" is not a letter followed by up to {more} letters, digits, '_' or '-'",
        more = MAX_KEY_CHARS - 1
    )]
    BadKey(String),
    /// A key given twice.
    #[error("output key \"{0}\" is given twice")]
    Duplicate(String),
    /// A value that is not a string.
    #[error("output {key} is a JSON {kind}, not a string")]
    NotAString {
        /// The key.
        key: String,
        /// `number`, `object`, ...
        kind: &'static str,
    },
    /// A value longer than [`MAX_VALUE_BYTES`].
    #[error("output {key} is {len} bytes long, more than {MAX_VALUE_BYTES}")]
    TooLong {
        /// The key.
        key: String,
        /// Its length in bytes.
        len: usize,
    },
}

impl StepOutputs {
    /// The outputs in a termination message: none for an empty one (a step that reports
    /// nothing), else the JSON object it holds, or why it is not one.
    pub fn parse(message: &str) -> Result<StepOutputs, OutputError> {
        if message.len() > MAX_MESSAGE_BYTES {
            return Err(OutputError::TooLarge(message.len()));
        }
        if message.trim().is_empty() {
            return Ok(StepOutputs::default());
        }
        let mut de = serde_json::Deserializer::from_str(message);
        let pairs = de
            .deserialize_map(PairsVisitor)
            .and_then(|pairs| de.end().map(|()| pairs))
            .map_err(|e| OutputError::NotAnObject(e.to_string()))?;
        if pairs.len() > MAX_OUTPUTS {
            return Err(OutputError::TooMany(pairs.len()));
        }
        let mut outputs = BTreeMap::new();
        for (name, value) in pairs {
            if !valid_key(&name) {
                return Err(OutputError::BadKey(
                    sanitize::escaped(&name, Lines::One).into_owned(),
                ));
            }
            let text = match value {
                serde_json::Value::String(text) => text,
                other => {
                    return Err(OutputError::NotAString {
                        key: name,
                        kind: kind_of(&other),
                    });
                }
            };
            if text.len() > MAX_VALUE_BYTES {
                return Err(OutputError::TooLong {
                    key: name,
                    len: text.len(),
                });
            }
            let text = sanitize::recorded(&text, Lines::One).into_owned();
            if outputs.insert(name.clone(), text).is_some() {
                return Err(OutputError::Duplicate(name));
            }
        }
        Ok(StepOutputs(outputs))
    }

    /// The outputs, by key.
    pub fn iter(&self) -> impl Iterator<Item = (&str, &str)> {
        self.0.iter().map(|(k, v)| (k.as_str(), v.as_str()))
    }

    /// The output `key`, if reported.
    pub fn get(&self, key: &str) -> Option<&str> {
        self.0.get(key).map(String::as_str)
    }

    /// Whether the step reported nothing.
    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }
}

/// `step.<step>.output.<key>`.
pub fn output_key(step: &str, output: &str) -> String {
    key::step(step, &format!("{FIELD_OUTPUT}.{output}"))
}

/// The prefix of every output key of `step`.
pub fn output_prefix(step: &str) -> String {
    output_key(step, "")
}

fn valid_key(name: &str) -> bool {
    let mut chars = name.chars();
    chars.next().is_some_and(|c| c.is_ascii_alphabetic())
        && name.chars().count() <= MAX_KEY_CHARS
        && chars.all(|c| c.is_ascii_alphanumeric() || c == '_' || c == '-')
}

fn kind_of(value: &serde_json::Value) -> &'static str {
    match value {
        serde_json::Value::Null => "null",
        serde_json::Value::Bool(_) => "boolean",
        serde_json::Value::Number(_) => "number",
        serde_json::Value::String(_) => "string",
        serde_json::Value::Array(_) => "array",
        serde_json::Value::Object(_) => "object",
    }
}

/// Reads a JSON object as its pairs in order, duplicates included (a map would keep only
/// the last of two equal keys, silently).
struct PairsVisitor;

impl<'de> Visitor<'de> for PairsVisitor {
    type Value = Vec<(String, serde_json::Value)>;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a JSON object")
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
        let mut pairs = Vec::new();
        while let Some(pair) = map.next_entry::<String, serde_json::Value>()? {
            pairs.push(pair);
        }
        Ok(pairs)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parsed(message: &str) -> Vec<(String, String)> {
        StepOutputs::parse(message)
            .unwrap()
            .iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect()
    }

    #[test]
    fn a_json_object_of_strings_is_read_and_nothing_is_nothing() {
        assert_eq!(
            parsed(r#" {"mirroredCommitSHA": "0123abc", "branch_count": "3", "x-y": ""} "#),
            [
                ("branch_count".to_owned(), "3".to_owned()),
                ("mirroredCommitSHA".to_owned(), "0123abc".to_owned()),
                ("x-y".to_owned(), String::new()),
            ]
        );
        assert!(StepOutputs::parse("").unwrap().is_empty());
        assert!(StepOutputs::parse(" \n").unwrap().is_empty());
        assert!(StepOutputs::parse("{}").unwrap().is_empty());
    }

    #[test]
    fn what_is_not_a_json_object_of_strings_is_refused_whole() {
        for message in [
            "gitea-mirror: GET /repos answered 500",
            "[\"a\"]",
            "\"text\"",
            "42",
            "null",
            "{\"a\": \"b\"} trailing",
            "{\"a\": \"b\"",
            "{\"a\": \"b\"}{\"c\": \"d\"}",
        ] {
            assert!(
                matches!(
                    StepOutputs::parse(message),
                    Err(OutputError::NotAnObject(_))
                ),
                "{message:?}"
            );
        }
        for (message, kind) in [
            (r#"{"a": 1}"#, "number"),
            (r#"{"a": true}"#, "boolean"),
            (r#"{"a": null}"#, "null"),
            (r#"{"a": ["x"]}"#, "array"),
            (r#"{"ok": "x", "a": {"b": "c"}}"#, "object"),
        ] {
            assert_eq!(
                StepOutputs::parse(message),
                Err(OutputError::NotAString {
                    key: "a".into(),
                    kind
                }),
                "{message}"
            );
        }
    }

    #[test]
    fn counts_and_sizes_are_bounded() {
        let many: Vec<String> = (0..=MAX_OUTPUTS)
            .map(|i| format!("\"k{i}\": \"v\""))
            .collect();
        assert_eq!(
            StepOutputs::parse(&format!("{{{}}}", many.join(","))),
            Err(OutputError::TooMany(MAX_OUTPUTS + 1))
        );
        let enough = &many[..MAX_OUTPUTS];
        assert!(StepOutputs::parse(&format!("{{{}}}", enough.join(","))).is_ok());
        let long = "x".repeat(MAX_VALUE_BYTES + 1);
        assert_eq!(
            StepOutputs::parse(&format!(r#"{{"a": "{long}"}}"#)),
            Err(OutputError::TooLong {
                key: "a".into(),
                len: MAX_VALUE_BYTES + 1
            })
        );
        let huge = format!(r#"{{"a": "{}"}}"#, "x".repeat(MAX_MESSAGE_BYTES));
        assert_eq!(
            StepOutputs::parse(&huge),
            Err(OutputError::TooLarge(huge.len()))
        );
        let deep = format!("{}{}", "[".repeat(3000), "]".repeat(3000));
        assert!(
            StepOutputs::parse(&deep).is_err(),
            "deep nesting is refused"
        );
    }

    #[test]
    fn keys_are_checked_and_given_once() {
        for bad in [
            "",
            "1abc",
            "-a",
            "a.b",
            "a b",
            "a/b",
            "é",
            "a\u{1b}[2J",
            "a\u{202e}",
            &"k".repeat(MAX_KEY_CHARS + 1),
        ] {
            let message = serde_json::json!({ bad: "v" }).to_string();
            assert!(
                matches!(StepOutputs::parse(&message), Err(OutputError::BadKey(_))),
                "{bad:?}"
            );
        }
        let shown = StepOutputs::parse(r#"{"a\u001b[2J": "v"}"#)
            .unwrap_err()
            .to_string();
        assert!(!shown.contains('\u{1b}'), "{shown}");
        assert!(
            StepOutputs::parse(&serde_json::json!({ "k".repeat(MAX_KEY_CHARS): "v" }).to_string())
                .is_ok()
        );
        assert_eq!(
            StepOutputs::parse(r#"{"a": "1", "a": "2"}"#),
            Err(OutputError::Duplicate("a".into()))
        );
    }

    #[test]
    fn control_and_bidi_characters_in_values_are_replaced() {
        let out = parsed(r#"{"a": "ok\u001b[2K\r\u001b[1Acutover complete\u202e\nx"}"#);
        assert_eq!(
            out[0].1,
            "ok\u{fffd}[2K\u{fffd}\u{fffd}[1Acutover complete\u{fffd}\u{fffd}x"
        );
    }

    #[test]
    fn output_keys_live_under_the_step() {
        assert_eq!(
            output_key("gitea-mirror", "mirroredCommitSHA"),
            "step.gitea-mirror.output.mirroredCommitSHA"
        );
        assert_eq!(output_prefix("a"), "step.a.output.");
        for (step, output, top) in FIGURES {
            assert!(!step.is_empty() && valid_key(output) && !top.is_empty());
        }
    }
}
