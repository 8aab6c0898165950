//! A re-stack of a running, unchanged cloud: when nothing that shapes the cloud
//! changed since the last successful stack and every process it started still runs,
//! no step after the settings runs again: hooks of plugins run again from the first
//! step whose inputs changed, and none changed (the settings and the hooks that shape
//! them, override_defaults and source, still run: they are what is compared).
//! Anything else, and the steps run as on a first stack.
//!
//! A re-stack after a failure resumes: every step from the first expensive one
//! (packages) is recorded with the fingerprint of its inputs; when the last stack
//! failed and the inputs are the same, the steps it finished (hooks included) are
//! reused and the run picks up at the one that failed, or earlier when a process
//! a reused step started is no longer running.

use std::collections::BTreeMap;

use sha2::{Digest, Sha256};

use super::{Run, restorable};
use crate::config::localconf::Phase;
use crate::state::{Outcome, ProcessKind, ProcessRecord, RunRecord};
use crate::system::supervisor::{ProcStatus, ProcessSpec};

/// The state fact that holds the fingerprint of the last successful stack.
pub(super) const FACT: &str = "stack-fingerprint";

/// The state fact that holds, per input of the last successful stack, a digest
/// (`label<TAB>digest` lines), so a re-stack that runs again names what changed.
pub(super) const INPUTS_FACT: &str = "stack-inputs";

/// What shapes the cloud, one digest per input: this binary, local.conf / localrc,
/// every shell variable after the `source` hook, and the enabled plugins' hook files.
/// Labels name the input (a variable by its name, never its value).
fn inputs(run: &Run) -> Vec<(String, String)> {
    let digest = |bytes: &[u8]| crate::state::hex(&Sha256::digest(bytes))[..16].to_owned();
    let mut inputs = Vec::new();
    let exe = std::env::current_exe()
        .ok()
        .and_then(|exe| fs_err::metadata(exe).ok())
        .map(|meta| format!("{:?} {}", meta.modified().ok(), meta.len()))
        .unwrap_or_default();
    inputs.push((
        "this binary".to_owned(),
        digest(format!("{} {exe}", env!("CARGO_PKG_VERSION")).as_bytes()),
    ));
    // local.conf by meta-section: a change confined to [[post-config|...]] and the
    // later phases' sections is told apart from one that shapes the settings.
    if let Some(lc) = &run.localconf {
        let mut seen: BTreeMap<(Phase, &str), usize> = BTreeMap::new();
        for section in &lc.sections {
            let n = seen
                .entry((section.phase, section.file.as_str()))
                .or_default();
            *n += 1;
            let mut body = String::new();
            for (_, line) in &section.body {
                body.push_str(line);
                body.push('\n');
            }
            inputs.push((
                format!(
                    "{SECTION_PREFIX}{}|{}]] #{n}",
                    section.phase.as_str(),
                    section.file
                ),
                digest(body.as_bytes()),
            ));
        }
    } else {
        let bytes = fs_err::read(run.host.top_dir.join("local.conf")).unwrap_or_default();
        inputs.push(("local.conf".to_owned(), digest(&bytes)));
    }
    let bytes = fs_err::read(run.host.top_dir.join("localrc")).unwrap_or_default();
    inputs.push(("localrc".to_owned(), digest(&bytes)));
    for (name, value) in run.host.settings.vars() {
        if restorable(name) {
            inputs.push((format!("${name}"), digest(value.as_bytes())));
        }
    }
    for script in &run.extras {
        let bytes = fs_err::read(&script.path).unwrap_or_default();
        inputs.push((script.path.display().to_string(), digest(&bytes)));
    }
    for plugin in run.plugins() {
        for file in [
            plugin.override_defaults(),
            plugin.settings(),
            plugin.plugin_sh(),
        ] {
            let bytes = fs_err::read(&file).unwrap_or_default();
            inputs.push((file.display().to_string(), digest(&bytes)));
        }
    }
    inputs
}

/// How a local.conf meta-section's input label begins (`local.conf [[PHASE|FILE]] #N`).
const SECTION_PREFIX: &str = "local.conf [[";

/// The inputs as recorded in [`INPUTS_FACT`].
fn inputs_text(inputs: &[(String, String)]) -> String {
    let mut text = String::new();
    for (label, digest) in inputs {
        text.push_str(label);
        text.push('\t');
        text.push_str(digest);
        text.push('\n');
    }
    text
}

/// The fingerprint of what shapes the cloud, and its inputs as recorded in
/// [`INPUTS_FACT`].
pub(super) fn fingerprint(run: &Run) -> (String, String) {
    let text = inputs_text(&inputs(run));
    (crate::state::hex(&Sha256::digest(text.as_bytes())), text)
}

/// The labels of the inputs that differ between two [`INPUTS_FACT`] texts: added,
/// removed or changed, sorted.
fn changed_labels(before: &str, now: &str) -> Vec<String> {
    let parse = |text: &str| -> BTreeMap<String, String> {
        text.lines()
            .filter_map(|line| line.split_once('\t'))
            .map(|(label, digest)| (label.to_owned(), digest.to_owned()))
            .collect()
    };
    let (before, now) = (parse(before), parse(now));
    let mut changed: Vec<String> = now
        .iter()
        .filter(|(label, digest)| before.get(*label) != Some(*digest))
        .map(|(label, _)| label.clone())
        .chain(
            before
                .keys()
                .filter(|label| !now.contains_key(*label))
                .cloned(),
        )
        .collect();
    changed.sort_unstable();
    changed.dedup();
    changed
}

/// [`changed_labels`] as a sentence part: at most `limit` of them and how many more.
fn changed_inputs(before: &str, now: &str, limit: usize) -> String {
    let changed = changed_labels(before, now);
    let more = changed.len().saturating_sub(limit);
    let mut text = changed
        .into_iter()
        .take(limit)
        .collect::<Vec<_>>()
        .join(", ");
    if more > 0 {
        use std::fmt::Write as _;
        let _ = write!(text, " and {more} more");
    }
    text
}

/// The phase of a local.conf meta-section's input label, `None` for any other input.
fn section_phase(label: &str) -> Option<Phase> {
    let rest = label.strip_prefix(SECTION_PREFIX)?;
    Phase::from_name(rest.split_once('|')?.0)
}

/// The earliest local.conf phase whose sections changed, when only sections of the
/// phases after the settings changed (post-config, extra, post-extra, test-config):
/// the settings, packages, databases and everything before that phase's merge are
/// what the last stack left. `None` when anything else changed, or nothing did.
pub(super) fn first_changed_phase(before: &str, now: &str) -> Option<Phase> {
    let changed = changed_labels(before, now);
    let phases: Option<Vec<Phase>> = changed.iter().map(|l| section_phase(l)).collect();
    phases?
        .into_iter()
        .filter(|phase| *phase != Phase::Local)
        .min()
        .filter(|_| {
            !changed
                .iter()
                .any(|l| section_phase(l) == Some(Phase::Local))
        })
}

/// A re-stack that can start at a local.conf phase's merge: the last run was a
/// successful stack, only the sections of `Some(phase)` and later phases changed, and
/// every recorded process still runs. The phase to start at.
pub(super) fn incremental_from(run: &Run, inputs: &str) -> Option<Phase> {
    let ledger = &run.host.ledger;
    let last_ok = run
        .previous
        .as_ref()
        .is_some_and(|r| r.command == "stack" && r.outcome == Outcome::Ok);
    if !last_ok {
        return None;
    }
    let phase = first_changed_phase(ledger.fact(INPUTS_FACT)?, inputs)?;
    let processes = ledger.processes(ProcessKind::Service);
    let all_run = !processes.is_empty()
        && processes.iter().all(|record| {
            matches!(
                run.host.supervisor.status(record),
                ProcStatus::Running { .. }
            )
        });
    all_run.then_some(phase)
}

/// Why a re-stack is not a no-op: `None` when the last run was a successful stack
/// with this fingerprint and every process the state records is running, or when
/// the only ones not running could be started again as they were (they are, and
/// said); else the reason, said to the user (a re-stack that runs every step says
/// why).
pub(super) fn why_not_unchanged(
    run: &mut Run,
    previous: Option<&RunRecord>,
    fingerprint: &str,
    inputs: &str,
) -> Option<String> {
    let ledger = &run.host.ledger;
    let last_ok = previous.is_some_and(|r| r.command == "stack" && r.outcome == Outcome::Ok);
    if !last_ok {
        return Some("the last run was not a successful stack".into());
    }
    if ledger.fact(FACT) != Some(fingerprint) {
        let what = ledger
            .fact(INPUTS_FACT)
            .map(|before| changed_inputs(before, inputs, 8))
            .filter(|what| !what.is_empty())
            .unwrap_or_else(|| {
                "local.conf, a setting, a plugin or extras.d file, or this binary".to_owned()
            });
        return Some(format!("an input changed since the last stack: {what}"));
    }
    let processes = ledger.processes(ProcessKind::Service);
    if processes.is_empty() {
        return Some("no process of the last stack is recorded".into());
    }
    let stopped: Vec<ProcessRecord> = processes
        .into_iter()
        .filter(|record| {
            !matches!(
                run.host.supervisor.status(record),
                ProcStatus::Running { .. }
            )
        })
        .collect();
    if stopped.is_empty() {
        return None;
    }
    restart_stopped(run, &stopped).err()
}

/// Nothing changed, but processes of the last stack stopped (a crash, a kill): each
/// is started again exactly as it was started (its recorded command, environment,
/// user), which is all a re-stack would do for it. Fails, naming them, when one has
/// no record of how it was started or does not start.
fn restart_stopped(run: &mut Run, stopped: &[ProcessRecord]) -> Result<(), String> {
    let names: Vec<&str> = stopped.iter().map(|r| r.name.as_str()).collect();
    let not_running = || format!("not running: {}", names.join(", "));
    let specs: Vec<ProcessSpec> = stopped
        .iter()
        .map(ProcessSpec::of_record)
        .collect::<Result<_, _>>()
        .map_err(|e| format!("{} ({e})", not_running()))?;
    for (record, spec) in stopped.iter().zip(&specs) {
        // The log says why it stopped, if anything does: its last lines go to ours.
        let tail = crate::services::daemon::log_tail(&record.log, 5);
        run.host.log.note(&format!(
            "{} was not running; its log ends:\n{}",
            record.name,
            tail.join("\n")
        ));
        let started = run.host.supervisor.start(spec).map_err(|e| {
            format!(
                "{}; starting {} again failed: {e}",
                not_running(),
                record.name
            )
        })?;
        run.host
            .ledger
            .record_process(ProcessKind::Service, started);
    }
    run.host.checkpoint();
    run.host.progress.info(&format!(
        "started again what had stopped since the last stack: {} (see its log)",
        names.join(", ")
    ));
    Ok(())
}

/// Where a re-stack resumes: the index in `steps` (the command's steps, by title)
/// of the first step to run, when it is after `first` (the first reusable step).
/// `None`: run everything.
pub(super) fn resume_point(
    run: &Run,
    fingerprint: &str,
    steps: &[String],
    first: usize,
) -> Option<usize> {
    let previous = run.previous.as_ref()?;
    if previous.command != "stack" || previous.outcome != Outcome::Failed {
        return None;
    }
    let ledger = &run.host.ledger;
    let mut at = first;
    while at < steps.len() {
        match ledger.step(&steps[at]) {
            Some(r) if r.ok && r.fingerprint == fingerprint => at += 1,
            _ => break,
        }
    }
    if at >= steps.len() {
        return None;
    }
    // A reused step's processes must still run; else resume at that step.
    for (i, step) in steps.iter().enumerate().take(at).skip(first) {
        let Some(record) = ledger.step(step) else {
            continue;
        };
        let gone = record.started.iter().any(|name| {
            let rec = ledger
                .process(ProcessKind::Service, name)
                .or_else(|| ledger.process(ProcessKind::Daemon, name));
            !rec.is_some_and(|r| {
                matches!(run.host.supervisor.status(r), ProcStatus::Running { .. })
            })
        });
        if gone {
            at = i;
            break;
        }
    }
    (at > first).then_some(at)
}

#[cfg(test)]
mod tests {
    use super::{Phase, changed_inputs, first_changed_phase};

    #[test]
    fn changed_inputs_names_what_changed_was_added_or_removed_never_a_value() {
        let before = "local.conf\taaaa\n$ADMIN_PASSWORD\tbbbb\n$GONE\tcccc\n";
        let now = "local.conf\taaaa\n$ADMIN_PASSWORD\tdddd\n$NEW\teeee\n";
        assert_eq!(
            changed_inputs(before, now, 8),
            "$ADMIN_PASSWORD, $GONE, $NEW"
        );
        assert_eq!(changed_inputs(before, now, 1), "$ADMIN_PASSWORD and 2 more");
        assert_eq!(changed_inputs(now, now, 8), "");
    }

    #[test]
    fn only_later_phase_sections_changed_names_the_earliest_phase_else_none() {
        let before = "$HOST_IP\ta\nlocal.conf [[local|localrc]] #1\tb\n\
                      local.conf [[post-config|$NOVA_CONF]] #1\tc\n\
                      local.conf [[test-config|$TEMPEST_CONFIG]] #1\td\n";
        let post = before.replace("#1\tc", "#1\tC");
        let test = before.replace("#1\td", "#1\tD");
        assert_eq!(first_changed_phase(before, &post), Some(Phase::PostConfig));
        assert_eq!(first_changed_phase(before, &test), Some(Phase::TestConfig));
        let both = post.replace("#1\td", "#1\tD");
        assert_eq!(first_changed_phase(before, &both), Some(Phase::PostConfig));
        // A section added or removed counts as changed.
        let added = format!("{before}local.conf [[extra|$NOVA_CONF]] #1\te\n");
        assert_eq!(first_changed_phase(before, &added), Some(Phase::Extra));
        // The settings' section or a variable: the whole stack runs.
        let localrc = before.replace("#1\tb", "#1\tB");
        assert_eq!(first_changed_phase(before, &localrc), None);
        let var = post.replace("$HOST_IP\ta", "$HOST_IP\tA");
        assert_eq!(first_changed_phase(before, &var), None);
        assert_eq!(first_changed_phase(before, before), None);
    }
}
