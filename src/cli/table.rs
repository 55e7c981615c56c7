//! The cutover's table on a terminal, shared by `demo` and `status`: one line per step
//! (name, result, Job) as the step moves, and a closing line saying where the cutover
//! stands. Progress spinners on a terminal, plain lines otherwise. Everything printed from
//! the status ConfigMap (which anyone who may edit ConfigMaps can write) is escaped: no
//! control or bidirectional-formatting character reaches the terminal, and each line stays
//! one line.

use crate::sanitize::{Lines, escaped};
use crate::status::{StatusBody, StepResult};
use indicatif::{MultiProgress, ProgressBar, ProgressStyle};
use std::io::IsTerminal;
use std::time::Duration;

/// One step's line: its name, its result and its Job (or DaemonSet). Pure.
pub fn step_line(name: &str, result: StepResult, job: &str) -> String {
    let (name, job) = (escaped(name, Lines::One), escaped(job, Lines::One));
    match result {
        StepResult::Running => format!("{name:<28} running   {job}"),
        StepResult::Success => format!("{name:<28} success   {job}"),
        StepResult::Failed => format!("{name:<28} FAILED    {job}"),
        StepResult::Skipped => format!("{name:<28} skipped"),
        StepResult::Pending => format!("{name:<28} pending"),
    }
}

/// The closing line: where the cutover stands. Pure.
pub fn summary(body: &StatusBody) -> String {
    let shown = |text: &str| escaped(text, Lines::One).into_owned();
    match body.phase {
        "complete" => format!(
            "cutover complete: {} steps, {}% (state {})",
            body.total_steps, body.progress_percent, body.state
        ),
        "failed" => format!(
            "cutover failed at {}: {}",
            shown(&body.failed_step),
            shown(&body.last_error)
        ),
        "running" => format!(
            "cutover running: step {} ({} of {}), {}%",
            shown(&body.current_step),
            body.current_step_index.saturating_add(1),
            body.total_steps,
            body.progress_percent
        ),
        "idle" => "no cutover has started".to_owned(),
        phase => format!("registry pivot rollback: {phase}"),
    }
}

/// Live per-step lines, printed as the steps move.
pub struct Display {
    bars: Option<MultiProgress>,
    lines: Vec<(String, ProgressBar, &'static str)>,
    show_pending: bool,
}

impl Display {
    /// A display on stdout; `show_pending` also lists the steps that have not run yet.
    pub fn new(show_pending: bool) -> Self {
        let bars = std::io::stdout().is_terminal().then(MultiProgress::new);
        Display {
            bars,
            lines: Vec::new(),
            show_pending,
        }
    }

    /// Prints the line of every step whose result changed since the last update.
    pub fn update(&mut self, body: &StatusBody) {
        for step in &body.steps {
            let known = self.lines.iter().position(|(n, _, _)| *n == step.name);
            let index = match known {
                Some(index) => index,
                None => {
                    let bar = match &self.bars {
                        Some(m) => m.add(ProgressBar::new_spinner()),
                        None => ProgressBar::hidden(),
                    };
                    bar.set_style(
                        ProgressStyle::with_template("{spinner} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    // A step not shown yet: "" is the pending result, which the first
                    // update shows only when asked to.
                    let shown = if self.show_pending { "-" } else { "" };
                    self.lines.push((step.name.clone(), bar, shown));
                    self.lines.len() - 1
                }
            };
            let (name, bar, shown) = &mut self.lines[index];
            if *shown == step.result {
                continue;
            }
            *shown = step.result;
            let result = StepResult::parse(step.result);
            let line = step_line(name, result, &step.job_name);
            match result {
                StepResult::Running => {
                    bar.enable_steady_tick(Duration::from_millis(100));
                    bar.set_message(line.clone());
                }
                StepResult::Pending => bar.set_message(line.clone()),
                _ => bar.finish_with_message(line.clone()),
            }
            if self.bars.is_none() {
                super::exit::print_line(&line);
            }
        }
    }

    /// Stops the spinners and prints the closing line.
    pub fn finish(&mut self, body: &StatusBody) {
        for (_, bar, _) in &self.lines {
            if !bar.is_finished() {
                bar.finish();
            }
        }
        super::exit::print_line("");
        super::exit::print_line(&summary(body));
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::status::model::data_of;

    #[test]
    fn a_step_line_names_the_step_its_result_and_its_job() {
        assert_eq!(
            step_line(
                "gitea-mirror",
                StepResult::Running,
                "cutover-gitea-mirror-a1"
            ),
            format!("{:<28} running   cutover-gitea-mirror-a1", "gitea-mirror")
        );
        assert!(step_line("x", StepResult::Failed, "j").contains("FAILED"));
        assert!(step_line("x", StepResult::Pending, "").ends_with("pending"));
    }

    #[test]
    fn the_summary_says_where_the_cutover_stands() {
        let idle = StatusBody::build(&data_of(&[]), Some(&["a", "b"]));
        assert_eq!(summary(&idle), "no cutover has started");
        let running = StatusBody::build(
            &data_of(&[
                ("cutoverPhase", "running"),
                ("currentStep", "b"),
                ("currentStepIndex", "1"),
                ("progressPercent", "50"),
            ]),
            Some(&["a", "b"]),
        );
        assert_eq!(summary(&running), "cutover running: step b (2 of 2), 50%");
        let failed = StatusBody::build(
            &data_of(&[
                ("cutoverPhase", "failed"),
                ("failedStep", "b"),
                ("lastError", "Job cutover-b-a1 failed"),
            ]),
            Some(&["a", "b"]),
        );
        assert_eq!(
            summary(&failed),
            "cutover failed at b: Job cutover-b-a1 failed"
        );
    }

    #[test]
    fn what_the_status_holds_is_printed_escaped_on_one_line() {
        let lying = StatusBody::build(
            &data_of(&[
                ("cutoverPhase", "failed"),
                ("failedStep", "b\u{202e}"),
                (
                    "lastError",
                    "boom\u{1b}[2K\r\ncutover complete: 11 steps, 100% (state sovereign)",
                ),
            ]),
            Some(&["a", "b"]),
        );
        assert_eq!(
            summary(&lying),
            "cutover failed at b\\u{202e}: boom\\e[2K\\r\\ncutover complete: 11 steps, 100% (state sovereign)"
        );
        let line = step_line("x\u{1b}]0;t\u{7}", StepResult::Running, "j\u{9b}");
        assert!(!line.chars().any(crate::sanitize::is_unsafe), "{line:?}");
        assert!(line.contains("x\\e]0;t\\u{7}"), "{line:?}");
    }
}
