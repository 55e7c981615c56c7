//! [`job_name`]: the deterministic name of a step's Job; [`preflight_job_name`]: the Job of a
//! preflight step in a preflight run of its own, which never shares a cutover Job's name.

use crate::step::StepName;
use sha2::{Digest, Sha256};

/// Every Job name of the cutover starts with this.
const PREFIX: &str = "cutover-";
/// Every Job name of a preflight run (`GET /cutover/preflight`) starts with this.
const PREFLIGHT_PREFIX: &str = "preflight-";
/// Longest DNS-1123 label.
const MAX_LEN: usize = 63;
/// Hex digits of the step-name hash kept when a name is shortened.
const HASH_LEN: usize = 8;

/// The Job of `step`'s `attempt`: `cutover-<step>-a<attempt>`, a valid DNS-1123 label of at
/// most 63 characters. When that is too long the step name is cut and followed by a short
/// hash of the whole step name, so two long names with a common start still differ.
pub fn job_name(step: &StepName, attempt: u32) -> String {
    dns_label(PREFIX, step, &format!("-a{attempt}"))
}

/// The Job of `step` in preflight run `run`: `preflight-<step>-r<run>`, shortened as
/// [`job_name`] does. The prefix keeps it apart from every cutover Job.
pub fn preflight_job_name(step: &StepName, run: u32) -> String {
    dns_label(PREFLIGHT_PREFIX, step, &format!("-r{run}"))
}

/// `<prefix><step><tag>`, cut to a DNS-1123 label with a hash of the step name when longer.
fn dns_label(prefix: &str, step: &StepName, tag: &str) -> String {
    let step = step.as_str();
    let full = format!("{prefix}{step}{tag}");
    if full.len() <= MAX_LEN {
        return full;
    }
    let hash = hex::encode(Sha256::digest(step.as_bytes()));
    let suffix = format!("-{}{tag}", &hash[..HASH_LEN]);
    let room = MAX_LEN - prefix.len() - suffix.len();
    // A StepName is ASCII and starts with an alphanumeric, so the cut is a char boundary and
    // never empty after trimming dashes.
    let head = step[..room.min(step.len())].trim_end_matches('-');
    format!("{prefix}{head}{suffix}")
}

#[cfg(test)]
mod tests {
    use super::*;

    fn is_dns_label(s: &str) -> bool {
        !s.is_empty()
            && s.len() <= 63
            && s.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
            && !s.starts_with('-')
            && !s.ends_with('-')
    }

    #[test]
    fn short_names_read_plainly() {
        let step = StepName::new("gitea-mirror").unwrap();
        assert_eq!(job_name(&step, 1), "cutover-gitea-mirror-a1");
        assert_eq!(job_name(&step, 1), job_name(&step, 1));
        assert_ne!(job_name(&step, 1), job_name(&step, 2));
    }

    #[test]
    fn always_a_dns_label_for_any_length_and_attempt() {
        let attempts = [0, 1, 9, 10, 99, 12_345, 999_999_999, u32::MAX - 1, u32::MAX];
        for len in 1..=63 {
            // Dashes around every cut point exercise the trimming.
            let raw: String = (0..len)
                .map(|i| if i % 3 == 2 && i + 1 < len { '-' } else { 'x' })
                .collect();
            let step = StepName::new(&raw).unwrap();
            for attempt in attempts {
                let name = job_name(&step, attempt);
                assert!(is_dns_label(&name), "{name:?} from {raw:?}/{attempt}");
                assert!(name.ends_with(&format!("-a{attempt}")), "{name}");
                let preflight = preflight_job_name(&step, attempt);
                assert!(is_dns_label(&preflight), "{preflight:?} from {raw:?}");
                assert!(preflight.starts_with("preflight-"), "{preflight}");
                assert!(preflight.ends_with(&format!("-r{attempt}")), "{preflight}");
            }
        }
    }

    #[test]
    fn long_names_with_a_common_start_stay_distinct() {
        let a = StepName::new(&format!("{}a", "x".repeat(62))).unwrap();
        let b = StepName::new(&format!("{}b", "x".repeat(62))).unwrap();
        for attempt in [1, u32::MAX] {
            assert_ne!(job_name(&a, attempt), job_name(&b, attempt));
            assert_eq!(job_name(&a, attempt), job_name(&a, attempt));
        }
        assert_eq!(job_name(&a, u32::MAX).len(), 63);
    }
}
