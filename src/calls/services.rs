//! The start and stop functions of DevStack's lib/ files that plugins call to
//! restart a service after changing its config (`start_keystone`,
//! `start_neutron_service_and_check`, `stop_neutron`): each is the service's own
//! Rust step, as a run does it.

use std::path::Path;

use crate::config::localconf::Phase;
use crate::context::{Host, PipelineError, PipelineOps, ServiceCtx};
use crate::services::{ServiceError, keystone, neutron};
use crate::shell::{Call, Reply};

/// A call is served while the shell waits for its reply: the shell cannot run a
/// function for the service meanwhile, and local.conf merges are the pipeline's.
struct FromShell;

impl PipelineOps for FromShell {
    fn call_function(
        &mut self,
        _host: &mut Host,
        name: &str,
        _args: &[&str],
    ) -> Result<i32, PipelineError> {
        Err(PipelineError::Merge(format!(
            "{name}: the plugin shell is waiting for this call"
        )))
    }
    fn merge_into(
        &mut self,
        _host: &mut Host,
        _phase: Phase,
        _file: &Path,
    ) -> Result<(), PipelineError> {
        Ok(())
    }
}

fn run(
    host: &mut Host,
    what: &str,
    step: impl FnOnce(&mut ServiceCtx<'_>) -> Result<(), ServiceError>,
) -> Reply {
    let mut ops = FromShell;
    let result = step(&mut ServiceCtx::new(host, &mut ops));
    host.checkpoint();
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => super::process::service_error(what, &e),
    }
}

pub(super) fn keystone_start(host: &mut Host, _call: &Call) -> Reply {
    run(host, "start_keystone", |cx| {
        keystone::start_keystone(cx.host)
    })
}

pub(super) fn neutron_start(host: &mut Host, _call: &Call) -> Reply {
    run(
        host,
        "start_neutron_service_and_check",
        neutron::start_service_and_check,
    )
}

pub(super) fn neutron_stop(host: &mut Host, _call: &Call) -> Reply {
    run(host, "stop_neutron", neutron::stop_neutron)
}
