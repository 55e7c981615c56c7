//! [`StepName`]: the name of a step, valid wherever the contract puts it.

use std::fmt;
use std::str::FromStr;

/// Longest step name: the limit of a label value (`cutover.openova.io/step=<stepName>`).
const MAX_LEN: usize = 63;

/// The name of a step (the ConfigMap's trimmed `stepName`).
///
/// It appears in Job names, in the label value `cutover.openova.io/step=<stepName>` and in
/// status keys `step.<stepName>.result`, so it must be a DNS-1123 label: at most 63 lowercase
/// alphanumerics or `-`, starting and ending with an alphanumeric. That is the intersection of
/// the three rules, and it keeps `.` out so that status keys split unambiguously.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, serde::Serialize)]
#[serde(transparent)]
pub struct StepName(String);

/// Why a string is not a [`StepName`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidStepName {
    /// Nothing left after trimming.
    #[error("is empty")]
    Empty,
    /// Longer than a label value may be.
    #[error("{0:?} is {1} characters long; at most {MAX_LEN} are allowed")]
    TooLong(String, usize),
    /// A character outside `a-z`, `0-9` and `-`, or `-` at either end.
    #[error(
        "{0:?} is not a DNS-1123 label: use lowercase letters, digits and '-', starting and ending with a letter or digit"
    )]
    NotDnsLabel(String),
}

impl StepName {
    /// Trims `raw` and checks that it is a DNS-1123 label of at most 63 characters.
    pub fn new(raw: &str) -> Result<Self, InvalidStepName> {
        let name = raw.trim();
        if name.is_empty() {
            return Err(InvalidStepName::Empty);
        }
        if name.len() > MAX_LEN {
            return Err(InvalidStepName::TooLong(name.to_owned(), name.len()));
        }
        let allowed = |c: char| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-';
        if !name.chars().all(allowed) || name.starts_with('-') || name.ends_with('-') {
            return Err(InvalidStepName::NotDnsLabel(name.to_owned()));
        }
        Ok(StepName(name.to_owned()))
    }

    /// The name as text.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for StepName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl FromStr for StepName {
    type Err = InvalidStepName;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        StepName::new(s)
    }
}

impl AsRef<str> for StepName {
    fn as_ref(&self) -> &str {
        &self.0
    }
}

impl<'de> serde::Deserialize<'de> for StepName {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        StepName::new(&raw).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_and_accepts_dns_labels() {
        assert_eq!(
            StepName::new("  gitea-mirror\n").unwrap().as_str(),
            "gitea-mirror"
        );
        assert_eq!(StepName::new("a").unwrap().as_str(), "a");
        assert_eq!(StepName::new("0-step-9").unwrap().as_str(), "0-step-9");
        assert!(StepName::new(&"a".repeat(63)).is_ok());
    }

    #[test]
    fn rejects_what_cannot_be_a_job_name_label_value_or_status_key() {
        assert_eq!(StepName::new("   "), Err(InvalidStepName::Empty));
        assert!(matches!(
            StepName::new(&"a".repeat(64)),
            Err(InvalidStepName::TooLong(_, 64))
        ));
        for bad in [
            "Gitea",
            "gitea_mirror",
            "gitea.mirror",
            "-x",
            "x-",
            "a b",
            "ü",
            "a/b",
        ] {
            assert!(
                matches!(StepName::new(bad), Err(InvalidStepName::NotDnsLabel(_))),
                "{bad:?} should be rejected"
            );
        }
    }

    #[test]
    fn deserializes_through_validation() {
        let ok: StepName = serde_json::from_str("\" a \"").unwrap();
        assert_eq!(ok.as_str(), "a");
        assert!(serde_json::from_str::<StepName>("\"A\"").is_err());
    }
}
