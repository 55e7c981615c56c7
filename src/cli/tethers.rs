//! `catalyst-cutover tethers`: every reference the cluster still holds to an upstream host,
//! listed once through the Kubernetes API (the service need not be reachable), as a table
//! grouped by kind or as the JSON of `GET /cutover/tethers`. The exit code says whether the
//! cluster is free of them, and a source it cannot see is never taken for "none".

use super::args::connect;
use super::status::terminal_json;
use super::tether_args::TetherArgs;
use crate::contract::{DEFAULT_LEASE, DEFAULT_NAMESPACE, ENV_NAMESPACE};
use crate::sanitize::{Lines, escaped};
use crate::tethers::{Tether, TetherConfig, TetherError, TetherKind, TetherReport};
use std::path::PathBuf;
use std::process::ExitCode;

/// No tether, and every source seen.
pub const EXIT_NONE: u8 = 0;
/// Some tethers.
pub const EXIT_SOME: u8 = 1;
/// No tether seen, but some sources could not be seen (no rights, a list failed): "none"
/// cannot be told.
pub const EXIT_BLIND: u8 = 3;
/// Nothing could be read: no kubeconfig, or the API could not be reached.
pub const EXIT_UNREADABLE: u8 = 4;

/// The exit codes, as `--help` prints them; 2, a wrong command line, is clap's own.
pub const EXIT_CODES: &str = "\
Exit codes:
  0  no tethers: nothing in the cluster points to an upstream host (kinds not installed
     hold none)
  1  some tethers (listed)
  2  usage error
  3  no tethers seen, but some sources cannot be seen (listed): none cannot be told
  4  nothing could be read: kubeconfig, Kubernetes API, or no upstream host given";

/// How the report is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// Grouped by kind, one line per tether, then the summary and the sources not seen.
    Table,
    /// The body of `GET /cutover/tethers`, on one line.
    Json,
}

/// Arguments of `tethers`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct TethersArgs {
    /// Kubeconfig of the cluster [default: $KUBECONFIG, ~/.kube/config or the in-cluster
    /// service account].
    #[arg(long, value_name = "FILE")]
    kubeconfig: Option<PathBuf>,
    /// Namespace of the cutover (its record Lease and the agents' acknowledgements).
    #[arg(short = 'n', long, value_name = "NS", env = ENV_NAMESPACE, default_value = DEFAULT_NAMESPACE)]
    namespace: String,
    /// Name of the Lease that elects the runner (the record Lease is `<name>-record`).
    #[arg(long, value_name = "NAME", default_value = DEFAULT_LEASE)]
    lease_name: String,
    #[command(flatten)]
    report: TetherArgs,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

impl TethersArgs {
    fn config(&self) -> TetherConfig {
        self.report.config(
            &self.namespace,
            &crate::contract::record_lease(&self.lease_name),
        )
    }
}

/// Why nothing could be read.
#[derive(Debug, thiserror::Error)]
enum TethersError {
    #[error("no cluster to talk to: {0}")]
    Config(String),
    #[error(transparent)]
    Report(#[from] TetherError),
    #[error("cannot write the report as JSON: {0}")]
    Json(serde_json::Error),
}

impl super::exit::Failure for TethersError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(EXIT_UNREADABLE)
    }
}

/// Runs `tethers`; its exit code says whether any are left (see `--help`).
pub fn run(args: TethersArgs) -> ExitCode {
    super::exit::run("tethers", async {
        tethers(&args).await.map(ExitCode::from)
    })
}

async fn tethers(args: &TethersArgs) -> Result<u8, TethersError> {
    let client = connect(args.kubeconfig.as_deref())
        .await
        .map_err(TethersError::Config)?;
    let report = crate::tethers::snapshot(client, &args.config()).await?;
    match args.output {
        Output::Table => {
            for line in table(&report) {
                super::exit::print_line(&line);
            }
        }
        Output::Json => {
            super::exit::print_line(&terminal_json(&report).map_err(TethersError::Json)?)
        }
    }
    Ok(exit_code(&report))
}

/// The exit code of `report`. Pure.
pub fn exit_code(report: &TetherReport) -> u8 {
    if !report.tethers.is_empty() {
        EXIT_SOME
    } else if report.blind_spots().next().is_some() || !report.synced {
        EXIT_BLIND
    } else {
        EXIT_NONE
    }
}

/// The table's lines: per kind (in [`TetherKind::ALL`]'s order) a heading, then one line
/// per tether (object, field, value, host), then the summary and the sources not seen.
/// Everything read from the cluster is escaped onto one line. Pure.
pub fn table(report: &TetherReport) -> Vec<String> {
    let shown = |text: &str| escaped(text, Lines::One).into_owned();
    let rows: Vec<(TetherKind, [String; 4])> = report
        .tethers
        .iter()
        .map(|t| {
            (
                t.kind,
                [
                    shown(&object(t)),
                    shown(&t.field),
                    shown(&t.value),
                    shown(&t.host),
                ],
            )
        })
        .collect();
    let width = |at: usize| {
        rows.iter()
            .map(|(_, cells)| cells[at].chars().count())
            .max()
            .unwrap_or(0)
    };
    let widths = [width(0), width(1), width(2)];
    let mut lines = Vec::new();
    for kind in TetherKind::ALL {
        let of_kind: Vec<&[String; 4]> = rows
            .iter()
            .filter(|(k, _)| *k == kind)
            .map(|(_, cells)| cells)
            .collect();
        if of_kind.is_empty() {
            continue;
        }
        let gate = if kind.gates() {
            "gates completion"
        } else {
            "reported, not gating"
        };
        lines.push(format!("{} ({}), {gate}", kind.as_str(), of_kind.len()));
        for [object, field, value, host] in of_kind {
            let [w0, w1, w2] = widths;
            lines.push(format!(
                "  {object:<w0$}  {field:<w1$}  {value:<w2$}  {host}"
            ));
        }
        lines.push(String::new());
    }
    lines.push(summary(report));
    for unseen in report.blind_spots() {
        lines.push(format!(
            "  not seen: {}: {}",
            shown(&unseen.source),
            shown(&unseen.reason)
        ));
    }
    let absent: Vec<String> = report
        .unseen
        .iter()
        .filter(|u| u.is_not_installed())
        .map(|u| shown(&u.source))
        .collect();
    if !absent.is_empty() {
        lines.push(format!(
            "not installed in this cluster (nothing to see): {}",
            absent.join(", ")
        ));
    }
    lines
}

/// `namespace/name`, or `name` for a cluster-scoped object.
fn object(tether: &Tether) -> String {
    match &tether.namespace {
        Some(namespace) => format!("{namespace}/{}", tether.name),
        None => tether.name.clone(),
    }
}

/// The closing line: how many, how many gate, and whether the report is blind anywhere.
fn summary(report: &TetherReport) -> String {
    let count = report.tethers.len();
    let gating = report.gating().count();
    let blind = match (report.synced, report.blind_spots().count()) {
        (false, _) => ", but the report has not listed every source".to_owned(),
        (true, 0) => String::new(),
        (true, 1) => ", but 1 source cannot be seen:".to_owned(),
        (true, n) => format!(", but {n} sources cannot be seen:"),
    };
    match count {
        0 if blind.is_empty() => {
            "no tethers: nothing in the cluster points to an upstream host".to_owned()
        }
        0 => format!("no tethers seen{blind}"),
        1 => format!("1 tether to an upstream host ({gating} gating completion){blind}"),
        n => format!("{n} tethers to upstream hosts ({gating} gating completion){blind}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tethers::UnseenSource;

    fn tether(kind: TetherKind, namespace: Option<&str>, name: &str, value: &str) -> Tether {
        Tether {
            kind,
            namespace: namespace.map(str::to_owned),
            name: name.to_owned(),
            field: "spec.url".to_owned(),
            value: value.to_owned(),
            host: "github.com".to_owned(),
            since: "2026-11-23T12:00:00Z".to_owned(),
        }
    }

    fn report(tethers: Vec<Tether>, unseen: Vec<UnseenSource>) -> TetherReport {
        TetherReport {
            count: tethers.len(),
            synced: true,
            unseen,
            tethers,
        }
    }

    fn forbidden() -> UnseenSource {
        UnseenSource {
            source: "pods".to_owned(),
            reason: "forbidden: no cluster-wide rights".to_owned(),
        }
    }

    #[test]
    fn the_exit_code_never_says_none_when_the_report_is_blind() {
        let one = || vec![tether(TetherKind::GitRepository, Some("flux"), "a", "x")];
        assert_eq!(exit_code(&report(Vec::new(), Vec::new())), EXIT_NONE);
        assert_eq!(exit_code(&report(one(), Vec::new())), EXIT_SOME);
        assert_eq!(exit_code(&report(one(), vec![forbidden()])), EXIT_SOME);
        assert_eq!(
            exit_code(&report(Vec::new(), vec![forbidden()])),
            EXIT_BLIND
        );
        assert_eq!(exit_code(&TetherReport::default()), EXIT_BLIND, "unsynced");
        let absent = UnseenSource::not_installed("providers.pkg.crossplane.io");
        assert_eq!(
            exit_code(&report(Vec::new(), vec![absent])),
            EXIT_NONE,
            "a kind not installed hides nothing"
        );
        for code in [EXIT_NONE, EXIT_SOME, 2, EXIT_BLIND, EXIT_UNREADABLE] {
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{code}");
        }
    }

    #[test]
    fn tethers_are_grouped_by_kind_in_aligned_columns_with_the_summary_last() {
        let r = report(
            vec![
                tether(
                    TetherKind::GitRepository,
                    Some("flux-system"),
                    "platform",
                    "https://github.com/openova/platform",
                ),
                tether(TetherKind::UnackedNode, None, "node-1", "v1"),
                tether(
                    TetherKind::GitRepository,
                    Some("a"),
                    "b",
                    "ssh://github.com/x",
                ),
                tether(TetherKind::Vcluster, Some("v"), "tenant", "docker.io"),
            ],
            Vec::new(),
        );
        let lines = table(&r);
        assert_eq!(lines[0], "git-repository (2), gates completion");
        assert!(lines[1].starts_with("  flux-system/platform  spec.url  https://"));
        assert!(lines[2].starts_with("  a/b                   spec.url  ssh://"));
        assert_eq!(lines[4], "vcluster (1), reported, not gating");
        assert_eq!(lines[7], "unacked-node (1), gates completion");
        assert!(lines[8].starts_with("  node-1 "), "{:?}", lines[8]);
        assert_eq!(
            lines.last().unwrap(),
            "4 tethers to upstream hosts (3 gating completion)"
        );
    }

    #[test]
    fn an_empty_report_says_none_unless_it_is_blind() {
        assert_eq!(
            table(&report(Vec::new(), Vec::new())),
            ["no tethers: nothing in the cluster points to an upstream host"]
        );
        assert_eq!(
            table(&report(Vec::new(), vec![forbidden()])),
            [
                "no tethers seen, but 1 source cannot be seen:",
                "  not seen: pods: forbidden: no cluster-wide rights"
            ]
        );
        assert_eq!(
            table(&TetherReport::default()),
            ["no tethers seen, but the report has not listed every source"]
        );
        assert_eq!(
            table(&report(
                Vec::new(),
                vec![
                    UnseenSource::not_installed("a.example.io"),
                    UnseenSource::not_installed("b.example.io")
                ]
            )),
            [
                "no tethers: nothing in the cluster points to an upstream host",
                "not installed in this cluster (nothing to see): a.example.io, b.example.io"
            ]
        );
    }

    #[test]
    fn what_the_cluster_holds_is_printed_escaped_on_one_line() {
        let r = report(
            vec![tether(
                TetherKind::ContainerUrl,
                Some("a\u{1b}[2K"),
                "b\u{202e}",
                "https://github.com/x\r\nno tethers",
            )],
            vec![UnseenSource {
                source: "x\u{7}".to_owned(),
                reason: "y\n".to_owned(),
            }],
        );
        let lines = table(&r);
        for line in &lines {
            assert!(!line.chars().any(crate::sanitize::is_unsafe), "{line:?}");
            assert!(!line.contains('\n') && !line.contains('\r'), "{line:?}");
        }
        assert!(lines[1].contains("a\\e[2K/b\\u{202e}"), "{:?}", lines[1]);
    }
}
