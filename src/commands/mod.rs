//! What the user typed, routed: stack, unstack, clean and plan go to the pipeline;
//! status, logs, the ini tool and the shell's standalone calls are served here.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Context as _;
use fs_err as fs;

use crate::cli::{Cli, Command, GlobalArgs};
use crate::pipeline::{self, Kind};
use crate::ui::report::Report;
use crate::ui::{Progress, Verbosity};

mod cluster;
mod control;
pub(crate) mod status;
mod test;

/// Runs a command line.
pub(crate) fn dispatch(cli: Cli) -> anyhow::Result<ExitCode> {
    let verbosity = if cli.global.quiet {
        Verbosity::Quiet
    } else if cli.global.verbose > 0 {
        Verbosity::Verbose
    } else {
        Verbosity::Normal
    };
    init_tracing();
    let top_dir = top_dir(&cli.global)?;
    let progress: Arc<dyn Progress> = crate::ui::printer(verbosity);
    match cli.command {
        Command::Stack { from_scratch } => {
            pipeline::execute_stack(&top_dir, from_scratch, progress)
        }
        Command::Unstack { all } => pipeline::execute(&top_dir, Kind::Unstack { all }, progress),
        Command::Clean => pipeline::execute(&top_dir, Kind::Clean, progress),
        Command::Plan => pipeline::plan(&top_dir),
        Command::Status => status::status(&top_dir),
        Command::Logs { service, follow } => status::logs(&top_dir, &service, follow),
        Command::Restart { services } => {
            control::control(&top_dir, control::Action::Restart, &services)
        }
        Command::Stop { services } => control::control(&top_dir, control::Action::Stop, &services),
        Command::Start { services } => {
            control::control(&top_dir, control::Action::Start, &services)
        }
        Command::Test {
            api,
            concurrency,
            regex,
        } => test::test(
            &top_dir,
            &test::Selection {
                api,
                concurrency,
                regexes: regex,
            },
        ),
        Command::Cluster {
            action,
            inventory,
            ansible_args,
        } => cluster::cluster(&top_dir, action, &inventory, &ansible_args),
        Command::Ini { args } => {
            let out = crate::ini::apply_op(&args)?;
            print!("{}", out.stdout);
            Ok(ExitCode::from(u8::try_from(out.status).unwrap_or(1)))
        }
        Command::Call { args } => crate::calls::standalone(top_dir, &args),
    }
}

/// `DEVSTACK_LOG=debug` (an env-filter) turns on the debug events: each step, each
/// shell call, each child process.
fn init_tracing() {
    let filter = tracing_subscriber::EnvFilter::try_from_env(crate::env_vars::DEVSTACK_LOG)
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("off"));
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
}

/// The tree to act on: `--top-dir`/`DEVSTACK_TOP_DIR`, else the current directory.
fn top_dir(global: &GlobalArgs) -> anyhow::Result<PathBuf> {
    let dir = match &global.top_dir {
        Some(d) => d.clone(),
        None => std::env::current_dir().context("cannot read the current directory")?,
    };
    let dir = fs::canonicalize(&dir)
        .with_context(|| format!("the DevStack tree {} does not exist", dir.display()))?;
    if !dir.join("inc/driver").is_file() {
        return Err(anyhow::Error::new(Report {
            headline: format!(
                "{} is not a devstack-rs tree (no inc/driver)",
                dir.display()
            ),
            details: Vec::new(),
            tail: Vec::new(),
            hint: Some("run from the top of the checkout, or pass --top-dir".into()),
        }));
    }
    Ok(dir)
}
