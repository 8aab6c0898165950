//! Hypervisor plugins: `$NOVA_PLUGINS/hypervisor-$VIRT_DRIVER` defines five functions
//! that nova's steps call at its install, configure, start, stop and clean points.

use crate::config::settings::Settings;
use crate::pipeline::Run;
use crate::services::{Layer, Service, ServiceError};

/// Calls one of the five functions when a hypervisor plugin was loaded (no file for
/// the driver: the calls are skipped, as the warning at load time said).
pub fn call(run: &mut Run, function: &str) -> Result<(), ServiceError> {
    if run.hypervisor.is_none() {
        return Ok(());
    }
    run.call_function(function, &[])
        .map(|_| ())
        .map_err(|source| ServiceError::Shell {
            service: format!("hypervisor plugin ({function})"),
            source,
        })
}

/// A test service that drives the hypervisor plugin's five functions at nova's
/// points without installing nova (`enable_service test-hypervisor`). It lets the
/// contract be tested on machines and in tests where a real nova is not wanted.
pub struct HypervisorProbe;

/// The service name that enables [`HypervisorProbe`].
pub const PROBE_SERVICE: &str = "test-hypervisor";

impl Service for HypervisorProbe {
    fn name(&self) -> &'static str {
        PROBE_SERVICE
    }
    fn layer(&self) -> Layer {
        Layer::OpenStack
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        settings.is_enabled(&[PROBE_SERVICE])
    }
    fn install(&self, run: &mut Run) -> Result<(), ServiceError> {
        call(run, "install_nova_hypervisor")
    }
    fn configure(&self, run: &mut Run) -> Result<(), ServiceError> {
        call(run, "configure_nova_hypervisor")
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        call(run, "start_nova_hypervisor")
    }
    fn stop(&self, run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        call(run, "stop_nova_hypervisor")
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        call(run, "cleanup_nova_hypervisor")
    }
}
