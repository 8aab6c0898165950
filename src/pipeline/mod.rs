//! The actions: stack, unstack, clean, plan, and the steps they share.
//!
//! The order of each command is data ([`steps`]), so `plan` prints exactly what `stack`
//! runs. A [`Run`] owns the plugin shell and the [`Host`]; steps act through it.

mod resume;
mod steps;

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;
use std::time::{Duration, Instant};

use fs_err as fs;

use crate::calls::Server;
use crate::config::localconf::{LocalConf, Phase};
use crate::config::settings::{self, Settings};
use crate::context::{Host, PipelineError, PipelineOps, ServiceCtx};
use crate::openstack::accounts::ServiceAccount;
use crate::plugins::{self, ExternalPlugin, ExtrasScript};
use crate::services::Registry;
use crate::shell::{Shell, ShellConfig, ShellError};
use crate::state::{HookRecord, HostLock, Ledger, Outcome, RunLock, StepRecord};
use crate::system::hostfiles::HostWatch;
use crate::ui::log::RunLog;
use crate::ui::report::Report;
use crate::ui::{Progress, StepOutcome, TermProgress, Verbosity};

pub(crate) use steps::Kind;

/// One run of stack, unstack or clean (or the settings part of plan).
pub(crate) struct Run {
    pub host: Host,
    shell: Option<Shell>,
    pub kind: Kind,
    extras: Vec<ExtrasScript>,
    plugins: Vec<ExternalPlugin>,
    localconf: Option<LocalConf>,
    shell_config: ShellConfig,
    /// How the run before this one ended (for a re-stack of an unchanged cloud).
    previous: Option<crate::state::RunRecord>,
    /// This stack's fingerprint, once the settings are final.
    fingerprint: Option<(String, String)>,
    /// Nothing changed and everything runs: no step after the settings runs again.
    unchanged: bool,
    /// A re-stack where only local.conf's later-phase sections changed: the index of
    /// the first step to run (that phase's merge); the steps before it are kept.
    incremental_at: Option<usize>,
    /// Teardown without readable settings: the state alone says what to stop.
    degraded: bool,
    /// The state file could not be read and was moved aside (what was said).
    state_set_aside: Option<String>,
    /// `stack --from-scratch`: no step is reused.
    from_scratch: bool,
    /// The inputs' fingerprint every reusable step is recorded with.
    step_fingerprint: Option<String>,
    /// Where a resumed stack picked up, and how many steps it reused.
    resumed: Option<(String, usize)>,
    /// Host-wide locks held (DEST, DATA_DIR, LOGDIR; the layer-1 daemons).
    host_locks: BTreeMap<String, HostLock>,
    timings: Vec<(String, Duration, StepOutcome)>,
    started: Instant,
    /// The services this run knows.
    registry: Registry,
    /// What a stack's hooks do to the host's system directories.
    host_watch: Watching,
}

/// The host watcher of a run: opened at the first hook point, off after it failed
/// (said once).
enum Watching {
    NotYet,
    On(HostWatch),
    Off,
}

impl Run {
    fn start(top_dir: &Path, kind: Kind, progress: Arc<dyn Progress>) -> anyhow::Result<Self> {
        let (ledger, set_aside) = if kind == Kind::Plan {
            (Ledger::load(top_dir)?, None)
        } else {
            Ledger::load_or_set_aside(top_dir)
        };
        let log = Arc::new(RunLog::new(progress.clone()));
        let mut host = Host::new(top_dir.to_path_buf(), ledger, log.clone(), progress);
        if let Some(text) = &set_aside {
            host.warn(text);
        }
        let state_set_aside = set_aside;
        if kind != Kind::Plan {
            stop_leftover_shell(&mut host);
        }
        host.mode = match kind {
            Kind::Clean => crate::context::Mode::Clean,
            Kind::Unstack { .. } => crate::context::Mode::Unstack,
            Kind::Stack | Kind::Plan => crate::context::Mode::Stack,
        };
        let hook_timeout = hook_timeout_from_env()?;
        let devstack_bin = std::env::current_exe().unwrap_or_else(|_| PathBuf::from("devstack"));
        let shell_config = ShellConfig {
            top_dir: top_dir.to_path_buf(),
            devstack_bin,
            sink: log,
            hook_timeout,
            work_dir: crate::state::state_dir(top_dir),
            env: vec![("DEVSTACK_COMMAND".into(), kind.name().into())],
        };
        let shell = Shell::start(&shell_config)?;
        Ok(Self {
            host,
            shell: Some(shell),
            shell_config,
            kind,
            extras: Vec::new(),
            plugins: Vec::new(),
            localconf: None,
            previous: None,
            fingerprint: None,
            unchanged: false,
            incremental_at: None,
            degraded: false,
            state_set_aside,
            host_locks: BTreeMap::new(),
            from_scratch: false,
            step_fingerprint: None,
            resumed: None,
            timings: Vec::new(),
            started: Instant::now(),
            registry: Registry::builtin(),
            host_watch: Watching::NotYet,
        })
    }

    /// A new shell after a plugin ended the old one during unstack or clean, so the
    /// teardown goes on: variables restored from the last read-back, the hypervisor
    /// plugin sourced again (functions a plugin defined are gone, as after any exit).
    fn respawn_shell(&mut self) -> anyhow::Result<()> {
        if let Some(old) = self.shell.take() {
            old.close();
        }
        let mut shell = Shell::start(&self.shell_config)?;
        self.host
            .ledger
            .set_fact(SHELL_GROUP_FACT, shell.group().to_string());
        shell.set_redactor(self.host.redactor().clone());
        shell.set_strict(false, &mut Server(&mut self.host))?;
        let restore: Vec<(String, String)> = self
            .host
            .settings
            .vars()
            .iter()
            .filter(|(k, _)| restorable(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        shell.set_vars(&restore, &mut Server(&mut self.host))?;
        self.shell = Some(shell);
        // PATH is bash's own (not restored): the venv goes first again.
        self.source_generated("venv-path.sh", "setup_devstack_virtualenv\n")?;
        if let Some(file) = self.host.hypervisor.clone() {
            self.source_global(&file)?;
        }
        Ok(())
    }

    /// The enabled external plugins, in hook order.
    pub(crate) fn plugins(&self) -> &[ExternalPlugin] {
        &self.plugins
    }

    /// The running shell, when there is one (for the redactor).
    pub(crate) fn shell_ref(&self) -> Option<&Shell> {
        self.shell.as_ref()
    }

    fn shell(&mut self) -> (&mut Shell, Server<'_>) {
        (
            self.shell.as_mut().expect("the plugin shell is running"),
            Server(&mut self.host),
        )
    }

    /// The host and the pipeline's operations, as a service sees them.
    fn service_ctx<T>(&mut self, f: impl FnOnce(&mut ServiceCtx<'_>) -> T) -> T {
        let mut ops = Ops {
            shell: self.shell.as_mut(),
            localconf: self.localconf.as_ref(),
            registry: &self.registry,
        };
        let mut cx = ServiceCtx::new(&mut self.host, &mut ops);
        f(&mut cx)
    }

    /// Sources a file of ours at global scope.
    fn source_global(&mut self, file: &Path) -> Result<i32, ShellError> {
        let (shell, mut host) = self.shell();
        shell.source_global(file, &mut host)
    }

    /// The redactor learns every secret the settings now hold (and the early
    /// ones): for the shell's output, child processes, the log and the terminal.
    pub(crate) fn install_redactor(&mut self) {
        let redactor = self.host.refresh_secrets();
        if let Some(shell) = &self.shell {
            shell.set_redactor(redactor);
        }
    }

    /// Re-reads every shell variable into the settings.
    pub(crate) fn sync_settings(&mut self) -> Result<(), ShellError> {
        let (shell, mut host) = self.shell();
        let vars = shell.read_vars(&mut host)?;
        host.0.settings = Settings::new(vars);
        Ok(())
    }

    /// Reads back only `names` from the shell (what plugins may still change late).
    pub(crate) fn sync_vars(&mut self, names: &[&str]) -> Result<(), ShellError> {
        let (shell, mut host) = self.shell();
        let vars = shell.read_vars(&mut host)?;
        for name in names {
            if let Some(v) = vars.get(*name) {
                host.0.settings.set(name, v.clone());
            }
        }
        Ok(())
    }

    /// Assigns variables in the shell and in the settings.
    pub(crate) fn set_vars(&mut self, vars: &[(String, String)]) -> Result<(), ShellError> {
        let (shell, mut host) = self.shell();
        shell.set_vars(vars, &mut host)?;
        for (k, v) in vars {
            host.0.settings.set(k, v.clone());
        }
        Ok(())
    }

    /// Writes generated bash into `.devstack/NAME` and sources it at global scope.
    fn source_generated(&mut self, name: &str, text: &str) -> anyhow::Result<()> {
        let path = crate::state::state_dir(&self.host.top_dir).join(name);
        fs::create_dir_all(path.parent().expect("has parent"))?;
        fs::write(&path, text)?;
        self.source_global(&path)?;
        Ok(())
    }

    /// Reports a step that did not need to run, and why.
    fn skipped(&mut self, name: &str, why: &str) {
        self.host.log.note(&format!("=== {name}: skipped ({why})"));
        self.host
            .progress
            .step_finished(name, Duration::ZERO, StepOutcome::Skipped);
        self.timings
            .push((name.to_owned(), Duration::ZERO, StepOutcome::Skipped));
    }

    /// A step that did not need to run, in the log and the timings only (a no-op
    /// re-stack says so once, not once per step).
    fn skipped_quietly(&mut self, name: &str, why: &str) {
        self.host.log.note(&format!("=== {name}: skipped ({why})"));
        self.timings
            .push((name.to_owned(), Duration::ZERO, StepOutcome::Skipped));
    }

    /// Times one step and reports it.
    fn timed<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.host.progress.step_started(name);
        self.host.log.note(&format!("==> {name}"));
        let t0 = Instant::now();
        let before = self.host.ledger.process_names();
        let result = f(self);
        let took = t0.elapsed();
        let started: Vec<String> = self
            .host
            .ledger
            .process_names()
            .difference(&before)
            .cloned()
            .collect();
        let outcome = match &result {
            Ok(_) => StepOutcome::Done,
            // unstack and clean go on past a failed step (the error becomes a
            // warning), unless it is another run's lock or tree: no FAILED line
            // in a teardown that ends well.
            Err(e)
                if self.kind != Kind::Stack
                    && !crate::system::interrupt::requested()
                    && !matches!(
                        e.downcast_ref::<crate::state::StateError>(),
                        Some(
                            crate::state::StateError::HostLocked { .. }
                                | crate::state::StateError::OwnedByAnotherTree { .. }
                        )
                    ) =>
            {
                StepOutcome::Warned
            }
            Err(_) => StepOutcome::Failed,
        };
        self.host.progress.step_finished(name, took, outcome);
        tracing::debug!(step = name, seconds = took.as_secs_f64(), ?outcome, "step");
        if self.kind == Kind::Stack {
            self.host.ledger.record_step(
                name,
                StepRecord {
                    fingerprint: self.step_fingerprint.clone().unwrap_or_default(),
                    seconds: took.as_secs_f64(),
                    ok: outcome == StepOutcome::Done,
                    started,
                },
            );
        }
        self.host
            .log
            .note(&format!("<== {name} ({:.3} s)", took.as_secs_f64()));
        self.timings.push((name.to_owned(), took, outcome));
        result
    }

    /// Takes the host-wide lock on each of the run's DEST, DATA_DIR and LOGDIR:
    /// two trees sharing one must not race (one's clean deleting the other's
    /// data while its services run).
    fn lock_shared_dirs(&mut self) -> anyhow::Result<()> {
        for var in ["DEST", "DATA_DIR", "LOGDIR"] {
            let dir = self.host.settings.path(var);
            if dir.as_os_str().is_empty() {
                continue;
            }
            let dir = fs::canonicalize(&dir).unwrap_or(dir);
            let key = format!("dir:{}", dir.display());
            if self.host_locks.contains_key(&key) {
                continue;
            }
            let what = format!("{var}={}", dir.display());
            let lock = HostLock::acquire(&what, &key, &self.host.top_dir)?;
            self.host_locks.insert(key, lock);
        }
        Ok(())
    }

    /// Takes the host-wide lock on the machine's layer-1 daemons (database,
    /// message queue, cache): one run at a time starts or stops them.
    fn lock_host_daemons(&mut self) -> anyhow::Result<()> {
        const KEY: &str = "host:layer-1 daemons";
        if !self.host_locks.contains_key(KEY) {
            let lock = HostLock::acquire(
                "the host's layer-1 daemons (database, message queue, cache)",
                KEY,
                &self.host.top_dir,
            )?;
            self.host_locks.insert(KEY.to_owned(), lock);
        }
        Ok(())
    }

    fn log_path(&self) -> String {
        self.host
            .log
            .path()
            .map_or_else(|| "(no log yet)".to_owned(), |p| p.display().to_string())
    }
}

/// The state fact listing the process groups of finished plugin shells that still
/// had members (hooks' background processes).
const BACKGROUND_FACT: &str = "background-groups";

/// The live members of `group` that a hook of this tree started (their
/// environment names the tree: a reused group id is not ours).
fn background_members(group: u32, top_dir: &Path) -> Vec<u32> {
    let mine = format!("TOP_DIR={}", top_dir.display());
    crate::system::supervisor::group_members(group)
        .into_iter()
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/environ"))
                .is_ok_and(|env| env.split(|&b| b == 0).any(|kv| kv == mine.as_bytes()))
        })
        .collect()
}

/// Stops what hooks left in the background of earlier runs' shells (teardown).
pub(crate) fn stop_background(host: &mut Host) {
    let Some(groups) = host.ledger.fact(BACKGROUND_FACT).map(str::to_owned) else {
        return;
    };
    host.ledger.forget_fact(BACKGROUND_FACT);
    let mut stopped = Vec::new();
    for group in groups.split(',').filter_map(|g| g.parse::<u32>().ok()) {
        let members = background_members(group, &host.top_dir);
        for &pid in &members {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            stopped.push(format!("{pid} {}", comm.trim()));
        }
        if !members.is_empty() {
            crate::system::supervisor::stop_pid_group(group, Duration::from_secs(2));
        }
    }
    if !stopped.is_empty() {
        host.note(&format!(
            "stopped what hooks left running in the background: {}",
            stopped.join(", ")
        ));
    }
}

/// The state fact naming the plugin shell's process group while a run holds it.
const SHELL_GROUP_FACT: &str = "shell-group";

/// A run killed outright (SIGKILL, a crash) cannot stop its plugin shell; the
/// shell's watcher normally does, and this catches what escaped it: the processes
/// still in the recorded group of a run whose devstack is gone are reported and
/// killed.
fn stop_leftover_shell(host: &mut Host) {
    // Only a run that died is suspected: after a clean end, what a plugin put in
    // the background of its shell's group is the plugin's business.
    let Some(dead) = host.ledger.settle_dead_run() else {
        return;
    };
    host.warn(&format!(
        "the {} started at {} (pid {}) ended without finishing; its state is marked failed",
        dead.command, dead.started, dead.pid
    ));
    let group = host
        .ledger
        .fact(SHELL_GROUP_FACT)
        .and_then(|g| g.parse::<u32>().ok());
    host.ledger.forget_fact(SHELL_GROUP_FACT);
    let Some(group) = group else { return };
    let members = crate::system::supervisor::group_members(group);
    if members.is_empty() {
        return;
    }
    let names: Vec<String> = members
        .iter()
        .map(|pid| {
            let comm = fs::read_to_string(format!("/proc/{pid}/comm")).unwrap_or_default();
            format!("{pid} {}", comm.trim())
        })
        .collect();
    crate::system::supervisor::stop_pid_group(group, Duration::from_secs(2));
    host.warn(&format!(
        "processes left by an earlier run's plugin shell (group {group}) were still running and were stopped: {}",
        names.join(", ")
    ));
}

impl Drop for Run {
    fn drop(&mut self) {
        if let Some(shell) = self.shell.take() {
            shell.close();
        }
    }
}

/// Shell variables that can be assigned back into a new shell (bash's own
/// read-only and dynamic ones cannot).
fn restorable(name: &str) -> bool {
    const BASH_OWN: &[&str] = &[
        "UID",
        "EUID",
        "PPID",
        "SHELLOPTS",
        "BASHOPTS",
        "SHLVL",
        "PWD",
        "OLDPWD",
        "RANDOM",
        "SRANDOM",
        "SECONDS",
        "LINENO",
        "HISTCMD",
        "EPOCHSECONDS",
        "EPOCHREALTIME",
        "OPTIND",
        "OPTERR",
        "IFS",
        "PS4",
        "HOSTNAME",
        "HOSTTYPE",
        "MACHTYPE",
        "OSTYPE",
        "PATH",
        "TOP_DIR",
        "DEVSTACK_BIN",
    ];
    name.chars().next().is_some_and(|c| c.is_ascii_uppercase())
        && name
            .chars()
            .all(|c| c.is_ascii_uppercase() || c.is_ascii_digit() || c == '_')
        && !BASH_OWN.contains(&name)
}

/// stack (resuming a failed one unless `from_scratch`).
pub(crate) fn execute_stack(
    top_dir: &Path,
    from_scratch: bool,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<ExitCode> {
    execute_with(top_dir, Kind::Stack, from_scratch, progress)
}

/// stack, unstack or clean.
pub(crate) fn execute(
    top_dir: &Path,
    kind: Kind,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<ExitCode> {
    execute_with(top_dir, kind, false, progress)
}

fn execute_with(
    top_dir: &Path,
    kind: Kind,
    from_scratch: bool,
    progress: Arc<dyn Progress>,
) -> anyhow::Result<ExitCode> {
    crate::system::interrupt::install();
    let _lock = RunLock::acquire(top_dir)?;
    let mut run = Run::start(top_dir, kind, progress)?;
    run.from_scratch = from_scratch;
    run.previous = run.host.ledger.begin_run(kind.name());
    // Said on disk now, so a run killed outright is known as such to the next one,
    // with the group its shell's leftovers are in.
    if let Some(group) = run.shell_ref().map(Shell::group) {
        run.host
            .ledger
            .set_fact(SHELL_GROUP_FACT, group.to_string());
    }
    run.host.checkpoint();
    let result = steps::run_all(&mut run);
    // What hooks left running in the background of the shell's group (a plugin's
    // `daemon &`) is kept for teardown to stop: the run started it. clean, the
    // last word, stops it now.
    if let Some(shell) = run.shell.take() {
        let group = shell.group();
        shell.close();
        if !background_members(group, &run.host.top_dir).is_empty() {
            let mut groups: Vec<String> = run
                .host
                .ledger
                .fact(BACKGROUND_FACT)
                .map(|f| f.split(',').map(str::to_owned).collect())
                .unwrap_or_default();
            groups.push(group.to_string());
            run.host.ledger.set_fact(BACKGROUND_FACT, groups.join(","));
        }
        if kind == Kind::Clean {
            stop_background(&mut run.host);
        }
    }
    let outcome = if result.is_ok() {
        Outcome::Ok
    } else {
        Outcome::Failed
    };
    // Only a stack that ended well vouches for the cloud it left.
    if let (Some((fp, inputs)), Kind::Stack, true) = (&run.fingerprint, kind, result.is_ok()) {
        let (fp, inputs) = (fp.clone(), inputs.clone());
        run.host.ledger.set_fact(resume::FACT, fp);
        run.host.ledger.set_fact(resume::INPUTS_FACT, inputs);
    } else {
        run.host.ledger.forget_fact(resume::FACT);
        run.host.ledger.forget_fact(resume::INPUTS_FACT);
    }
    run.host.ledger.forget_fact(SHELL_GROUP_FACT);
    run.host.ledger.end_run(outcome);
    if kind == Kind::Clean && result.is_ok() {
        // clean removes what stack created; the state has nothing left to say,
        // and the tree owns its DEST no more.
        crate::state::release_dest(&run.host.settings.path("DEST"), &run.host.top_dir);
        if let Err(e) = run.host.ledger.remove() {
            run.host.warn(&format!(
                "could not remove {}: {e}",
                run.host.ledger.path().display()
            ));
        }
    } else {
        run.host.save_state()?;
    }
    if crate::system::interrupt::requested() {
        // The state is saved: what was started is known to unstack.
        let err = result
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("interrupted"));
        let mut text = crate::ui::report::render_error(&err);
        // One hint: the report's own (where it stopped) when it has one.
        if !text.contains("\nhint: ") {
            let go_on = if kind == Kind::Stack {
                "./stack.sh resumes where it stopped; ./unstack.sh stops what was started"
            } else {
                "run it again to finish"
            };
            let _ = writeln!(text, "hint: {} was interrupted; {go_on}", kind.name());
        }
        eprint!("{text}");
        return Ok(ExitCode::from(130));
    }
    result?;
    steps::print_summary(&run);
    Ok(ExitCode::SUCCESS)
}

/// DEVSTACK_HOOK_TIMEOUT, whole seconds above 0; unset is the default. A value
/// that is not one is an error naming it (it used to mean the default, silently).
fn hook_timeout_from_env() -> anyhow::Result<Duration> {
    let name = crate::env_vars::DEVSTACK_HOOK_TIMEOUT;
    let Some(raw) = std::env::var_os(name) else {
        return Ok(crate::shell::DEFAULT_HOOK_TIMEOUT);
    };
    let text = raw.to_string_lossy();
    match text.parse::<u64>() {
        Ok(secs) if secs > 0 && !text.starts_with('+') => Ok(Duration::from_secs(secs)),
        _ => Err(anyhow::anyhow!(
            "{name}='{text}' is not a time limit: give whole seconds above 0 (default {}), or unset it",
            crate::shell::DEFAULT_HOOK_TIMEOUT.as_secs()
        )),
    }
}

/// `devstack plan`: what stack would do, without doing it.
pub(crate) fn plan(top_dir: &Path) -> anyhow::Result<ExitCode> {
    // The plan is the output: progress lines would only get in its way.
    let quiet: Arc<dyn Progress> = Arc::new(TermProgress::new(Verbosity::Quiet));
    let mut run = Run::start(top_dir, Kind::Plan, quiet)?;
    let text = steps::plan(&mut run)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Who a hook call goes to.
#[derive(Debug, Clone)]
pub(crate) struct HookTarget {
    /// "extras.d" or "plugin".
    pub kind: &'static str,
    pub name: String,
    pub file: PathBuf,
    pub args: Vec<String>,
}

impl HookTarget {
    fn display(&self) -> String {
        if self.args.is_empty() {
            format!("{} {} ({})", self.kind, self.name, self.file.display())
        } else {
            format!(
                "{} {} ({} {})",
                self.kind,
                self.name,
                self.file.display(),
                self.args.join(" ")
            )
        }
    }
}

/// The calls a hook point makes, in order: extras.d scripts, then plugins.
pub(crate) fn hook_targets(run: &Run, mode: &str, phase: Option<&str>) -> Vec<HookTarget> {
    let mut args = vec![mode.to_owned()];
    if let Some(p) = phase {
        args.push(p.to_owned());
    }
    let mut out: Vec<HookTarget> = run
        .extras
        .iter()
        .map(|s| HookTarget {
            kind: "extras.d",
            name: s.file_name.clone(),
            file: s.path.clone(),
            args: args.clone(),
        })
        .collect();
    for p in &run.plugins {
        let (file, args) = match mode {
            "override_defaults" => (p.override_defaults(), Vec::new()),
            "source" => (p.settings(), Vec::new()),
            _ => (p.plugin_sh(), args.clone()),
        };
        if file.is_file() {
            out.push(HookTarget {
                kind: "plugin",
                name: p.name.clone(),
                file,
                args,
            });
        }
    }
    out
}

/// The setting that moves the watched host directories under another root (tests).
pub(crate) const HOST_ROOT_VAR: &str = "DEVSTACK_HOST_ROOT";

/// Runs every target of a hook point; in a stack, what the point did to the host's
/// system directories is recorded for clean (`system::hostfiles`), a failed point's
/// too.
fn run_hook(run: &mut Run, mode: &str, phase: Option<&str>) -> anyhow::Result<()> {
    let point = phase.map_or_else(|| mode.to_owned(), |p| format!("{mode} {p}"));
    let targets = hook_targets(run, mode, phase);
    let started = Instant::now();
    let watched = run.kind == Kind::Stack && !targets.is_empty() && watch_before(run);
    let watching = started.elapsed();
    let result = run_hook_targets(run, mode, &point, &targets);
    if watched {
        let started = Instant::now();
        let scripts: Vec<String> = targets
            .iter()
            .map(|t| format!("{} {}", t.kind, t.name))
            .collect();
        watch_after(run, &format!("hook {point}: {}", scripts.join(", ")));
        let seconds = (watching + started.elapsed()).as_secs_f64();
        tracing::debug!(point, seconds, "host files watched");
    }
    result
}

/// Opens the watcher (first hook) and takes its snapshot; false when it cannot watch.
fn watch_before(run: &mut Run) -> bool {
    if matches!(run.host_watch, Watching::NotYet) {
        let root = match run.host.settings.str(HOST_ROOT_VAR) {
            "" => PathBuf::from("/"),
            root => PathBuf::from(root),
        };
        let state_dir = crate::state::state_dir(&run.host.top_dir);
        match HostWatch::open(&state_dir, &root) {
            Ok(w) => run.host_watch = Watching::On(w),
            Err(e) => return watch_failed(run, &e),
        }
    }
    let Watching::On(watch) = &mut run.host_watch else {
        return false;
    };
    match watch.before_hook() {
        Ok(()) => true,
        Err(e) => watch_failed(run, &e),
    }
}

fn watch_after(run: &mut Run, by: &str) {
    let Watching::On(watch) = &mut run.host_watch else {
        return;
    };
    match watch.after_hook(by, &run.host.spawner) {
        Ok(paths) => {
            for p in paths {
                run.host.log.note(&format!(
                    "{by} changed {} in the host (recorded for clean)",
                    p.display()
                ));
            }
        }
        Err(e) => {
            watch_failed(run, &e);
        }
    }
}

/// A watcher that cannot save its record stops, said once: the stack goes on.
fn watch_failed(run: &mut Run, e: &crate::system::hostfiles::HostFilesError) -> bool {
    run.host_watch = Watching::Off;
    let cause = std::error::Error::source(e).map_or_else(String::new, |c| format!(": {c}"));
    run.host.warn(&format!(
        "{e}{cause}; clean will not know what hooks did to the host's system directories"
    ));
    false
}

fn run_hook_targets(
    run: &mut Run,
    mode: &str,
    point: &str,
    targets: &[HookTarget],
) -> anyhow::Result<()> {
    let point = point.to_owned();
    if mode == "override_defaults" {
        // DevStack copies a plugin's overrides into the log, so the run log says
        // which defaults a plugin changed.
        for target in targets.iter().filter(|t| t.kind == "plugin") {
            let text = fs::read_to_string(&target.file).unwrap_or_default();
            run.host.log.note(&format!(
                "{} has overridden the following defaults:",
                target.name
            ));
            for line in text.lines() {
                run.host.log.note(&format!("  {line}"));
            }
        }
    }
    // All the point's files go to the shell in one batch, which reports them together.
    let mut next = 0;
    while next < targets.len() {
        let batch: Vec<(&Path, Vec<String>)> = targets[next..]
            .iter()
            .map(|t| (t.file.as_path(), t.args.clone()))
            .collect();
        run.host.hook_names = targets[next..]
            .iter()
            .map(|t| format!("{} {}", t.kind, t.name))
            .collect();
        let result = {
            let (shell, mut host) = run.shell();
            shell.source_hooks(&batch, &mut host)
        };
        let (results, failed) = match result {
            Ok(results) => (results, None),
            // The files before the one that stopped the batch ran to the end.
            Err(e) => {
                let before = e.index.unwrap_or(0);
                let results = (0..before)
                    .map(|index| crate::shell::HookResult {
                        index,
                        status: 0,
                        seconds: 0.0,
                    })
                    .collect();
                (results, Some((before, e.error)))
            }
        };
        for r in &results {
            let target = &targets[next + r.index];
            run.host.ledger.record_hook(HookRecord {
                point: point.clone(),
                script: target.display(),
                status: r.status,
                seconds: r.seconds,
            });
            let said = run.shell_ref().is_some_and(|s| s.warned(r.index));
            if r.status != 0 && !said {
                // Only reached without errexit (unstack, clean): a warning, and on.
                run.host.warn(&format!(
                    "{} returned {} at {point}",
                    target.display(),
                    r.status
                ));
            }
        }
        let Some((index, err)) = failed else { break };
        next += index;
        let target = &targets[next];
        let status = match &err {
            ShellError::Failed(f) => f.status,
            _ => -1,
        };
        run.host.ledger.record_hook(HookRecord {
            point: point.clone(),
            script: target.display(),
            status,
            seconds: 0.0,
        });
        match err {
            // Teardown goes on in a new shell; stack and plan stop (a plan made
            // after a plugin ended the shell is not what stack would do).
            err @ ShellError::Died { .. }
                if matches!(run.kind, Kind::Unstack { .. } | Kind::Clean) =>
            {
                let report = hook_report(run, &point, target, &err);
                run.host
                    .warn(crate::ui::report::render_error(&report.into()).trim_end());
                run.respawn_shell()?;
                next += 1;
            }
            err => return Err(hook_report(run, &point, target, &err).into()),
        }
    }
    Ok(())
}

/// Builds the report for a failed hook: step, plugin or script, phase, file and
/// line, command, last lines of output, log path.
fn hook_report(run: &Run, point: &str, target: &HookTarget, err: &ShellError) -> Report {
    let mut details = vec![
        ("step".to_owned(), format!("hook {point}")),
        (
            target.kind.to_owned(),
            format!("{} ({})", target.name, target.file.display()),
        ),
        ("phase".to_owned(), point.to_owned()),
    ];
    let headline;
    let tail = err.tail().to_vec();
    match err {
        ShellError::Failed(f) => {
            headline = format!("{} {} failed at {point}", target.kind, target.name);
            let file = if f.file.is_empty() {
                target.file.display().to_string()
            } else {
                f.file.clone()
            };
            let location = if run.shell_ref().is_some_and(|s| s.is_ours(&f.file)) {
                format!(
                    "{} (the file returned status {})",
                    target.file.display(),
                    f.status
                )
            } else if f.function.is_empty() || f.function == "source" {
                format!("{file}:{}", f.line)
            } else {
                format!("{file}:{} (in function {})", f.line, f.function)
            };
            details.push(("where".into(), location));
            details.push((
                "command".into(),
                format!("{} (exit status {})", f.command, f.status),
            ));
            if f.trace.len() > 1 {
                details.push(("call trace".into(), f.trace.join(" <- ")));
            }
        }
        ShellError::Died { status, .. } => {
            // bash's own last word about a file ("FILE: line N: X: unbound variable",
            // when a hook left `set -u` on) says where, better than the exit.
            let bash_says = tail.iter().rev().find_map(|l| {
                let (file, rest) = l.split_once(": line ")?;
                let (n, msg) = rest.split_once(": ")?;
                n.parse::<u32>().ok()?;
                file.starts_with('/')
                    .then(|| (format!("{file}:{n}"), msg.to_owned()))
            });
            headline = format!(
                "{} {} ended the plugin shell at {point}{}{}",
                target.kind,
                target.name,
                status
                    .map(|s| format!(" (exit status {s})"))
                    .unwrap_or_default(),
                bash_says
                    .as_ref()
                    .map(|(at, msg)| format!(": {at}: {msg}"))
                    .unwrap_or_default()
            );
            if let Some((at, _)) = bash_says {
                details.push(("where".into(), at));
            }
        }
        ShellError::Timeout { after, .. } => {
            headline = format!(
                "{} {} did not finish within {} s at {point}; it was stopped",
                target.kind,
                target.name,
                after.as_secs()
            );
        }
        ShellError::Interrupted { .. } => {
            headline = format!(
                "interrupted while {} {} ran at {point}",
                target.kind, target.name
            );
        }
        other => headline = format!("{} {} failed at {point}: {other}", target.kind, target.name),
    }
    details.push(("log".into(), run.log_path()));
    let hint = match (err, run.kind) {
        (ShellError::Interrupted { .. }, Kind::Stack) => {
            "./stack.sh resumes at this step; ./unstack.sh stops what was started".into()
        }
        (ShellError::Interrupted { .. }, _) => "run the command again to finish it".into(),
        (ShellError::Timeout { .. }, _) => format!(
            "a hook point may take {} s (DEVSTACK_HOOK_TIMEOUT, in seconds; default {}); fix the script or raise the limit",
            run.shell_config.hook_timeout.as_secs(),
            crate::shell::DEFAULT_HOOK_TIMEOUT.as_secs()
        ),
        (_, Kind::Stack) => {
            "fix what failed and run ./stack.sh again: with the same local.conf, settings and hook files \
             it resumes at this step (a changed hook file runs every step again); ./unstack.sh stops what was started"
                .into()
        }
        _ => "fix the script and run the command again".into(),
    };
    Report {
        headline,
        details,
        tail,
        hint: Some(hint),
    }
}

/// The settings phase every command shares: early defaults, localrc, stackrc.
fn load_settings(run: &mut Run) -> anyhow::Result<()> {
    let top = run.host.top_dir.clone();
    let mut early = settings::render_defaults(settings::EARLY_DEFAULTS);
    // DevStack's isset test: an exported empty ENABLED_SERVICES means "no services".
    let _ = writeln!(
        early,
        "[[ -v ENABLED_SERVICES ]] || ENABLED_SERVICES={}",
        settings::DEFAULT_SERVICES
    );
    run.source_generated("early.sh", &early)?;

    let localconf_path = top.join("local.conf");
    let localconf = LocalConf::load(&localconf_path)?;
    let localrc_file = top.join("localrc");
    // Secrets are redacted from the first line on: localrc's literal passwords and
    // the kept ones are known before localrc runs (its `set -x` trace included).
    let localrc_text = if localrc_file.is_file() {
        fs::read(&localrc_file)
            .map(|b| String::from_utf8_lossy(&b).into_owned())
            .unwrap_or_default()
    } else {
        localconf
            .as_ref()
            .and_then(LocalConf::localrc_script)
            .unwrap_or_default()
    };
    let mut early = crate::system::redact::literal_secrets(
        &localrc_text,
        crate::config::settings::is_secret_name,
    );
    let data_dirs = [
        run.host.settings.path("DATA_DIR"),
        kept_setting(&run.host.ledger, "DATA_DIR").unwrap_or_default(),
    ];
    for dir in data_dirs.iter().filter(|d| !d.as_os_str().is_empty()) {
        let kept = crate::config::passwords::load(&crate::config::passwords::file(dir));
        early.extend(kept.into_values());
    }
    run.host.early_secrets = early;
    run.install_redactor();
    if localrc_file.is_file() {
        if localconf
            .as_ref()
            .is_some_and(|lc| lc.localrc_sections().next().is_some())
        {
            run.host
                .warn("localrc and local.conf:[[local|localrc]] both exist, using localrc");
        }
        source_localrc(run, &localrc_file, "localrc")?;
    } else if let Some(script) = localconf.as_ref().and_then(LocalConf::localrc_script) {
        let auto = top.join(".localrc.auto");
        // localrc holds passwords: private, as every file that can hold a secret.
        crate::state::write_atomic(&auto, format!("{script}\n").as_bytes(), 0o600)?;
        source_localrc(run, &auto, "local.conf")?;
    }
    // DevStack's stackrc sources what read_password stored, after localrc.
    let passwords = top.join(settings::LOCALRC_PASSWORD);
    if passwords.is_file() {
        let (shell, mut host) = run.shell();
        shell.source_global(&passwords, &mut host)?;
    }
    let absence = (!localrc_file.is_file())
        .then(|| LocalConf::absence(&localconf_path))
        .flatten();
    run.localconf = localconf;
    run.source_generated(
        "stackrc.sh",
        &settings::render_defaults(settings::STACKRC_DEFAULTS),
    )?;
    // The shell library's stackrc: DevStack's other globals that plugins read.
    let stackrc = top.join("stackrc");
    if stackrc.is_file() {
        let (shell, mut host) = run.shell();
        shell.source_global(&stackrc, &mut host)?;
    }
    run.sync_settings()?;
    run.install_redactor();
    if let Some(why) = absence {
        // DevStack's defaults for a missing file, kept; never silently.
        let text = match run.kind {
            Kind::Stack => format!(
                "{why}: stacking DevStack's defaults into DEST={}",
                run.host.settings.str("DEST")
            ),
            _ => format!(
                "{why}: using DevStack's defaults (DEST={})",
                run.host.settings.str("DEST")
            ),
        };
        run.host.log.note(&text);
        run.host.progress.info(&text);
    }
    let negated = crate::config::services::disable_negated(run.host.settings.enabled_services());
    if negated != run.host.settings.enabled_services() {
        run.set_vars(&[("ENABLED_SERVICES".into(), negated)])?;
    }
    Ok(())
}

/// Sources localrc; a failure there is reported against local.conf's own lines.
fn source_localrc(run: &mut Run, file: &Path, shown_as: &str) -> anyhow::Result<()> {
    source_user_file(run, file, shown_as, "evaluating the localrc settings")
}

/// Sources a user's file at global scope (localrc, a hypervisor plugin); a failure
/// is reported at the user's file and line with bash's own message, never at an
/// internal command of the driver.
fn source_user_file(
    run: &mut Run,
    file: &Path,
    shown_as: &str,
    while_: &str,
) -> anyhow::Result<()> {
    let result = {
        let (shell, mut host) = run.shell();
        shell.source_global(file, &mut host)
    };
    let path = file.to_string_lossy();
    // bash's own message about the file ("FILE: line N: syntax error ..."), the
    // last one wins: it is what stopped the file.
    let prefix = format!("{path}: line ");
    let f = match result {
        Ok(0) => return Ok(()),
        Ok(_) => {
            // Without errexit (unstack, clean) a file bash stopped reading returns
            // non-zero: said once, at the user's line, and the run goes on.
            let said = |tail: Vec<String>| {
                tail.iter().rev().find_map(|l| {
                    let rest = l.strip_prefix(&prefix)?;
                    let (n, msg) = rest.split_once(": ")?;
                    // (bash quotes the offending line after its message: not that)
                    (!msg.starts_with('`')).then_some(())?;
                    Some((n.parse::<u32>().ok()?, msg.to_owned()))
                })
            };
            // bash's stderr comes on its own pipe: its line may trail `done` a little.
            let mut found = None;
            for _ in 0..20 {
                found = said(run.shell_ref().map(Shell::take_tail).unwrap_or_default());
                if found.is_some() {
                    break;
                }
                std::thread::sleep(Duration::from_millis(10));
            }
            if let Some((n, msg)) = found {
                run.host.warn(&format!(
                    "{shown_as}:{n}: {msg}; bash read no further ({while_}, continuing)"
                ));
            }
            return Ok(());
        }
        Err(ShellError::Failed(f)) => f,
        Err(e) => return Err(e.into()),
    };
    let bash_says = f.tail.iter().rev().find_map(|l| {
        let rest = l.strip_prefix(&prefix)?;
        let (n, msg) = rest.split_once(": ")?;
        Some((n.parse::<u32>().ok()?, msg.to_owned()))
    });
    let in_file = f.file == path;
    let exited = in_file && f.command.starts_with("exit ");
    // bash's message wins over an exit it caused (a syntax error ends the shell
    // under errexit) when it is about the exit's line or a later one.
    let bash_says = bash_says.filter(|(n, _)| !exited || *n >= f.line);
    // An exit that `die` made (a library function refusing what the line asked:
    // enable_plugin without a URL, twice, a bad name) says what is wrong itself.
    let died = f
        .tail
        .iter()
        .rev()
        .find_map(|l| {
            l.strip_prefix("[ERROR] ")?
                .split_once(' ')
                .map(|(_, m)| m.to_owned())
        })
        .filter(|_| exited);
    let (line, what) = match (&bash_says, in_file) {
        (None, true) if died.is_some() => (f.line, died.unwrap_or_default()),
        (None, true) if exited => (
            f.line,
            format!(
                "`{}`: {shown_as} ended the shell (exit status {}); it must not call exit",
                f.command, f.status
            ),
        ),
        (Some((n, msg)), _) => (*n, msg.clone()),
        (None, true) => (
            f.line,
            format!("`{}` failed with status {}", f.command, f.status),
        ),
        (None, false) => (
            0,
            format!(
                "{} failed with status {} (at {}:{})",
                f.command, f.status, f.file, f.line
            ),
        ),
    };
    let mut details = vec![("while".into(), while_.to_owned())];
    if !in_file && !f.file.is_empty() && !run.shell_ref().is_some_and(|s| s.is_ours(&f.file)) {
        details.push((
            "in".into(),
            format!("{}:{} ({})", f.file, f.line, f.function),
        ));
    }
    Err(Report {
        headline: format!("{shown_as}:{line}: {what}"),
        details,
        tail: f.tail.clone(),
        hint: Some(format!("fix line {line} of {shown_as}")),
    }
    .into())
}

/// Discovers extras.d scripts and orders the enabled plugins (fetching them for
/// stack; planning fetches the missing ones into `$DEST` as stack would, so
/// settings that source `$DEST/<name>/devstack/...` work, and reads the others
/// there without touching them).
fn prepare_plugins(run: &mut Run, fetch: bool) -> anyhow::Result<()> {
    let (extras, warnings) = plugins::discover_extras(&run.host.top_dir.join("extras.d"))?;
    for w in warnings {
        run.host.warn(&w);
    }
    run.extras = extras;
    let reclone = run.host.settings.flag("RECLONE", false);
    let error_on_clone = run.host.settings.flag("ERROR_ON_CLONE", false);
    let git = run.host.cmd("git").timeout(Duration::from_secs(600));
    let mut list = run.host.plugins.plugins().to_vec();
    for p in &mut list {
        if fetch || run.kind == Kind::Plan {
            // plan never re-fetches a checkout that is there (RECLONE is stack's).
            let reclone = reclone && run.kind != Kind::Plan;
            plugins::fetch(p, reclone, error_on_clone, &git).map_err(|e| fetch_report(run, e))?;
        } else if !p.dir.exists() {
            run.host.warn(&format!(
                "plugin {} is not at {}; its hooks are skipped",
                p.name,
                p.dir.display()
            ));
        }
        p.requires = plugins::read_requires(&p.settings(), &p.name)?;
    }
    run.plugins = plugins::order(&list)?;
    Ok(())
}

/// A setting the last stack kept in the state for teardown.
pub(crate) fn kept_setting(ledger: &Ledger, name: &str) -> Option<PathBuf> {
    let vars: BTreeMap<String, String> =
        serde_json::from_str(ledger.fact(steps::TEARDOWN_SETTINGS)?).ok()?;
    vars.get(name).map(PathBuf::from)
}

/// A failed plugin fetch, with git's own last lines and the log.
fn fetch_report(run: &Run, err: plugins::PluginError) -> anyhow::Error {
    let plugins::PluginError::Clone { source, .. } = &err else {
        return err.into();
    };
    let interrupted = matches!(
        **source,
        crate::system::process::ProcessError::Interrupted { .. }
    );
    let report = Report {
        headline: if interrupted {
            format!("{err}: interrupted")
        } else {
            err.to_string()
        },
        details: vec![("log".into(), run.log_path())],
        tail: source.tail().to_vec(),
        // An interrupted fetch gets the interrupt's hint; the URL was fine.
        hint: (!interrupted)
            .then(|| "check the URL and the ref of enable_plugin in local.conf".into()),
    };
    anyhow::Error::new(err).context(report)
}

/// lib/-layer defaults of every service, then the hypervisor plugin.
fn lib_defaults(run: &mut Run) -> anyhow::Result<()> {
    let defaults = run.registry.defaults();
    run.source_generated("lib-defaults.sh", &settings::render_defaults(&defaults))?;
    run.sync_settings()?;
    Ok(())
}

/// Sources `$NOVA_PLUGINS/hypervisor-$VIRT_DRIVER` when nova (or the test probe) is
/// enabled, and checks it defines the five functions.
fn load_hypervisor(run: &mut Run) -> anyhow::Result<()> {
    let s = &run.host.settings;
    if !s.is_enabled(&["nova", crate::services::hypervisor::PROBE_SERVICE]) {
        return Ok(());
    }
    let driver = s.str("VIRT_DRIVER").to_owned();
    let file = plugins::hypervisor_file(&s.path("NOVA_PLUGINS"), &driver);
    if !file.is_file() {
        run.host.warn(&format!(
            "no hypervisor plugin for VIRT_DRIVER={driver} (looked for {}); its five calls are skipped",
            file.display()
        ));
        return Ok(());
    }
    let shown = file.display().to_string();
    source_user_file(run, &file, &shown, "loading the hypervisor plugin")?;
    let missing = {
        let (shell, mut host) = run.shell();
        shell.missing_functions(&plugins::HYPERVISOR_FUNCTIONS, &mut host)?
    };
    if !missing.is_empty() {
        return Err(Report {
            headline: format!(
                "hypervisor plugin {} does not define {}",
                file.display(),
                missing.join(", ")
            ),
            details: vec![("VIRT_DRIVER".into(), driver)],
            tail: Vec::new(),
            hint: Some(format!(
                "a hypervisor plugin must define all of {}",
                plugins::HYPERVISOR_FUNCTIONS.join(", ")
            )),
        }
        .into());
    }
    run.host.hypervisor = Some(file);
    Ok(())
}

/// DevStack's `verify_disabled_services`, after the `source` hook.
fn verify_disabled(run: &Run) -> anyhow::Result<()> {
    let s = &run.host.settings;
    if let Some(name) = crate::config::services::re_enabled_after_disable(
        s.enabled_services(),
        s.str("DISABLED_SERVICES"),
    ) {
        return Err(Report {
            headline: format!(
                "ENABLED_SERVICES directly modified to overcome 'disable_service {name}'"
            ),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some(
                "use enable_service / disable_service instead of editing ENABLED_SERVICES".into(),
            ),
        }
        .into());
    }
    Ok(())
}

/// Expands a meta-section's FILE (`$NOVA_CONF`) with the current settings.
fn expand_file(spec: &str, vars: &BTreeMap<String, String>) -> String {
    let mut out = String::new();
    let mut chars = spec.chars().peekable();
    while let Some(c) = chars.next() {
        if c != '$' {
            out.push(c);
            continue;
        }
        let braced = chars.peek() == Some(&'{');
        if braced {
            chars.next();
        }
        let mut name = String::new();
        while let Some(&n) = chars.peek() {
            if n.is_ascii_alphanumeric() || n == '_' {
                name.push(n);
                chars.next();
            } else {
                break;
            }
        }
        if braced && chars.peek() == Some(&'}') {
            chars.next();
        }
        out.push_str(vars.get(&name).map_or("", String::as_str));
    }
    out
}

/// Expands a meta-section's FILE; every variable in it must be set and non-empty
/// (`$UNSET/x.conf` must not write `/x.conf`). The error names the variable.
pub(crate) fn expand_path(spec: &str, vars: &BTreeMap<String, String>) -> Result<String, String> {
    let mut rest = spec;
    while let Some(at) = rest.find('$') {
        let after = rest[at + 1..].trim_start_matches('{');
        let name: String = after
            .chars()
            .take_while(|c| c.is_ascii_alphanumeric() || *c == '_')
            .collect();
        if vars.get(&name).is_none_or(String::is_empty) {
            return Err(name);
        }
        rest = &after[name.len()..];
    }
    Ok(expand_file(spec, vars))
}

/// Merges the `[[PHASE|FILE]]` sections of local.conf into their files.
fn merge_phase(run: &mut Run, phase: Phase) -> anyhow::Result<()> {
    merge_sections(&mut run.host, run.localconf.as_ref(), phase, None)
}

/// Merges `phase`'s sections (only those naming `only`, when given) into their files.
fn merge_sections(
    host: &mut Host,
    localconf: Option<&LocalConf>,
    phase: Phase,
    only: Option<&Path>,
) -> anyhow::Result<()> {
    let Some(lc) = localconf else {
        return Ok(());
    };
    let display = "local.conf";
    let mut merged = Vec::new();
    // A whole phase's merge records what it replaced, so that a re-stack which kept
    // the files as the last stack left them puts those values back first: an option
    // removed from local.conf goes back to what the service's configuration wrote.
    let record_key = format!("{MERGED_FACT_PREFIX}{phase}");
    let mut replaced: MergedValues = BTreeMap::new();
    if only.is_none() {
        if host.keep_unchanged_processes {
            put_back_merged(host, &record_key)?;
        }
        host.ledger.forget_fact(&record_key);
    }
    for section in lc.sections_for(phase) {
        let file = match expand_path(&section.file, host.settings.vars()) {
            Ok(file) if !file.is_empty() => file,
            Ok(_) | Err(_) if only.is_some() => continue,
            Ok(_) => String::new(),
            Err(var) => {
                return Err(Report {
                    headline: format!(
                        "local.conf:{}: '{}': ${var} is not set or empty",
                        section.header_line, section.file
                    ),
                    details: Vec::new(),
                    tail: Vec::new(),
                    hint: Some(format!(
                        "${var} is set neither by devstack nor by an enabled plugin; a path that loses a part would write the wrong file"
                    )),
                }
                .into());
            }
        };
        if only.is_some_and(|o| Path::new(&file) != o) {
            continue;
        }
        if file.is_empty() {
            return Err(Report {
                headline: format!(
                    "local.conf:{}: '{}' expands to nothing",
                    section.header_line, section.file
                ),
                details: Vec::new(),
                tail: Vec::new(),
                hint: Some("the variable is not set by devstack or any enabled plugin".into()),
            }
            .into());
        }
        let path = PathBuf::from(&file);
        let mut doc = crate::ini::IniDoc::load(&path)?;
        if only.is_none() {
            let before = replaced.entry(file.clone()).or_default();
            for (name, key) in crate::config::localconf::fragment_keys(section, display)? {
                if !before.iter().any(|(n, k, _)| *n == name && *k == key) {
                    let values = doc.get_all(&name, &key);
                    before.push((name, key, values));
                }
            }
        }
        // Values expand like DevStack's eval'd iniset lines: `my_ip = $HOST_IP` works.
        let vars = host.settings.vars();
        crate::config::localconf::merge_fragment_with(&mut doc, section, display, |v| {
            expand_file(v, vars)
        })?;
        doc.save(&path)?;
        merged.push(file);
    }
    for file in merged {
        host.note(&format!("merged local.conf sections into {file}"));
    }
    if only.is_none() && !replaced.is_empty() {
        let text = serde_json::to_string(&replaced).unwrap_or_default();
        host.ledger.set_fact(&record_key, text);
    }
    Ok(())
}

/// The state fact (one per phase) holding what a phase's merge replaced.
const MERGED_FACT_PREFIX: &str = "merged-before:";

/// Per file: (section, key, the values before the merge; none: the key was absent).
type MergedValues = BTreeMap<String, Vec<(String, String, Vec<String>)>>;

/// Puts back the values the last merge of a phase replaced (recorded under
/// `record_key`), file by file; a file gone since is skipped.
fn put_back_merged(host: &mut Host, record_key: &str) -> anyhow::Result<()> {
    let Some(text) = host.ledger.fact(record_key) else {
        return Ok(());
    };
    let Ok(replaced) = serde_json::from_str::<MergedValues>(text) else {
        return Ok(());
    };
    for (file, options) in replaced {
        let path = PathBuf::from(&file);
        if !path.is_file() {
            continue;
        }
        let mut doc = crate::ini::IniDoc::load(&path)?;
        for (section, key, values) in options.iter().rev() {
            if values.is_empty() {
                doc.delete(section, key);
            } else {
                doc.set_multi(section, key, values);
            }
        }
        doc.save(&path)?;
    }
    Ok(())
}

/// The pipeline's operations lent to a service: the plugin shell, local.conf and
/// the run's registry.
struct Ops<'a> {
    shell: Option<&'a mut Shell>,
    localconf: Option<&'a LocalConf>,
    registry: &'a Registry,
}

impl PipelineOps for Ops<'_> {
    fn call_function(
        &mut self,
        host: &mut Host,
        name: &str,
        args: &[&str],
    ) -> Result<i32, PipelineError> {
        let shell = self
            .shell
            .as_deref_mut()
            .ok_or_else(|| PipelineError::Merge(format!("no plugin shell to call {name} in")))?;
        Ok(shell.call_function(name, args, &mut Server(host))?)
    }

    /// Merges again the sections that name `file`: for a service that rebuilds a
    /// config file after the phase's merge (nova-cpu.conf is derived from nova.conf
    /// when compute starts, as DevStack's start_nova_compute does).
    fn merge_into(
        &mut self,
        host: &mut Host,
        phase: Phase,
        file: &Path,
    ) -> Result<(), PipelineError> {
        merge_sections(host, self.localconf, phase, Some(file))
            .map_err(|e| PipelineError::Merge(format!("{e:#}")))
    }

    fn catalog(&self, settings: &Settings) -> Vec<ServiceAccount> {
        self.registry.catalog(settings)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expands_plain_and_braced_variables() {
        let vars: BTreeMap<String, String> =
            [("NOVA_CONF".to_owned(), "/etc/nova/nova.conf".to_owned())].into();
        assert_eq!(expand_file("$NOVA_CONF", &vars), "/etc/nova/nova.conf");
        assert_eq!(
            expand_file("${NOVA_CONF}.d/x", &vars),
            "/etc/nova/nova.conf.d/x"
        );
        assert_eq!(expand_file("/plain/file", &vars), "/plain/file");
        assert_eq!(expand_file("$UNSET", &vars), "");
        assert_eq!(
            expand_path("${NOVA_CONF}.d/x", &vars).as_deref(),
            Ok("/etc/nova/nova.conf.d/x")
        );
        assert_eq!(expand_path("$UNSET/x.conf", &vars), Err("UNSET".into()));
        assert_eq!(
            expand_path("$NOVA_CONF/${EMPTY}/x", &vars),
            Err("EMPTY".into())
        );
    }
}
