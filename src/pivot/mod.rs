//! The registry-pivot agent (`catalyst-cutover agent`, one pod per node) and the handshake
//! the service and the agents share.
//!
//! The service gives the agents their direction in the annotations of its record Lease
//! ([`direction`]); each agent answers with a Lease of its own per direction ([`ack`]).
//! Neither lives in a ConfigMap: the built-in `edit` role may write every ConfigMap of the
//! namespace but no Lease, so nothing written to a ConfigMap changes what the agents do or
//! what the service believes they did. `registriesYamlActive` and
//! `node.<n>.registriesYaml` in the status ConfigMap only display what the Leases say.
//! [`files`] is what an agent writes on its node; [`agent`] the agent's watch loop.

pub mod ack;
pub mod agent;
pub mod direction;
pub mod files;

pub use direction::{Direction, Directive};
pub use files::{Host, NodePaths, PivotSettings};
