//! `rabbit`: RabbitMQ from Debian, listening on `RABBIT_HOST` only (AMQP, the Erlang
//! distribution port and epmd), started by us as the rabbitmq user, waited for until
//! an AMQP handshake works, with `RABBIT_USERID`/`RABBIT_PASSWORD` able to log in.
//! DevStack's lib/rpc_backend: `get_transport_url`, `iniset_rpc_backend`.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::context::ServiceCtx;
use crate::services::daemon::{self, Daemon};
use crate::services::{Descriptor, Layer, Service, ServiceError};
use crate::system::supervisor::ProcessSpec;

pub(crate) const NAME: &str = "rabbit";
pub(crate) const PORT: u16 = 5672;
const DIST_PORT: u16 = 25672;
const EPMD_PORT: u16 = 4369;
const EPMD: &str = "rabbit-epmd";
const NODE: &str = "rabbit@localhost";
const HOME: &str = "/var/lib/rabbitmq";
const SYSTEMD_UNIT: &str = "rabbitmq-server";
/// Facts: the user this project created (clean deletes it).
const USER_FACT: &str = "rabbit-user-created";
/// Read by every RabbitMQ command-line tool (its `NODENAME`), whoever runs it: a
/// user's `sudo rabbitmqctl list_queues` (sudo resets the environment, so
/// `RABBITMQ_NODENAME` cannot carry it) reaches our node through it.
const ENV_CONF: &str = "/etc/rabbitmq/rabbitmq-env.conf";
/// The comment above the line we add (what the stop removes, with that line).
const ENV_MARK: &str =
    "# devstack-rs: rabbitmqctl without -n reaches the node stack started (removed when it stops)";
/// Facts: ENV_CONF did not exist before we wrote it (removed, not edited, at stop).
const ENV_CONF_FACT: &str = "rabbit-env-conf-created";

pub(crate) struct Rabbit;

fn host_addr(s: &Settings) -> String {
    s.get_or("RABBIT_HOST", "127.0.0.1").to_owned()
}

/// The `transport_url` the core services get from us, as DevStack's
/// `iniset_rpc_backend` decides it: with rabbit enabled, or a remote broker given
/// (RABBIT_HOST and RABBIT_PASSWORD: RABBIT_PASSWORD is generated only when rabbit
/// is enabled, as DevStack reads it only then); otherwise none (a messaging
/// plugin's own `iniset_rpc_backend` then writes theirs: [`PLUGIN_RPC_BACKEND`]).
pub(crate) fn configured_transport_url(s: &Settings) -> Option<String> {
    let remote = !s.str("RABBIT_HOST").is_empty() && !s.str("RABBIT_PASSWORD").is_empty();
    (s.is_enabled(&[NAME]) || remote).then(|| transport_url(s))
}

/// The shell function (lib/rpc_backend) the pipeline calls with `PACKAGE FILE`
/// after a core service's config is written: when a plugin redefined
/// `iniset_rpc_backend` or `get_transport_url` (AMQP 1.0, Kafka, ZeroMQ plugins do),
/// its functions write FILE's messaging options, as DevStack's core services call
/// them; otherwise it does nothing.
pub(crate) const PLUGIN_RPC_BACKEND: &str = "_ds_plugin_rpc_backend";

/// DevStack's `get_transport_url`.
pub(crate) fn transport_url(s: &Settings) -> String {
    format!(
        "rabbit://{}:{}@{}:{PORT}/",
        s.get_or("RABBIT_USERID", "stackrabbit"),
        s.str("RABBIT_PASSWORD"),
        host_addr(s)
    )
}

fn read_frame(stream: &mut TcpStream) -> std::io::Result<(u8, Vec<u8>)> {
    let mut head = [0u8; 7];
    stream.read_exact(&mut head)?;
    let size = u32::from_be_bytes([head[3], head[4], head[5], head[6]]) as usize;
    if size > 1 << 20 {
        return Err(std::io::Error::other("frame too large"));
    }
    let mut payload = vec![0u8; size + 1];
    stream.read_exact(&mut payload)?;
    if payload.pop() != Some(0xCE) {
        return Err(std::io::Error::other("bad frame end"));
    }
    Ok((head[0], payload))
}

fn method_of(payload: &[u8]) -> Option<(u16, u16)> {
    (payload.len() >= 4).then(|| {
        (
            u16::from_be_bytes([payload[0], payload[1]]),
            u16::from_be_bytes([payload[2], payload[3]]),
        )
    })
}

/// One AMQP 0-9-1 exchange with the broker: the protocol header, `connection.start`
/// back; with credentials also `start-ok` (PLAIN) and `connection.tune` back (the
/// login worked). Every read and write has `timeout`.
pub(crate) fn amqp_probe(
    host: &str,
    port: u16,
    login: Option<(&str, &str)>,
    timeout: Duration,
) -> Result<(), String> {
    let mut s = crate::system::net::connect((host, port), timeout).map_err(|e| e.to_string())?;
    s.write_all(b"AMQP\x00\x00\x09\x01")
        .map_err(|e| e.to_string())?;
    let (kind, payload) = read_frame(&mut s).map_err(|e| format!("no connection.start: {e}"))?;
    if kind != 1 || method_of(&payload) != Some((10, 10)) {
        return Err("the broker did not send connection.start".into());
    }
    let Some((user, pass)) = login else {
        return Ok(());
    };
    let mut args = Vec::new();
    args.extend_from_slice(&10u16.to_be_bytes());
    args.extend_from_slice(&11u16.to_be_bytes());
    args.extend_from_slice(&0u32.to_be_bytes()); // client-properties: empty table
    args.push(5);
    args.extend_from_slice(b"PLAIN");
    let response = format!("\0{user}\0{pass}");
    args.extend_from_slice(&u32::try_from(response.len()).unwrap_or(0).to_be_bytes());
    args.extend_from_slice(response.as_bytes());
    args.push(5);
    args.extend_from_slice(b"en_US");
    let mut frame = vec![1u8, 0, 0];
    frame.extend_from_slice(&u32::try_from(args.len()).unwrap_or(0).to_be_bytes());
    frame.extend_from_slice(&args);
    frame.push(0xCE);
    s.write_all(&frame).map_err(|e| e.to_string())?;
    match read_frame(&mut s) {
        Ok((1, p)) if method_of(&p) == Some((10, 30)) => Ok(()),
        Ok(_) | Err(_) => Err(format!("login as {user} was refused")),
    }
}

fn erlang_ip(addr: &str) -> Option<String> {
    let ip: std::net::Ipv4Addr = addr.parse().ok()?;
    let o = ip.octets();
    Some(format!("{{{},{},{},{}}}", o[0], o[1], o[2], o[3]))
}

fn rabbitmqctl(host: &Host, args: &[&str], stdin_secret: Option<&str>) -> Result<(), ServiceError> {
    rabbitmqctl_output(host, args, stdin_secret).map(|_| ())
}

/// `rabbitmqctl ARGS` against our node; its stdout.
fn rabbitmqctl_output(
    host: &Host,
    args: &[&str],
    stdin_secret: Option<&str>,
) -> Result<String, ServiceError> {
    // The wrapper switches to the rabbitmq user (whose Erlang cookie it needs). A
    // password goes in on stdin, from the environment of a shell: never on argv.
    let mut cmd = host
        .cmd("bash")
        .args([
            "-c",
            "if [[ -n ${DS_SECRET+x} ]]; then printf '%s' \"$DS_SECRET\" | \"$@\"; else \"$@\"; fi",
            "bash",
        ])
        .args(["rabbitmqctl", "-q"]);
    // Our own server is NODE; the distro's unit (systemd) runs the default node,
    // rabbit@HOSTNAME, which rabbitmqctl addresses by itself (as DevStack's calls do):
    // naming NODE there fails the Erlang handshake.
    if !daemon::use_systemctl() {
        cmd = cmd.args(["-n", NODE]).env("RABBITMQ_NODENAME", NODE);
    }
    let mut cmd = cmd
        .args(args)
        .label("rabbitmqctl")
        .capture()
        .timeout(Duration::from_secs(60));
    if let Some(secret) = stdin_secret {
        cmd = cmd.env("DS_SECRET", secret);
    }
    cmd.run()
        .map(|out| out.stdout)
        .map_err(|source| ServiceError::Process {
            service: NAME.into(),
            what: format!("rabbitmqctl {}", args.first().copied().unwrap_or("")),
            source,
        })
}

/// `text` of rabbitmq-env.conf with our node name set last (sourced by sh: the
/// last assignment wins over the distribution's or the admin's).
fn with_node_name(text: &str) -> String {
    let mut out = without_node_name(text);
    if !out.is_empty() && !out.ends_with('\n') {
        out.push('\n');
    }
    out.push_str(ENV_MARK);
    out.push_str("\nNODENAME=");
    out.push_str(NODE);
    out.push('\n');
    out
}

/// `text` without the lines [`with_node_name`] added.
fn without_node_name(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut lines = text.split_inclusive('\n').peekable();
    while let Some(line) = lines.next() {
        if line.trim_end() == ENV_MARK {
            if lines.peek().is_some_and(|l| l.starts_with("NODENAME=")) {
                lines.next();
            }
            continue;
        }
        out.push_str(line);
    }
    out
}

/// Points the command-line tools' default node at ours (DevStack's users type
/// `sudo rabbitmqctl ...` without `-n`; our node is `rabbit@localhost`, not the
/// default `rabbit@$(hostname -s)`, so it can listen on RABBIT_HOST only).
fn point_tools_at_node(host: &mut Host) -> Result<(), ServiceError> {
    let path = std::path::Path::new(ENV_CONF);
    let io = |source| ServiceError::Io {
        service: NAME.into(),
        path: path.to_path_buf(),
        source,
    };
    let text = match fs_err::read_to_string(path) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            host.ledger.set_fact(ENV_CONF_FACT, "1");
            String::new()
        }
        Err(e) => return Err(io(e)),
    };
    let wanted = with_node_name(&text);
    if wanted != text {
        if let Some(dir) = path.parent() {
            fs_err::create_dir_all(dir).map_err(io)?;
        }
        fs_err::write(path, wanted).map_err(io)?;
    }
    host.checkpoint();
    Ok(())
}

/// Takes our node name out of rabbitmq-env.conf again (a distribution's server
/// started later keeps its own node and data).
fn unpoint_tools(host: &mut Host) {
    let path = std::path::Path::new(ENV_CONF);
    let Ok(text) = fs_err::read_to_string(path) else {
        return;
    };
    let restored = without_node_name(&text);
    let result = if restored.is_empty() && host.ledger.fact(ENV_CONF_FACT).is_some() {
        fs_err::remove_file(path)
    } else if restored == text {
        Ok(())
    } else {
        fs_err::write(path, restored)
    };
    match result {
        Ok(()) => host.ledger.forget_fact(ENV_CONF_FACT),
        Err(e) => host.warn(&format!("rabbit: {e}")),
    }
}

impl Daemon for Rabbit {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: NAME,
            unit: SYSTEMD_UNIT,
            probe_what: "AMQP handshake",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        (host_addr(settings), vec![PORT, DIST_PORT])
    }
    /// epmd under our supervisor (rabbit would otherwise daemonise one we cannot
    /// see; a foreign epmd already listening is used as it is), and the broker's
    /// data for our node name recorded for clean.
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        let addr = host_addr(&host.settings);
        if !daemon::port_taken(&addr, EPMD_PORT) {
            let spec = ProcessSpec {
                name: EPMD.into(),
                command: format!("exec /usr/bin/epmd -address {addr} -port {EPMD_PORT}"),
                user: Some("rabbitmq".into()),
                log: daemon::daemon_log(&host.settings, EPMD),
                workdir: Some(HOME.into()),
                address: Some(format!("{addr}:{EPMD_PORT}")),
                ..ProcessSpec::default()
            };
            let timeout = daemon::service_timeout(&host.settings);
            daemon::launch_ready(host, NAME, &spec, timeout, "epmd", |_| {
                if daemon::port_taken(&addr, EPMD_PORT) {
                    Ok(())
                } else {
                    Err("epmd not listening".into())
                }
            })?;
        }
        let mnesia = std::path::Path::new(HOME).join("mnesia").join(NODE);
        if !mnesia.exists() {
            host.ledger.record_dir(&mnesia);
            // A file, not a directory.
            host.ledger
                .record_file(&mnesia.with_file_name(format!("{NODE}-feature_flags")));
            host.ledger
                .record_dir(&mnesia.with_file_name(format!("{NODE}-plugins-expand")));
        }
        Ok(())
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let addr = host_addr(&host.settings);
        let mut env = vec![
            ("HOME".to_owned(), HOME.to_owned()),
            ("RABBITMQ_NODENAME".into(), NODE.into()),
            ("RABBITMQ_NODE_IP_ADDRESS".into(), addr.clone()),
            ("RABBITMQ_NODE_PORT".into(), PORT.to_string()),
            ("RABBITMQ_LOGS".into(), "-".into()),
            ("ERL_EPMD_ADDRESS".into(), addr.clone()),
        ];
        if let Some(ip) = erlang_ip(&addr) {
            env.push((
                "RABBITMQ_SERVER_ADDITIONAL_ERL_ARGS".into(),
                format!("-kernel inet_dist_use_interface {ip}"),
            ));
        }
        Ok(ProcessSpec {
            name: NAME.into(),
            command: "exec /usr/lib/rabbitmq/bin/rabbitmq-server".into(),
            env,
            user: Some("rabbitmq".into()),
            log: daemon::daemon_log(&host.settings, NAME),
            workdir: Some(HOME.into()),
            address: Some(format!("{addr}:{PORT}")),
            ..ProcessSpec::default()
        })
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        amqp_probe(
            &host_addr(&host.settings),
            PORT,
            None,
            daemon::PROBE_TIMEOUT,
        )
    }
    fn processes(&self) -> Vec<&'static str> {
        vec![NAME, EPMD]
    }
}

/// Starts epmd and RabbitMQ unless ours already run; waits for the AMQP handshake.
pub(crate) fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::start(host, &Rabbit)?;
    // Under systemd the distro's unit runs the default node, which the tools reach by
    // themselves; naming ours (rabbit@localhost) there fails their Erlang handshake.
    if daemon::use_systemctl() {
        return Ok(());
    }
    point_tools_at_node(host)
}

/// RABBIT_USERID with RABBIT_PASSWORD and all permissions on "/"; checked by an AMQP login.
fn ensure_user(host: &mut Host) -> Result<(), ServiceError> {
    let addr = host_addr(&host.settings);
    let user = host
        .settings
        .get_or("RABBIT_USERID", "stackrabbit")
        .to_owned();
    let pass = host.settings.str("RABBIT_PASSWORD").to_owned();
    let login = || amqp_probe(&addr, PORT, Some((&user, &pass)), daemon::PROBE_TIMEOUT);
    if login().is_ok() {
        return Ok(());
    }
    if rabbitmqctl(host, &["add_user", &user], Some(&pass)).is_ok() {
        if user != "guest" {
            host.ledger.set_fact(USER_FACT, user.clone());
        }
    } else {
        rabbitmqctl(host, &["change_password", &user], Some(&pass))?;
    }
    rabbitmqctl(host, &["set_permissions", &user, ".*", ".*", ".*"], None)?;
    host.checkpoint();
    let log = daemon::daemon_log(&host.settings, NAME);
    daemon::wait_ready(
        NAME,
        None,
        &log,
        daemon::PROBE_TIMEOUT,
        "AMQP login as RABBIT_USERID",
        login,
    )
}

/// DevStack's `rpc_backend_add_vhost VHOST` (the shim has checked that rabbit is
/// enabled): unless a line of `rabbitmqctl list_vhosts` contains VHOST (DevStack's
/// `grep`, a substring), the vhost is added and RABBIT_USERID gets all permissions
/// on it.
pub(crate) fn add_vhost(host: &mut Host, vhost: &str) -> Result<(), ServiceError> {
    let listed = rabbitmqctl_output(host, &["list_vhosts"], None)?;
    if listed.lines().any(|l| l.contains(vhost)) {
        return Ok(());
    }
    let user = host
        .settings
        .get_or("RABBIT_USERID", "stackrabbit")
        .to_owned();
    rabbitmqctl(host, &["add_vhost", vhost], None)?;
    rabbitmqctl(
        host,
        &["set_permissions", "-p", vhost, &user, ".*", ".*", ".*"],
        None,
    )
}

/// Deletes the user this project created (clean), while the broker runs.
fn delete_created_user(host: &mut Host) -> Result<(), ServiceError> {
    if let Some(user) = host.ledger.fact(USER_FACT).map(str::to_owned) {
        rabbitmqctl(host, &["delete_user", &user], None)?;
        host.ledger.forget_fact(USER_FACT);
        host.checkpoint();
    }
    Ok(())
}

pub(crate) fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::stop(host, &Rabbit)?;
    unpoint_tools(host);
    Ok(())
}

/// RabbitMQ (DevStack's `rabbit`).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    packages: &["rabbitmq-server"],
    secrets: &["RABBIT_PASSWORD"],
    aliases: &["rabbitmq-server", "rabbitmq"],
    ..Descriptor::named(NAME, Layer::Infra)
};

impl Service for Rabbit {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_server(cx.host)?;
        ensure_user(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, all: bool) -> Result<(), ServiceError> {
        let ours = cx.host.ledger.has_system_service(NAME);
        daemon::stop_layer1(cx.host, &Rabbit, all, ours, delete_created_user)?;
        if all && ours {
            // The tools' node name goes with our broker (stop_server's second half).
            unpoint_tools(cx.host);
        }
        Ok(())
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        // The broker's data for our node name goes with the directories stack
        // created (the user goes with it); logs too.
        cx.host.ledger.forget_fact(USER_FACT);
        for name in [NAME, EPMD] {
            daemon::remove_daemon_log(&cx.host.settings, name);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn transport_url_is_devstacks() {
        let s = Settings::new(
            [
                ("RABBIT_USERID", "stackrabbit"),
                ("RABBIT_PASSWORD", "pw"),
                ("RABBIT_HOST", "10.1.2.3"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        assert_eq!(transport_url(&s), "rabbit://stackrabbit:pw@10.1.2.3:5672/");
    }

    #[test]
    fn the_tools_node_name_is_added_last_once_and_removed_exactly() {
        let distro = "# Defaults to rabbit.\n#NODENAME=rabbit\nNODE_PORT=5672";
        let ours = with_node_name(distro);
        assert!(ours.ends_with("\nNODENAME=rabbit@localhost\n"), "{ours}");
        assert_eq!(with_node_name(&ours), ours, "a second stack adds nothing");
        assert_eq!(without_node_name(&ours), format!("{distro}\n"));
        assert_eq!(without_node_name(&with_node_name("")), "");
    }

    #[test]
    fn erlang_interface_tuple() {
        assert_eq!(erlang_ip("127.0.0.1").as_deref(), Some("{127,0,0,1}"));
        assert_eq!(erlang_ip("localhost"), None);
    }

    #[test]
    fn probe_of_a_silent_port_times_out() {
        let l = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let t0 = std::time::Instant::now();
        assert!(amqp_probe("127.0.0.1", port, None, Duration::from_millis(200)).is_err());
        assert!(t0.elapsed() < Duration::from_secs(2));
    }
}
