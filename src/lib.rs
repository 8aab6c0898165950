//! devstack-rs: DevStack, rebuilt in Rust.
//!
//! The binary is thin (`main.rs`); this library holds everything. The layers, each
//! using only the ones below it (see `docs/DESIGN.md`): `commands` routes what the
//! user typed (`cli`) to `pipeline` (stack, unstack, clean, plan); `calls` serves the
//! shell library's ops; `services` are the real services, one file each; `context` is
//! what a service sees; `shell`, `plugins` and `ui` below it; then `openstack` and
//! `system` (the machine); `config` (settings, local.conf); `ini` and `state`.

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
