//! The direction the service gives the agents, as the record Lease holds it. Pure.

use crate::contract::{pivot, registries};
use k8s_openapi::api::coordination::v1::Lease;

/// What the agents are told to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Direction {
    /// Point the node's registries at the local Harbor; a node acknowledges `v2`.
    V2,
    /// Put back the files saved before the pivot; a node acknowledges `rolled-back`.
    Rollback,
}

impl Direction {
    /// The annotation's value (and `registriesYamlActive`'s, which displays it).
    pub fn as_str(self) -> &'static str {
        match self {
            Direction::V2 => registries::V2,
            Direction::Rollback => registries::ROLLBACK,
        }
    }

    /// What a node acknowledges once it followed this direction.
    pub fn ack_value(self) -> &'static str {
        match self {
            Direction::V2 => registries::V2,
            Direction::Rollback => registries::ROLLED_BACK,
        }
    }

    /// The direction a value names exactly; anything else (`v1`, empty, unknown) is none.
    pub fn parse(value: &str) -> Option<Direction> {
        match value {
            registries::V2 => Some(Direction::V2),
            registries::ROLLBACK => Some(Direction::Rollback),
            _ => None,
        }
    }
}

/// A direction and when the service gave it: an acknowledgement answers exactly one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Directive {
    /// What to do.
    pub direction: Direction,
    /// When it was given (RFC 3339), the identity of this directive.
    pub since: String,
}

impl Directive {
    /// The directive a record Lease holds. `None` (keep the node as it is) when the Lease is
    /// missing, names no known direction (`v1` included: as installed, nothing moves), or
    /// lacks the time it was given.
    pub fn of_lease(lease: Option<&Lease>) -> Option<Directive> {
        let annotations = lease?.metadata.annotations.as_ref()?;
        let direction = Direction::parse(annotations.get(pivot::ANNOTATION_DIRECTION)?)?;
        let since = annotations
            .get(pivot::ANNOTATION_DIRECTION_SINCE)
            .filter(|s| !s.is_empty())?;
        Some(Directive {
            direction,
            since: since.clone(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lease(pairs: &[(&str, &str)]) -> Lease {
        let mut lease = Lease::default();
        lease.metadata.annotations = Some(
            pairs
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
        );
        lease
    }

    #[test]
    fn only_an_exact_direction_with_its_time_is_a_directive() {
        let d = pivot::ANNOTATION_DIRECTION;
        let s = pivot::ANNOTATION_DIRECTION_SINCE;
        assert_eq!(
            Directive::of_lease(Some(&lease(&[(d, "rollback"), (s, "T1")]))),
            Some(Directive {
                direction: Direction::Rollback,
                since: "T1".into()
            })
        );
        assert_eq!(
            Directive::of_lease(Some(&lease(&[(d, "v2"), (s, "T2")]))).map(|d| d.direction),
            Some(Direction::V2)
        );
        assert_eq!(Directive::of_lease(None), None, "a missing Lease is no v1");
        for bad in ["v1", "", "V2", "rolled-back", "rollback "] {
            assert_eq!(
                Directive::of_lease(Some(&lease(&[(d, bad), (s, "T1")]))),
                None,
                "{bad:?}"
            );
        }
        assert_eq!(Directive::of_lease(Some(&lease(&[(d, "v2")]))), None);
        assert_eq!(
            Directive::of_lease(Some(&lease(&[(d, "v2"), (s, "")]))),
            None
        );
        assert_eq!(Directive::of_lease(Some(&Lease::default())), None);
    }
}
