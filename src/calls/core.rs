//! The core ops: ini editing, service enablement, enable_plugin, redaction.

use std::fmt::Write as _;

use super::arg;
use crate::config::services;
use crate::context::Host;
use crate::shell::{Call, Reply};

pub(super) fn ini(_host: &mut Host, call: &Call) -> Reply {
    match crate::ini::apply_op(call.args()) {
        Ok(out) => Reply {
            status: out.status,
            stdout: out.stdout,
            ..Reply::default()
        },
        Err(e) => Reply::error(1, format!("ini: {e}")),
    }
}

fn names(call: &Call) -> Vec<&str> {
    call.args().iter().map(String::as_str).collect()
}

pub(super) fn service_enabled(_host: &mut Host, call: &Call) -> Reply {
    let (enabled, disabled) = (call.var("ENABLED_SERVICES"), call.var("DISABLED_SERVICES"));
    Reply::status(i32::from(!services::is_enabled(
        enabled,
        disabled,
        &names(call),
    )))
}

pub(super) fn service_enable(_host: &mut Host, call: &Call) -> Reply {
    let (enabled, disabled) = (call.var("ENABLED_SERVICES"), call.var("DISABLED_SERVICES"));
    let change = services::enable(enabled, disabled, &names(call));
    let mut reply = Reply::ok().with_assign("ENABLED_SERVICES", change.enabled);
    for w in change.warnings {
        let _ = writeln!(reply.stderr, "[WARNING] {w}");
    }
    reply
}

pub(super) fn service_disable(_host: &mut Host, call: &Call) -> Reply {
    let (enabled, disabled) = (call.var("ENABLED_SERVICES"), call.var("DISABLED_SERVICES"));
    let change = services::disable(enabled, disabled, &names(call));
    Reply::ok()
        .with_assign("ENABLED_SERVICES", change.enabled)
        .with_assign("DISABLED_SERVICES", change.disabled)
}

pub(super) fn service_disable_all(_host: &mut Host, _call: &Call) -> Reply {
    Reply::ok().with_assign("ENABLED_SERVICES", "")
}

pub(super) fn service_disable_negated(_host: &mut Host, call: &Call) -> Reply {
    Reply::ok().with_assign(
        "ENABLED_SERVICES",
        services::disable_negated(call.var("ENABLED_SERVICES")),
    )
}

pub(super) fn plugin_enable(host: &mut Host, call: &Call) -> Reply {
    let (name, url) = (arg(call, 0), arg(call, 1));
    if name.is_empty() || url.is_empty() {
        return Reply::error(2, "usage: enable_plugin NAME URL [REF]");
    }
    if host.mode == crate::context::Mode::Standalone {
        return Reply::ok();
    }
    let dest = std::path::PathBuf::from(call.var("DEST"));
    match host.plugins.enable(name, url, arg(call, 2), &dest) {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(1, e),
    }
}

pub(super) fn redact(host: &mut Host, call: &Call) -> Reply {
    Reply::stdout(host.redactor().redact(&call.args().join(" ")).into_owned())
}
