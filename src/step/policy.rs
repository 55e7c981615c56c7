//! What a step's PodSpec may ask for: the Pod Security Standards (`baseline` or
//! `restricted`, as Kubernetes' Pod Security admission defines them) plus an allow-list of
//! service accounts.
//!
//! Anyone who may write a ConfigMap in the namespace (Kubernetes' built-in `edit` role) may
//! write a step ConfigMap, and the service creates its Job with the service's own rights. The
//! policy keeps that from being a way to run a privileged pod, mount the node, or borrow
//! another service account's token. Every check is a pure function of the PodSpec.

use super::{Step, StepKind, StepProblem};
use crate::contract::DATA_POD_SPEC;
use k8s_openapi::api::core::v1::{ContainerPort, PodSpec, SecurityContext};
use std::fmt;
use std::str::FromStr;

/// The service account a step runs as unless the operator widens the allow-list: the one
/// the chart creates for the steps (`chart/templates/runner-rbac.yaml`).
pub const DEFAULT_STEP_SERVICE_ACCOUNT: &str = "cutover-runner";

/// A Pod Security Standards level.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub enum PodSecurityLevel {
    /// Everything allowed.
    Privileged,
    /// No known privilege escalation: no host namespaces, privileged containers, hostPath...
    Baseline,
    /// Baseline plus the hardening best practices (non-root, no escalation, drop ALL...).
    Restricted,
}

impl PodSecurityLevel {
    /// The level's name, as Pod Security admission spells it.
    pub fn as_str(self) -> &'static str {
        match self {
            PodSecurityLevel::Privileged => "privileged",
            PodSecurityLevel::Baseline => "baseline",
            PodSecurityLevel::Restricted => "restricted",
        }
    }
}

impl fmt::Display for PodSecurityLevel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// A level name other than `privileged`, `baseline` or `restricted`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown Pod Security level {0:?}: expected restricted, baseline or privileged")]
pub struct UnknownLevel(pub String);

impl FromStr for PodSecurityLevel {
    type Err = UnknownLevel;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s.trim() {
            "privileged" => Ok(PodSecurityLevel::Privileged),
            "baseline" => Ok(PodSecurityLevel::Baseline),
            "restricted" => Ok(PodSecurityLevel::Restricted),
            other => Err(UnknownLevel(other.to_owned())),
        }
    }
}

/// What step PodSpecs may ask for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StepPolicy {
    /// The Pod Security Standards level every step must meet.
    pub level: PodSecurityLevel,
    /// The service accounts a step may run as; `None` allows any.
    pub service_accounts: Option<Vec<String>>,
    /// The oldest chart whose step ConfigMaps are run (see [`super::chart`]).
    pub min_chart_version: semver::Version,
}

impl Default for StepPolicy {
    /// `restricted`, running only as the chart's step service account.
    fn default() -> Self {
        StepPolicy {
            level: PodSecurityLevel::Restricted,
            service_accounts: Some(vec![DEFAULT_STEP_SERVICE_ACCOUNT.to_owned()]),
            min_chart_version: super::chart::default_floor(),
        }
    }
}

impl StepPolicy {
    /// Allows every PodSpec (for embedding the service where the step ConfigMaps are
    /// trusted, as the tests and benches do).
    pub fn unrestricted() -> Self {
        StepPolicy {
            level: PodSecurityLevel::Privileged,
            service_accounts: None,
            min_chart_version: super::chart::default_floor(),
        }
    }

    /// Every violation of every step that runs a pod, each naming the ConfigMap and the field.
    pub fn check_steps(&self, steps: &[Step]) -> Vec<StepProblem> {
        steps
            .iter()
            .filter_map(|step| match &step.kind {
                StepKind::Job { pod_spec } | StepKind::Preflight { pod_spec } => {
                    Some((step, pod_spec))
                }
                StepKind::DaemonSetWait { .. } => None,
            })
            .flat_map(|(step, spec)| {
                self.violations(spec).into_iter().map(|v| {
                    StepProblem::at(
                        &step.configmap,
                        format!("data.{DATA_POD_SPEC}.{}", v.field),
                        v.message,
                    )
                })
            })
            .collect()
    }

    /// Every violation of `spec`, fields relative to the PodSpec. Pure.
    pub fn violations(&self, spec: &PodSpec) -> Vec<Violation> {
        let mut found = Vec::new();
        self.check_service_account(spec, &mut found);
        if self.level >= PodSecurityLevel::Baseline {
            baseline(spec, &mut found);
        }
        if self.level >= PodSecurityLevel::Restricted {
            restricted(spec, &mut found);
        }
        found
    }

    fn check_service_account(&self, spec: &PodSpec, found: &mut Vec<Violation>) {
        let Some(allowed) = &self.service_accounts else {
            return;
        };
        let named = spec
            .service_account_name
            .as_deref()
            .filter(|s| !s.is_empty());
        let legacy = spec.service_account.as_deref().filter(|s| !s.is_empty());
        let (field, account) = match (named, legacy) {
            (Some(name), _) => ("serviceAccountName", name),
            (None, Some(name)) => ("serviceAccount", name),
            (None, None) => ("serviceAccountName", "default"),
        };
        if let (Some(named), Some(legacy)) = (named, legacy)
            && named != legacy
        {
            found.push(Violation::new(
                "serviceAccount",
                format!("{legacy:?} differs from serviceAccountName {named:?}: set only serviceAccountName"),
            ));
        }
        if !allowed.iter().any(|a| a == account) {
            found.push(Violation::new(
                field,
                format!(
                    "service account {account:?} is not allowed for steps (allowed: {}); \
                     an operator widens the list with --step-service-accounts",
                    allowed.join(", ")
                ),
            ));
        }
    }
}

/// One thing a PodSpec asks for that the policy forbids.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// The field, relative to the PodSpec, e.g. `containers[0].securityContext.privileged`.
    pub field: String,
    /// What is wrong and what is allowed.
    pub message: String,
}

impl Violation {
    fn new(field: impl Into<String>, message: impl Into<String>) -> Self {
        Violation {
            field: field.into(),
            message: message.into(),
        }
    }
}

/// One container of any kind, with the path of its entry.
struct ContainerView<'a> {
    path: String,
    security: Option<&'a SecurityContext>,
    ports: &'a [ContainerPort],
}

fn containers(spec: &PodSpec) -> Vec<ContainerView<'_>> {
    let regular = spec
        .containers
        .iter()
        .enumerate()
        .map(|(i, c)| ContainerView {
            path: format!("containers[{i}]"),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    let init = spec
        .init_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ContainerView {
            path: format!("initContainers[{i}]"),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    let ephemeral = spec
        .ephemeral_containers
        .iter()
        .flatten()
        .enumerate()
        .map(|(i, c)| ContainerView {
            path: format!("ephemeralContainers[{i}]"),
            security: c.security_context.as_ref(),
            ports: c.ports.as_deref().unwrap_or_default(),
        });
    regular.chain(init).chain(ephemeral).collect()
}

/// Capabilities baseline allows a container to add (Pod Security Standards).
const BASELINE_CAPABILITIES: &[&str] = &[
    "AUDIT_WRITE",
    "CHOWN",
    "DAC_OVERRIDE",
    "FOWNER",
    "FSETID",
    "KILL",
    "MKNOD",
    "NET_BIND_SERVICE",
    "SETFCAP",
    "SETGID",
    "SETPCAP",
    "SETUID",
    "SYS_CHROOT",
];

/// Sysctls baseline allows (the "safe" set, Kubernetes v1.29+).
const SAFE_SYSCTLS: &[&str] = &[
    "kernel.shm_rmid_forced",
    "net.ipv4.ip_local_port_range",
    "net.ipv4.ip_unprivileged_port_start",
    "net.ipv4.tcp_syncookies",
    "net.ipv4.ping_group_range",
    "net.ipv4.ip_local_reserved_ports",
    "net.ipv4.tcp_keepalive_time",
    "net.ipv4.tcp_fin_timeout",
    "net.ipv4.tcp_keepalive_intvl",
    "net.ipv4.tcp_keepalive_probes",
];

/// SELinux types baseline allows.
const SELINUX_TYPES: &[&str] = &[
    "container_t",
    "container_init_t",
    "container_kvm_t",
    "container_engine_t",
];

/// Volume types restricted allows (keys of a Volume besides `name`).
const RESTRICTED_VOLUMES: &[&str] = &[
    "configMap",
    "csi",
    "downwardAPI",
    "emptyDir",
    "ephemeral",
    "persistentVolumeClaim",
    "projected",
    "secret",
];

fn baseline(spec: &PodSpec, found: &mut Vec<Violation>) {
    let not_true = "must be unset or false (baseline: no host namespaces)";
    for (field, value) in [
        ("hostNetwork", spec.host_network),
        ("hostPID", spec.host_pid),
        ("hostIPC", spec.host_ipc),
    ] {
        if value == Some(true) {
            found.push(Violation::new(field, not_true));
        }
    }
    let pod_sc = spec.security_context.as_ref();
    if pod_sc
        .and_then(|sc| sc.windows_options.as_ref())
        .and_then(|w| w.host_process)
        == Some(true)
    {
        found.push(Violation::new(
            "securityContext.windowsOptions.hostProcess",
            "must be unset or false (baseline: no HostProcess pods)",
        ));
    }
    if let Some(sc) = pod_sc {
        selinux("securityContext", sc.se_linux_options.as_ref(), found);
        seccomp_not_unconfined(
            "securityContext",
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            found,
        );
        apparmor(
            "securityContext",
            sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
            found,
        );
        for (i, sysctl) in sc.sysctls.iter().flatten().enumerate() {
            if !SAFE_SYSCTLS.contains(&sysctl.name.as_str()) {
                found.push(Violation::new(
                    format!("securityContext.sysctls[{i}].name"),
                    format!(
                        "{:?} is not a safe sysctl (baseline allows {})",
                        sysctl.name,
                        SAFE_SYSCTLS.join(", ")
                    ),
                ));
            }
        }
    }
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        if volume.host_path.is_some() {
            found.push(Violation::new(
                format!("volumes[{i}].hostPath"),
                "hostPath volumes are not allowed (baseline)",
            ));
        }
    }
    for c in containers(spec) {
        for (j, port) in c.ports.iter().enumerate() {
            if port.host_port.is_some_and(|p| p != 0) {
                found.push(Violation::new(
                    format!("{}.ports[{j}].hostPort", c.path),
                    "must be unset or 0 (baseline: no host ports)",
                ));
            }
        }
        let Some(sc) = c.security else { continue };
        let at = |f: &str| format!("{}.securityContext.{f}", c.path);
        if sc.privileged == Some(true) {
            found.push(Violation::new(
                at("privileged"),
                "must be unset or false (baseline: no privileged containers)",
            ));
        }
        if sc.windows_options.as_ref().and_then(|w| w.host_process) == Some(true) {
            found.push(Violation::new(
                at("windowsOptions.hostProcess"),
                "must be unset or false (baseline: no HostProcess containers)",
            ));
        }
        for (k, cap) in sc
            .capabilities
            .as_ref()
            .and_then(|c| c.add.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if !BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                found.push(Violation::new(
                    at(&format!("capabilities.add[{k}]")),
                    format!(
                        "{cap:?} may not be added (baseline allows {})",
                        BASELINE_CAPABILITIES.join(", ")
                    ),
                ));
            }
        }
        if sc.proc_mount.as_deref().is_some_and(|m| m != "Default") {
            found.push(Violation::new(
                at("procMount"),
                "must be unset or Default (baseline)",
            ));
        }
        let base = format!("{}.securityContext", c.path);
        selinux(&base, sc.se_linux_options.as_ref(), found);
        seccomp_not_unconfined(
            &base,
            sc.seccomp_profile.as_ref().map(|p| p.type_.as_str()),
            found,
        );
        apparmor(
            &base,
            sc.app_armor_profile.as_ref().map(|p| p.type_.as_str()),
            found,
        );
    }
}

fn selinux(
    base: &str,
    options: Option<&k8s_openapi::api::core::v1::SELinuxOptions>,
    found: &mut Vec<Violation>,
) {
    let Some(options) = options else { return };
    if let Some(t) = options.type_.as_deref().filter(|t| !t.is_empty())
        && !SELINUX_TYPES.contains(&t)
    {
        found.push(Violation::new(
            format!("{base}.seLinuxOptions.type"),
            format!(
                "{t:?} is not allowed (baseline allows {})",
                SELINUX_TYPES.join(", ")
            ),
        ));
    }
    for (field, value) in [("user", &options.user), ("role", &options.role)] {
        if value.as_deref().is_some_and(|v| !v.is_empty()) {
            found.push(Violation::new(
                format!("{base}.seLinuxOptions.{field}"),
                "must be unset (baseline)",
            ));
        }
    }
}

fn seccomp_not_unconfined(base: &str, kind: Option<&str>, found: &mut Vec<Violation>) {
    if kind == Some("Unconfined") {
        found.push(Violation::new(
            format!("{base}.seccompProfile.type"),
            "Unconfined is not allowed (baseline): use RuntimeDefault or Localhost",
        ));
    }
}

fn apparmor(base: &str, kind: Option<&str>, found: &mut Vec<Violation>) {
    if kind.is_some_and(|k| !matches!(k, "RuntimeDefault" | "Localhost")) {
        found.push(Violation::new(
            format!("{base}.appArmorProfile.type"),
            "only RuntimeDefault or Localhost is allowed (baseline)",
        ));
    }
}

fn restricted(spec: &PodSpec, found: &mut Vec<Violation>) {
    for (i, volume) in spec.volumes.iter().flatten().enumerate() {
        let json = serde_json::to_value(volume).unwrap_or_default();
        let kinds = json.as_object().into_iter().flat_map(|o| o.keys());
        for kind in kinds.filter(|k| *k != "name" && *k != "hostPath") {
            if !RESTRICTED_VOLUMES.contains(&kind.as_str()) {
                found.push(Violation::new(
                    format!("volumes[{i}].{kind}"),
                    format!(
                        "{kind} volumes are not allowed (restricted allows {})",
                        RESTRICTED_VOLUMES.join(", ")
                    ),
                ));
            }
        }
    }
    let pod_sc = spec.security_context.as_ref();
    let pod_non_root = pod_sc.and_then(|sc| sc.run_as_non_root);
    let pod_seccomp = pod_sc
        .and_then(|sc| sc.seccomp_profile.as_ref())
        .map(|p| p.type_.as_str());
    if pod_non_root == Some(false) {
        found.push(Violation::new(
            "securityContext.runAsNonRoot",
            "must be true (restricted)",
        ));
    }
    if pod_sc.and_then(|sc| sc.run_as_user) == Some(0) {
        found.push(Violation::new(
            "securityContext.runAsUser",
            "must not be 0 (restricted: no root user)",
        ));
    }
    let confined = |t: &str| matches!(t, "RuntimeDefault" | "Localhost");
    if pod_seccomp.is_some_and(|t| !confined(t) && t != "Unconfined") {
        found.push(Violation::new(
            "securityContext.seccompProfile.type",
            "must be RuntimeDefault or Localhost (restricted)",
        ));
    }
    for c in containers(spec) {
        let sc = c.security;
        let at = |f: &str| format!("{}.securityContext.{f}", c.path);
        if sc.and_then(|sc| sc.allow_privilege_escalation) != Some(false) {
            found.push(Violation::new(
                at("allowPrivilegeEscalation"),
                "must be false (restricted)",
            ));
        }
        match sc.and_then(|sc| sc.run_as_non_root) {
            Some(true) => {}
            Some(false) => found.push(Violation::new(
                at("runAsNonRoot"),
                "must be true (restricted)",
            )),
            None if pod_non_root != Some(true) => found.push(Violation::new(
                at("runAsNonRoot"),
                "must be true, here or in the pod's securityContext (restricted)",
            )),
            None => {}
        }
        if sc.and_then(|sc| sc.run_as_user) == Some(0) {
            found.push(Violation::new(
                at("runAsUser"),
                "must not be 0 (restricted: no root user)",
            ));
        }
        match sc
            .and_then(|sc| sc.seccomp_profile.as_ref())
            .map(|p| p.type_.as_str())
        {
            Some(t) if confined(t) => {}
            Some("Unconfined") => {}
            Some(_) => found.push(Violation::new(
                at("seccompProfile.type"),
                "must be RuntimeDefault or Localhost (restricted)",
            )),
            None if !pod_seccomp.is_some_and(confined) => found.push(Violation::new(
                at("seccompProfile.type"),
                "must be RuntimeDefault or Localhost, here or in the pod's securityContext (restricted)",
            )),
            None => {}
        }
        let caps = sc.and_then(|sc| sc.capabilities.as_ref());
        let drops_all = caps
            .and_then(|c| c.drop.as_ref())
            .is_some_and(|d| d.iter().any(|c| c == "ALL"));
        if !drops_all {
            found.push(Violation::new(
                at("capabilities.drop"),
                "must include ALL (restricted)",
            ));
        }
        for (k, cap) in caps
            .and_then(|c| c.add.as_ref())
            .into_iter()
            .flatten()
            .enumerate()
        {
            if cap != "NET_BIND_SERVICE" && BASELINE_CAPABILITIES.contains(&cap.as_str()) {
                found.push(Violation::new(
                    at(&format!("capabilities.add[{k}]")),
                    format!("{cap:?} may not be added (restricted allows only NET_BIND_SERVICE)"),
                ));
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn spec(yaml: &str) -> PodSpec {
        serde_yaml::from_str(yaml).unwrap()
    }

    /// A PodSpec that meets restricted, as the chart's steps are written.
    const RESTRICTED: &str = r#"
serviceAccountName: cutover-runner
securityContext:
  runAsNonRoot: true
  runAsUser: 65534
  seccompProfile: {type: RuntimeDefault}
containers:
- name: step
  image: alpine
  securityContext:
    allowPrivilegeEscalation: false
    capabilities: {drop: [ALL], add: [NET_BIND_SERVICE]}
volumes:
- name: scripts
  configMap: {name: x}
- name: tmp
  emptyDir: {}
"#;

    fn fields(policy: &StepPolicy, spec: &PodSpec) -> Vec<String> {
        policy
            .violations(spec)
            .into_iter()
            .map(|v| v.field)
            .collect()
    }

    #[test]
    fn a_restricted_pod_spec_passes() {
        assert_eq!(
            fields(&StepPolicy::default(), &spec(RESTRICTED)),
            Vec::<String>::new()
        );
    }

    #[test]
    fn a_bare_pod_spec_fails_restricted_on_every_count() {
        let bare = spec("containers: [{name: a, image: x}]");
        assert_eq!(
            fields(&StepPolicy::default(), &bare),
            [
                "serviceAccountName",
                "containers[0].securityContext.allowPrivilegeEscalation",
                "containers[0].securityContext.runAsNonRoot",
                "containers[0].securityContext.seccompProfile.type",
                "containers[0].securityContext.capabilities.drop",
            ]
        );
        let baseline = StepPolicy {
            level: PodSecurityLevel::Baseline,
            ..StepPolicy::unrestricted()
        };
        assert!(fields(&baseline, &bare).is_empty());
    }

    #[test]
    fn baseline_violations_are_named_by_field() {
        let hostile = spec(
            r#"
serviceAccountName: admin
hostNetwork: true
hostPID: true
hostIPC: true
securityContext:
  sysctls: [{name: kernel.msgmax, value: "1"}]
  seLinuxOptions: {type: spc_t, user: root}
  windowsOptions: {hostProcess: true}
containers:
- name: a
  image: x
  ports: [{containerPort: 80, hostPort: 80}]
  securityContext:
    privileged: true
    procMount: Unmasked
    capabilities: {add: [SYS_ADMIN]}
    seccompProfile: {type: Unconfined}
    appArmorProfile: {type: Unconfined}
initContainers:
- name: i
  image: x
  securityContext: {privileged: true}
volumes:
- name: root
  hostPath: {path: /}
"#,
        );
        let policy = StepPolicy {
            level: PodSecurityLevel::Baseline,
            service_accounts: Some(vec!["cutover-runner".into()]),
            ..StepPolicy::unrestricted()
        };
        let found = fields(&policy, &hostile);
        for field in [
            "serviceAccountName",
            "hostNetwork",
            "hostPID",
            "hostIPC",
            "securityContext.windowsOptions.hostProcess",
            "securityContext.seLinuxOptions.type",
            "securityContext.seLinuxOptions.user",
            "securityContext.sysctls[0].name",
            "volumes[0].hostPath",
            "containers[0].ports[0].hostPort",
            "containers[0].securityContext.privileged",
            "containers[0].securityContext.capabilities.add[0]",
            "containers[0].securityContext.procMount",
            "containers[0].securityContext.seccompProfile.type",
            "containers[0].securityContext.appArmorProfile.type",
            "initContainers[0].securityContext.privileged",
        ] {
            assert!(
                found.iter().any(|f| f == field),
                "{field} missing from {found:#?}"
            );
        }
        assert!(fields(&StepPolicy::unrestricted(), &hostile).is_empty());
    }

    #[test]
    fn restricted_refuses_root_escalation_and_other_volumes() {
        let mut s = spec(RESTRICTED);
        s.security_context.as_mut().unwrap().run_as_user = Some(0);
        let c = s.containers[0].security_context.as_mut().unwrap();
        c.allow_privilege_escalation = Some(true);
        c.run_as_non_root = Some(false);
        c.capabilities.as_mut().unwrap().add = Some(vec!["CHOWN".into()]);
        s.volumes
            .as_mut()
            .unwrap()
            .push(serde_yaml::from_str("{name: n, nfs: {server: s, path: /}}").unwrap());
        assert_eq!(
            fields(&StepPolicy::default(), &s),
            [
                "volumes[2].nfs",
                "securityContext.runAsUser",
                "containers[0].securityContext.allowPrivilegeEscalation",
                "containers[0].securityContext.runAsNonRoot",
                "containers[0].securityContext.capabilities.add[0]",
            ]
        );
    }

    #[test]
    fn the_service_account_defaults_to_default_and_the_legacy_field_counts() {
        let policy = StepPolicy::default();
        let mut s = spec(RESTRICTED);
        s.service_account_name = None;
        let v = policy.violations(&s);
        assert!(v[0].message.contains("\"default\""), "{v:?}");
        s.service_account = Some("cutover-runner".into());
        assert!(policy.violations(&s).is_empty());
        s.service_account_name = Some("admin".into());
        assert_eq!(
            fields(&policy, &s),
            ["serviceAccount", "serviceAccountName"]
        );
    }

    #[test]
    fn the_charts_steps_meet_the_default_policy() {
        let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("chart/steps");
        let plan = crate::step::parse_plan(&crate::step::load_dir(&dir).unwrap()).unwrap();
        assert!(plan.len() > 1);
        assert_eq!(StepPolicy::default().check_steps(plan.steps()), []);
    }

    #[test]
    fn levels_parse() {
        assert_eq!("baseline".parse(), Ok(PodSecurityLevel::Baseline));
        assert!("root".parse::<PodSecurityLevel>().is_err());
    }
}
