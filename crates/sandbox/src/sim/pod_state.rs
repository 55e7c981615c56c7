//! How the controllers read a pod: where it is in its life, readiness, restarts, owner.

use k8s_openapi::api::core::v1::{ContainerState, Pod};

/// Where a pod is in its life, as the workload controllers count it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PodState {
    /// Pending or Running, not being deleted.
    Active,
    /// Not terminal but carries a deletionTimestamp.
    Terminating,
    /// Phase Succeeded.
    Succeeded,
    /// Phase Failed.
    Failed,
}

/// The state of `pod`.
pub fn state(pod: &Pod) -> PodState {
    match phase(pod) {
        "Succeeded" => PodState::Succeeded,
        "Failed" => PodState::Failed,
        _ if pod.metadata.deletion_timestamp.is_some() => PodState::Terminating,
        _ => PodState::Active,
    }
}

/// `status.phase`, `""` when unset (the API server has not defaulted it yet).
pub fn phase(pod: &Pod) -> &str {
    pod.status
        .as_ref()
        .and_then(|s| s.phase.as_deref())
        .unwrap_or_default()
}

/// Whether the pod's `Ready` condition is True.
pub fn is_ready(pod: &Pod) -> bool {
    pod.status
        .as_ref()
        .and_then(|s| s.conditions.as_ref())
        .is_some_and(|cs| cs.iter().any(|c| c.type_ == "Ready" && c.status == "True"))
}

/// Sum of the containers' restart counts.
pub fn restarts(pod: &Pod) -> i32 {
    pod.status
        .as_ref()
        .and_then(|s| s.container_statuses.as_ref())
        .map(|cs| cs.iter().map(|c| c.restart_count).sum())
        .unwrap_or(0)
}

/// The uid of the pod's controlling owner.
pub fn controller_uid(pod: &Pod) -> Option<&str> {
    pod.metadata
        .owner_references
        .as_ref()?
        .iter()
        .find(|o| o.controller == Some(true))
        .map(|o| o.uid.as_str())
}

/// The state of the pod's first container, as last reported.
pub fn first_container_state(pod: &Pod) -> Option<&ContainerState> {
    pod.status
        .as_ref()?
        .container_statuses
        .as_ref()?
        .first()?
        .state
        .as_ref()
}

/// `metadata.name`, `""` when unset.
pub fn name(pod: &Pod) -> &str {
    pod.metadata.name.as_deref().unwrap_or_default()
}

/// `spec.nodeName`, if bound.
pub fn node_name(pod: &Pod) -> Option<&str> {
    pod.spec.as_ref()?.node_name.as_deref()
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::api::core::v1::PodStatus;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;

    #[test]
    fn states() {
        let mut pod = Pod::default();
        assert_eq!(state(&pod), PodState::Active);
        pod.metadata.deletion_timestamp = Some(Time(jiff::Timestamp::UNIX_EPOCH));
        assert_eq!(state(&pod), PodState::Terminating);
        pod.status = Some(PodStatus {
            phase: Some("Failed".into()),
            ..Default::default()
        });
        assert_eq!(state(&pod), PodState::Failed);
        assert!(!is_ready(&pod));
        assert_eq!(restarts(&pod), 0);
    }
}
