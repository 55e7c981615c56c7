//! The preflight layer's background work (the auto-fire's gates, preflight runs' drives),
//! sent to the service's task that runs it ([`super::auto_fire::serve`]), so that the
//! service's shutdown ends it with the rest.

use std::future::Future;
use std::pin::Pin;
use tokio::sync::mpsc;

/// One piece of the preflight layer's background work.
pub enum Work {
    /// The auto-fire's gate for a login of this operator.
    Gate(String),
    /// A preflight run's drive ([`super::Preflights::start_or_join`]).
    Run(Pin<Box<dyn Future<Output = ()> + Send>>),
}

/// Where the preflight layer sends its [`Work`].
pub type WorkSender = mpsc::UnboundedSender<Work>;
/// [`super::auto_fire::serve`]'s end of a [`WorkSender`].
pub type WorkReceiver = mpsc::UnboundedReceiver<Work>;

/// A channel for [`Work`]. Unbounded: a gate is asked for only by a login of an allow-listed
/// service account whose write set `autoFire=preflight`, a run only by a request that began
/// one (the preflight ConfigMap admits one run at a time).
pub fn work_channel() -> (WorkSender, WorkReceiver) {
    mpsc::unbounded_channel()
}
