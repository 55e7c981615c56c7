//! Every step's log, while its pod exists and after: where a step's log is read from
//! ([`source`]), the bounded tail kept when a step ends ([`tail`]) and the ConfigMap per run
//! and step that keeps it past the pod and the Job's TTL ([`kept`]), kept beside the
//! cutover's critical path ([`queue`]); a live log's lines, capped ([`lines`]).

pub mod kept;
pub mod lines;
pub mod queue;
pub mod source;
pub mod tail;

pub use kept::{KeptLog, TailKeeper};
pub use lines::{CappedLines, MAX_LINE_BYTES};
pub use queue::{KEEP_DELAY, KeepQueue};
pub use source::{LogSource, newest_pod, source};
pub use tail::{MAX_TAIL_BYTES, Tail};
