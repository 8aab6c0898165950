//! The process, database and message-queue ops (`inc/process`, `lib/database`,
//! `lib/rpc_backend`). Each shim sends the variables it needs with `-v`, so the same
//! call works inside a run and through `devstack __call`.

use std::fmt::Write as _;
use std::path::Path;
use std::time::{Duration, Instant};

use super::arg;
use crate::context::Host;
use crate::services::{
    Registry, ServiceError, daemon, database, memcached, mysql, oslo, postgresql, rabbit,
};
use crate::shell::{Call, Reply};
use crate::state::{Backend, ProcessKind, ProcessRecord};
use crate::system::supervisor::{OwnSupervisor, ProcStatus, ProcessSpec, Supervisor};

/// Each HTTP request of `wait_for_service` gets at most this long.
const HTTP_REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

pub(super) fn run_process(host: &mut Host, call: &Call) -> Reply {
    let args: Vec<&str> = call.args().iter().map(String::as_str).collect();
    start(host, &args)
}

pub(super) fn stop_process(host: &mut Host, call: &Call) -> Reply {
    stop(host, arg(call, 0))
}

pub(super) fn is_running(host: &mut Host, call: &Call) -> Reply {
    Reply::status(i32::from(!running(host, arg(call, 0))))
}

pub(super) fn service_check(host: &mut Host, _call: &Call) -> Reply {
    check(host)
}

pub(super) fn wait_for_service_op(_host: &mut Host, call: &Call) -> Reply {
    wait_for_service(arg(call, 0), arg(call, 1))
}

pub(super) fn system_service(host: &mut Host, call: &Call) -> Reply {
    system(host, arg(call, 0), arg(call, 1))
}

pub(super) fn recreate_database(host: &mut Host, call: &Call) -> Reply {
    let result = database::recreate_database(host, arg(call, 0));
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => service_error("recreate_database", &e),
    }
}

pub(super) fn database_connection_url(host: &mut Host, call: &Call) -> Reply {
    Reply::stdout(format!(
        "{}\n",
        database::connection_url(&host.settings, arg(call, 0))
    ))
}

pub(super) fn transport_url(host: &mut Host, call: &Call) -> Reply {
    let mut url = rabbit::transport_url(&host.settings);
    url.push_str(arg(call, 0));
    Reply::stdout(format!("{url}\n"))
}

/// `rpc_backend_add_vhost VHOST` (the shim has checked that rabbit is enabled).
pub(super) fn add_vhost(host: &mut Host, call: &Call) -> Reply {
    let vhost = arg(call, 0);
    if vhost.is_empty() {
        return Reply::error(2, "usage: rpc_backend_add_vhost VHOST");
    }
    match rabbit::add_vhost(host, vhost) {
        Ok(()) => Reply::ok(),
        Err(e) => service_error("rpc_backend_add_vhost", &e),
    }
}

/// A service step's error as the shell shows it: what failed, its causes, the last
/// lines of output.
pub(super) fn service_error(what: &str, e: &ServiceError) -> Reply {
    let mut text = format!("{what}: {e}");
    let mut source = std::error::Error::source(e);
    while let Some(s) = source {
        let _ = write!(text, "\n  caused by: {s}");
        source = s.source();
    }
    for line in e.tail() {
        text.push_str("\n  ");
        text.push_str(line);
    }
    Reply::error(1, text)
}

/// Splits DevStack's ENV argument ("A=1 B=2").
pub(super) fn parse_env(text: &str) -> Vec<(String, String)> {
    text.split_whitespace()
        .filter_map(|kv| kv.split_once('='))
        .map(|(k, v)| (k.to_owned(), v.trim_matches('"').to_owned()))
        .collect()
}

/// `run_process NAME COMMAND [GROUP] [USER] [ENV]` (the shim already checked that
/// NAME is enabled). A process of the same name we started before is replaced.
fn start(host: &mut Host, args: &[&str]) -> Reply {
    let (Some(name), Some(command)) = (args.first(), args.get(1)) else {
        return Reply::error(2, "usage: run_process NAME COMMAND [GROUP] [USER] [ENV]");
    };
    if name.is_empty() || name.contains('/') {
        return Reply::error(2, format!("run_process: bad service name '{name}'"));
    }
    let s = &host.settings;
    let group = args
        .get(2)
        .filter(|g| !g.is_empty())
        .map(|g| (*g).to_owned());
    let user = args
        .get(3)
        .filter(|u| !u.is_empty())
        .map(|u| (*u).to_owned())
        .or_else(|| Some(s.str("STACK_USER").to_owned()).filter(|u| !u.is_empty()));
    let mut env = Vec::new();
    if let Some(path) = s.get("PATH").filter(|p| !p.is_empty()) {
        env.push(("PATH".to_owned(), path.to_owned()));
    }
    env.extend(parse_env(args.get(4).copied().unwrap_or("")));
    let logdir = s.path("LOGDIR");
    let logdir = if logdir.as_os_str().is_empty() {
        host.top_dir.join("logs")
    } else {
        logdir
    };
    let spec = ProcessSpec {
        name: (*name).to_owned(),
        command: (*command).to_owned(),
        env,
        user,
        group,
        log: logdir.join(format!("{name}.log")),
        workdir: None,
        address: None,
    };
    match oslo::replace_process(host, "run_process", &spec) {
        Ok(record) => {
            host.log.note(&format!(
                "run_process {name}: pid {:?} ({})",
                record.pid,
                host.supervisor.backend().name()
            ));
            Reply::ok()
        }
        // The supervisor's own words, as the shell has always shown them.
        Err(e) => {
            let cause =
                std::error::Error::source(&e).map_or_else(|| e.to_string(), ToString::to_string);
            Reply::error(1, format!("run_process: {cause}"))
        }
    }
}

fn stop(host: &mut Host, name: &str) -> Reply {
    let Some(record) = host.ledger.process(ProcessKind::Service, name).cloned() else {
        return Reply::ok();
    };
    match host.supervisor.stop(&record) {
        Ok(()) => {
            host.ledger.forget_process(ProcessKind::Service, name);
            host.checkpoint();
            Reply::ok()
        }
        Err(e) => Reply::error(1, format!("stop_process: {e}")),
    }
}

fn record_of(host: &Host, name: &str) -> Option<ProcessRecord> {
    host.ledger
        .process(ProcessKind::Service, name)
        .cloned()
        .or_else(|| daemon::recorded(host, name))
}

fn running(host: &Host, name: &str) -> bool {
    record_of(host, name).is_some_and(|r| {
        let status = if r.backend == Backend::Own {
            OwnSupervisor::default().status(&r)
        } else {
            host.supervisor.status(&r)
        };
        matches!(status, ProcStatus::Running { .. })
    })
}

/// DevStack's `service_check`: every process we started, and whether it runs.
fn check(host: &Host) -> Reply {
    let mut out = String::new();
    let mut failed = Vec::new();
    for record in host.ledger.processes(ProcessKind::Service) {
        let name = &record.name;
        match host.supervisor.status(&record) {
            ProcStatus::Running { pid } => {
                let _ = writeln!(out, "{name}: running (pid {pid})");
            }
            ProcStatus::Stopped => {
                let _ = writeln!(out, "{name}: stopped");
            }
            ProcStatus::Failed { detail } => {
                let _ = writeln!(out, "{name}: failed: {detail}");
                failed.push(name.clone());
            }
        }
    }
    let mut reply = Reply::stdout(out);
    if !failed.is_empty() {
        reply.status = 1;
        reply.stderr = format!(
            "ERROR: the following services have failed: {}\n",
            failed.join(" ")
        );
    }
    reply
}

/// DevStack's `wait_for_service TIMEOUT URL`: polls while the connection fails or the
/// answer is 503; any other HTTP answer is success. Each request has its own timeout.
pub(crate) fn wait_for_service(timeout: &str, url: &str) -> Reply {
    let Ok(secs) = timeout.trim().parse::<u64>() else {
        return Reply::error(2, "usage: wait_for_service TIMEOUT URL");
    };
    let limit = Duration::from_secs(secs);
    let deadline = Instant::now() + limit;
    let probe = || {
        // Each request within what is left of the wait.
        let per_request = deadline
            .saturating_duration_since(Instant::now())
            .min(HTTP_REQUEST_TIMEOUT)
            .max(Duration::from_millis(100));
        match crate::services::oslo::http_get(url, None, per_request) {
            Ok(503) => Err("HTTP 503".to_owned()),
            Ok(_) => Ok(()),
            Err(e) => Err(e),
        }
    };
    let what = format!("GET {url}");
    match daemon::wait_until(
        "wait_for_service",
        &what,
        Path::new(""),
        limit,
        probe,
        || false,
    ) {
        Ok(_) => Reply::ok(),
        Err(_) => Reply::error(
            124,
            format!("wait_for_service: {url} did not answer within {secs} s"),
        ),
    }
}

/// Which of our layer-1 servers a service name means: its name or one of its
/// aliases (the distro's names), as the registry's descriptors declare them.
fn our_service(name: &str) -> Option<&'static str> {
    Registry::builtin()
        .by_service_name(name)
        .map(crate::services::Service::name)
        .filter(|n| SERVERS.contains(n))
}

/// The layer-1 servers `start_ours` and `stop_ours` run without systemd.
const SERVERS: &[&str] = &[mysql::NAME, postgresql::NAME, rabbit::NAME, memcached::NAME];

fn start_ours(host: &mut Host, name: &str) -> Result<(), ServiceError> {
    match name {
        mysql::NAME => mysql::start_server(host),
        postgresql::NAME => postgresql::start_server(host),
        rabbit::NAME => rabbit::start_server(host),
        _ => memcached::start_server(host),
    }
}

fn stop_ours(host: &mut Host, name: &str) -> Result<(), ServiceError> {
    match name {
        mysql::NAME => mysql::stop_server(host),
        postgresql::NAME => postgresql::stop_server(host),
        rabbit::NAME => rabbit::stop_server(host),
        _ => memcached::stop_server(host),
    }
}

/// The process a DevStack unit name means: `devstack@keystone(.service)` is the
/// process stack (or a plugin's run_process) started as `keystone`.
fn devstack_unit(name: &str) -> Option<&str> {
    let process = name.strip_prefix("devstack@")?;
    Some(process.strip_suffix(".service").unwrap_or(process))
}

/// `restart_service devstack@NAME` (and start, stop, reload) without systemd, as the
/// unit would do it: the process we started as NAME stopped and started again
/// from the spec it was started with, so it reads the config a plugin just
/// changed. A stopped one keeps its record (start starts it again; unstack finds
/// it stopped).
fn cloud_process(host: &mut Host, action: &str, name: &str) -> Reply {
    let unknown = || {
        Reply::error(
            1,
            format!("{action}_service: no process devstack@{name} was started"),
        )
    };
    let Some(record) = host.ledger.process(ProcessKind::Service, name).cloned() else {
        return unknown();
    };
    let runs = matches!(host.supervisor.status(&record), ProcStatus::Running { .. });
    if action == "stop" || (runs && action != "start") {
        if let Err(e) = host.supervisor.stop(&record) {
            return Reply::error(1, format!("{action}_service devstack@{name}: {e}"));
        }
    }
    if action == "stop" || (runs && action == "start") {
        return Reply::ok();
    }
    let spec = match crate::system::supervisor::ProcessSpec::of_record(&record) {
        Ok(spec) => spec,
        Err(e) => return Reply::error(1, format!("{action}_service devstack@{name}: {e}")),
    };
    match host.supervisor.start(&spec) {
        Ok(record) => {
            host.log.note(&format!(
                "{action}_service devstack@{name}: pid {:?}",
                record.pid
            ));
            host.ledger.record_process(ProcessKind::Service, record);
            host.checkpoint();
            Reply::ok()
        }
        Err(e) => Reply::error(1, format!("{action}_service devstack@{name}: {e}")),
    }
}

/// `start_service`/`stop_service`/`restart_service`/`reload_service NAME`: systemctl on
/// systemd machines; otherwise our own start and stop for the layer-1 servers and the
/// distro's `service` script for anything else.
/// Where the distribution's systemd units are, most specific first.
const UNIT_DIRS: &[&str] = &[
    "/etc/systemd/system",
    "/run/systemd/system",
    "/lib/systemd/system",
    "/usr/lib/systemd/system",
];
/// The distribution's init scripts (what `service` runs without systemd).
const INIT_D: &str = "/etc/init.d";

/// The unit or init script a distribution service NAME is, when NAME is an alias
/// of another (`bind9` is `named`'s `Alias=` on Debian 12). systemctl knows an alias
/// only while the unit is enabled and `service` never: DevStack's plugins name the
/// alias. NAME itself when it has its own unit or script, or nothing names it.
fn distro_service_name(name: &str, unit_dirs: &[&Path], init_d: &Path) -> String {
    let unit = format!("{name}.service");
    for dir in unit_dirs {
        let path = dir.join(&unit);
        match fs_err::symlink_metadata(&path) {
            // An enabled alias: the link names the unit.
            Ok(m) if m.file_type().is_symlink() => {
                if let Some(stem) = fs_err::read_link(&path)
                    .ok()
                    .and_then(|t| t.file_stem().map(|s| s.to_string_lossy().into_owned()))
                    .filter(|s| *s != name && !s.is_empty() && s != "null")
                {
                    return stem;
                }
                return name.to_owned();
            }
            Ok(_) => return name.to_owned(),
            Err(_) => {}
        }
    }
    if init_d.join(name).exists() {
        return name.to_owned();
    }
    for dir in unit_dirs {
        let Ok(entries) = fs_err::read_dir(dir) else {
            continue;
        };
        for entry in entries.flatten() {
            let path = entry.path();
            if path.extension().is_none_or(|e| e != "service") || path.is_symlink() {
                continue;
            }
            let text = fs_err::read_to_string(&path).unwrap_or_default();
            let aliased = text.lines().any(|l| {
                l.trim()
                    .strip_prefix("Alias=")
                    .is_some_and(|names| names.split_whitespace().any(|n| n == unit))
            });
            if aliased {
                if let Some(stem) = path.file_stem() {
                    return stem.to_string_lossy().into_owned();
                }
            }
        }
    }
    name.to_owned()
}

fn system(host: &mut Host, action: &str, name: &str) -> Reply {
    if !matches!(action, "start" | "stop" | "restart" | "reload") || name.is_empty() {
        return Reply::error(2, format!("usage: {action}_service NAME"));
    }
    let unit_dirs: Vec<&Path> = UNIT_DIRS.iter().map(Path::new).collect();
    let distro_name = distro_service_name(name, &unit_dirs, Path::new(INIT_D));
    let result = if daemon::use_systemctl() {
        daemon::systemctl(host, name, action, &distro_name)
    } else if let Some(process) = devstack_unit(name) {
        return cloud_process(host, action, process);
    } else if let Some(ours) = our_service(name) {
        match action {
            "start" => start_ours(host, ours),
            "stop" => stop_ours(host, ours),
            // Our servers read no config that a reload would pick up; restart both.
            _ => stop_ours(host, ours).and_then(|()| start_ours(host, ours)),
        }
    } else if crate::system::process::which("service").is_some() {
        host.cmd("service")
            .args([distro_name.as_str(), action])
            .timeout(Duration::from_secs(180))
            .run()
            .map(|_| ())
            .map_err(|source| ServiceError::Process {
                service: name.into(),
                what: format!("service {distro_name} {action}"),
                source,
            })
    } else {
        Err(ServiceError::failed(
            name,
            "no systemd and no service script to manage it",
        ))
    };
    match result {
        Ok(()) => Reply::ok(),
        Err(e) => service_error(&format!("{action}_service {name}"), &e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn env_argument_splits_like_devstack() {
        assert_eq!(
            parse_env("A=1 B=x=y  C=\"q\""),
            vec![
                ("A".into(), "1".into()),
                ("B".into(), "x=y".into()),
                ("C".into(), "q".into())
            ]
        );
        assert!(parse_env("").is_empty());
    }

    #[test]
    fn wait_for_service_gives_up_on_a_closed_port() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        drop(l);
        let t0 = Instant::now();
        let reply = wait_for_service("1", &format!("http://127.0.0.1:{port}/"));
        assert_eq!(reply.status, 124);
        assert!(t0.elapsed() < Duration::from_secs(3));
    }

    #[test]
    fn wait_for_service_succeeds_on_any_answer_but_503() {
        use std::io::{Read, Write};
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let server = std::thread::spawn(move || {
            for status in ["503 Service Unavailable", "404 Not Found"] {
                let (mut s, _) = l.accept().unwrap();
                let mut buf = [0u8; 1024];
                let _ = s.read(&mut buf);
                let _ = writeln!(
                    s,
                    "HTTP/1.1 {status}\r\nContent-Length: 0\r\nConnection: close\r\n\r"
                );
            }
        });
        let reply = wait_for_service("10", &format!("http://127.0.0.1:{port}/"));
        assert_eq!(reply.status, 0, "{reply:?}");
        server.join().unwrap();
    }

    #[test]
    fn an_alias_names_the_unit_that_declares_it_or_its_enabled_link() {
        let dir = tempfile::tempdir().unwrap();
        let (etc, lib, init_d) = (
            dir.path().join("etc"),
            dir.path().join("lib"),
            dir.path().join("init.d"),
        );
        for d in [&etc, &lib, &init_d] {
            fs_err::create_dir_all(d).unwrap();
        }
        fs_err::write(
            lib.join("named.service"),
            "[Unit]\nDescription=BIND\n[Install]\nWantedBy=multi-user.target\nAlias=bind9.service\n",
        )
        .unwrap();
        fs_err::write(lib.join("other.service"), "[Unit]\n").unwrap();
        fs_err::write(init_d.join("named"), "#!/bin/sh\n").unwrap();
        let dirs = [etc.as_path(), lib.as_path()];
        // Disabled (no link): found through Alias=, with and without systemd.
        assert_eq!(distro_service_name("bind9", &dirs, &init_d), "named");
        assert_eq!(distro_service_name("named", &dirs, &init_d), "named");
        assert_eq!(distro_service_name("other", &dirs, &init_d), "other");
        assert_eq!(distro_service_name("nothing", &dirs, &init_d), "nothing");
        // Enabled: the alias link names the unit.
        std::os::unix::fs::symlink(lib.join("named.service"), etc.join("bind9.service")).unwrap();
        fs_err::remove_file(lib.join("named.service")).unwrap();
        fs_err::write(lib.join("named.service"), "[Unit]\n").unwrap();
        assert_eq!(distro_service_name("bind9", &dirs, &init_d), "named");
    }

    #[test]
    fn devstack_unit_names_name_our_processes() {
        assert_eq!(devstack_unit("devstack@keystone"), Some("keystone"));
        assert_eq!(devstack_unit("devstack@n-api.service"), Some("n-api"));
        assert_eq!(devstack_unit("apache2"), None);
    }

    #[test]
    fn distro_names_map_to_our_services() {
        assert_eq!(our_service("mariadb"), Some("mysql"));
        assert_eq!(our_service("rabbitmq-server"), Some("rabbit"));
        assert_eq!(our_service("postgres"), Some("postgresql"));
        assert_eq!(our_service("memcached"), Some("memcached"));
        assert_eq!(our_service("apache2"), None);
        assert_eq!(our_service("keystone"), None);
    }
}
