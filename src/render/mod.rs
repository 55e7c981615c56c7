//! The Job renderer: a step PodSpec wrapped into a batch/v1 Job through handlebars.
//!
//! The template (`templates/job.yaml.hbs`, built in, or the operator's copy in
//! [`RenderConfig::template_dir`]) shapes the Job; the PodSpec goes in as data, so scripts
//! inside it may hold `{{ }}` that reach the pod untouched.

mod config;
mod name;
mod renderer;

pub use config::RenderConfig;
pub use name::{job_name, preflight_job_name};
pub use renderer::{JobRenderer, RenderError, TEMPLATE_FILE};
