//! The host: what a run knows and holds while it acts on the machine: the settings as
//! last read back from the shell, the state file, the run log, the secrets to redact.
//! Services and the shell library's calls act through it.

use std::path::PathBuf;
use std::sync::Arc;

use crate::config::settings::Settings;
use crate::plugins::PluginRegistry;
use crate::shell::{Call, Callbacks, Reply};
use crate::state::{StateError, StateFile};
use crate::system::process::Cmd;
use crate::system::redact::Redactor;
use crate::system::supervisor::Supervisor;
use crate::ui::Progress;
use crate::ui::log::RunLog;

pub struct Host {
    pub top_dir: PathBuf,
    pub settings: Settings,
    pub state: StateFile,
    pub log: Arc<RunLog>,
    pub progress: Arc<dyn Progress>,
    pub redactor: Redactor,
    /// enable_plugin calls seen while localrc ran.
    pub plugins: PluginRegistry,
    /// True inside stack/unstack/clean; false for a standalone `devstack __call`.
    pub in_run: bool,
    /// `apt-get update` runs once per run.
    pub apt_updated: bool,
    pub warnings: Vec<String>,
    pub supervisor: Option<Box<dyn Supervisor>>,
    /// The keystone client for the run (made on first use, token cached).
    pub keystone: Option<crate::openstack::keystone::Client>,
}

impl Host {
    pub fn new(
        top_dir: PathBuf,
        state: StateFile,
        log: Arc<RunLog>,
        progress: Arc<dyn Progress>,
    ) -> Self {
        Self {
            top_dir,
            settings: Settings::default(),
            state,
            log,
            progress,
            redactor: Redactor::default(),
            plugins: PluginRegistry::default(),
            in_run: true,
            apt_updated: false,
            warnings: Vec::new(),
            supervisor: Some(crate::system::supervisor::detect()),
            keystone: None,
        }
    }

    /// A child process whose output goes to the run log, redacted.
    pub fn cmd(&self, program: impl Into<std::ffi::OsString>) -> Cmd {
        Cmd::new(program)
            .sink(self.log.clone())
            .redactor(self.redactor.clone())
    }

    pub fn save_state(&self) -> Result<(), StateError> {
        self.state.save()
    }

    pub fn warn(&mut self, text: &str) {
        self.log.note(&format!("WARNING: {text}"));
        self.progress.warning(text);
        self.warnings.push(text.to_owned());
    }

    /// Refreshes the redactor from the settings' secrets.
    pub fn refresh_secrets(&mut self) -> Redactor {
        self.redactor = Redactor::new(self.settings.secrets());
        self.redactor.clone()
    }
}

impl Callbacks for Host {
    fn call(&mut self, call: &Call) -> Reply {
        crate::shell::callbacks::dispatch(self, call)
    }

    fn summary(&mut self, text: &str) {
        self.log.note(text);
        self.progress.summary(text);
    }

    fn warning(&mut self, text: &str) {
        self.warn(text);
    }
}

impl std::fmt::Debug for Host {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Host")
            .field("top_dir", &self.top_dir)
            .finish_non_exhaustive()
    }
}
