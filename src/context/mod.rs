//! The context a service acts in: what a run knows and holds while it acts on the
//! machine ([`Host`]: the settings as last read back from the shell, the state
//! ledger, the run log, the process factory, the supervisor, the keystone client),
//! and the two things only the pipeline can do ([`PipelineOps`]: call a shell
//! function, merge a local.conf section). Services see a [`ServiceCtx`], nothing of
//! the pipeline, so they can be driven by a fake one in tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::config::localconf::Phase;
use crate::config::settings::Settings;
use crate::openstack::accounts::ServiceAccount;
use crate::openstack::keystone::{Client, KeystoneError};
use crate::plugins::PluginRegistry;
use crate::shell::ShellError;
use crate::state::{Ledger, StateError};
use crate::system::Machine;
use crate::system::process::{Cmd, Spawner};
use crate::system::redact::Redactor;
use crate::system::supervisor::Supervisor;
use crate::ui::Progress;
use crate::ui::log::RunLog;

/// Which command a host serves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mode {
    Stack,
    Unstack,
    /// clean: a database server still running drops what stack created in it
    /// before it stops.
    Clean,
    /// A `devstack __call` outside a run.
    Standalone,
}

pub struct Host {
    pub top_dir: PathBuf,
    pub settings: Settings,
    /// What this and earlier runs created and started.
    pub ledger: Ledger,
    pub log: Arc<RunLog>,
    pub progress: Arc<dyn Progress>,
    /// Child processes: output to the run log, redacted.
    pub spawner: Spawner,
    /// enable_plugin calls seen while localrc ran.
    pub plugins: PluginRegistry,
    /// Which command this is (standalone: a `devstack __call` outside a run).
    pub mode: Mode,
    /// `apt-get update` runs once per run.
    pub apt_updated: bool,
    pub warnings: Vec<String>,
    pub supervisor: Box<dyn Supervisor>,
    /// The keystone client for the run (made on first use, token cached).
    pub keystone: Option<Client>,
    /// The hypervisor plugin file, once sourced (nova calls its five functions).
    pub hypervisor: Option<PathBuf>,
    /// Set when a checkpoint of the ledger failed: said once, not at every save.
    save_failed: bool,
    /// Secrets known before the settings are read back (localrc's literal
    /// passwords, the kept ones): redacted from the first line on.
    pub early_secrets: Vec<String>,
    /// The hook batch being run, by index (for the live progress line).
    pub hook_names: Vec<String>,
    /// A re-stack that kept the settings, packages and databases of the last stack:
    /// a running process whose command and config files are unchanged is kept, not
    /// restarted.
    pub keep_unchanged_processes: bool,
    /// While the start step runs: the readiness waits services left for its end
    /// (the service's name and the wait), so that the services after them start
    /// meanwhile. `None`: a wait runs at once (a hook's `start_neutron`).
    pub deferred_waits: Option<Vec<(String, DeferredWait)>>,
}

/// A readiness wait left for the end of the start step. Its error is a service's
/// (this layer does not know the services' error type; the pipeline does).
pub(crate) type DeferredWait =
    Box<dyn FnOnce(&mut Host) -> Result<(), Box<dyn std::error::Error + Send + Sync>>>;

impl Host {
    pub fn new(
        top_dir: PathBuf,
        ledger: Ledger,
        log: Arc<RunLog>,
        progress: Arc<dyn Progress>,
    ) -> Self {
        Self {
            top_dir,
            settings: Settings::default(),
            ledger,
            spawner: Spawner::new(log.clone()),
            log,
            progress,
            plugins: PluginRegistry::default(),
            mode: Mode::Stack,
            apt_updated: false,
            warnings: Vec::new(),
            supervisor: crate::system::supervisor::detect(),
            keystone: None,
            hypervisor: None,
            save_failed: false,
            early_secrets: Vec::new(),
            hook_names: Vec::new(),
            keep_unchanged_processes: false,
            deferred_waits: None,
        }
    }

    /// A child process whose output goes to the run log, redacted.
    pub fn cmd(&self, program: impl Into<std::ffi::OsString>) -> Cmd {
        self.spawner.cmd(program)
    }

    /// A line of our own in the run log.
    pub fn note(&self, text: &str) {
        self.log.note(text);
    }

    pub fn redactor(&self) -> &Redactor {
        self.spawner.redactor()
    }

    /// Saves the ledger; the error is the caller's (the end of a run).
    pub fn save_state(&self) -> Result<(), StateError> {
        self.ledger.save()
    }

    /// Saves the ledger after a change (a process started, a file written). A
    /// failure is a warning, said once: the run goes on, and its end saves again and
    /// fails loudly if the file still cannot be written.
    pub fn checkpoint(&mut self) {
        if let Err(e) = self.ledger.save() {
            if !self.save_failed {
                self.save_failed = true;
                self.warn(&format!(
                    "{e}: {}",
                    std::error::Error::source(&e).map_or_else(String::new, ToString::to_string)
                ));
            }
        }
    }

    pub fn warn(&mut self, text: &str) {
        // A rendered error said as a warning: "warning: error: ..." says it twice.
        let text = text.strip_prefix("error: ").unwrap_or(text);
        self.log.note(&format!("WARNING: {text}"));
        self.progress.warning(text);
        self.warnings.push(text.to_owned());
    }

    /// Refreshes the redactor from the settings' secrets.
    pub fn refresh_secrets(&mut self) -> Redactor {
        let mut secrets = self.settings.secrets();
        secrets.extend(self.early_secrets.iter().cloned());
        let redactor = Redactor::new(secrets);
        self.spawner.set_redactor(redactor.clone());
        crate::system::redact::set_global(&redactor);
        redactor
    }

    /// What the machine-level actions (packages, Python) need, lent for one call.
    pub fn machine(&mut self) -> Machine<'_> {
        Machine {
            settings: &self.settings,
            top_dir: &self.top_dir,
            spawner: &self.spawner,
            ledger: &mut self.ledger,
            apt_updated: &mut self.apt_updated,
        }
    }

    /// The run's keystone client, (re)made for the current admin credentials.
    pub fn keystone(&mut self) -> Result<&mut Client, KeystoneError> {
        crate::openstack::accounts::client(&mut self.keystone, &self.settings)
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("top_dir", &self.top_dir)
            .finish_non_exhaustive()
    }
}

/// Why a pipeline operation failed (a merge names the local.conf line).
#[derive(Debug, thiserror::Error)]
pub enum PipelineError {
    #[error(transparent)]
    Shell(#[from] ShellError),
    #[error("{0}")]
    Merge(String),
}

/// What only the pipeline can do for a service.
pub trait PipelineOps {
    /// Calls a shell function in the plugin shell (the hypervisor plugin's five).
    fn call_function(
        &mut self,
        host: &mut Host,
        name: &str,
        args: &[&str],
    ) -> Result<i32, PipelineError>;
    /// Merges again local.conf's `[[PHASE|FILE]]` sections that name `file` (for a
    /// config file a service rebuilds after the phase's merge).
    fn merge_into(
        &mut self,
        host: &mut Host,
        phase: Phase,
        file: &Path,
    ) -> Result<(), PipelineError>;
    /// The keystone catalog of the services `settings` enable, from the run's
    /// registry (a service asks the run, not a registry of its own making).
    fn catalog(&self, settings: &Settings) -> Vec<ServiceAccount>;
}

/// A pipeline with no shell to lend and no local.conf to merge: every function call
/// is refused and merges do nothing. A call served while the plugin shell waits for
/// its reply (the shell cannot run a function meanwhile; merges are the pipeline's),
/// a standalone `devstack __call`, a test that drives a service alone.
#[derive(Debug, Default)]
pub(crate) struct NoPipeline;

impl PipelineOps for NoPipeline {
    fn call_function(
        &mut self,
        _host: &mut Host,
        name: &str,
        _args: &[&str],
    ) -> Result<i32, PipelineError> {
        Err(PipelineError::Merge(format!(
            "{name}: no plugin shell can run it now (none runs, or it waits for this call)"
        )))
    }
    fn merge_into(
        &mut self,
        _host: &mut Host,
        _phase: Phase,
        _file: &Path,
    ) -> Result<(), PipelineError> {
        Ok(())
    }
    /// No run, no registry: nothing is in its catalog.
    fn catalog(&self, _settings: &Settings) -> Vec<ServiceAccount> {
        Vec::new()
    }
}

/// What a service sees: the host, and the pipeline's two operations.
pub struct ServiceCtx<'a> {
    pub host: &'a mut Host,
    ops: &'a mut dyn PipelineOps,
}

impl<'a> ServiceCtx<'a> {
    pub fn new(host: &'a mut Host, ops: &'a mut dyn PipelineOps) -> Self {
        Self { host, ops }
    }

    pub fn settings(&self) -> &Settings {
        &self.host.settings
    }

    pub fn call_function(&mut self, name: &str, args: &[&str]) -> Result<i32, PipelineError> {
        self.ops.call_function(self.host, name, args)
    }

    pub fn merge_into(&mut self, phase: Phase, file: &Path) -> Result<(), PipelineError> {
        self.ops.merge_into(self.host, phase, file)
    }

    /// The keystone catalog of the enabled services, as the run's registry has it.
    pub fn catalog(&self) -> Vec<ServiceAccount> {
        self.ops.catalog(&self.host.settings)
    }
}

/// A quiet host on a temporary tree, supervised by our own supervisor, for the tests
/// that drive services with a fake context.
#[cfg(test)]
pub(crate) fn test_host(settings: Settings) -> (tempfile::TempDir, Host) {
    let dir = tempfile::tempdir().unwrap();
    let progress: Arc<dyn Progress> =
        Arc::new(crate::ui::TermProgress::new(crate::ui::Verbosity::Quiet));
    let log = Arc::new(RunLog::new(progress.clone()));
    let mut host = Host::new(
        dir.path().to_path_buf(),
        Ledger::empty(dir.path()),
        log,
        progress,
    );
    host.supervisor = Box::new(crate::system::supervisor::OwnSupervisor::default());
    host.settings = settings;
    (dir, host)
}
