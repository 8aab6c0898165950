//! `memcached`: started when keystone (`key`) or a plugin (`enable_service memcached`)
//! needs it, listening on `SERVICE_HOST` only, waited for until `version` answers.

use std::io::{BufRead, BufReader, Write};
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::services::daemon::{self, Daemon};
use crate::services::{Descriptor, Layer, Service, ServiceError};
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "memcached";
pub(crate) const PORT: u16 = 11211;
const SYSTEMD_UNIT: &str = "memcached";
/// The options Debian's memcached unit starts the server with, one per line.
const DISTRO_CONF: &str = "/etc/memcached.conf";

pub(crate) struct Memcached;

/// memcached.conf `text` with its `-l` line (added when missing) set to `addr`.
fn with_listen_address(text: &str, addr: &str) -> String {
    let wanted = format!("-l {addr}");
    let mut found = false;
    let mut out: Vec<String> = text
        .lines()
        .map(|line| {
            if line.trim_start().starts_with("-l ") {
                found = true;
                wanted.clone()
            } else {
                line.to_owned()
            }
        })
        .collect();
    if !found {
        out.push(wanted);
    }
    let mut joined = out.join("\n");
    joined.push('\n');
    joined
}

fn host_addr(s: &Settings) -> String {
    s.get_or("SERVICE_HOST", "127.0.0.1").to_owned()
}

/// Sends one memcached text command to `server` (`host:port`, or a pair) and returns
/// the first line of the answer; every step has `timeout`.
pub(crate) fn command(
    server: impl std::net::ToSocketAddrs,
    command: &str,
    timeout: Duration,
) -> Result<String, String> {
    let mut s = crate::system::net::connect(server, timeout).map_err(|e| e.to_string())?;
    s.write_all(format!("{command}\r\n").as_bytes())
        .map_err(|e| e.to_string())?;
    let mut line = String::new();
    BufReader::new(s)
        .read_line(&mut line)
        .map_err(|e| e.to_string())?;
    Ok(line)
}

/// `version` over TCP, with a per-request timeout.
pub(crate) fn version_probe(host: &str, port: u16, timeout: Duration) -> Result<String, String> {
    let line = command((host, port), "version", timeout)?;
    line.strip_prefix("VERSION ")
        .map(|v| v.trim().to_owned())
        .ok_or_else(|| format!("unexpected answer {line:?}"))
}

impl Daemon for Memcached {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: NAME,
            unit: SYSTEMD_UNIT,
            probe_what: "memcached version",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        (host_addr(settings), vec![PORT])
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let addr = host_addr(&host.settings);
        let user = if nix::unistd::User::from_name("memcache")
            .ok()
            .flatten()
            .is_some()
        {
            "memcache"
        } else {
            "nobody"
        };
        Ok(ProcessSpec {
            name: NAME.into(),
            command: format!(
                "exec /usr/bin/memcached -u {user} -l {addr} -p {PORT} -U 0 -m 64 -c 1024 -v"
            ),
            log: daemon::daemon_log(&host.settings, NAME),
            workdir: Some("/".into()),
            address: Some(format!("{addr}:{PORT}")),
            ..ProcessSpec::default()
        })
    }
    /// Debian's config listens on 127.0.0.1 (`-l`); the services reach memcached at
    /// SERVICE_HOST, where our own launch listens.
    fn configure_unit(&self, host: &mut Host) -> Result<bool, ServiceError> {
        let path = std::path::Path::new(DISTRO_CONF);
        let io = |source| ServiceError::Io {
            service: NAME.into(),
            path: path.to_path_buf(),
            source,
        };
        let before = fs_err::read_to_string(path).map_err(io)?;
        let after = with_listen_address(&before, &host_addr(&host.settings));
        if after == before {
            return Ok(false);
        }
        fs_err::write(path, after).map_err(io)?;
        Ok(true)
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        version_probe(&host_addr(&host.settings), PORT, daemon::PROBE_TIMEOUT).map(|_| ())
    }
}

pub(crate) fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::start(host, &Memcached)
}

pub(crate) fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::stop(host, &Memcached)
}

/// memcached: enabled by itself or by keystone (its token cache).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME, "key"],
    packages: &["memcached"],
    ..Descriptor::named(NAME, Layer::Infra)
};

impl Service for Memcached {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_server(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, all: bool) -> Result<(), ServiceError> {
        // A cache holds nothing worth keeping, but DevStack stops it with the rest of
        // layer 1 only on --all.
        let ours = cx.host.ledger.has_system_service(NAME);
        daemon::stop_layer1(cx.host, &Memcached, all, ours, |_| Ok(()))
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        daemon::remove_daemon_log(&cx.host.settings, NAME);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::with_listen_address;

    #[test]
    fn the_distro_conf_listens_where_the_services_connect() {
        let debian = "# memcached default config\n-d\n-m 64\n-p 11211\n-u memcache\n-l 127.0.0.1\n-P /var/run/memcached/memcached.pid\n";
        assert_eq!(
            with_listen_address(debian, "10.0.0.5"),
            "# memcached default config\n-d\n-m 64\n-p 11211\n-u memcache\n-l 10.0.0.5\n-P /var/run/memcached/memcached.pid\n"
        );
        assert_eq!(
            with_listen_address("-m 64\n", "10.0.0.5"),
            "-m 64\n-l 10.0.0.5\n"
        );
    }
}
