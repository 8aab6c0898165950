//! The steps of each command, in order, as data: `stack` runs them, `plan` prints them.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::Path;
use std::time::Instant;

use super::{
    Run, hook_targets, lib_defaults, load_hypervisor, load_settings, merge_phase, prepare_plugins,
    run_hook, verify_disabled,
};
use crate::config::localconf::Phase;
use crate::context::ServiceCtx;
use crate::services::{Layer, Service, ServiceError};
use crate::state::{Backend, ProcessKind};
use crate::ui::format_duration;
use crate::ui::report::Report;

/// Which command a run is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Stack,
    Unstack { all: bool },
    Clean,
    Plan,
}

impl Kind {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::Stack => "stack",
            Self::Unstack { .. } => "unstack",
            Self::Clean => "clean",
            Self::Plan => "plan",
        }
    }
}

/// One step of a command.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Step {
    /// Early defaults, localrc, stackrc defaults.
    Settings,
    /// extras.d discovery; clone (stack) and order external plugins.
    Plugins,
    Hook(&'static str, Option<&'static str>),
    /// Services' lib/ defaults, then the hypervisor plugin.
    LibDefaults,
    /// After the `source` hook: DISABLED_SERVICES verified.
    VerifyServices,
    /// Passwords the user did not set: generated once, kept 0600.
    Passwords,
    /// One batched package install for every enabled service.
    Prerequisites,
    /// Database, message queue, cache: installed, configured, started, answering.
    Layer1,
    /// OpenStack services installed and configured (hypervisor install/configure).
    Install,
    /// Databases synced, keystone bootstrapped, accounts created.
    Init,
    Merge(Phase),
    /// OpenStack services started and waited for.
    Start,
    /// Test suites configured from the running cloud (tempest.conf).
    TestConfig,
    /// Services stopped (reverse order), then every process the state records.
    Stop,
    /// Services cleaned, generated files and data removed.
    Clean,
}

const STACK: &[Step] = &[
    Step::Settings,
    Step::Plugins,
    Step::Hook("override_defaults", None),
    Step::LibDefaults,
    Step::Hook("source", None),
    Step::VerifyServices,
    Step::Passwords,
    Step::Prerequisites,
    Step::Hook("stack", Some("pre-install")),
    Step::Layer1,
    Step::Install,
    Step::Hook("stack", Some("install")),
    Step::Init,
    Step::Hook("stack", Some("post-config")),
    Step::Merge(Phase::PostConfig),
    Step::Start,
    Step::Merge(Phase::Extra),
    Step::Hook("stack", Some("extra")),
    Step::Merge(Phase::PostExtra),
    Step::TestConfig,
    Step::Hook("stack", Some("test-config")),
    Step::Merge(Phase::TestConfig),
];

const UNSTACK: &[Step] = &[
    Step::Settings,
    Step::Plugins,
    Step::Hook("override_defaults", None),
    Step::LibDefaults,
    Step::Hook("source", None),
    Step::Passwords,
    Step::Hook("unstack", None),
    Step::Stop,
];

const CLEAN: &[Step] = &[
    Step::Settings,
    Step::Plugins,
    Step::Hook("override_defaults", None),
    Step::LibDefaults,
    Step::Hook("source", None),
    Step::Passwords,
    Step::Hook("unstack", None),
    Step::Stop,
    Step::Hook("clean", None),
    Step::Clean,
];

pub(super) fn steps(kind: Kind) -> &'static [Step] {
    match kind {
        Kind::Stack | Kind::Plan => STACK,
        Kind::Unstack { .. } => UNSTACK,
        Kind::Clean => CLEAN,
    }
}

impl Step {
    pub(crate) fn title(self) -> String {
        match self {
            Self::Settings => "settings (local.conf, defaults)".into(),
            Self::Plugins => "plugins (extras.d, enable_plugin)".into(),
            Self::Hook(mode, Some(phase)) => format!("hook {mode} {phase}"),
            Self::Hook(mode, None) => format!("hook {mode}"),
            Self::LibDefaults => "service defaults, hypervisor plugin".into(),
            Self::VerifyServices => "verify disabled services".into(),
            Self::Passwords => "passwords".into(),
            Self::Prerequisites => "system prerequisites (packages)".into(),
            Self::Layer1 => "layer 1: database, message queue, cache".into(),
            Self::Install => "install and configure services".into(),
            Self::Init => "initialise services (databases, keystone, accounts)".into(),
            Self::Merge(phase) => format!("merge local.conf [[{}|...]]", phase.as_str()),
            Self::Start => "start services".into(),
            Self::TestConfig => "configure tests (tempest)".into(),
            Self::Stop => "stop services and processes".into(),
            Self::Clean => "clean services, data and logs".into(),
        }
    }
}

/// Runs every step of the run's command.
pub(super) fn run_all(run: &mut Run) -> anyhow::Result<()> {
    let strict = run.kind == super::Kind::Stack;
    {
        let (shell, mut host) = run.shell();
        shell.set_strict(strict, &mut host)?;
    }
    let all_steps = steps(run.kind);
    let mut resume_at = None;
    for (index, &step) in all_steps.iter().enumerate() {
        if run.kind == Kind::Stack && step == Step::Prerequisites {
            // The settings are final for every later step's own inputs: from here,
            // a step done by a failed stack with the same inputs is reused.
            let (fingerprint, inputs) = super::resume::fingerprint(run);
            if !run.from_scratch {
                let titles: Vec<String> = all_steps.iter().map(|s| s.title()).collect();
                resume_at = super::resume::resume_point(run, &fingerprint, &titles, index);
                // A re-stack of an unchanged, running cloud: no later step's inputs
                // changed, so none runs again (hooks included: they run again from
                // the first step whose inputs changed).
                let previous = run.previous.clone();
                let why =
                    super::resume::why_not_unchanged(run, previous.as_ref(), &fingerprint, &inputs);
                run.unchanged = why.is_none();
                let incremental = why
                    .as_ref()
                    .and_then(|_| super::resume::incremental_from(run, &inputs));
                match (why, incremental) {
                    (None, _) => run.host.progress.info(
                        "nothing changed since the last stack and every process runs: \
                         nothing to do (stack --from-scratch runs every step)",
                    ),
                    (Some(_), Some(phase)) => {
                        let at = all_steps
                            .iter()
                            .position(|s| *s == Step::Merge(phase))
                            .unwrap_or(index);
                        run.host.progress.info(&format!(
                            "only local.conf's [[{phase}|...]] sections (or later phases') changed: \
                             the stack resumes at '{}'; a service restarts only when its \
                             command or config files changed (stack --from-scratch runs every step)",
                            all_steps[at].title()
                        ));
                        run.incremental_at = Some(at);
                        run.host.keep_unchanged_processes = true;
                    }
                    (Some(why), None) if resume_at.is_none() && run.previous.is_some() => {
                        run.host.progress.info(&format!("every step runs: {why}"));
                    }
                    (Some(_), None) => {}
                }
            }
            if let Some(at) = resume_at {
                let title = all_steps[at].title();
                let reused = at - index;
                run.host.progress.info(&format!(
                    "resuming the failed stack at '{title}' ({reused} steps reused; --from-scratch runs them all)"
                ));
                run.resumed = Some((title, reused));
            }
            run.step_fingerprint = Some(fingerprint.clone());
            run.fingerprint = Some((fingerprint, inputs));
        }
        if crate::system::interrupt::requested() {
            return Err(Report {
                headline: format!(
                    "{} was interrupted before '{}'",
                    run.kind.name(),
                    step.title()
                ),
                details: Vec::new(),
                tail: Vec::new(),
                hint: None,
            }
            .into());
        }
        if resume_at.is_some_and(|at| index < at) {
            run.skipped(&step.title(), "reused from the failed stack");
            continue;
        }
        if run.degraded
            && matches!(
                step,
                Step::Hook(..) | Step::LibDefaults | Step::VerifyServices | Step::Passwords
            )
        {
            run.skipped(&step.title(), "the settings could not be read");
            continue;
        }
        if run.incremental_at.is_some_and(|at| index < at) {
            run.skipped_quietly(
                &step.title(),
                "its inputs did not change since the last stack",
            );
            continue;
        }
        if run.unchanged {
            run.skipped_quietly(
                &step.title(),
                "nothing changed since the last stack and every process runs",
            );
            continue;
        }
        // Teardown goes on past a failing step: one broken piece must not leave the
        // rest running. The first error is reported at the end.
        let result = run.timed(&step.title(), |run| do_step(run, step));
        if let Err(err) = result {
            let locked = matches!(
                err.downcast_ref::<crate::state::StateError>(),
                Some(
                    crate::state::StateError::HostLocked { .. }
                        | crate::state::StateError::OwnedByAnotherTree { .. }
                )
            );
            if strict || locked || crate::system::interrupt::requested() {
                return Err(err);
            }
            // Teardown is never blocked by the configuration: what could not be
            // read is said, and the rest goes on from the state.
            let text = crate::ui::report::render_error(&err);
            match step {
                Step::Settings => degrade(run, text.trim_end())?,
                Step::Plugins => {
                    run.host.warn(&format!(
                        "{}\n{} goes on without the external plugins' hooks (extras.d still run)",
                        text.trim_end(),
                        run.kind.name()
                    ));
                    run.plugins.clear();
                }
                _ => run.host.warn(text.trim_end()),
            }
        }
    }
    Ok(())
}

/// The state fact holding the stack's final settings, minus secrets: what a
/// teardown uses when local.conf no longer reads.
pub(super) const TEARDOWN_SETTINGS: &str = "teardown-settings";

/// Keeps the settings teardown needs (paths, services; never a secret).
fn remember_settings(run: &mut Run) {
    let keep: BTreeMap<&String, &String> = run
        .host
        .settings
        .vars()
        .iter()
        .filter(|(k, _)| super::restorable(k) && !crate::config::settings::is_secret_name(k))
        .collect();
    if let Ok(text) = serde_json::to_string(&keep) {
        run.host.ledger.set_fact(TEARDOWN_SETTINGS, text);
    }
}

/// unstack or clean whose settings could not be read: the settings the last stack
/// kept in the state stand in, hooks are skipped, and what the state records (or,
/// when the state was set aside, the pidfiles beside the logs) is stopped.
fn degrade(run: &mut Run, why: &str) -> anyhow::Result<()> {
    run.degraded = true;
    let kept: Option<BTreeMap<String, String>> = run
        .host
        .ledger
        .fact(TEARDOWN_SETTINGS)
        .and_then(|t| serde_json::from_str(t).ok());
    let source = if let Some(vars) = kept {
        run.host.settings = crate::config::settings::Settings::new(vars);
        "the settings the last stack kept in the state"
    } else {
        "the state's records only (no settings were kept)"
    };
    run.host.warn(&format!(
        "{why}\n{} goes on from {source}: hooks are skipped; every process the state records is stopped",
        run.kind.name()
    ));
    // Another run on the same directories: tearing down under it is the race the
    // lock exists for.
    run.lock_shared_dirs()?;
    let logdir = run.host.settings.path("LOGDIR");
    if !logdir.as_os_str().is_empty() && logdir.is_dir() && run.host.log.path().is_none() {
        let name = format!("{}.sh", run.kind.name());
        if let Err(e) = run.host.log.open(&logdir, &name) {
            run.host
                .warn(&format!("cannot open the log in {}: {e}", logdir.display()));
        }
    }
    Ok(())
}

/// After the state was set aside (unreadable), teardown: the processes the
/// pidfiles name are recorded again (so they are stopped), and what hooks left
/// running is found by its environment.
fn recover_from_pidfiles(run: &mut Run) {
    record_from_pidfiles(run, "");
    stop_hook_orphans(run);
}

/// The own supervisor's pidfiles (`NAME.pid` beside the logs in LOGDIR) whose
/// process still runs become records again: teardown stops them, and a stack
/// replaces them instead of starting a second copy. Said with `what_next`.
fn record_from_pidfiles(run: &mut Run, what_next: &str) {
    use crate::state::{Backend, ProcessRecord};
    let logdir = run.host.settings.path("LOGDIR");
    let Ok(entries) = fs_err::read_dir(&logdir) else {
        return;
    };
    let daemons: Vec<&str> = run
        .registry
        .all()
        .filter(|s| s.layer() == Layer::Infra)
        .flat_map(|s| s.descriptor().processes.iter().copied())
        .collect();
    let mut found = Vec::new();
    for entry in entries.filter_map(Result::ok) {
        let path = entry.path();
        let (Some(name), Some("pid")) = (
            path.file_stem().and_then(|n| n.to_str()),
            path.extension().and_then(|e| e.to_str()),
        ) else {
            continue;
        };
        let Some(pid) = fs_err::read_to_string(&path)
            .ok()
            .and_then(|t| t.trim().parse::<u32>().ok())
        else {
            continue;
        };
        if !crate::system::supervisor::is_group_leader_alive(pid) {
            continue;
        }
        let kind = if daemons.contains(&name) {
            ProcessKind::Daemon
        } else {
            ProcessKind::Service
        };
        if run.host.ledger.process(kind, name).is_some() {
            continue;
        }
        run.host.ledger.record_process(
            kind,
            ProcessRecord {
                name: name.to_owned(),
                backend: Backend::Own,
                pid: Some(pid),
                command: String::new(),
                log: logdir.join(format!("{name}.log")),
                unit: None,
                address: None,
                launch: None,
            },
        );
        found.push(format!("{name} (pid {pid})"));
    }
    if !found.is_empty() {
        run.host.warn(&format!(
            "found from pidfiles in {}: {}{what_next}",
            logdir.display(),
            found.join(", ")
        ));
    }
}

/// Without a state, what hooks of this tree left running is found by its
/// environment (a hook's children inherit TOP_DIR and DEVSTACK_COMMAND from the
/// plugin shell), this run's own shell excepted, and stopped.
fn stop_hook_orphans(run: &mut Run) {
    let top = format!("TOP_DIR={}", run.host.top_dir.display());
    let own_group = run.shell_ref().map(crate::shell::Shell::group);
    let me = std::process::id();
    let Ok(entries) = fs_err::read_dir("/proc") else {
        return;
    };
    let mut found = Vec::new();
    for pid in entries
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().and_then(|s| s.parse::<u32>().ok()))
        .filter(|&pid| pid != me)
    {
        let Ok(env) = fs_err::read(format!("/proc/{pid}/environ")) else {
            continue;
        };
        let mut vars = env.split(|&b| b == 0);
        let ours = vars.clone().any(|kv| kv == top.as_bytes())
            && vars.any(|kv| kv.starts_with(b"DEVSTACK_COMMAND="));
        if !ours {
            continue;
        }
        let group = fs_err::read_to_string(format!("/proc/{pid}/stat"))
            .ok()
            .and_then(|st| {
                st.rsplit(')').next().and_then(|r| {
                    r.split_whitespace()
                        .nth(2)
                        .and_then(|g| g.parse::<u32>().ok())
                })
            });
        if group.is_some() && group == own_group {
            continue;
        }
        found.push(pid);
    }
    if found.is_empty() {
        return;
    }
    for &pid in &found {
        crate::system::supervisor::stop_pid_group(pid, std::time::Duration::from_secs(2));
        if let Ok(raw) = i32::try_from(pid) {
            let _ = nix::sys::signal::kill(
                nix::unistd::Pid::from_raw(raw),
                nix::sys::signal::Signal::SIGKILL,
            );
        }
    }
    run.host.warn(&format!(
        "stopped processes earlier hooks of this tree left running: {}",
        found
            .iter()
            .map(ToString::to_string)
            .collect::<Vec<_>>()
            .join(", ")
    ));
}

fn do_step(run: &mut Run, step: Step) -> anyhow::Result<()> {
    match step {
        Step::Settings => {
            load_settings(run)?;
            check_dirs(run)?;
            if run.kind == Kind::Stack {
                check_qemu_reach(run)?;
            }
            run.lock_shared_dirs()?;
            check_dest_owner(run)?;
            if run.kind == Kind::Stack {
                create_run_dirs(run)?;
                let dest = run.host.settings.path("DEST");
                if let Err(e) = crate::state::claim_dest(&dest, &run.host.top_dir) {
                    run.host
                        .warn(&format!("could not record this tree as DEST's owner: {e}"));
                }
            }
            let logdir = run.host.settings.path("LOGDIR");
            let name = format!("{}.sh", run.kind.name());
            // unstack and clean on a tree that never stacked must leave nothing behind.
            if run.kind != Kind::Stack && !logdir.is_dir() {
                return Ok(());
            }
            if let Err(e) = run.host.log.open(&logdir, &name) {
                run.host
                    .warn(&format!("cannot open the log in {}: {e}", logdir.display()));
            }
            if run.kind == Kind::Stack && run.state_set_aside.is_some() {
                // Before anything starts: what the lost state knew still runs, and
                // a second copy of it would survive every teardown.
                record_from_pidfiles(
                    run,
                    "; still running from before the state was lost: this stack replaces them",
                );
            }
            Ok(())
        }
        Step::Plugins => {
            if run.kind == Kind::Stack {
                general_prerequisites(run)?;
            }
            prepare_plugins(run, run.kind == Kind::Stack)
        }
        Step::Hook(mode, phase) => {
            if mode == "stack" && matches!(phase, Some("post-config" | "extra" | "test-config")) {
                export_hook_cloud(run)?;
            }
            run_hook(run, mode, phase)?;
            if mode == "source" {
                // DevStack's stack.sh: the global venv first on PATH before the
                // pre-install phase; here for the teardown's hooks too.
                run.source_generated("venv-path.sh", "setup_devstack_virtualenv\n")?;
            }
            if matches!(mode, "override_defaults" | "source") {
                run.sync_settings()?;
                run.install_redactor();
            } else if phase == Some("post-config") {
                // DevStack writes neutron's service_plugins after post-config:
                // plugins may add theirs up to then.
                run.sync_vars(crate::services::neutron::LATE_VARS)?;
            }
            if mode == "source" && run.kind == Kind::Stack {
                remember_settings(run);
            }
            Ok(())
        }
        Step::LibDefaults => {
            lib_defaults(run)?;
            load_hypervisor(run)
        }
        Step::VerifyServices => {
            verify_disabled(run)?;
            if let Some(problem) = compute_node_problem(run) {
                return Err(Report {
                    headline: problem,
                    details: Vec::new(),
                    tail: Vec::new(),
                    hint: Some("devstack plan shows where a compute node's services point".into()),
                }
                .into());
            }
            // Again: a plugin's settings may have chosen libvirt or moved DATA_DIR.
            check_qemu_reach(run)
        }
        Step::Passwords => passwords(run),
        Step::Prerequisites => prerequisites(run),
        Step::Layer1 => {
            if run
                .registry
                .enabled(&run.host.settings)
                .any(|s| s.layer() == Layer::Infra)
            {
                run.lock_host_daemons()?;
            }
            for_services(run, Layer::Infra, |s, cx| {
                s.install(cx)?;
                s.configure(cx)?;
                s.init(cx)?;
                s.start(cx)
            })
        }
        Step::Install => {
            python_install(run)?;
            for_services(run, Layer::OpenStack, |s, cx| {
                s.install(cx)?;
                s.configure(cx)?;
                plugin_rpc_backend(s, cx)
            })
        }
        Step::Init => {
            for_services(run, Layer::OpenStack, |s, cx| s.before_sync(cx))?;
            sync_databases(run)?;
            for_services(run, Layer::OpenStack, |s, cx| s.init(cx))?;
            create_accounts(run)?;
            write_hook_cloud(run)
        }
        Step::Start => start_services(run),
        Step::TestConfig => for_services(run, Layer::OpenStack, |s, cx| s.test_config(cx)),
        Step::Merge(phase) => merge_phase(run, phase),
        Step::Stop => {
            if run.state_set_aside.is_some() {
                recover_from_pidfiles(run);
            }
            super::stop_background(&mut run.host);
            let all = matches!(run.kind, Kind::Unstack { all: true } | Kind::Clean);
            if all && !run.host.ledger.processes(ProcessKind::Daemon).is_empty() {
                run.lock_host_daemons()?;
            }
            stop_everything(run)
        }
        Step::Clean => {
            clean_everything(run);
            Ok(())
        }
    }
}

/// DevStack's core services call `iniset_rpc_backend` for their config files, so a
/// messaging plugin that redefines it (or `get_transport_url`) decides their
/// transport: the shell is asked, after the service wrote its config, to call the
/// plugin's functions when a plugin redefined them (it does nothing otherwise).
fn plugin_rpc_backend(svc: &dyn Service, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
    let Some((package, var, section)) = svc.descriptor().rpc_backend else {
        return Ok(());
    };
    let file = cx.settings().str(var).to_owned();
    match cx.call_function(
        crate::services::rabbit::PLUGIN_RPC_BACKEND,
        &[package, &file, section],
    ) {
        Ok(0) => Ok(()),
        Ok(status) => Err(ServiceError::failed(
            svc.name(),
            format!("the messaging plugin's iniset_rpc_backend {package} {file} returned {status}"),
        )),
        Err(source) => Err(ServiceError::Shell {
            service: svc.name().to_owned(),
            source,
        }),
    }
}

/// DEST, DATA_DIR, LOGDIR and SERVICE_DIR are used by Rust and by bash alike: a
/// relative path (each resolves it against its own working directory) or one that
/// is not UTF-8 (read back with a replacement character) would send them to
/// different directories. Refused, with the variable and its value.
pub(super) fn check_dirs(run: &Run) -> anyhow::Result<()> {
    for var in ["DEST", "DATA_DIR", "LOGDIR", "SERVICE_DIR"] {
        let value = run.host.settings.str(var);
        let problem = if value.contains('\u{fffd}') {
            "is not valid UTF-8"
        } else if !value.is_empty() && !value.starts_with('/') {
            "is a relative path"
        } else {
            continue;
        };
        return Err(Report {
            headline: format!("{var}={value} {problem}"),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some(format!(
                "set {var} to an absolute path of plain UTF-8 characters in localrc (e.g. {var}=/opt/stack)"
            )),
        }
        .into());
    }
    Ok(())
}

/// With nova-compute on libvirt, every directory on the way to nova's instances
/// must be enterable by QEMU's user: otherwise the stack would complete and every
/// server fail to open its disk. Refused before anything is installed, naming the
/// directory and the fix.
fn check_qemu_reach(run: &Run) -> anyhow::Result<()> {
    use crate::services::libvirt;
    let s = &run.host.settings;
    if s.str("VIRT_DRIVER") != "libvirt" || !s.is_enabled(&["n-cpu"]) {
        return Ok(());
    }
    let Some(found) = libvirt::unreachable_ancestor(&libvirt::qemu_target(s)) else {
        return Ok(());
    };
    Err(Report {
        headline: found.headline(),
        details: vec![("DEST".into(), s.str("DEST").to_owned())],
        tail: Vec::new(),
        hint: Some(found.hint()),
    }
    .into())
}

/// Creates DEST, DATA_DIR, LOGDIR and SERVICE_DIR; the ones that did not exist are
/// recorded, so clean removes them (DEST keeps source checkouts: never removed).
/// A DEST another tree stacked into (and has not cleaned) is refused, unless
/// DEVSTACK_TAKEOVER says to take it over: one tree's clean would remove the data
/// and logs under the other's services.
fn check_dest_owner(run: &mut Run) -> anyhow::Result<()> {
    let dest = run.host.settings.path("DEST");
    if dest.as_os_str().is_empty() {
        return Ok(());
    }
    let take_over = std::env::var_os(crate::env_vars::DEVSTACK_TAKEOVER)
        .is_some_and(|v| !v.is_empty() && v != "0");
    if let Some(from) = crate::state::check_dest_owner(&dest, &run.host.top_dir, take_over)? {
        run.host.warn(&format!(
            "DEST={} is taken over from the tree at {} (DEVSTACK_TAKEOVER)",
            dest.display(),
            from.display()
        ));
        // This tree's now (a clean that took it over releases it in the end).
        if let Err(e) = crate::state::claim_dest(&dest, &run.host.top_dir) {
            run.host
                .warn(&format!("could not record this tree as DEST's owner: {e}"));
        }
    }
    Ok(())
}

fn create_run_dirs(run: &mut Run) -> anyhow::Result<()> {
    for var in ["DEST", "DATA_DIR", "LOGDIR", "SERVICE_DIR"] {
        let dir = run.host.settings.path(var);
        if dir.as_os_str().is_empty() || dir.exists() {
            continue;
        }
        fs_err::create_dir_all(&dir)?;
        if var != "DEST" {
            run.host.ledger.record_dir(&dir);
        }
    }
    Ok(())
}

/// Runs `f` for each enabled service of `layer`, in the registry's order.
/// The start step: every service started in order, the readiness waits they left
/// for the end (nova's cell mapping, the OVN agent, cinder's pools) run after the
/// last one starts, so they overlap the later services' start.
fn start_services(run: &mut Run) -> anyhow::Result<()> {
    run.host.deferred_waits = Some(Vec::new());
    let started = for_services(run, Layer::OpenStack, |s, cx| s.start(cx));
    let waits = run.host.deferred_waits.take().unwrap_or_default();
    started?;
    for (service, wait) in waits {
        if let Err(e) = wait(&mut run.host) {
            return Err(match e.downcast::<ServiceError>() {
                Ok(e) => service_report(run, &service, *e),
                Err(e) => anyhow::anyhow!("{service}: {e}"),
            });
        }
    }
    Ok(())
}

fn for_services(
    run: &mut Run,
    layer: Layer,
    f: impl Fn(&dyn Service, &mut ServiceCtx<'_>) -> Result<(), ServiceError>,
) -> anyhow::Result<()> {
    let services: Vec<&'static dyn Service> = run
        .registry
        .enabled(&run.host.settings)
        .filter(|s| s.layer() == layer)
        .collect();
    for svc in services {
        let t0 = Instant::now();
        tracing::debug!(service = svc.name(), "service step");
        run.host.progress.sub_task(svc.name());
        run.service_ctx(|cx| f(svc, cx))
            .map_err(|e| service_report(run, svc.name(), e))?;
        run.host.note(&format!(
            "{}: {:.3} s",
            svc.name(),
            t0.elapsed().as_secs_f64()
        ));
    }
    Ok(())
}

/// Fills every password variable the user left unset: from the kept file, else a new
/// one (kept, for stack only; unstack and clean only read). Then the redactor learns
/// them.
fn passwords(run: &mut Run) -> anyhow::Result<()> {
    use crate::config::passwords::{file, generate, load, save};
    let path = file(&run.host.settings.path("DATA_DIR"));
    let mut kept = load(&path);
    let mut assign = Vec::new();
    let mut changed = false;
    for name in &run.registry.secrets() {
        if !run.host.settings.str(name).is_empty() {
            continue;
        }
        // DevStack reads RABBIT_PASSWORD only with rabbit enabled: without it (and
        // without a remote broker's password), no service gets a rabbit transport.
        if *name == "RABBIT_PASSWORD"
            && !run
                .host
                .settings
                .is_enabled(&[crate::services::rabbit::NAME])
        {
            continue;
        }
        let value = if let Some(v) = kept.get(*name) {
            v.clone()
        } else {
            let v = generate();
            kept.insert((*name).to_owned(), v.clone());
            changed = true;
            v
        };
        assign.push(((*name).to_owned(), value));
    }
    if changed && run.kind == Kind::Stack {
        save(&path, &kept)?;
    }
    // The redactor learns them before the shell does: a `set -x` left on by
    // localrc or a hook would trace the assignment.
    run.host
        .early_secrets
        .extend(assign.iter().map(|(_, v)| v.clone()));
    run.install_redactor();
    if !assign.is_empty() {
        run.set_vars(&assign)?;
    }
    run.install_redactor();
    Ok(())
}

/// The prerequisite step: every enabled service's packages and every plugin's
/// `devstack/files/debs/NAME`, in one apt-get install.
fn prerequisites(run: &mut Run) -> anyhow::Result<()> {
    use crate::system::packages;
    let mut wanted: Vec<String> = packages::BUILD.iter().map(|p| (*p).to_owned()).collect();
    wanted.extend(run.registry.packages(&run.host.settings));
    for plugin in run.plugins() {
        wanted.extend(packages::read_list(
            &plugin.dir.join("devstack/files/debs").join(&plugin.name),
        )?);
    }
    install_packages(run, &wanted)?;
    Ok(())
}

/// DevStack's general packages, before any plugin file is read: plugins call
/// uuidgen and friends in their `devstack/settings`.
fn general_prerequisites(run: &mut Run) -> anyhow::Result<()> {
    use crate::system::packages;
    let wanted: Vec<String> = packages::GENERAL.iter().map(|p| (*p).to_owned()).collect();
    install_packages(run, &wanted)
        .map_err(|e| anyhow::Error::new(e).context("installing DevStack's general prerequisites"))
}

/// Installs what is missing of `wanted` (the state records it either way) and says
/// what was installed.
fn install_packages(
    run: &mut Run,
    wanted: &[String],
) -> Result<(), crate::system::packages::PackageError> {
    let installed = crate::system::packages::install(&mut run.host.machine(), wanted);
    run.host.checkpoint();
    let installed = installed?;
    if !installed.is_empty() {
        run.host
            .note(&format!("installed: {}", installed.join(" ")));
    }
    Ok(())
}

/// The one batched Python install for every enabled service's projects (skipped
/// when the venv already holds exactly that set).
fn python_install(run: &mut Run) -> anyhow::Result<()> {
    use crate::system::python;
    let projects = run.registry.python_projects(&run.host.settings);
    if projects.is_empty() {
        return Ok(());
    }
    let reqs = python::requirements(&run.host.settings, &projects, &[]);
    let result = python::install(&mut run.host.machine(), &reqs, true);
    run.host.checkpoint();
    result.map_err(|e| {
        let err = match e {
            python::PythonError::Process { what, source } => ServiceError::Process {
                service: "python".into(),
                what,
                source,
            },
            other => ServiceError::caused("python", "installing the services", other),
        };
        service_report(run, "python", err)
    })
}

/// Recreates every enabled service's databases, then runs their sync commands, the
/// services concurrently (they are independent): a stack pays for the longest, not
/// the sum.
fn sync_databases(run: &mut Run) -> anyhow::Result<()> {
    let jobs = run.registry.db_jobs(&run.host);
    if jobs.is_empty() {
        return Ok(());
    }
    let t0 = Instant::now();
    let mut names = Vec::new();
    for job in &jobs {
        for db in job.databases {
            crate::services::database::recreate_database(&mut run.host, db)
                .map_err(|e| service_report(run, job.service, e))?;
        }
        names.push(job.service);
    }
    let parallel: Vec<(String, Vec<crate::system::process::Cmd>)> = jobs
        .into_iter()
        .map(|j| (j.service.to_owned(), j.cmds))
        .collect();
    for (name, _) in &parallel {
        run.host
            .progress
            .job_started(&format!("{name}: database sync"));
    }
    let synced = crate::services::oslo::run_parallel(&parallel);
    for (name, _) in &parallel {
        run.host
            .progress
            .job_finished(&format!("{name}: database sync"));
    }
    synced.map_err(|e| service_report(run, "database sync", e))?;
    run.host.note(&format!(
        "databases of {} synced in {:.1} s",
        names.join(", "),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// DevStack's accounts, services and endpoints of every enabled service, through
/// keystone's REST API, once keystone answers.
fn create_accounts(run: &mut Run) -> anyhow::Result<()> {
    let t0 = Instant::now();
    let catalog = run.registry.catalog(&run.host.settings);
    let report = crate::calls::create_for_enabled(&mut run.host, &catalog).map_err(|e| {
        service_report(
            run,
            "keystone",
            ServiceError::caused("keystone", "creating accounts", e),
        )
    })?;
    if report.services.is_empty() {
        return Ok(());
    }
    run.host.note(&report.summary());
    run.host.note(&format!(
        "keystone accounts, services and endpoints: {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

/// DevStack's stack.sh writes clouds.yaml once keystone answers and exports
/// `OS_CLOUD=devstack-admin` (unless set) for everything after: hooks from post-config
/// on run `openstack ...` bare.
fn write_hook_cloud(run: &mut Run) -> anyhow::Result<()> {
    use crate::services::credentials;
    if !run
        .host
        .settings
        .is_enabled(credentials::DESCRIPTOR.enabled_by)
    {
        return Ok(());
    }
    credentials::write_clouds(&mut run.host).map_err(|e| service_report(run, "keystone", e))?;
    run.host.checkpoint();
    export_hook_cloud(run)
}

/// `OS_CLOUD` for the hooks of a stack whose keystone runs (again before each later
/// hook point: a resumed stack may have skipped the step that wrote clouds.yaml).
fn export_hook_cloud(run: &mut Run) -> anyhow::Result<()> {
    use crate::services::credentials;
    if !run
        .host
        .settings
        .is_enabled(credentials::DESCRIPTOR.enabled_by)
        || !Path::new(credentials::CLOUDS_YAML).is_file()
    {
        return Ok(());
    }
    run.source_generated(
        "os-cloud.sh",
        &format!(
            "export OS_CLOUD=\"${{OS_CLOUD:-{}}}\"\n",
            credentials::HOOK_CLOUD
        ),
    )
}

fn service_report(run: &Run, service: &str, err: ServiceError) -> anyhow::Error {
    let tail = err.tail().to_vec();
    let mut details = vec![("service".to_owned(), service.to_owned())];
    if let ServiceError::NotReady { log: Some(log), .. } = &err {
        details.push(("service log".into(), log.display().to_string()));
    }
    details.push(("log".into(), run.log_path()));
    let headline = err.to_string();
    anyhow::Error::new(err).context(Report {
        headline,
        details,
        tail,
        hint: None,
    })
}

/// unstack: services in reverse order (layer 1 only with --all), then every process
/// still recorded in the state (a plugin's run_process ones included).
fn stop_everything(run: &mut Run) -> anyhow::Result<()> {
    let all = matches!(run.kind, Kind::Unstack { all: true } | Kind::Clean);
    let mut first_err = None;
    let services: Vec<&'static dyn Service> = run.registry.all().rev().collect();
    for svc in services {
        if svc.layer() == Layer::Infra && !all {
            continue;
        }
        // Stop what is enabled now, and what the state says was started.
        if let Err(e) = run.service_ctx(|cx| svc.stop(cx, all)) {
            let e = service_report(run, svc.name(), e);
            run.host.warn(&format!("{e:#}"));
            first_err.get_or_insert(e);
        }
    }
    stop_recorded_processes(run);
    if run.host.supervisor.backend() == Backend::Systemd {
        if let Err(e) = crate::system::supervisor::stop_all_units() {
            run.host.warn(&format!("systemctl stop devstack@*: {e}"));
        }
    }
    run.host.save_state()?;
    match first_err {
        Some(e) => Err(e),
        None => Ok(()),
    }
}

/// Stops every process the ledger still records (what services did not stop
/// themselves: a plugin's `run_process` ones), and forgets them.
fn stop_recorded_processes(run: &mut Run) {
    for record in run.host.ledger.processes(ProcessKind::Service) {
        match run.host.supervisor.stop(&record) {
            Ok(()) => {
                run.host
                    .ledger
                    .forget_process(ProcessKind::Service, &record.name);
            }
            Err(e) => run.host.warn(&e.to_string()),
        }
    }
}

/// Removes the files and directories the ledger says stack created.
fn remove_created(run: &mut Run) {
    for f in run.host.ledger.files() {
        let _ = fs_err::remove_file(&f);
        run.host.ledger.forget_file(&f);
    }
    for d in run.host.ledger.dirs().into_iter().rev() {
        let _ = fs_err::remove_dir_all(&d);
        run.host.ledger.forget_dir(&d);
    }
}

fn clean_everything(run: &mut Run) {
    let services: Vec<&'static dyn Service> = run.registry.all().rev().collect();
    // Without any settings, a service's clean would act on default paths that may
    // not be this tree's: only what the state recorded is removed.
    let blind = run.degraded && run.host.settings.vars().is_empty();
    // Only the enabled services: a service's clean removes its data directories, and
    // another tree's cloud may own them (the ledger's own records go below anyway).
    let settings = run.host.settings.clone();
    for svc in services
        .into_iter()
        .filter(|s| !blind && s.is_enabled(&settings))
    {
        if let Err(e) = run.service_ctx(|cx| svc.clean(cx)) {
            let e = service_report(run, svc.name(), e);
            run.host.warn(&format!("{e:#}"));
        }
    }
    remove_created(run);
    // DevStack's unit files: ours (run_process) and the plugins' (write_user_unit_file).
    let unit_dir = match run.host.settings.str("SYSTEMD_DIR") {
        "" => std::path::PathBuf::from(crate::system::supervisor::SYSTEMD_DIR),
        dir => std::path::PathBuf::from(dir),
    };
    for removed in crate::system::supervisor::remove_unit_files(&unit_dir) {
        run.host.log.note(&format!("removed {}", removed.display()));
    }
    restore_host_files(run);
    // Files devstack itself generated in the tree.
    let top = run.host.top_dir.clone();
    let _ = fs_err::remove_file(top.join(".localrc.auto"));
    for generated in ["early.sh", "stackrc.sh", "lib-defaults.sh", "plan-cache"] {
        let p = crate::state::state_dir(&top).join(generated);
        let _ = fs_err::remove_file(&p).or_else(|_| fs_err::remove_dir_all(&p));
    }
    // States set aside as unreadable: clean is the end of what they recorded.
    let state_dir = crate::state::state_dir(&top);
    if let Ok(entries) = fs_err::read_dir(&state_dir) {
        for entry in entries.filter_map(Result::ok) {
            if entry
                .file_name()
                .to_string_lossy()
                .starts_with("state.json.corrupt-")
            {
                let _ = fs_err::remove_file(entry.path());
            }
        }
    }
    for p in crate::state::remove_orphan_host_locks() {
        run.host.log.note(&format!(
            "removed the lock of a tree that no longer exists: {}",
            p.display()
        ));
    }
    // What a run killed outright left: a plugin fetch's temporary clone in DEST.
    let dest = run.host.settings.path("DEST");
    if !dest.as_os_str().is_empty() {
        for p in crate::plugins::remove_all_stale_fetches(&dest) {
            run.host
                .log
                .note(&format!("removed an interrupted fetch: {}", p.display()));
        }
    }
}

/// What a stack's hooks created, changed or removed in the host's system directories
/// is undone (after the services' and the hooks' own clean: what they removed is
/// not said twice), each path said in the output and the log.
fn restore_host_files(run: &mut Run) {
    let state_dir = crate::state::state_dir(&run.host.top_dir);
    match crate::system::hostfiles::restore(&state_dir) {
        Ok(done) => {
            if !done.is_empty() {
                run.host
                    .progress
                    .info("what the stack's hooks did to the host's system directories:");
            }
            for d in &done {
                let line = d.line();
                run.host.log.note(&line);
                run.host.progress.info(&format!("  {line}"));
            }
        }
        Err(e) => {
            let cause =
                std::error::Error::source(&e).map_or_else(String::new, |c| format!(": {c}"));
            run.host.warn(&format!(
                "{e}{cause}: what hooks did to the host's system directories is not undone"
            ));
        }
    }
}

/// `plan`: the settings part runs for real (localrc, override-defaults, settings);
/// nothing else does. Prints each step with its hook calls.
pub(super) fn plan(run: &mut Run) -> anyhow::Result<String> {
    let mut out = String::new();
    {
        let (shell, mut host) = run.shell();
        shell.set_strict(true, &mut host)?;
    }
    load_settings(run)?;
    check_dirs(run)?;
    prepare_plugins(run, false)?;
    run_hook(run, "override_defaults", None)?;
    run.sync_settings()?;
    lib_defaults(run)?;
    load_hypervisor(run)?;
    run_hook(run, "source", None)?;
    run.sync_settings()?;
    verify_disabled(run)?;
    check_qemu_reach(run)?;

    let s = &run.host.settings;
    let _ = writeln!(out, "ENABLED_SERVICES={}", s.enabled_services());
    let hv = run
        .host
        .hypervisor
        .as_ref()
        .map(|p| p.display().to_string());
    let _ = writeln!(
        out,
        "VIRT_DRIVER={} (hypervisor plugin: {})",
        s.str("VIRT_DRIVER"),
        hv.as_deref().unwrap_or("none")
    );
    for p in &run.plugins {
        let _ = writeln!(
            out,
            "plugin {} from {} ({}) at {}",
            p.name,
            p.url,
            p.git_ref,
            p.dir.display()
        );
    }
    for line in crate::services::node::plan_lines(&run.registry, &run.host.settings) {
        let _ = writeln!(out, "{line}");
    }
    let mut problems = Vec::new();
    if let Some(problem) = compute_node_problem(run) {
        problems.push(problem);
    }
    let services: Vec<&'static dyn Service> = run.registry.enabled(&run.host.settings).collect();
    let hv_loaded = run.host.hypervisor.is_some();
    let computes = hv_loaded
        && run
            .host
            .settings
            .is_enabled(&["n-cpu", crate::services::hypervisor::PROBE_SERVICE]);
    for (i, &step) in STACK.iter().enumerate() {
        let _ = writeln!(out, "{:>2}. {}", i + 1, step.title());
        match step {
            Step::Hook(mode, phase) => {
                for t in hook_targets(run, mode, phase) {
                    let args = if t.args.is_empty() {
                        String::new()
                    } else {
                        format!(" {}", t.args.join(" "))
                    };
                    let _ = writeln!(
                        out,
                        "      source {}{args}   [{} {}]",
                        t.file.display(),
                        t.kind,
                        t.name
                    );
                }
            }
            Step::Layer1 | Step::Install | Step::Init | Step::Start => {
                let layer = if step == Step::Layer1 {
                    Layer::Infra
                } else {
                    Layer::OpenStack
                };
                for svc in services.iter().filter(|s| s.layer() == layer) {
                    let _ = writeln!(out, "      {}", svc.name());
                }
                if computes && step == Step::Install {
                    let _ = writeln!(
                        out,
                        "      install_nova_hypervisor, configure_nova_hypervisor"
                    );
                }
                if computes && step == Step::Start {
                    let _ = writeln!(out, "      start_nova_hypervisor");
                }
            }
            Step::Merge(phase) => {
                if let Some(lc) = &run.localconf {
                    for section in lc.sections_for(phase) {
                        let line = section.header_line;
                        match super::expand_path(&section.file, run.host.settings.vars()) {
                            Ok(file) => {
                                let _ = writeln!(
                                    out,
                                    "      {} -> {file} (local.conf:{line})",
                                    section.file
                                );
                            }
                            Err(var) => {
                                let problem = format!(
                                    "local.conf:{line}: '{}': ${var} is not set or empty",
                                    section.file
                                );
                                let _ = writeln!(out, "      {} -> ERROR: {problem}", section.file);
                                problems.push(problem);
                            }
                        }
                    }
                }
            }
            _ => {}
        }
    }
    if computes {
        let _ = writeln!(
            out,
            "unstack calls stop_nova_hypervisor; clean calls cleanup_nova_hypervisor"
        );
    }
    if !problems.is_empty() {
        // The plan is still shown: the errors are in their place in it.
        print!("{out}");
        return Err(Report {
            headline: format!("stack would fail: {}", problems.join("; ")),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some("set the variable in localrc, or fix the section header".into()),
        }
        .into());
    }
    Ok(out)
}

/// Why this compute node (DevStack's subnode) cannot reach its controller, when it
/// is one and cannot.
fn compute_node_problem(run: &Run) -> Option<String> {
    use crate::services::node::{Node, compute_problem};
    let s = &run.host.settings;
    (Node::of(&run.registry, s) == Node::Compute)
        .then(|| compute_problem(s))
        .flatten()
}

/// The end of a successful run: time per step, where things are.
pub(super) fn print_summary(run: &Run) {
    let p = &run.host.progress;
    let total = run.started.elapsed();
    let mut text = format!(
        "\n{} completed in {}\n",
        run.kind.name(),
        format_duration(total)
    );
    // Steps that took a blink are counted, not listed: the table is for where time went.
    let mut quick = 0;
    for (name, took, _) in &run.timings {
        if took.as_secs_f64() < 0.1 {
            quick += 1;
            continue;
        }
        let _ = writeln!(text, "  {:>8}  {name}", format_duration(*took));
    }
    if quick > 0 {
        let _ = writeln!(text, "  {:>8}  {quick} more steps under 0.1 s each", "");
    }
    if run.kind == Kind::Stack {
        text.push_str(&crate::timing::table(total));
    }
    if run.kind == Kind::Stack {
        let s = &run.host.settings;
        if s.is_enabled(&["key"]) {
            let _ = writeln!(text, "Keystone: {}/v3", s.str("KEYSTONE_SERVICE_URI"));
            let _ = writeln!(
                text,
                "Credentials: source {}/openrc admin admin",
                run.host.top_dir.display()
            );
        }
        if s.is_enabled(&["horizon"]) {
            let _ = writeln!(text, "{}", crate::services::horizon::summary(s));
        }
        if let Some(line) = crate::services::ovn_public::summary(&run.host) {
            let _ = writeln!(text, "{line}");
        }
    }
    if let Some((at, reused)) = &run.resumed {
        let _ = writeln!(text, "resumed at: {at}, {reused} steps reused");
    }
    if let Some(log) = run.host.log.path() {
        let _ = writeln!(text, "Log: {}", log.display());
    }
    if !run.host.warnings.is_empty() {
        // "see the log" only where one was written.
        let where_ = if run.host.log.path().is_some() {
            "see the log"
        } else {
            "above"
        };
        let _ = writeln!(text, "{} warning(s); {where_}", run.host.warnings.len());
    }
    p.info(text.trim_end());
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};
    use std::sync::Arc;

    use super::*;
    use crate::config::settings::Settings;
    use crate::services::Registry;
    use crate::ui::{Progress, TermProgress, Verbosity};

    /// A DevStack tree of this project's library in a temporary directory, and a
    /// stack run on it with its plugin shell (nothing stacked).
    fn run_on_tree() -> (tempfile::TempDir, Run) {
        let dir = tempfile::tempdir().unwrap();
        let top = dir.path().join("devstack");
        fs_err::create_dir_all(&top).unwrap();
        let project = Path::new(env!("CARGO_MANIFEST_DIR"));
        for name in [
            "functions",
            "functions-common",
            "stackrc",
            "inc",
            "lib",
            "files",
        ] {
            std::os::unix::fs::symlink(project.join(name), top.join(name)).unwrap();
        }
        let quiet: Arc<dyn Progress> = Arc::new(TermProgress::new(Verbosity::Quiet));
        let run = Run::start(&top, Kind::Stack, quiet).unwrap();
        (dir, run)
    }

    /// The config files of the core services that call `iniset_rpc_backend` in
    /// DevStack, each written with our rabbit transport as their configure does.
    fn core_configs(run: &mut Run, dir: &Path) -> Vec<(&'static str, PathBuf)> {
        let mut files = Vec::new();
        for svc in Registry::builtin().all() {
            let Some((package, var, section)) = svc.descriptor().rpc_backend else {
                continue;
            };
            let file = dir.join(format!("{package}.conf"));
            fs_err::write(
                &file,
                format!("[{section}]\ntransport_url = rabbit://stackrabbit:pw@127.0.0.1:5672/\n"),
            )
            .unwrap();
            run.set_vars(&[(var.to_owned(), file.display().to_string())])
                .unwrap();
            files.push((svc.name(), file));
        }
        files
    }

    fn apply_to_core(run: &mut Run) {
        for svc in Registry::builtin().all() {
            run.service_ctx(|cx| plugin_rpc_backend(svc, cx)).unwrap();
        }
    }

    /// A messaging plugin as the AMQP 1.0 one is written: rabbit disabled, its
    /// service enabled, `iniset_rpc_backend` and `get_transport_url` redefined (and
    /// exported) in plugin.sh. Every core service's config gets its transport.
    #[test]
    fn a_messaging_plugins_functions_configure_every_core_service() {
        let (dir, mut run) = run_on_tree();
        let plugin = dir.path().join("plugin.sh");
        fs_err::write(
            &plugin,
            "function _get_amqp1_transport_url {\n\
             \x20   echo \"amqp://$AMQP1_USERNAME:$AMQP1_PASSWORD@$AMQP1_HOST:5672/\"\n\
             }\n\
             function _iniset_amqp1_backend {\n\
             \x20   local package=$1\n\
             \x20   local file=$2\n\
             \x20   local section=${3:-DEFAULT}\n\
             \x20   iniset $file $section transport_url $(get_transport_url)\n\
             \x20   iniset $file oslo_messaging_amqp container_name $package\n\
             }\n\
             if is_service_enabled amqp1; then\n\
             \x20   function iniset_rpc_backend {\n\
             \x20       _iniset_amqp1_backend $@\n\
             \x20   }\n\
             \x20   function get_transport_url {\n\
             \x20       _get_amqp1_transport_url $@\n\
             \x20   }\n\
             \x20   export -f iniset_rpc_backend\n\
             \x20   export -f get_transport_url\n\
             fi\n",
        )
        .unwrap();
        run.set_vars(&[
            ("ENABLED_SERVICES".into(), "key,n-api,amqp1".into()),
            ("AMQP1_USERNAME".into(), "amqpuser".into()),
            ("AMQP1_PASSWORD".into(), "amqppw".into()),
            ("AMQP1_HOST".into(), "127.0.0.1".into()),
        ])
        .unwrap();
        run.source_global(&plugin).unwrap();
        let files = core_configs(&mut run, dir.path());
        assert_eq!(
            files.len(),
            6,
            "keystone, nova, cinder, glance, neutron and its agent (one file): {files:?}"
        );
        apply_to_core(&mut run);
        for (service, file) in files {
            let text = fs_err::read_to_string(&file).unwrap();
            assert!(
                text.contains("transport_url = amqp://amqpuser:amqppw@127.0.0.1:5672/"),
                "{service}: {text}"
            );
            assert!(!text.contains("rabbit://"), "{service}: {text}");
            assert!(text.contains("container_name = "), "{service}: {text}");
            let section = if service == "keystone" {
                "oslo_messaging_notifications"
            } else {
                "DEFAULT"
            };
            assert!(
                crate::ini::IniDoc::parse(&text)
                    .get(section, "transport_url")
                    .is_some_and(|url| url.starts_with("amqp://")),
                "{service} [{section}]: {text}"
            );
        }
    }

    /// Without a plugin's redefinition, the config our services wrote stays as it
    /// is (no shell function rewrites it).
    #[test]
    fn without_a_messaging_plugin_the_core_configs_keep_ours() {
        let (dir, mut run) = run_on_tree();
        let files = core_configs(&mut run, dir.path());
        apply_to_core(&mut run);
        for (service, file) in files {
            let text = fs_err::read_to_string(&file).unwrap();
            assert!(
                text.contains("rabbit://stackrabbit:pw@"),
                "{service}: {text}"
            );
        }
    }

    /// `CINDER_ENABLED_BACKENDS=glusterfs:glusterfs-1,mine:mine-1`: types we do not
    /// build follow DevStack's convention, a backend file sourced from
    /// `$CINDER_BACKENDS` (written as DevStack's are) and a plugin's own
    /// functions; a type that has neither is an error naming it.
    #[test]
    fn backend_types_we_do_not_build_run_devstacks_backend_functions() {
        use crate::services::cinder_backend::{Request, choose};
        let (dir, mut run) = run_on_tree();
        let backends = dir.path().join("cinder_backends");
        fs_err::create_dir_all(&backends).unwrap();
        fs_err::write(
            backends.join("glusterfs"),
            r#"function configure_cinder_backend_glusterfs {
    local be_name=$1
    iniset $CINDER_CONF $be_name volume_backend_name $be_name
    iniset $CINDER_CONF $be_name volume_driver "cinder.volume.drivers.glusterfs.GlusterfsDriver"
}
function init_cinder_backend_glusterfs {
    echo "init $1" >> $CINDER_CONF.steps
}
function cleanup_cinder_backend_glusterfs {
    echo "cleanup $1" >> $CINDER_CONF.steps
}
"#,
        )
        .unwrap();
        let plugin = dir.path().join("plugin.sh");
        fs_err::write(
            &plugin,
            "function configure_cinder_backend_mine {\n    iniset $CINDER_CONF $1 volume_driver mine.Driver\n}\n",
        )
        .unwrap();
        let conf = dir.path().join("cinder.conf");
        fs_err::write(&conf, "[DEFAULT]\nenabled_backends = glusterfs-1,mine-1\n").unwrap();
        run.set_vars(&[
            ("ENABLED_SERVICES".into(), "c-api,c-vol,c-sch".into()),
            ("CINDER_CONF".into(), conf.display().to_string()),
            ("CINDER_BACKENDS".into(), backends.display().to_string()),
        ])
        .unwrap();
        run.source_global(&plugin).unwrap();
        let req = |spec| Request {
            backends: spec,
            ..Request::default()
        };
        let choice = choose(&req("glusterfs:glusterfs-1,mine:mine-1"), None).unwrap();
        for step in ["configure", "init"] {
            run.service_ctx(|cx| crate::services::cinder::shell_backends(cx, step, &choice))
                .unwrap();
        }
        let text = fs_err::read_to_string(&conf).unwrap();
        let section = |name: &str| {
            let doc = crate::ini::IniDoc::parse(&text);
            (
                doc.get(name, "volume_driver").unwrap_or_default(),
                doc.get(name, "volume_backend_name").unwrap_or_default(),
            )
        };
        assert_eq!(
            section("glusterfs-1"),
            (
                "cinder.volume.drivers.glusterfs.GlusterfsDriver".to_owned(),
                "glusterfs-1".to_owned()
            ),
            "{text}"
        );
        assert_eq!(section("mine-1").0, "mine.Driver", "{text}");
        let steps = fs_err::read_to_string(dir.path().join("cinder.conf.steps")).unwrap();
        assert_eq!(steps, "init glusterfs-1\n");

        let typo = choose(&req("glusterfz:g"), None).unwrap();
        let err = run
            .service_ctx(|cx| crate::services::cinder::shell_backends(cx, "configure", &typo))
            .unwrap_err();
        let ServiceError::Shell {
            source: crate::context::PipelineError::Shell(shell),
            ..
        } = &err
        else {
            panic!("{err:#}");
        };
        assert!(
            shell
                .tail()
                .iter()
                .any(|l| l.contains("backend type glusterfz")),
            "{:?}",
            shell.tail()
        );
    }

    /// DevStack's rule when rabbit is disabled and no plugin takes over: no
    /// RABBIT_PASSWORD is read, so no service gets a rabbit transport.
    #[test]
    fn with_rabbit_disabled_and_no_remote_broker_no_transport_is_written() {
        let s = Settings::from_pairs(&[
            ("ENABLED_SERVICES", "key,n-api"),
            ("RABBIT_HOST", "127.0.0.1"),
        ]);
        assert_eq!(crate::services::rabbit::configured_transport_url(&s), None);
        let remote = Settings::from_pairs(&[
            ("ENABLED_SERVICES", "key,n-api"),
            ("RABBIT_HOST", "10.0.0.5"),
            ("RABBIT_PASSWORD", "pw"),
        ]);
        assert!(
            crate::services::rabbit::configured_transport_url(&remote)
                .is_some_and(|url| url.contains("@10.0.0.5:5672/"))
        );
    }
}
