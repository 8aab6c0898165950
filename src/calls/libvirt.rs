//! The libvirt hypervisor plugin's ops (`lib/nova_plugins/hypervisor-libvirt`): each
//! of its five functions is one call into `services::libvirt`.

use crate::context::Host;
use crate::services::{ServiceError, libvirt};
use crate::shell::{Call, Reply};

fn reply(what: &str, result: Result<(), ServiceError>) -> Reply {
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => super::process::service_error(what, &e),
    }
}

pub(super) fn install(host: &mut Host, _call: &Call) -> Reply {
    reply("install_nova_hypervisor", libvirt::install(host))
}

/// `install_libvirt` (functions-libvirt): the packages and the Python module only.
pub(super) fn install_libvirt(host: &mut Host, _call: &Call) -> Reply {
    reply("install_libvirt", libvirt::install_libvirt(host))
}

/// Also sets `LIBVIRT_TYPE` in the caller's shell to the virt type nova got.
pub(super) fn configure(host: &mut Host, _call: &Call) -> Reply {
    match libvirt::configure(host) {
        Ok(virt) => Reply::ok().with_assign("LIBVIRT_TYPE", virt.as_str()),
        Err(e) => reply("configure_nova_hypervisor", Err(e)),
    }
}

pub(super) fn start(host: &mut Host, _call: &Call) -> Reply {
    reply("start_nova_hypervisor", libvirt::start(host))
}

pub(super) fn stop(host: &mut Host, _call: &Call) -> Reply {
    reply("stop_nova_hypervisor", libvirt::stop(host))
}

pub(super) fn cleanup(host: &mut Host, _call: &Call) -> Reply {
    reply("cleanup_nova_hypervisor", libvirt::cleanup(host))
}
