//! The start and stop functions of DevStack's lib/ files that plugins call to
//! restart a service after changing its config (`start_keystone`,
//! `start_neutron_service_and_check`, `stop_neutron`, `start_neutron`, `start_ovn`,
//! `start_nova_compute`, `stop_nova_compute`): each is the service's own Rust step,
//! as a run does it.

use crate::context::{Host, NoPipeline, ServiceCtx};
use crate::services::{ServiceError, keystone, neutron, nova, ovn};
use crate::shell::{Call, Reply};

/// Runs `step` as the service's own step: while the shell waits for this call it
/// cannot run a function, so the step gets no pipeline to call into.
fn run(
    host: &mut Host,
    what: &str,
    step: impl FnOnce(&mut ServiceCtx<'_>) -> Result<(), ServiceError>,
) -> Reply {
    let mut ops = NoPipeline;
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

pub(super) fn neutron_start_agents(host: &mut Host, _call: &Call) -> Reply {
    run(host, "start_neutron", neutron::start_agents)
}

pub(super) fn ovn_start(host: &mut Host, _call: &Call) -> Reply {
    run(host, "start_ovn", |cx| ovn::start_all(cx.host))
}

pub(super) fn nova_compute_start(host: &mut Host, _call: &Call) -> Reply {
    run(host, "start_nova_compute", nova::start_compute)
}

pub(super) fn nova_compute_stop(host: &mut Host, _call: &Call) -> Reply {
    run(host, "stop_nova_compute", nova::stop_compute)
}
