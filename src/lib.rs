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

/// The architecture's one rule, checked: each top-level module uses only modules
/// below it (docs/DESIGN.md § Layers).
#[cfg(test)]
mod layers {
    /// Top to bottom; a module may use the modules of later rows only.
    const LAYERS: &[&[&str]] = &[
        &["commands"],
        &["cli", "pipeline"],
        &["calls"],
        &["services"],
        &["context"],
        &["shell", "plugins", "ui"],
        &["openstack", "system"],
        &["config"],
        &["ini", "state"],
        &["env_vars"],
    ];

    fn rank(module: &str) -> usize {
        LAYERS
            .iter()
            .position(|row| row.contains(&module))
            .unwrap_or_else(|| panic!("module {module} is in no layer: add it to LAYERS"))
    }

    /// The `crate::NAME` paths a file uses, outside its tests.
    fn uses(text: &str) -> Vec<String> {
        let code = text.split("#[cfg(test)]").next().unwrap_or("");
        code.match_indices("crate::")
            .map(|(i, _)| {
                code[i + "crate::".len()..]
                    .chars()
                    .take_while(|c| c.is_ascii_lowercase() || *c == '_' || c.is_ascii_digit())
                    .collect()
            })
            .collect()
    }

    #[test]
    fn every_module_uses_only_the_layers_below_it() {
        let src = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("src");
        let mut offences = Vec::new();
        let mut files = vec![src.clone()];
        let mut seen = 0;
        while let Some(path) = files.pop() {
            if path.is_dir() {
                for entry in fs_err::read_dir(&path).unwrap() {
                    files.push(entry.unwrap().path());
                }
                continue;
            }
            if path.extension().is_none_or(|e| e != "rs") {
                continue;
            }
            let rel = path.strip_prefix(&src).unwrap();
            let top = rel
                .components()
                .next()
                .unwrap()
                .as_os_str()
                .to_string_lossy()
                .trim_end_matches(".rs")
                .to_owned();
            if top == "lib" || top == "main" {
                continue;
            }
            seen += 1;
            let mine = rank(&top);
            for used in uses(&fs_err::read_to_string(&path).unwrap()) {
                if used != top && !used.is_empty() && rank(&used) <= mine {
                    offences.push(format!("{} uses crate::{used}", rel.display()));
                }
            }
        }
        assert!(seen > 40, "the scan found the sources ({seen} files)");
        offences.sort();
        offences.dedup();
        assert!(
            offences.is_empty(),
            "layering broken:\n{}",
            offences.join("\n")
        );
    }
}
