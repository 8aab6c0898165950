//! The machine: child processes, packages, supervised services, Python environments.
//!
//! Nothing here knows a run or a service: what an action needs of the run is lent to
//! it as a [`Machine`].

use std::path::Path;

use crate::config::settings::Settings;
use crate::state::Ledger;

pub(crate) mod hostfiles;
pub(crate) mod interrupt;
pub(crate) mod net;
pub(crate) mod netns;
pub(crate) mod packages;
pub(crate) mod process;
pub(crate) mod python;
pub(crate) mod redact;
pub(crate) mod supervisor;

/// What the machine-level actions need of a run: the settings to read, the tree, the
/// process factory (output to the run log, redacted), the ledger to record what they
/// create, and whether `apt-get update` already ran.
pub struct Machine<'a> {
    pub settings: &'a Settings,
    pub top_dir: &'a Path,
    pub spawner: &'a process::Spawner,
    pub ledger: &'a mut Ledger,
    pub apt_updated: &'a mut bool,
}

impl Machine<'_> {
    pub fn cmd(&self, program: impl Into<std::ffi::OsString>) -> process::Cmd {
        self.spawner.cmd(program)
    }

    pub fn note(&self, text: &str) {
        self.spawner.note(text);
    }
}
