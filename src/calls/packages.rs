//! `install_package` and friends (functions-common).

use std::collections::BTreeSet;
use std::path::Path;
use std::time::Duration;

use crate::context::Host;
use crate::services::daemon;
use crate::shell::{Call, Reply};
use crate::system::packages;

/// `install_package PACKAGE...` from a hook. On the machines DevStack runs on (systemd),
/// apt starts the server a package brings and plugins count on it: zaqar installs
/// `redis-server` and its API answers only once redis does. Our installs keep maintainer
/// scripts from starting servers (policy-rc.d: ours are supervised), so the services the
/// new packages enable at boot are started here, and recorded: unstack --all stops them.
pub(super) fn install(host: &mut Host, call: &Call) -> Reply {
    let result = packages::install(&mut host.machine(), call.args());
    host.checkpoint();
    match result {
        Ok(new) => match start_package_services(host, &new) {
            Ok(()) => Reply::ok(),
            Err(e) => Reply::error(1, format!("install_package: {e}")),
        },
        Err(e) => Reply::error(
            100,
            format!("install_package: {e}: {}", packages::tail_text(&e)),
        ),
    }
}

/// The ledger fact that lists (space-separated) the distribution services a plugin's
/// install_package started.
const PACKAGE_SERVICES_FACT: &str = "package-services";
/// Where sysv-rc keeps the links of the services started in the default runlevel.
const RC_DEFAULT: &str = "/etc/rc2.d";

/// The services a package's FILES (`dpkg-query -L`) bring that start at boot: an init
/// script with a start link in the default runlevel (RC_DIR), or, on systemd, a
/// `.service` unit (not a template). Sorted, once each.
fn boot_services(files: &str, rc_dir: &Path, systemd: bool) -> Vec<String> {
    let mut found = BTreeSet::new();
    for file in files.lines().map(str::trim) {
        if systemd {
            let unit = ["/lib/systemd/system/", "/usr/lib/systemd/system/"]
                .iter()
                .find_map(|dir| file.strip_prefix(dir));
            if let Some(name) = unit.and_then(|u| u.strip_suffix(".service")) {
                if !name.contains('@') && !name.contains('/') {
                    found.insert(name.to_owned());
                }
            }
        } else if let Some(name) = file.strip_prefix("/etc/init.d/") {
            let starts = fs_err::read_dir(rc_dir)
                .into_iter()
                .flatten()
                .flatten()
                .any(|e| {
                    let link = e.file_name().to_string_lossy().into_owned();
                    link.strip_prefix('S')
                        .map(|rest| rest.trim_start_matches(|c: char| c.is_ascii_digit()))
                        == Some(name)
                });
            if starts && !name.is_empty() && !name.contains('/') {
                found.insert(name.to_owned());
            }
        }
    }
    found.into_iter().collect()
}

fn service_cmd(host: &Host, name: &str, action: &str) -> Result<(), String> {
    let systemd = daemon::use_systemctl();
    let argv = if systemd {
        let mut argv = daemon::privileged("systemctl");
        argv.extend([action.to_owned(), format!("{name}.service")]);
        argv
    } else {
        let mut argv = daemon::privileged("service");
        argv.extend([name.to_owned(), action.to_owned()]);
        argv
    };
    host.cmd(&argv[0])
        .args(&argv[1..])
        .timeout(Duration::from_secs(180))
        .run()
        .map(|_| ())
        .map_err(|e| format!("{}: {e}", argv.join(" ")))
}

/// Starts the boot services of the packages just installed (see [`install`]); on
/// systemd only the units the package enabled.
fn start_package_services(host: &mut Host, new: &[String]) -> Result<(), String> {
    let systemd = daemon::use_systemctl();
    for package in new {
        let Ok(out) = host
            .cmd("dpkg-query")
            .args(["-L", package.as_str()])
            .capture()
            .allow_failure()
            .run()
        else {
            continue;
        };
        for name in boot_services(&out.stdout, Path::new(RC_DEFAULT), systemd) {
            if systemd {
                let enabled = host
                    .cmd("systemctl")
                    .args(["is-enabled", &format!("{name}.service")])
                    .capture()
                    .allow_failure()
                    .run()
                    .is_ok_and(|o| o.stdout.trim() == "enabled");
                if !enabled {
                    continue;
                }
            }
            service_cmd(host, &name, "start")
                .map_err(|e| format!("starting {name} (of {package}) as apt would: {e}"))?;
            host.log.note(&format!(
                "install_package {package}: started {name}, as apt does on a systemd machine"
            ));
            let mut started: Vec<String> = host
                .ledger
                .fact(PACKAGE_SERVICES_FACT)
                .unwrap_or_default()
                .split_whitespace()
                .map(str::to_owned)
                .collect();
            if !started.contains(&name) {
                started.push(name);
            }
            host.ledger
                .set_fact(PACKAGE_SERVICES_FACT, started.join(" "));
            host.checkpoint();
        }
    }
    Ok(())
}

/// unstack --all: stops the services a plugin's install_package started, and forgets
/// them. Failures are warnings (a service already stopped by its plugin is fine).
pub(crate) fn stop_package_services(host: &mut Host) {
    let started = host
        .ledger
        .fact(PACKAGE_SERVICES_FACT)
        .unwrap_or_default()
        .to_owned();
    for name in started.split_whitespace() {
        if let Err(e) = service_cmd(host, name, "stop") {
            host.warn(&format!(
                "stopping {name}, started by a plugin's install_package: {e}"
            ));
        }
    }
    host.ledger.forget_fact(PACKAGE_SERVICES_FACT);
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_package_brings_the_services_it_starts_at_boot() {
        let rc = tempfile::tempdir().unwrap();
        for link in ["S01redis-server", "K01redis-sentinel", "S02named"] {
            std::os::unix::fs::symlink("/dev/null", rc.path().join(link)).unwrap();
        }
        let files = "/.\n/etc/init.d\n/etc/init.d/redis-server\n/etc/init.d/redis-sentinel\n\
                     /lib/systemd/system/redis-server.service\n/lib/systemd/system/redis-server@.service\n\
                     /usr/bin/redis-server\n";
        assert_eq!(boot_services(files, rc.path(), false), ["redis-server"]);
        assert_eq!(boot_services(files, rc.path(), true), ["redis-server"]);
        assert!(boot_services("/usr/bin/jq\n", rc.path(), false).is_empty());
    }
}
