//! Names that clusters in the field already depend on; see `../shared/CONTRACT.md`.
//! Everything that reads or writes a contract name takes it from here.

/// Default namespace of the service, the steps and the status ConfigMap.
pub const DEFAULT_NAMESPACE: &str = "catalyst";
/// Environment variable that overrides [`DEFAULT_NAMESPACE`].
pub const ENV_NAMESPACE: &str = "CATALYST_CUTOVER_NAMESPACE";
/// Default name of the status ConfigMap.
pub const DEFAULT_STATUS_CONFIGMAP: &str = "self-sovereign-cutover-status";
/// Environment variable that overrides [`DEFAULT_STATUS_CONFIGMAP`].
pub const ENV_STATUS_CONFIGMAP: &str = "CATALYST_CUTOVER_STATUS_CONFIGMAP";

/// Default name of the Lease that elects the one runner (`serve --lease-name`).
pub const DEFAULT_LEASE: &str = "catalyst-cutover";

/// The record Lease of the runner Lease `lease`: the cutover's durable record, and the
/// direction the registry-pivot agents follow.
pub fn record_lease(lease: &str) -> String {
    format!("{lease}-record")
}

/// `app.kubernetes.io/part-of` value shared by steps, Jobs and the status ConfigMap.
pub const PART_OF: &str = "self-sovereign-cutover";
/// Label key `app.kubernetes.io/part-of`.
pub const LABEL_PART_OF: &str = "app.kubernetes.io/part-of";
/// Label key `app.kubernetes.io/component`.
pub const LABEL_COMPONENT: &str = "app.kubernetes.io/component";
/// Component of a step ConfigMap.
pub const COMPONENT_STEP: &str = "cutover-step";
/// Component of a step Job and its pods.
pub const COMPONENT_JOB: &str = "cutover-job";
/// Component of the status ConfigMap.
pub const COMPONENT_STATUS: &str = "cutover-status";
/// The exact selector of step ConfigMaps.
pub const STEP_SELECTOR: &str =
    "app.kubernetes.io/part-of=self-sovereign-cutover,app.kubernetes.io/component=cutover-step";

/// Step ConfigMap name prefix, followed by `NN-<slug>`.
pub const STEP_CONFIGMAP_PREFIX: &str = "cutover-step-";
/// Step label: integer order, ascending; ties broken by ConfigMap name.
pub const LABEL_STEP_ORDER: &str = "bp.openova.io/cutover-order";
/// Step label: `job` (default) or `daemonset-wait`.
pub const LABEL_STEP_MODE: &str = "bp.openova.io/cutover-mode";
/// Step label: the DaemonSet a `daemonset-wait` step waits for.
pub const LABEL_STEP_DAEMONSET: &str = "bp.openova.io/cutover-daemonset";
/// Step data key: the step's name.
pub const DATA_STEP_NAME: &str = "stepName";
/// Step data key: the step's YAML PodSpec.
pub const DATA_POD_SPEC: &str = "podSpec";
/// Label on a Job and its pod template naming the step.
pub const LABEL_JOB_STEP: &str = "cutover.openova.io/step";
/// Label the Job controller puts on a Job's pods, naming the Job (Kubernetes' own).
pub const LABEL_JOB_NAME: &str = "batch.kubernetes.io/job-name";

/// Annotation that keeps the status ConfigMap across `helm uninstall`.
pub const ANNOTATION_RESOURCE_POLICY: &str = "helm.sh/resource-policy";

/// Status ConfigMap keys.
pub mod key {
    /// `"true"` / `"false"`.
    pub const CUTOVER_COMPLETE: &str = "cutoverComplete";
    /// First start of the cutover.
    pub const CUTOVER_STARTED_AT: &str = "cutoverStartedAt";
    /// Completion of the cutover.
    pub const CUTOVER_FINISHED_AT: &str = "cutoverFinishedAt";
    /// Start of the latest attempt.
    pub const CUTOVER_LAST_ATTEMPT_STARTED_AT: &str = "cutoverLastAttemptStartedAt";
    /// stepName running now, `""` when none.
    pub const CURRENT_STEP: &str = "currentStep";
    /// 0-based index of the current step.
    pub const CURRENT_STEP_INDEX: &str = "currentStepIndex";
    /// Number of steps.
    pub const TOTAL_STEPS: &str = "totalSteps";
    /// 100·done/total.
    pub const PROGRESS_PERCENT: &str = "progressPercent";
    /// The failed step.
    pub const FAILED_STEP: &str = "failedStep";
    /// A human-readable reason for the failure.
    pub const LAST_ERROR: &str = "lastError";
    /// `v1` / `v2` / `rollback`: shows the direction the registry-pivot agents follow (the
    /// record Lease's [`super::pivot::ANNOTATION_DIRECTION`]); no agent reads it.
    pub const REGISTRIES_YAML_ACTIVE: &str = "registriesYamlActive";
    /// The operator whose login was the first ever (recorded once, never overwritten).
    pub const FIRST_OPERATOR_LOGIN: &str = "firstOperatorLogin";
    /// When the first operator login happened.
    pub const FIRST_OPERATOR_LOGIN_AT: &str = "firstOperatorLoginAt";
    /// The console's figure: the commit the local Gitea mirrored (reported by gitea-mirror).
    pub const MIRRORED_COMMIT_SHA: &str = "mirroredCommitSHA";
    /// The console's figure: the proxy-cache projects in Harbor (reported by harbor-projects).
    pub const HARBOR_PROJECT_COUNT: &str = "harborProjectCount";

    /// `step.<stepName>.<field>`.
    pub fn step(step_name: &str, field: &str) -> String {
        format!("step.{step_name}.{field}")
    }
    /// `node.<nodeName>.registriesYaml`: shows the node's acknowledgement Lease; the service
    /// writes it, and counts only the Leases.
    pub fn node_registries_yaml(node_name: &str) -> String {
        format!("node.{node_name}.registriesYaml")
    }
    /// Per-step field: start time.
    pub const STEP_STARTED_AT: &str = "startedAt";
    /// Per-step field: finish time.
    pub const STEP_FINISHED_AT: &str = "finishedAt";
    /// Per-step field: `running`, `success`, `failed`, `skipped` or `""`.
    pub const STEP_RESULT: &str = "result";
    /// Per-step field: the Job, or the DaemonSet for daemonset-wait.
    pub const STEP_JOB_NAME: &str = "jobName";
}

/// The values of the registry-pivot handshake: the direction the agents follow (the record
/// Lease's, shown as `registriesYamlActive`) and each node's acknowledgement (its Lease's,
/// shown as `node.<n>.registriesYaml`). Missing, empty or unknown values tell an agent to
/// keep its node as it is.
pub mod registries {
    /// `registriesYamlActive` as installed: the agents change nothing on any node.
    pub const V1: &str = "v1";
    /// `registriesYamlActive`: pivot to the local Harbor; a node acknowledges `v2`.
    pub const V2: &str = "v2";
    /// `registriesYamlActive`, only ever written by an explicit, confirmed operator
    /// rollback: restore the files saved before the pivot; a node acknowledges
    /// [`ROLLED_BACK`].
    pub const ROLLBACK: &str = "rollback";
    /// A node's acknowledgement of [`ROLLBACK`].
    pub const ROLLED_BACK: &str = "rolled-back";

    /// The node of an acknowledgement key, `node.<nodeName>.registriesYaml`.
    pub fn node_of_ack(key: &str) -> Option<&str> {
        key.strip_prefix("node.")?
            .strip_suffix(".registriesYaml")
            .filter(|node| !node.is_empty())
    }

    /// Whether `key` is a node's acknowledgement.
    pub fn is_node_ack(key: &str) -> bool {
        node_of_ack(key).is_some()
    }
}

/// Label on a Job and its pod template naming the attempt of the step (project-owned, not in
/// the earlier implementation): a retry is a new attempt and therefore a new Job.
pub const LABEL_JOB_ATTEMPT: &str = "cutover.openova.io/attempt";

/// The registry-pivot handshake's objects that only service accounts may write: the built-in
/// `edit` role has no rights on coordination.k8s.io Leases, so whoever may only edit the
/// namespace (ConfigMaps included) can neither steer the agents nor forge their answers.
pub mod pivot {
    /// Annotation of the record Lease (`<lease>-record`) the agents follow: the direction
    /// the service gave them (`v2` or `rollback`), written only by the service.
    pub const ANNOTATION_DIRECTION: &str = "cutover.openova.io/registries-yaml-active";
    /// Annotation of the record Lease: when the direction last changed (RFC 3339); an
    /// acknowledgement is of one direction given at one time.
    pub const ANNOTATION_DIRECTION_SINCE: &str = "cutover.openova.io/registries-yaml-since";
    /// `app.kubernetes.io/component` of a node's acknowledgement Lease.
    pub const COMPONENT_ACK: &str = "registry-pivot-ack";
    /// The selector of acknowledgement Leases.
    pub const ACK_SELECTOR: &str = "app.kubernetes.io/part-of=self-sovereign-cutover,app.kubernetes.io/component=registry-pivot-ack";
    /// Annotation of an acknowledgement Lease: the node.
    pub const ANNOTATION_ACK_NODE: &str = "cutover.openova.io/node";
    /// Annotation of an acknowledgement Lease: what the node acknowledged (`v2`,
    /// `rolled-back`).
    pub const ANNOTATION_ACK_VALUE: &str = "cutover.openova.io/registries-yaml";
    /// Annotation of an acknowledgement Lease: the direction's
    /// [`ANNOTATION_DIRECTION_SINCE`] it answers.
    pub const ANNOTATION_ACK_SINCE: &str = "cutover.openova.io/direction-since";
}
