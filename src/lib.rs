//! devstack-rs: DevStack, rebuilt in Rust.
//!
//! The binary is thin (`main.rs`); this library holds everything. The shape (see
//! `docs/DESIGN.md`): `cli` is what the user typed, `config` the validated settings,
//! `pipeline` the actions, `shell` the long-lived plugin shell, `plugins` the hook
//! discovery, `services` the real services, `system` the machine (processes, packages),
//! `state` what a run leaves behind, `ui` what a person sees.

pub mod cli;
pub mod config;
pub mod env_vars;
pub mod host;
pub mod ini;
pub mod openstack;
pub mod pipeline;
pub mod plugins;
pub mod services;
pub mod shell;
pub mod state;
pub mod system;
pub mod ui;

use std::process::ExitCode;

/// Runs one command line. Errors come back to `main`, which prints them once.
pub fn run(cli: cli::Cli) -> anyhow::Result<ExitCode> {
    pipeline::dispatch(cli)
}
