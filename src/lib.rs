//! devstack-rs: DevStack, rebuilt in Rust.
//!
//! The binary is thin (`main.rs`); this library holds everything. The layers, each
//! using only the ones below it (see `docs/DESIGN.md`): `commands` routes what the
//! user typed (`cli`) to `pipeline` (stack, unstack, clean, plan); `calls` serves the
//! shell library's ops; `services` are the real services, one file each; `context` is
//! what a service sees; `shell`, `plugins` and `ui` below it; then `openstack` and
//! `system` (the machine); `config` (settings, local.conf); `ini` and `state`.

pub mod calls;
pub mod cli;
pub mod commands;
pub mod config;
pub mod context;
pub mod env_vars;
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
    commands::dispatch(cli)
}
