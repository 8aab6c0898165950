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

use anyhow::Context as _;
use fs_err as fs;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::config::localconf::{LocalConf, Phase};
use crate::config::settings::{self, Settings};
use crate::host::Host;
use crate::plugins::{self, ExternalPlugin, ExtrasScript};
use crate::shell::{Shell, ShellConfig, ShellError};
use crate::state::{HookRecord, RunLock, StateFile};
use crate::ui::log::RunLog;
use crate::ui::report::Report;
use crate::ui::{Progress, StepOutcome, TermProgress, Verbosity};

pub use steps::{Kind, Step};

/// Runs a command line.
pub fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let verbosity = if cli.global.quiet {
        Verbosity::Quiet
    } else if cli.global.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    init_tracing();
    let top_dir = top_dir(&cli.global)?;
    let progress: Arc<dyn Progress> = Arc::new(TermProgress::new(verbosity));
    match cli.command {
        Command::Stack => execute(&top_dir, Kind::Stack, progress),
        Command::Unstack { all } => execute(&top_dir, Kind::Unstack { all }, progress),
        Command::Clean => execute(&top_dir, Kind::Clean, progress),
        Command::Plan => plan(&top_dir),
        Command::Status => crate::services::status::status(&top_dir),
        Command::Logs { service, follow } => {
            crate::services::status::logs(&top_dir, &service, follow)
        }
        Command::Ini { args } => {
            let out = crate::ini::apply_op(&args)?;
            print!("{}", out.stdout);
            Ok(ExitCode::from(u8::try_from(out.status).unwrap_or(1)))
        }
        Command::Call { args } => crate::shell::callbacks::standalone(top_dir, &args),
    }
}

fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(crate::env_vars::DEVSTACK_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The tree to act on: `--top-dir`/`DEVSTACK_TOP_DIR`, else the current directory.
fn top_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let dir = match &global.top_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = fs::canonicalize(&dir)
        .with_context(|| format!("the DevStack tree {} does not exist", dir.display()))?;
    if !dir.join("inc/driver").is_file() {
        return Err(anyhow::Error::new(Report {
            headline: format!(
                "{} is not a devstack-rs tree (no inc/driver)",
                dir.display()
            ),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some("run from the top of the checkout, or pass --top-dir".into()),
        }));
    }
    Ok(dir)
}

/// One run of stack, unstack or clean (or the settings part of plan).
pub struct Run {
    pub host: Host,
    shell: Option<Shell>,
    pub kind: Kind,
    /// The hypervisor plugin file, once sourced.
    pub hypervisor: Option<PathBuf>,
    extras: Vec<ExtrasScript>,
    plugins: Vec<ExternalPlugin>,
    localconf: Option<LocalConf>,
    shell_config: ShellConfig,
    /// How the run before this one ended (for a re-stack of an unchanged cloud).
    previous: Option<crate::state::RunRecord>,
    /// This stack's fingerprint, once the settings are final.
    fingerprint: Option<String>,
    /// Nothing changed and everything runs: init and start are skipped.
    unchanged: bool,
    timings: Vec<(String, Duration, StepOutcome)>,
    started: Instant,
}

impl Run {
    fn start(top_dir: &Path, kind: Kind, progress: Arc<dyn Progress>) -> anyhow::Result<Self> {
        let state = StateFile::load(top_dir)?;
        let log = Arc::new(RunLog::new(progress.clone()));
        let host = Host::new(top_dir.to_path_buf(), state, log.clone(), progress);
        let hook_timeout = std::env::var(crate::env_vars::DEVSTACK_HOOK_TIMEOUT)
            .ok()
            .and_then(|s| s.parse().ok())
            .map_or(crate::shell::DEFAULT_HOOK_TIMEOUT, Duration::from_secs);
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
            hypervisor: None,
            extras: Vec::new(),
            plugins: Vec::new(),
            localconf: None,
            previous: None,
            fingerprint: None,
            unchanged: false,
            timings: Vec::new(),
            started: Instant::now(),
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
        shell.set_redactor(self.host.redactor.clone());
        shell.set_strict(false, &mut self.host)?;
        let restore: Vec<(String, String)> = self
            .host
            .settings
            .vars()
            .iter()
            .filter(|(k, _)| restorable(k))
            .map(|(k, v)| (k.clone(), v.clone()))
            .collect();
        shell.set_vars(&restore, &mut self.host)?;
        self.shell = Some(shell);
        if let Some(file) = self.hypervisor.clone() {
            self.source_global(&file)?;
        }
        Ok(())
    }

    /// The enabled external plugins, in hook order.
    pub fn plugins(&self) -> &[ExternalPlugin] {
        &self.plugins
    }

    /// The running shell, when there is one (for the redactor).
    pub fn shell_ref(&self) -> Option<&Shell> {
        self.shell.as_ref()
    }

    fn shell(&mut self) -> (&mut Shell, &mut Host) {
        (
            self.shell.as_mut().expect("the plugin shell is running"),
            &mut self.host,
        )
    }

    /// Calls a shell function (hypervisor plugin functions, for services).
    pub fn call_function(&mut self, name: &str, args: &[&str]) -> Result<i32, ShellError> {
        let (shell, host) = self.shell();
        shell.call_function(name, args, host)
    }

    /// Sources a file of ours at global scope.
    fn source_global(&mut self, file: &Path) -> Result<i32, ShellError> {
        let (shell, host) = self.shell();
        shell.source_global(file, host)
    }

    /// Re-reads every shell variable into the settings.
    pub fn sync_settings(&mut self) -> Result<(), ShellError> {
        let (shell, host) = self.shell();
        let vars = shell.read_vars(host)?;
        host.settings = Settings::new(vars);
        Ok(())
    }

    /// Assigns variables in the shell and in the settings.
    pub fn set_vars(&mut self, vars: &[(String, String)]) -> Result<(), ShellError> {
        let (shell, host) = self.shell();
        shell.set_vars(vars, host)?;
        for (k, v) in vars {
            host.settings.set(k, v.clone());
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

    /// Times one step and reports it.
    fn timed<T>(
        &mut self,
        name: &str,
        f: impl FnOnce(&mut Self) -> anyhow::Result<T>,
    ) -> anyhow::Result<T> {
        self.host.progress.step_started(name);
        self.host.log.note(&format!("==> {name}"));
        let t0 = Instant::now();
        let result = f(self);
        let took = t0.elapsed();
        let outcome = if result.is_ok() {
            StepOutcome::Done
        } else {
            StepOutcome::Failed
        };
        self.host.progress.step_finished(name, took, outcome);
        if self.kind == Kind::Stack {
            self.host.state.state.steps.insert(
                name.to_owned(),
                crate::state::StepRecord {
                    fingerprint: String::new(),
                    seconds: took.as_secs_f64(),
                    ok: outcome == StepOutcome::Done,
                },
            );
        }
        self.host
            .log
            .note(&format!("<== {name} ({:.3} s)", took.as_secs_f64()));
        self.timings.push((name.to_owned(), took, outcome));
        result
    }

    fn log_path(&self) -> String {
        self.host
            .log
            .path()
            .map_or_else(|| "(no log yet)".to_owned(), |p| p.display().to_string())
    }
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

/// stack, unstack or clean.
fn execute(top_dir: &Path, kind: Kind, progress: Arc<dyn Progress>) -> anyhow::Result<ExitCode> {
    crate::system::interrupt::install();
    let _lock = RunLock::acquire(top_dir)?;
    let mut run = Run::start(top_dir, kind, progress)?;
    run.previous = run.host.state.state.last_run.clone();
    run.host.state.state.last_run = Some(crate::state::RunRecord {
        command: kind.name().into(),
        outcome: "running".into(),
        pid: std::process::id(),
        started: chrono::Local::now().to_rfc3339(),
    });
    run.host.state.state.hooks.clear();
    let result = steps::run_all(&mut run);
    let outcome = if result.is_ok() { "ok" } else { "failed" };
    // Only a stack that ended well vouches for the cloud it left.
    match (&run.fingerprint, kind, result.is_ok()) {
        (Some(fp), Kind::Stack, true) => {
            run.host
                .state
                .state
                .facts
                .insert(resume::FACT.into(), fp.clone());
        }
        _ => {
            run.host.state.state.facts.remove(resume::FACT);
        }
    }
    if let Some(last) = run.host.state.state.last_run.as_mut() {
        last.outcome = outcome.into();
    }
    if kind == Kind::Clean && result.is_ok() {
        // clean removes what stack created; the state has nothing left to say.
        let _ = fs::remove_file(&run.host.state.path);
    } else {
        run.host.save_state()?;
    }
    if crate::system::interrupt::requested() {
        // The state is saved: what was started is known to unstack.
        let err = result
            .err()
            .unwrap_or_else(|| anyhow::anyhow!("interrupted"));
        let mut text = crate::ui::report::render_error(&err);
        let _ = writeln!(
            text,
            "hint: {} was interrupted; ./unstack.sh stops what was started, ./stack.sh starts over",
            kind.name()
        );
        eprint!("{text}");
        return Ok(ExitCode::from(130));
    }
    result?;
    steps::print_summary(&run);
    Ok(ExitCode::SUCCESS)
}

/// `devstack plan`: what stack would do, without doing it.
fn plan(top_dir: &Path) -> anyhow::Result<ExitCode> {
    // The plan is the output: progress lines would only get in its way.
    let quiet: Arc<dyn Progress> = Arc::new(TermProgress::new(Verbosity::Quiet));
    let mut run = Run::start(top_dir, Kind::Plan, quiet)?;
    let text = steps::plan(&mut run)?;
    print!("{text}");
    Ok(ExitCode::SUCCESS)
}

/// Who a hook call goes to.
#[derive(Debug, Clone)]
pub struct HookTarget {
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
pub fn hook_targets(run: &Run, mode: &str, phase: Option<&str>) -> Vec<HookTarget> {
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

/// Runs every target of a hook point.
fn run_hook(run: &mut Run, mode: &str, phase: Option<&str>) -> anyhow::Result<()> {
    let point = phase.map_or_else(|| mode.to_owned(), |p| format!("{mode} {p}"));
    let targets = hook_targets(run, mode, phase);
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
        let result = {
            let (shell, host) = run.shell();
            shell.source_hooks(&batch, host)
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
            run.host.state.state.hooks.push(HookRecord {
                point: point.clone(),
                script: target.display(),
                status: r.status,
                seconds: r.seconds,
            });
            if r.status != 0 {
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
        run.host.state.state.hooks.push(HookRecord {
            point: point.clone(),
            script: target.display(),
            status,
            seconds: 0.0,
        });
        match err {
            err @ ShellError::Died { .. } if run.kind != Kind::Stack => {
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
            headline = format!(
                "{} {} ended the plugin shell at {point}{}",
                target.kind,
                target.name,
                status
                    .map(|s| format!(" (exit status {s})"))
                    .unwrap_or_default()
            );
        }
        ShellError::Timeout { after, .. } => {
            headline = format!(
                "{} {} did not finish within {} s at {point}; it was stopped",
                target.kind,
                target.name,
                after.as_secs()
            );
        }
        other => headline = format!("{} {} failed at {point}: {other}", target.kind, target.name),
    }
    details.push(("log".into(), run.log_path()));
    Report {
        headline,
        details,
        tail,
        hint: Some(match run.kind {
            Kind::Stack => {
                "fix the script and run ./stack.sh again; ./unstack.sh stops what was started"
                    .into()
            }
            _ => "fix the script and run the command again".into(),
        }),
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
        fs::write(&auto, format!("{script}\n"))?;
        source_localrc(run, &auto, "local.conf")?;
    }
    run.localconf = localconf;
    run.source_generated(
        "stackrc.sh",
        &settings::render_defaults(settings::STACKRC_DEFAULTS),
    )?;
    // The shell library's stackrc: DevStack's other globals that plugins read.
    let stackrc = top.join("stackrc");
    if stackrc.is_file() {
        let (shell, host) = run.shell();
        shell.source_global(&stackrc, host)?;
    }
    run.sync_settings()?;
    let negated = crate::config::services::disable_negated(run.host.settings.enabled_services());
    if negated != run.host.settings.enabled_services() {
        run.set_vars(&[("ENABLED_SERVICES".into(), negated)])?;
    }
    Ok(())
}

/// Sources localrc; a failure there is reported against local.conf's own lines.
fn source_localrc(run: &mut Run, file: &Path, shown_as: &str) -> anyhow::Result<()> {
    let result = {
        let (shell, host) = run.shell();
        shell.source_global(file, host)
    };
    match result {
        Ok(_) => Ok(()),
        Err(ShellError::Failed(f)) => {
            let line = if f.file == file.to_string_lossy() {
                f.line
            } else {
                0
            };
            Err(Report {
                headline: format!(
                    "{shown_as}:{line}: `{}` failed with status {}",
                    f.command, f.status
                ),
                details: vec![("while".into(), "evaluating the localrc settings".into())],
                tail: f.tail.clone(),
                hint: Some(format!("fix line {line} of {shown_as}")),
            }
            .into())
        }
        Err(e) => Err(e.into()),
    }
}

/// Discovers extras.d scripts and orders the enabled plugins (fetching them for
/// stack; planning fetches into a cache instead of `$DEST`).
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
        if run.kind == Kind::Plan && !p.dir.exists() {
            p.dir = crate::state::state_dir(&run.host.top_dir)
                .join("plan-cache")
                .join(&p.name);
            let _ = fs::remove_dir_all(&p.dir);
            plugins::fetch(p, false, false, &git)?;
        } else if fetch {
            plugins::fetch(p, reclone, error_on_clone, &git)?;
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

/// lib/-layer defaults of every service, then the hypervisor plugin.
fn lib_defaults(run: &mut Run) -> anyhow::Result<()> {
    let mut defaults: Vec<(&str, &str)> = Vec::new();
    for svc in crate::services::registry() {
        defaults.extend_from_slice(svc.defaults());
    }
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
    run.source_global(&file)?;
    let missing = {
        let (shell, host) = run.shell();
        shell.missing_functions(&plugins::HYPERVISOR_FUNCTIONS, host)?
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
    run.hypervisor = Some(file);
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

/// Merges the `[[PHASE|FILE]]` sections of local.conf into their files.
fn merge_phase(run: &mut Run, phase: Phase) -> anyhow::Result<()> {
    merge_sections(run, phase, None)
}

/// Merges again the `[[PHASE|FILE]]` sections that name `file`: for a service that
/// rebuilds a config file after the phase's merge (nova-cpu.conf is derived from
/// nova.conf when compute starts, as DevStack's start_nova_compute does).
pub fn merge_into(run: &mut Run, phase: Phase, file: &Path) -> anyhow::Result<()> {
    merge_sections(run, phase, Some(file))
}

fn merge_sections(run: &mut Run, phase: Phase, only: Option<&Path>) -> anyhow::Result<()> {
    let Some(lc) = run.localconf.as_ref() else {
        return Ok(());
    };
    let display = "local.conf";
    let mut merged = Vec::new();
    for section in lc.sections_for(phase) {
        let file = expand_file(&section.file, run.host.settings.vars());
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
        // Values expand like DevStack's eval'd iniset lines: `my_ip = $HOST_IP` works.
        let vars = run.host.settings.vars();
        crate::config::localconf::merge_fragment_with(&mut doc, section, display, |v| {
            expand_file(v, vars)
        })?;
        doc.save(&path)?;
        merged.push(file);
    }
    for file in merged {
        run.host
            .log
            .note(&format!("merged local.conf sections into {file}"));
    }
    Ok(())
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
    }
}
