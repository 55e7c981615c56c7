//! The step model: step ConfigMaps parsed and validated into typed steps.
//!
//! Steps come from the cluster ([`discover`]) or from manifest files ([`load_dir`] then
//! [`parse_plan`]); either way every problem is reported at once, naming the ConfigMap and the
//! field, and nothing is half-parsed: a [`StepPlan`] only exists when every step is valid.

pub mod chart;
mod discover;
mod handoff;
mod load;
mod model;
mod name;
mod parse;
mod policy;
mod source;
mod unknown;
mod yaml_limits;

pub use discover::{DiscoverError, discover};
pub use handoff::PlanHandoff;
pub use load::{LoadError, load_dir};
pub use model::{Step, StepKind, StepMode, StepPlan, UnknownStepMode};
pub use name::{InvalidStepName, StepName};
pub(crate) use parse::normalize_restart_policy;
pub use parse::{StepProblem, StepReport, parse_plan};
pub use policy::{
    DEFAULT_STEP_SERVICE_ACCOUNT, PodSecurityLevel, StepPolicy, UnknownLevel, Violation,
};
pub use source::{PlanState, StepSource};
pub use yaml_limits::{MAX_POD_SPEC_BYTES, YamlLimit};
