//! The calls the shell library makes into Rust (`_ds_call OP ARG...`), in a run over
//! the channel or standalone through `devstack __call`. One dispatcher for both.
//!
//! Core operations live here; services add theirs in `services::calls`.

use std::fmt::Write as _;
use std::process::ExitCode;
use std::sync::Arc;

use crate::config::services;
use crate::host::Host;
use crate::shell::{Call, Reply};
use crate::state::StateFile;
use crate::ui::log::RunLog;
use crate::ui::{TermProgress, Verbosity};

/// Serves one call.
pub fn dispatch(host: &mut Host, call: &Call) -> Reply {
    host.settings.overlay(&call.vars);
    let args: Vec<&str> = call.args().iter().map(String::as_str).collect();
    let enabled = call.var("ENABLED_SERVICES");
    let disabled = call.var("DISABLED_SERVICES");
    match call.op() {
        "ini" => match crate::ini::apply_op(call.args()) {
            Ok(out) => Reply {
                status: out.status,
                stdout: out.stdout,
                ..Reply::default()
            },
            Err(e) => Reply::error(1, format!("ini: {e}")),
        },
        "service-enabled" => {
            Reply::status(i32::from(!services::is_enabled(enabled, disabled, &args)))
        }
        "service-enable" => {
            let change = services::enable(enabled, disabled, &args);
            let mut reply = Reply::ok().with_assign("ENABLED_SERVICES", change.enabled);
            for w in change.warnings {
                let _ = writeln!(reply.stderr, "[WARNING] {w}");
            }
            reply
        }
        "service-disable" => {
            let change = services::disable(enabled, disabled, &args);
            Reply::ok()
                .with_assign("ENABLED_SERVICES", change.enabled)
                .with_assign("DISABLED_SERVICES", change.disabled)
        }
        "service-disable-all" => Reply::ok().with_assign("ENABLED_SERVICES", ""),
        "service-disable-negated" => {
            Reply::ok().with_assign("ENABLED_SERVICES", services::disable_negated(enabled))
        }
        "plugin-enable" => plugin_enable(host, call),
        "redact" => Reply::stdout(host.redactor.redact(&args.join(" ")).into_owned()),
        _ => crate::system::packages::dispatch(host, call)
            .or_else(|| crate::services::calls::dispatch(host, call))
            .or_else(|| crate::openstack::calls::dispatch(host, call))
            .or_else(|| crate::system::python::dispatch(host, call))
            .unwrap_or_else(|| {
                Reply::error(127, format!("devstack: unknown call '{}'", call.op()))
            }),
    }
}

fn plugin_enable(host: &mut Host, call: &Call) -> Reply {
    let args = call.args();
    let (Some(name), Some(url)) = (args.first(), args.get(1)) else {
        return Reply::error(2, "usage: enable_plugin NAME URL [REF]");
    };
    let git_ref = args.get(2).map_or("", String::as_str);
    if !host.in_run {
        return Reply::ok();
    }
    let dest = std::path::PathBuf::from(call.var("DEST"));
    match host.plugins.enable(name, url, git_ref, &dest) {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(1, e),
    }
}

/// `devstack __call [NVARS K V ... OP ARG...]`: the same calls outside a run, for a
/// plain bash that sourced `$TOP_DIR/functions`. Prints the framed reply on stdout.
pub fn standalone(top_dir: std::path::PathBuf, fields: &[String]) -> anyhow::Result<ExitCode> {
    // Without arguments the request comes NUL-separated on stdin (the library sends
    // it so: secrets must not show in the process table).
    let fields = if fields.is_empty() {
        let mut input = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)?;
        input
            .split(|b| *b == 0)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, rest)| rest.to_vec())
            .unwrap_or_default()
    } else {
        fields.to_vec()
    };
    let reply = match Call::parse(&fields) {
        Err(e) => Reply::error(2, format!("devstack __call: {e}")),
        Ok(call) => {
            let state = StateFile::load(&top_dir)?;
            let progress = Arc::new(TermProgress::new(Verbosity::Quiet));
            let log = Arc::new(RunLog::new(progress.clone()));
            let mut host = Host::new(top_dir, state, log, progress);
            host.in_run = false;
            let mut settings = crate::config::settings::Settings::new(std::env::vars().collect());
            settings.overlay(&call.vars);
            host.settings = settings;
            host.refresh_secrets();
            let before = host.state.state.clone();
            let reply = dispatch(&mut host, &call);
            if host.state.state != before {
                host.save_state()?;
            }
            reply
        }
    };
    let mut out = std::io::stdout().lock();
    reply.to_frame().write_to(&mut out)?;
    Ok(ExitCode::SUCCESS)
}
