//! devstack-rs: DevStack, rebuilt in Rust.
//!
//! The binary is thin (`main.rs`); this library holds everything. The layers, each
//! using only the ones below it (see `docs/DESIGN.md`): `commands` routes what the
//! user typed (`cli`) to `pipeline` (stack, unstack, clean, plan); `calls` serves the
//! shell library's ops; `services` are the real services, one file each; `context` is
//! what a service sees; `shell`, `plugins` and `ui` below it; then `openstack` and
//! `system` (the machine); `config` (settings, local.conf); `ini` and `state`.
//!
//! Where to start reading, by task:
//!
//! - **A stack**: `commands::dispatch` → `pipeline::execute_stack` → the step list
//!   `pipeline::steps::steps(Kind::Stack)` run by `pipeline::steps::run_all`; each
//!   service step loops over the `services::Registry`, calling the `services::Service`
//!   impls (`src/services/<name>.rs`) with a `context::ServiceCtx`.
//! - **A plugin's call into Rust**: a bash shim (`_ds_call OP`, `inc/rpc`) → the plugin
//!   shell's channel (`shell`) or `devstack __call` → `calls::dispatch` → the op's row
//!   in `calls::TABLE` → its handler in `src/calls/<area>.rs` → `services`.
//! - **A teardown after a failure**: `unstack` runs `Step::Stop`
//!   (`pipeline::steps`): the processes the `state::Ledger` recorded (also those of a
//!   failed stack), each service's `stop` in reverse order; `clean` then removes what
//!   the ledger says stack created. A re-stack resumes (`pipeline::resume`).
//! - **A service**: start from `src/services/template.rs` (the shape every service
//!   file takes) and `CONTRIBUTING.md`; its generated files are snapshots
//!   (`src/services/snapshots.rs`).
//! - **A setting**: `config::settings` (Rust's stackrc role), the bash `stackrc`, a
//!   service's `Descriptor::defaults`, `config::vars` (who owns each default).
//!
//! The architecture's invariants, each with the test that keeps it, are listed in
//! `docs/DESIGN.md` § Invariants.

pub(crate) mod calls;
pub mod cli;
pub(crate) mod commands;
pub(crate) mod config;
pub(crate) mod context;
pub(crate) mod env_vars;
pub(crate) mod ini;
pub(crate) mod openstack;
pub(crate) mod pipeline;
pub(crate) mod plugins;
pub(crate) mod services;
pub(crate) mod shell;
pub(crate) mod state;
pub(crate) mod system;
pub(crate) mod timing;
pub(crate) mod ui;

use std::process::ExitCode;

pub use ui::report::print_error;

/// What the integration tests drive directly: the keystone client and DevStack's
/// account layout against a real keystone, with the catalog the registry gives.
pub mod testing {
    pub use crate::config::settings::{DEFAULT_SERVICES, Settings};
    pub use crate::openstack::accounts::{self, ServiceAccount};
    pub use crate::openstack::keystone::{Client, Credentials, KeystoneError};
    pub use crate::services::Registry;
    pub use crate::system::process::Cmd;
    pub use crate::system::python::installer_env;
}

/// Runs one command line. Errors come back to `main`, which prints them once.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    system::process::close_inherited_descriptors_on_exec();
    commands::dispatch(cli)
}

/// The architecture's rules, checked on the sources: layers, and no circle between
/// the files of a folder (docs/DESIGN.md § Invariants).
#[cfg(test)]
mod layers;
