//! Hypervisor plugins: `$NOVA_PLUGINS/hypervisor-$VIRT_DRIVER` defines five functions
//! that nova's steps call at its install, configure, start, stop and clean points.

use crate::context::ServiceCtx;
use crate::services::{Descriptor, Layer, Role, Service, ServiceError};

/// Calls one of the five functions when a hypervisor plugin was loaded (no file for
/// the driver: the calls are skipped, as the warning at load time said).
pub(crate) fn call(cx: &mut ServiceCtx<'_>, function: &str) -> Result<(), ServiceError> {
    if cx.host.hypervisor.is_none() {
        return Ok(());
    }
    cx.call_function(function, &[])
        .map(|_| ())
        .map_err(|source| ServiceError::Shell {
            service: format!("hypervisor plugin ({function})"),
            source,
        })
}

/// A test service that drives the hypervisor plugin's five functions at nova's
/// points without installing nova (`enable_service test-hypervisor`). It lets the
/// contract be tested on machines and in tests where a real nova is not wanted.
pub(crate) struct HypervisorProbe;

/// The service name that enables [`HypervisorProbe`].
pub(crate) const PROBE_SERVICE: &str = "test-hypervisor";

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[PROBE_SERVICE],
    role: Role::Compute,
    ..Descriptor::named(PROBE_SERVICE, Layer::OpenStack)
};

impl Service for HypervisorProbe {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn install(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        call(cx, "install_nova_hypervisor")
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        call(cx, "configure_nova_hypervisor")
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        call(cx, "start_nova_hypervisor")
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        call(cx, "stop_nova_hypervisor")
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        call(cx, "cleanup_nova_hypervisor")
    }
}
