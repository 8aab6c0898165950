//! `install_package` and friends (functions-common).

use std::collections::BTreeSet;

use crate::context::Host;
use crate::shell::{Call, Reply};
use crate::system::packages;

pub(super) fn install(host: &mut Host, call: &Call) -> Reply {
    let result = packages::install(&mut host.machine(), call.args());
    host.checkpoint();
    match result {
        Ok(_) => Reply::ok(),
        Err(e) => Reply::error(
            100,
            format!("install_package: {e}: {}", packages::tail_text(&e)),
        ),
    }
}

pub(super) fn uninstall(host: &mut Host, call: &Call) -> Reply {
    let args = call.args();
    match packages::apt(&host.machine())
        .args(["-q", "-y", "purge"])
        .args(args)
        .run()
    {
        Ok(_) => {
            for p in args {
                host.ledger.forget_package(p);
            }
            host.checkpoint();
            Reply::ok()
        }
        Err(e) => Reply::error(100, format!("uninstall_package: {e}")),
    }
}

pub(super) fn is_installed(host: &mut Host, call: &Call) -> Reply {
    let args = call.args();
    let wanted = args.iter().collect::<BTreeSet<_>>().len();
    Reply::status(i32::from(
        packages::installed(&host.machine(), args).len() != wanted,
    ))
}

pub(super) fn update(host: &mut Host, _call: &Call) -> Reply {
    match packages::update(&mut host.machine()) {
        Ok(()) => Reply::ok(),
        Err(e) => Reply::error(100, e),
    }
}
