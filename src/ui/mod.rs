//! What a person sees: the printer (chosen once from -q/-v/TTY), the run log, progress,
//! and the one place errors are printed.

pub(crate) mod live;
pub(crate) mod log;
pub(crate) mod report;

use std::io::{IsTerminal, Write};
use std::sync::Mutex;
use std::time::Duration;

/// How much reaches the terminal (the log always gets everything).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Verbosity {
    Quiet,
    Normal,
    Verbose,
}

/// Progress of a run, behind a trait so core code never decides how it is drawn.
pub trait Progress: Send + Sync {
    fn step_started(&self, name: &str);
    fn step_finished(&self, name: &str, took: Duration, outcome: StepOutcome);
    /// An `echo_summary` line from a hook or a service.
    fn summary(&self, text: &str);
    fn warning(&self, text: &str);
    /// Every output line, for verbose terminals.
    fn output_line(&self, source: &str, line: &str);
    /// Plain information (the final summary).
    fn info(&self, text: &str);
    /// What the running step does now (a service, a hook script): shown on its
    /// live line on a terminal; nothing for the line printer.
    fn sub_task(&self, _text: &str) {}
    /// A job of a step that runs beside others (a database sync): its own line.
    fn job_started(&self, _name: &str) {}
    fn job_finished(&self, _name: &str) {}
}

/// The printer for this run: live lines on a terminal at normal verbosity (not
/// in CI), else the line printer (pipes, CI, -q, -v).
pub(crate) fn printer(verbosity: Verbosity) -> std::sync::Arc<dyn Progress> {
    let tty = std::io::stderr().is_terminal() && std::env::var_os(crate::env_vars::CI).is_none();
    if tty && verbosity == Verbosity::Normal {
        std::sync::Arc::new(live::LiveProgress::new(true))
    } else {
        std::sync::Arc::new(TermProgress::new(verbosity))
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StepOutcome {
    Done,
    Skipped,
    Failed,
    /// Failed in a teardown that goes on without it (said as a warning).
    Warned,
}

/// Line-oriented terminal progress (works the same in a TTY, a pipe and CI).
pub(crate) struct TermProgress {
    verbosity: Verbosity,
    color: bool,
    out: Mutex<()>,
}

impl TermProgress {
    pub(crate) fn new(verbosity: Verbosity) -> Self {
        let color =
            std::io::stderr().is_terminal() && std::env::var_os(crate::env_vars::CI).is_none();
        Self {
            verbosity,
            color,
            out: Mutex::new(()),
        }
    }

    fn print(&self, text: &str) {
        let _guard = self.out.lock();
        let mut err = std::io::stderr().lock();
        let _ = writeln!(err, "{}", crate::system::redact::redact_global(text));
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }
}

pub(crate) fn format_duration(d: Duration) -> String {
    let secs = d.as_secs_f64();
    if secs < 60.0 {
        format!("{secs:.1} s")
    } else {
        let whole = d.as_secs();
        format!("{}m{:02}s", whole / 60, whole % 60)
    }
}

impl Progress for TermProgress {
    fn step_started(&self, name: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.print(&self.paint("1", &format!("==> {name}")));
        }
    }

    fn step_finished(&self, name: &str, took: Duration, outcome: StepOutcome) {
        if self.verbosity == Verbosity::Quiet {
            return;
        }
        let (mark, code) = match outcome {
            StepOutcome::Done => ("ok", "32"),
            StepOutcome::Skipped => ("skipped", "90"),
            StepOutcome::Failed => ("FAILED", "31"),
            StepOutcome::Warned => ("warning", "33"),
        };
        self.print(&format!(
            "{} {name} ({})",
            self.paint(code, &format!("[{mark}]")),
            format_duration(took)
        ));
    }

    fn summary(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.print(&format!("  {text}"));
        }
    }

    fn warning(&self, text: &str) {
        self.print(&format!("{} {text}", self.paint("33", "warning:")));
    }

    fn output_line(&self, source: &str, line: &str) {
        if self.verbosity >= Verbosity::Verbose {
            self.print(&format!("  {source} | {line}"));
        }
    }

    fn info(&self, text: &str) {
        if self.verbosity >= Verbosity::Normal {
            self.print(text);
        }
    }
}
