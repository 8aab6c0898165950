//! cinder's lib/ defaults (`cinder-default backends|target-helper|lvm-type`): the
//! storage probe's choice, printed for `${VAR:-$(...)}`, so the shell holds the
//! backends this host gets before anything is installed.

use crate::context::Host;
use crate::services::cinder_backend::{self, LibDefault};
use crate::shell::{Call, Reply};

pub(super) fn default(host: &mut Host, call: &Call) -> Reply {
    let which = match super::arg(call, 0) {
        "backends" => LibDefault::Backends,
        "target-helper" => LibDefault::TargetHelper,
        "lvm-type" => LibDefault::LvmType,
        _ => return Reply::status(2),
    };
    Reply::stdout(format!("{}\n", cinder_backend::default_value(host, which)))
}
