//! `placement-client` (DevStack's name, in its default set): placement's command
//! line client, osc-placement (`openstack resource provider list`). Every stack
//! with an OpenStack service already installs it into the venv with the openstack
//! client, so the name enables nothing more; it is accepted, and `devstack status`
//! says what it gave.

use crate::context::ServiceCtx;
use crate::services::{Descriptor, Layer, Role, Service, ServiceError};

pub(crate) const NAME: &str = "placement-client";

pub(crate) struct PlacementClient;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    // A compute node (DevStack's subnode) lists it too.
    role: Role::Any,
    after: &["placement"],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for PlacementClient {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        cx.host.ledger.set_choice(
            NAME,
            "osc-placement in the venv with the openstack client (openstack resource provider list)",
        );
        Ok(())
    }
    fn stop(&self, _cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        Ok(())
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        cx.host.ledger.forget_choice(NAME);
        Ok(())
    }
}
