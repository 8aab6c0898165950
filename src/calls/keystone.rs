//! The keystone ops (the shims in lib/keystone), served by the run's client.
//!
//! Each op prints the id on stdout as DevStack's function does, so
//! `id=$(get_or_create_service ...)` works. Credentials and URLs come from the call's
//! variables (KEYSTONE_SERVICE_URI, ADMIN_PASSWORD, SERVICE_PASSWORD, REGION_NAME,
//! SERVICE_PROJECT_NAME, SERVICE_DOMAIN_NAME ...) overlaid on the host's settings by
//! the core dispatcher; the client is the host's, kept for the run.

use crate::context::Host;
use crate::openstack::accounts::{self, ServiceAccount};
use crate::openstack::keystone::{Client, KeystoneError};
use crate::services::Registry;
use crate::shell::{Call, Reply};

/// Serves the `keystone-*` ops that act on one object.
pub(super) fn serve(host: &mut Host, call: &Call) -> Reply {
    let op = call.op();
    let args: Vec<&str> = call.args().iter().map(String::as_str).collect();
    let arg = |i: usize| args.get(i).copied().filter(|a| !a.is_empty());
    let need = |n: usize, usage: &str| -> Result<(), Reply> {
        if (0..n).all(|i| arg(i).is_some()) {
            Ok(())
        } else {
            Err(Reply::error(2, format!("usage: {usage}")))
        }
    };
    let result: Result<Result<String, KeystoneError>, Reply> = match op {
        "keystone-get-or-create-service" => need(2, "get_or_create_service NAME TYPE DESCRIPTION")
            .map(|()| {
                with_client(host, |c| {
                    c.get_or_create_service(args[0], args[1], arg(2).unwrap_or(""))
                })
            }),
        "keystone-get-or-create-endpoint" => need(
            3,
            "get_or_create_endpoint SERVICE REGION PUBLIC_URL [ADMIN_URL] [INTERNAL_URL]",
        )
        .map(|()| {
            with_client(host, |c| {
                c.get_or_create_endpoints(args[0], args[1], args[2], arg(3), arg(4))
            })
        }),
        "keystone-get-or-create-user" => need(3, "get_or_create_user NAME PASSWORD DOMAIN [EMAIL]")
            .map(|()| {
                with_client(host, |c| {
                    c.get_or_create_user(args[0], args[1], args[2], arg(3))
                })
            }),
        "keystone-get-or-create-project" => need(2, "get_or_create_project NAME DOMAIN")
            .map(|()| with_client(host, |c| c.get_or_create_project(args[0], args[1]))),
        "keystone-get-or-create-group" => need(2, "get_or_create_group NAME DOMAIN [DESCRIPTION]")
            .map(|()| {
                with_client(host, |c| {
                    c.get_or_create_group(args[0], args[1], arg(2).unwrap_or(""))
                })
            }),
        "keystone-get-or-create-role" => need(1, "get_or_create_role NAME")
            .map(|()| with_client(host, |c| c.get_or_create_role(args[0]))),
        "keystone-get-or-create-domain" => {
            need(1, "get_or_create_domain NAME DESCRIPTION").map(|()| {
                with_client(host, |c| {
                    c.get_or_create_domain(args[0], arg(1).unwrap_or(""))
                })
            })
        }
        "keystone-get-or-add-user-project-role" => need(
            3,
            "get_or_add_user_project_role ROLE USER PROJECT [USER_DOMAIN] [PROJECT_DOMAIN]",
        )
        .map(|()| {
            with_client(host, |c| {
                c.get_or_add_user_project_role(args[0], args[1], args[2], arg(3), arg(4))
            })
        }),
        "keystone-get-or-add-user-domain-role" => {
            need(3, "get_or_add_user_domain_role ROLE USER DOMAIN").map(|()| {
                with_client(host, |c| {
                    c.get_or_add_user_domain_role(args[0], args[1], args[2])
                })
            })
        }
        "keystone-create-service-user" => need(1, "create_service_user NAME [ROLE]").map(|()| {
            let settings = host.settings.clone();
            with_client(host, |c| {
                accounts::create_service_user(c, &settings, args[0], arg(1))
            })
        }),
        other => return Reply::error(127, format!("devstack: unknown call '{other}'")),
    };
    match result {
        Err(usage) => usage,
        Ok(Ok(id)) => Reply::stdout(format!("{id}\n")),
        Ok(Err(e)) => Reply::error(1, e.report()),
    }
}

/// Every account, service and endpoint of the enabled services in one session (what
/// a run does after keystone's bootstrap; tools/bench/keystone.sh times it).
pub(super) fn create_accounts(host: &mut Host, _call: &Call) -> Reply {
    let catalog = Registry::builtin().catalog(&host.settings);
    match create_for_enabled(host, &catalog) {
        Ok(report) => Reply::stdout(report.summary()),
        Err(e) => Reply::error(1, e.report()),
    }
}

/// The core accounts, identity, and the entries of the enabled services' `catalog`;
/// nothing when keystone itself is not enabled (as in DevStack's stack.sh).
pub(crate) fn create_for_enabled(
    host: &mut Host,
    catalog: &[ServiceAccount],
) -> Result<accounts::AccountsReport, KeystoneError> {
    if !host.settings.is_enabled(&["key", "keystone"]) {
        return Ok(accounts::AccountsReport::default());
    }
    let settings = host.settings.clone();
    accounts::create_all(host.keystone()?, &settings, catalog)
}

fn with_client(
    host: &mut Host,
    f: impl FnOnce(&mut Client) -> Result<String, KeystoneError>,
) -> Result<String, KeystoneError> {
    f(host.keystone()?)
}
