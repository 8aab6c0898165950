//! Live progress for a terminal: one line per running step with its current
//! sub-task and elapsed time, one per parallel job; finished steps, `echo_summary`
//! lines and warnings scroll above them as the line-oriented printer would print
//! them. Only this module knows indicatif: core code sees the [`Progress`] trait.

use std::collections::BTreeMap;
use std::sync::Mutex;
use std::time::Duration;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

use super::{Progress, StepOutcome, format_duration};

/// The terminal's live lines.
pub(crate) struct LiveProgress {
    multi: MultiProgress,
    /// Running steps (and jobs), by name, in start order.
    bars: Mutex<BTreeMap<String, ProgressBar>>,
    /// The step the next sub-task belongs to (the latest started).
    current: Mutex<Option<String>>,
    color: bool,
}

impl LiveProgress {
    pub(crate) fn new(color: bool) -> Self {
        Self::with_target(ProgressDrawTarget::stderr(), color)
    }

    fn with_target(target: ProgressDrawTarget, color: bool) -> Self {
        Self {
            multi: MultiProgress::with_draw_target(target),
            bars: Mutex::new(BTreeMap::new()),
            current: Mutex::new(None),
            color,
        }
    }

    fn line(&self, text: &str) {
        let text = crate::system::redact::redact_global(text);
        if self.multi.is_hidden() {
            eprintln!("{text}");
        } else {
            let _ = self.multi.println(text);
        }
    }

    fn bar(&self, name: &str, indent: &str) -> ProgressBar {
        let bar = self.multi.add(ProgressBar::new_spinner());
        let template = format!("{indent}{{spinner}} {{prefix}}  {{wide_msg}} ({{elapsed}})");
        if let Ok(style) = ProgressStyle::with_template(&template) {
            bar.set_style(style);
        }
        bar.set_prefix(name.to_owned());
        bar.enable_steady_tick(Duration::from_millis(200));
        bar
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    fn finish(&self, name: &str) {
        if let Some(bar) = self.bars.lock().expect("bars").remove(name) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
    }
}

impl Progress for LiveProgress {
    fn step_started(&self, name: &str) {
        let bar = self.bar(name, "");
        self.bars.lock().expect("bars").insert(name.to_owned(), bar);
        *self.current.lock().expect("current") = Some(name.to_owned());
    }

    fn step_finished(&self, name: &str, took: Duration, outcome: StepOutcome) {
        self.finish(name);
        let (mark, code) = match outcome {
            StepOutcome::Done => ("ok", "32"),
            StepOutcome::Skipped => ("skipped", "90"),
            StepOutcome::Failed => ("FAILED", "31"),
            StepOutcome::Warned => ("warning", "33"),
        };
        self.line(&format!(
            "{} {name} ({})",
            self.paint(code, &format!("[{mark}]")),
            format_duration(took)
        ));
    }

    fn summary(&self, text: &str) {
        // Under its step, as the step's line scrolls on.
        self.line(&format!("  {text}"));
        self.sub_task(text);
    }

    fn warning(&self, text: &str) {
        self.line(&format!("{} {text}", self.paint("33", "warning:")));
    }

    fn output_line(&self, _source: &str, _line: &str) {
        // Verbose runs use the line printer; the live lines show sub-tasks only.
    }

    fn info(&self, text: &str) {
        self.line(text);
    }

    fn sub_task(&self, text: &str) {
        let current = self.current.lock().expect("current").clone();
        if let Some(step) = current
            && let Some(bar) = self.bars.lock().expect("bars").get(&step)
        {
            bar.set_message(crate::system::redact::redact_global(text));
        }
    }

    fn job_started(&self, name: &str) {
        let bar = self.bar(name, "    ");
        self.bars
            .lock()
            .expect("bars")
            .insert(format!("job:{name}"), bar);
    }

    fn job_finished(&self, name: &str) {
        self.finish(&format!("job:{name}"));
    }
}

impl Drop for LiveProgress {
    fn drop(&mut self) {
        for (_, bar) in std::mem::take(&mut *self.bars.lock().expect("bars")) {
            bar.finish_and_clear();
        }
        let _ = self.multi.clear();
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_has_a_live_line_with_its_sub_task_until_it_finishes() {
        let p = LiveProgress::with_target(ProgressDrawTarget::hidden(), false);
        p.step_started("start services");
        p.sub_task("nova-compute: waiting for the compute host");
        {
            let bars = p.bars.lock().unwrap();
            let bar = bars.get("start services").expect("a live line");
            assert_eq!(bar.message(), "nova-compute: waiting for the compute host");
        }
        p.job_started("nova db sync");
        assert_eq!(
            p.bars.lock().unwrap().len(),
            2,
            "a parallel job has its own line"
        );
        p.job_finished("nova db sync");
        p.step_finished("start services", Duration::from_secs(1), StepOutcome::Done);
        assert!(p.bars.lock().unwrap().is_empty());
    }
}
