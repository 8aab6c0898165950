//! The calls the shell library makes into Rust (`_ds_call OP ARG...`), in a run over
//! the channel or standalone through `devstack __call`: one table, [`TABLE`], each
//! op with its handler and usage. A test checks that every op the shipped bash
//! library sends is in it.

use std::process::ExitCode;
use std::sync::Arc;

use crate::context::Host;
use crate::shell::{Call, Callbacks, Reply};
use crate::state::Ledger;
use crate::ui::log::RunLog;
use crate::ui::{TermProgress, Verbosity};

mod cinder;
mod core;
mod keystone;
mod libvirt;
mod packages;
mod process;
mod python;
mod services;

pub(crate) use keystone::create_for_enabled;

/// One shell op: the name `_ds_call` sends, the handler, and the usage an error
/// prints.
pub(crate) struct Op {
    pub name: &'static str,
    pub handler: fn(&mut Host, &Call) -> Reply,
    pub usage: &'static str,
}

/// Every op, grouped by the library file that sends it.
#[rustfmt::skip]
pub(crate) const TABLE: &[Op] = &[
    // functions-common, inc/ini-config
    Op { name: "ini", handler: core::ini, usage: "ini set|get|get-multi|has|add|set-multi|delete FILE SECTION [OPTION [VALUE...]]" },
    Op { name: "service-enabled", handler: core::service_enabled, usage: "is_service_enabled NAME..." },
    Op { name: "service-enable", handler: core::service_enable, usage: "enable_service NAME..." },
    Op { name: "service-disable", handler: core::service_disable, usage: "disable_service NAME..." },
    Op { name: "service-disable-all", handler: core::service_disable_all, usage: "disable_all_services" },
    Op { name: "service-disable-negated", handler: core::service_disable_negated, usage: "disable_negated_services" },
    Op { name: "plugin-enable", handler: core::plugin_enable, usage: "enable_plugin NAME URL [REF]" },
    Op { name: "redact", handler: core::redact, usage: "redact TEXT..." },
    Op { name: "install-package", handler: packages::install, usage: "install_package PACKAGE..." },
    Op { name: "uninstall-package", handler: packages::uninstall, usage: "uninstall_package PACKAGE..." },
    Op { name: "is-package-installed", handler: packages::is_installed, usage: "is_package_installed PACKAGE..." },
    Op { name: "apt-get-update", handler: packages::update, usage: "apt_get_update" },
    // inc/process, lib/database, lib/rpc_backend
    Op { name: "run-process", handler: process::run_process, usage: "run_process NAME COMMAND [GROUP] [USER] [ENV]" },
    Op { name: "stop-process", handler: process::stop_process, usage: "stop_process NAME" },
    Op { name: "is-running", handler: process::is_running, usage: "is_running NAME" },
    Op { name: "service-check", handler: process::service_check, usage: "service_check" },
    Op { name: "wait-for-service", handler: process::wait_for_service_op, usage: "wait_for_service TIMEOUT URL" },
    Op { name: "system-service", handler: process::system_service, usage: "start_service|stop_service|restart_service|reload_service NAME" },
    Op { name: "recreate-database", handler: process::recreate_database, usage: "recreate_database NAME" },
    Op { name: "database-connection-url", handler: process::database_connection_url, usage: "database_connection_url NAME" },
    Op { name: "rabbit-add-vhost", handler: process::add_vhost, usage: "rpc_backend_add_vhost VHOST" },
    Op { name: "transport-url", handler: process::transport_url, usage: "get_transport_url [VHOST]" },
    // inc/python, lib/apache
    Op { name: "python-setup-develop", handler: python::setup_develop, usage: "setup_develop DIR [EXTRAS]" },
    Op { name: "python-setup-dev-lib", handler: python::setup_dev_lib, usage: "setup_dev_lib NAME [EXTRAS]" },
    Op { name: "python-pip-install", handler: python::pip_install, usage: "pip_install [-e DIR] NAME..." },
    Op { name: "python-venv", handler: python::venv, usage: "python-venv" },
    Op { name: "uwsgi-write-config", handler: python::uwsgi_write_config, usage: "write_uwsgi_config CONF WSGI URL [HTTP] [NAME]" },
    Op { name: "uwsgi-remove-config", handler: python::uwsgi_remove_config, usage: "remove_uwsgi_config CONF [NAME]" },
    Op { name: "frontproxy", handler: python::frontproxy_op, usage: "restart_apache_server|start_apache_server|stop_apache_server (frontproxy restart|start|stop)" },
    // lib/keystone
    Op { name: "keystone-get-or-create-service", handler: keystone::serve, usage: "get_or_create_service NAME TYPE DESCRIPTION" },
    Op { name: "keystone-get-or-create-endpoint", handler: keystone::serve, usage: "get_or_create_endpoint SERVICE REGION PUBLIC_URL [ADMIN_URL] [INTERNAL_URL]" },
    Op { name: "keystone-get-or-create-user", handler: keystone::serve, usage: "get_or_create_user NAME PASSWORD DOMAIN [EMAIL]" },
    Op { name: "keystone-get-or-create-project", handler: keystone::serve, usage: "get_or_create_project NAME DOMAIN" },
    Op { name: "keystone-get-or-create-group", handler: keystone::serve, usage: "get_or_create_group NAME DOMAIN [DESCRIPTION]" },
    Op { name: "keystone-get-or-create-role", handler: keystone::serve, usage: "get_or_create_role NAME" },
    Op { name: "keystone-get-or-create-domain", handler: keystone::serve, usage: "get_or_create_domain NAME DESCRIPTION" },
    Op { name: "keystone-get-or-add-user-project-role", handler: keystone::serve, usage: "get_or_add_user_project_role ROLE USER PROJECT [USER_DOMAIN] [PROJECT_DOMAIN]" },
    Op { name: "keystone-get-or-add-user-domain-role", handler: keystone::serve, usage: "get_or_add_user_domain_role ROLE USER DOMAIN" },
    Op { name: "keystone-create-service-user", handler: keystone::serve, usage: "create_service_user NAME [ROLE]" },
    Op { name: "keystone-start", handler: services::keystone_start, usage: "start_keystone" },
    Op { name: "keystone-create-accounts", handler: keystone::create_accounts, usage: "keystone-create-accounts" },
    // lib/neutron
    Op { name: "neutron-start", handler: services::neutron_start, usage: "start_neutron_service_and_check" },
    Op { name: "neutron-stop", handler: services::neutron_stop, usage: "stop_neutron" },
    Op { name: "neutron-start-agents", handler: services::neutron_start_agents, usage: "start_neutron|start_neutron_agents" },
    Op { name: "ovn-start", handler: services::ovn_start, usage: "start_ovn" },
    // lib/nova
    Op { name: "nova-compute-start", handler: services::nova_compute_start, usage: "start_nova_compute" },
    Op { name: "nova-compute-stop", handler: services::nova_compute_stop, usage: "stop_nova_compute" },
    // the lib/ defaults of cinder's backends (services::cinder's descriptor)
    Op { name: "cinder-default", handler: cinder::default, usage: "cinder-default backends|target-helper|lvm-type" },
    // lib/nova_plugins/hypervisor-libvirt
    Op { name: "libvirt-install", handler: libvirt::install, usage: "install_nova_hypervisor" },
    Op { name: "libvirt-install-libvirt", handler: libvirt::install_libvirt, usage: "install_libvirt" },
    Op { name: "libvirt-configure", handler: libvirt::configure, usage: "configure_nova_hypervisor" },
    Op { name: "libvirt-start", handler: libvirt::start, usage: "start_nova_hypervisor" },
    Op { name: "libvirt-stop", handler: libvirt::stop, usage: "stop_nova_hypervisor" },
    Op { name: "libvirt-cleanup", handler: libvirt::cleanup, usage: "cleanup_nova_hypervisor" },
];

/// The op of that name.
pub(crate) fn find(name: &str) -> Option<&'static Op> {
    TABLE.iter().find(|op| op.name == name)
}

/// Serves one call: the call's variables overlaid on the settings, then its op.
pub(crate) fn dispatch(host: &mut Host, call: &Call) -> Reply {
    host.settings.overlay(&call.vars);
    tracing::debug!(op = call.op(), args = call.args().len(), "shell call");
    match find(call.op()) {
        Some(op) => {
            let mut reply = (op.handler)(host, call);
            // A usage error the handler did not explain gets the op's usage line.
            if reply.status == 2 && reply.stderr.is_empty() {
                reply.stderr = format!("usage: {}\n", op.usage);
            }
            reply
        }
        None => Reply::error(127, format!("devstack: unknown call '{}'", call.op())),
    }
}

/// The host as the shell's call server during a hook or a function call.
pub(crate) struct Server<'a>(pub &'a mut Host);

impl Callbacks for Server<'_> {
    fn call(&mut self, call: &Call) -> Reply {
        dispatch(self.0, call)
    }

    fn summary(&mut self, text: &str) {
        self.0.log.note(text);
        self.0.progress.summary(text);
    }

    fn warning(&mut self, text: &str) {
        self.0.warn(text);
    }

    fn hook_started(&mut self, index: usize) {
        if let Some(name) = self.0.hook_names.get(index) {
            self.0.progress.sub_task(name);
        }
    }
}

/// `devstack __call [NVARS K V ... OP ARG...]`: the same calls outside a run, for a
/// plain bash that sourced `$TOP_DIR/functions`. Prints the framed reply on stdout.
pub(crate) fn standalone(
    top_dir: std::path::PathBuf,
    fields: &[String],
) -> anyhow::Result<ExitCode> {
    // Without arguments the request comes NUL-separated on stdin (the library sends
    // it so: secrets must not show in the process table).
    let fields = if fields.is_empty() {
        let mut input = Vec::new();
        std::io::Read::read_to_end(&mut std::io::stdin(), &mut input)?;
        input
            .split(|b| *b == 0)
            .map(|f| String::from_utf8_lossy(f).into_owned())
            .collect::<Vec<_>>()
            .split_last()
            .map(|(_, rest)| rest.to_vec())
            .unwrap_or_default()
    } else {
        fields.to_vec()
    };
    let reply = match Call::parse(&fields) {
        Err(e) => Reply::error(2, format!("devstack __call: {e}")),
        Ok(call) => {
            let ledger = Ledger::load(&top_dir)?;
            let progress = Arc::new(TermProgress::new(Verbosity::Quiet));
            let log = Arc::new(RunLog::new(progress.clone()));
            let mut host = Host::new(top_dir, ledger, log, progress);
            host.mode = crate::context::Mode::Standalone;
            let mut settings = crate::config::settings::Settings::new(std::env::vars().collect());
            settings.overlay(&call.vars);
            host.settings = settings;
            host.refresh_secrets();
            let reply = dispatch(&mut host, &call);
            host.save_state()?;
            reply
        }
    };
    let mut out = std::io::stdout().lock();
    reply.to_frame().write_to(&mut out)?;
    Ok(ExitCode::SUCCESS)
}

/// Positional argument `i`, or "".
fn arg(call: &Call, i: usize) -> &str {
    call.args().get(i).map_or("", String::as_str)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The ops the shipped bash library sends: the first word after `_ds_call` and
    /// its `-v VAR` pairs and `"${ARRAY[@]}"` expansions.
    fn library_ops() -> Vec<(String, String)> {
        let top = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        let mut files = vec![top.join("functions"), top.join("functions-common")];
        for dir in ["inc", "lib", "lib/nova_plugins"] {
            for entry in fs_err::read_dir(top.join(dir)).unwrap() {
                let path = entry.unwrap().path();
                if path.is_file() {
                    files.push(path);
                }
            }
        }
        let mut ops = Vec::new();
        for file in files {
            let text = fs_err::read_to_string(&file).unwrap();
            for (n, line) in text.lines().enumerate() {
                let code = line.trim_start();
                if code.starts_with('#') || code.starts_with("_ds_call()") {
                    continue;
                }
                let Some(rest) = code.split("_ds_call ").nth(1) else {
                    continue;
                };
                let mut words = rest.split_whitespace();
                while let Some(w) = words.next() {
                    if w == "-v" {
                        words.next();
                    } else if w.starts_with("\"${") || w.starts_with("${") {
                    } else {
                        ops.push((
                            w.trim_matches('"').to_owned(),
                            format!("{}:{}", file.display(), n + 1),
                        ));
                        break;
                    }
                }
            }
        }
        ops
    }

    #[test]
    fn every_op_the_library_sends_is_in_the_table() {
        let ops = library_ops();
        assert!(
            ops.len() > 30,
            "the scan found the library's calls: {ops:?}"
        );
        let missing: Vec<_> = ops.iter().filter(|(op, _)| find(op).is_none()).collect();
        assert!(missing.is_empty(), "ops with no handler: {missing:?}");
    }

    #[test]
    fn op_names_are_unique() {
        for (i, op) in TABLE.iter().enumerate() {
            assert!(
                TABLE[i + 1..].iter().all(|o| o.name != op.name),
                "{} twice",
                op.name
            );
        }
    }
}
