//! What the user typed: clap definitions only. Validation and actions live elsewhere.

use std::path::PathBuf;

use clap::{Args, Parser, Subcommand};

#[derive(Debug, Parser)]
#[command(name = "devstack", version, about = "DevStack, rebuilt in Rust")]
pub struct Cli {
    #[command(flatten)]
    pub global: GlobalArgs,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Debug, Args)]
pub struct GlobalArgs {
    /// The DevStack tree (holds local.conf, extras.d, functions, lib/). Default: the
    /// directory of the binary's checkout, else the current directory.
    #[arg(long, global = true, env = crate::env_vars::DEVSTACK_TOP_DIR)]
    pub top_dir: Option<PathBuf>,
    /// Show every line of output on the terminal (the log always has them).
    #[arg(short, long, global = true, action = clap::ArgAction::Count)]
    pub verbose: u8,
    /// Only errors on the terminal.
    #[arg(short, long, global = true)]
    pub quiet: bool,
}

#[derive(Debug, Subcommand)]
pub enum Command {
    /// Stack the cloud: what ./stack.sh runs. After a failed stack with the same
    /// inputs, it resumes at the step that failed.
    Stack {
        /// Run every step, even when the last stack failed and could be resumed.
        #[arg(long)]
        from_scratch: bool,
    },
    /// Stop what stack started: what ./unstack.sh runs.
    Unstack {
        /// Also stop the database and the message queue (DevStack's -a).
        #[arg(short, long)]
        all: bool,
    },
    /// Unstack, then remove what stack created: what ./clean.sh runs.
    Clean,
    /// Print what stack would do, step by step, with every hook call. Runs no stack step.
    Plan,
    /// One line per service: running / stopped / failed, pid, address, log.
    Status,
    /// Run tempest against the stacked cloud (the smoke set by default).
    Test {
        /// tempest's API tests (`^tempest.api.`) instead of the smoke set.
        #[arg(long)]
        api: bool,
        /// Test workers (tempest's --concurrency).
        #[arg(long)]
        concurrency: Option<u32>,
        /// Regexes selecting tests (joined with `|`).
        regex: Vec<String>,
    },
    /// Restart services of the stacked cloud with their current config and code (an
    /// edit to an editable checkout is live after it). DevStack's service names, as
    /// `status` lists them (n-cpu, q-svc, c-vol, key, a plugin's); `n-*` for several.
    Restart {
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Stop services of the stacked cloud (`start` brings them back; unstack still
    /// knows them).
    Stop {
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Start stopped services of the stacked cloud as the stack started them.
    Start {
        #[arg(required = true, value_name = "SERVICE")]
        services: Vec<String>,
    },
    /// Print (or follow) a service's log.
    Logs {
        /// The service name, as in ENABLED_SERVICES (e.g. key, n-api, mysql).
        service: String,
        /// Keep printing as the log grows.
        #[arg(short, long)]
        follow: bool,
    },
    /// A multi-node cloud through Ansible (the playbooks in ansible/): the controller
    /// first, the compute nodes in parallel, then discover_hosts; unstack, clean and
    /// status across the inventory. Arguments after `--` go to ansible-playbook.
    Cluster {
        /// What to do across the inventory.
        action: ClusterAction,
        /// An Ansible inventory with groups `controller` (one host) and `compute`.
        #[arg(short, long)]
        inventory: PathBuf,
        /// More ansible-playbook arguments (after `--`: `-- --limit cpu1 -v`).
        #[arg(last = true, allow_hyphen_values = true)]
        ansible_args: Vec<String>,
    },
    /// Edit ini files as DevStack's iniset family does (used by the shell library
    /// outside a run).
    #[command(hide = true)]
    Ini {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// A call from the shell function library, outside a run (framed reply on stdout).
    #[command(name = "__call", hide = true)]
    Call {
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
}

/// What `devstack cluster` does across the inventory.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ClusterAction {
    /// The controller, then the computes in parallel, then discover_hosts.
    Stack,
    /// ./unstack.sh on every node, the computes first.
    Unstack,
    /// ./clean.sh on every node, the computes first.
    Clean,
    /// Each node's `devstack status`.
    Status,
}
