//! `catalyst-cutover status`: the cutover's status read from the status ConfigMap through
//! the Kubernetes API (the service need not be reachable), as the demo's table or as the
//! JSON of `GET /cutover`; `--watch` follows it until the cutover ends. The exit code says
//! where the cutover stands, for scripts.

use super::args::{TargetArgs, connect};
use super::table::Display;
use crate::sanitize::is_unsafe;
use crate::status::StatusBody;
use crate::status::model::{Phase, StatusData};
use crate::step::{StepPolicy, discover};
use futures::StreamExt;
use k8s_openapi::api::core::v1::ConfigMap;
use kube::api::Api;
use kube::runtime::{WatchStreamExt, watcher};
use std::process::ExitCode;

/// The cutover is complete.
pub const EXIT_COMPLETE: u8 = 0;
/// The cutover failed (or the rollback of its registry pivot did).
pub const EXIT_FAILED: u8 = 1;
/// The cutover runs, is rolling its registry pivot back, or has not started.
pub const EXIT_IN_PROGRESS: u8 = 3;
/// The status could not be read: no kubeconfig, the API refused or could not be reached,
/// or the status ConfigMap does not exist.
pub const EXIT_UNREADABLE: u8 = 4;
/// The registry pivot was rolled back.
pub const EXIT_ROLLED_BACK: u8 = 5;

/// The exit codes, as `--help` prints them; 2, a wrong command line, is clap's own.
const EXIT_CODES: &str = "\
Exit codes:
  0  the cutover is complete
  1  the cutover failed (or the rollback of its registry pivot failed)
  2  usage error
  3  the cutover is running, rolling back, or has not started (idle)
  4  the status cannot be read: kubeconfig, Kubernetes API, or no status ConfigMap
  5  the registry pivot was rolled back";

/// How the status is printed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Output {
    /// The demo's table: one line per step, then where the cutover stands.
    Table,
    /// The body of `GET /cutover`, one JSON object per line (one per change with --watch).
    Json,
}

/// Arguments of `status`.
#[derive(Debug, Clone, clap::Args)]
#[command(after_help = EXIT_CODES)]
pub struct StatusArgs {
    #[command(flatten)]
    target: TargetArgs,
    /// Follow the status until the cutover ends (complete, failed or rolled back).
    #[arg(short = 'w', long)]
    watch: bool,
    /// Output format.
    #[arg(short = 'o', long, value_enum, default_value_t = Output::Table)]
    output: Output,
}

/// The exit code of a cutover in `phase`. Pure.
pub fn exit_code(phase: Phase) -> u8 {
    match phase {
        Phase::Complete => EXIT_COMPLETE,
        Phase::Failed | Phase::RollbackFailed => EXIT_FAILED,
        Phase::Idle | Phase::Running | Phase::RollingBack => EXIT_IN_PROGRESS,
        Phase::RolledBack => EXIT_ROLLED_BACK,
    }
}

/// Whether `--watch` stops at `phase`: the cutover ended, and nothing changes it until
/// someone acts. Pure.
pub fn ends_watch(phase: Phase) -> bool {
    exit_code(phase) != EXIT_IN_PROGRESS
}

/// Why the status could not be read.
#[derive(Debug, thiserror::Error)]
enum StatusError {
    #[error("no cluster to talk to: {0}")]
    Config(String),
    #[error(
        "no status ConfigMap {name:?} in namespace {namespace:?}: the cutover is not installed there \
         (choose the namespace with -n, the name with --status-configmap)"
    )]
    Missing { namespace: String, name: String },
    #[error(
        "cannot read ConfigMap {namespace}/{name}: {source} (check with `kubectl -n {namespace} get configmap {name}`)"
    )]
    Api {
        namespace: String,
        name: String,
        source: kube::Error,
    },
    #[error("the watch of ConfigMap {namespace}/{name} ended")]
    WatchEnded { namespace: String, name: String },
    #[error("cannot write the status as JSON: {0}")]
    Json(serde_json::Error),
}

/// Runs `status`; its exit code says where the cutover stands (see `--help`).
pub fn run(args: StatusArgs) -> ExitCode {
    super::exit::run("status", async { status(&args).await.map(ExitCode::from) })
}

impl super::exit::Failure for StatusError {
    fn exit_code(&self) -> ExitCode {
        ExitCode::from(EXIT_UNREADABLE)
    }
}

async fn status(args: &StatusArgs) -> Result<u8, StatusError> {
    let target = &args.target;
    let (namespace, name) = (target.namespace.clone(), target.status_configmap.clone());
    let client = connect(target.kubeconfig.as_deref())
        .await
        .map_err(StatusError::Config)?;
    let api: Api<ConfigMap> = Api::namespaced(client.clone(), &namespace);
    let api_error = |source| StatusError::Api {
        namespace: namespace.clone(),
        name: name.clone(),
        source,
    };
    let missing = || StatusError::Missing {
        namespace: namespace.clone(),
        name: name.clone(),
    };
    let order = step_order(&client, &namespace).await;
    let cm = api.get_opt(&name).await.map_err(api_error)?;
    let data = cm.ok_or_else(missing)?.data.unwrap_or_default();
    let mut printer = Printer::new(args.output, order);
    let phase = printer.show(&data)?;
    if !args.watch || ends_watch(phase) {
        printer.finish(&data);
        return Ok(exit_code(phase));
    }
    let stream = watcher::watch_object(api, &name).default_backoff();
    futures::pin_mut!(stream);
    let mut last = data;
    while let Some(event) = stream.next().await {
        match event {
            Ok(Some(cm)) => {
                let data = cm.data.unwrap_or_default();
                if data == last {
                    continue;
                }
                let phase = printer.show(&data)?;
                if ends_watch(phase) {
                    printer.finish(&data);
                    return Ok(exit_code(phase));
                }
                last = data;
            }
            Ok(None) => return Err(missing()),
            // The watch retries with a backoff; say why it is silent meanwhile.
            Err(err) => {
                eprintln!("catalyst-cutover status: the watch is interrupted ({err}); retrying")
            }
        }
    }
    Err(StatusError::WatchEnded { namespace, name })
}

/// The plan's step names in execution order, so that steps not run yet are listed too;
/// `None` when the steps cannot be read (the rows then come in the order they started).
/// Only the order is wanted, so the PodSpecs are not held to the service's policy.
async fn step_order(client: &kube::Client, namespace: &str) -> Option<Vec<String>> {
    let plan = discover(client, namespace, &StepPolicy::unrestricted())
        .await
        .ok()?;
    Some(plan.iter().map(|s| s.name.as_str().to_owned()).collect())
}

/// Prints each status it is shown, as a table or as JSON lines.
struct Printer {
    order: Option<Vec<String>>,
    display: Option<Display>,
}

impl Printer {
    fn new(output: Output, order: Option<Vec<String>>) -> Self {
        let display = (output == Output::Table).then(|| Display::new(true));
        Printer { order, display }
    }

    fn body(&self, data: &StatusData) -> StatusBody {
        let order: Option<Vec<&str>> = self
            .order
            .as_ref()
            .map(|o| o.iter().map(String::as_str).collect());
        StatusBody::build(data, order.as_deref())
    }

    /// Prints `data`'s status (a table's changed lines, or a JSON line) and returns its
    /// phase.
    fn show(&mut self, data: &StatusData) -> Result<Phase, StatusError> {
        let body = self.body(data);
        match &mut self.display {
            Some(display) => display.update(&body),
            None => {
                let line = terminal_json(&body).map_err(StatusError::Json)?;
                super::exit::print_line(&line);
            }
        }
        Ok(Phase::of(data))
    }

    /// Closes the table with where the cutover stands.
    fn finish(&mut self, data: &StatusData) {
        let body = self.body(data);
        if let Some(display) = &mut self.display {
            display.finish(&body);
        }
    }
}

/// `value` as one line of JSON that is safe on a terminal: serde_json already escapes the
/// control characters, and this writes the invisible and bidirectional-formatting ones
/// (which JSON may carry raw) as `\uXXXX` too, so a step name or a reason read from the
/// ConfigMap cannot reorder or hide what the line shows.
pub(super) fn terminal_json<T: serde::Serialize>(value: &T) -> Result<String, serde_json::Error> {
    let mut out = Vec::new();
    let mut ser = serde_json::Serializer::with_formatter(&mut out, TerminalSafe);
    value.serialize(&mut ser)?;
    // The serializer writes only what it was given as `&str` and its own ASCII.
    Ok(String::from_utf8_lossy(&out).into_owned())
}

/// serde_json's compact output with every unsafe character of a string escaped.
struct TerminalSafe;

impl serde_json::ser::Formatter for TerminalSafe {
    fn write_string_fragment<W: ?Sized + std::io::Write>(
        &mut self,
        writer: &mut W,
        fragment: &str,
    ) -> std::io::Result<()> {
        let mut rest = fragment;
        while let Some((at, c)) = rest.char_indices().find(|(_, c)| is_unsafe(*c)) {
            writer.write_all(&rest.as_bytes()[..at])?;
            let mut units = [0u16; 2];
            for unit in c.encode_utf16(&mut units) {
                write!(writer, "\\u{unit:04x}")?;
            }
            rest = &rest[at + c.len_utf8()..];
        }
        writer.write_all(rest.as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_lines_carry_no_character_a_terminal_acts_on_and_still_parse() {
        let data: StatusData = [
            (
                "lastError".to_owned(),
                "a\u{1b}[2K\u{202e}b\u{200b}\u{feff}\n".to_owned(),
            ),
            ("failedStep".to_owned(), "é中".to_owned()),
        ]
        .into();
        let body = StatusBody::build(&data, None);
        let line = terminal_json(&body).unwrap();
        assert!(!line.chars().any(is_unsafe), "{line}");
        assert!(line.contains(r"a\u001b[2K\u202eb\u200b\ufeff\n"), "{line}");
        let back: serde_json::Value = serde_json::from_str(&line).unwrap();
        assert_eq!(back["lastError"], "a\u{1b}[2K\u{202e}b\u{200b}\u{feff}\n");
        assert_eq!(back["failedStep"], "é中");
    }

    #[test]
    fn each_phase_has_its_exit_code_and_only_an_ended_cutover_ends_the_watch() {
        let expected = [
            (Phase::Idle, 3, false),
            (Phase::Running, 3, false),
            (Phase::Failed, 1, true),
            (Phase::Complete, 0, true),
            (Phase::RollingBack, 3, false),
            (Phase::RolledBack, 5, true),
            (Phase::RollbackFailed, 1, true),
        ];
        assert_eq!(expected.len(), Phase::ALL.len());
        for (phase, code, ends) in expected {
            assert_eq!(exit_code(phase), code, "{phase:?}");
            assert_eq!(ends_watch(phase), ends, "{phase:?}");
        }
    }

    #[test]
    fn the_help_lists_every_exit_code() {
        for code in [
            EXIT_COMPLETE,
            EXIT_FAILED,
            2,
            EXIT_IN_PROGRESS,
            EXIT_UNREADABLE,
            EXIT_ROLLED_BACK,
        ] {
            assert!(EXIT_CODES.contains(&format!("\n  {code}  ")), "{code}");
        }
    }
}
