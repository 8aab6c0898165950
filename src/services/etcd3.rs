//! `etcd3` (DevStack's name): etcd, the key-value store DevStack starts for the
//! services' distributed locks, on `SERVICE_HOST:ETCD_PORT` (2379); cinder uses it as
//! its coordination backend (tooz's `etcd3+http` driver, through `etcd3gw`).
//!
//! Mirrors DevStack's `lib/etcd3`: `install_etcd3`, `start_etcd3`, `stop_etcd3`,
//! `cleanup_etcd3`, and `lib/libraries`' `etcd3gw` install.
//!
//! Choices. DevStack downloads etcd's release tarball (3.5) and checks its
//! sha256; here the binary is Debian 12's `etcd-server` package (etcd 3.4.23,
//! `/usr/bin/etcd`, whose v3 gRPC gateway is what etcd3gw and DevStack's
//! `?api_version=v3` URL speak), with `etcd-client` for `etcdctl`: no download
//! from outside the package mirrors, and the distro's security updates. The
//! package's own unit is left alone (the package step keeps its maintainer scripts
//! from starting it); ours runs as the supervised process `etcd3` (under systemd:
//! `devstack@etcd3.service`), with DevStack's flags, except that the peer port
//! listens on `SERVICE_HOST` rather than every address (one node has no peers).
//! DevStack's tmpfs for the data (`ETCD_USE_RAMDISK`) is not made: the data
//! directory is a plain one under `DATA_DIR`. `etcd3gw` is pinned in the project's
//! constraints (it resolves with every dependency at its existing pin), so
//! `cinder.conf [coordination] backend_url` is DevStack's
//! `etcd3+http://$SERVICE_HOST:$ETCD_PORT?api_version=v3` ([`backend_url`]).
//!
//! Reads: `ETCD_PORT`, `ETCD_PEER_PORT`, `ETCD_DATA_DIR` (its own defaults, DevStack's
//! values), `SERVICE_HOST`, `ENABLE_DEBUG_LOG_LEVEL`.
//!
//! Records: the data directory (clean removes it), the process `etcd3` (unstack
//! stops it, as DevStack's unstack stops etcd without `--all`), its log.

use crate::config::settings::Settings;
use crate::context::ServiceCtx;
use crate::services::{Descriptor, Layer, Service, ServiceError, daemon, oslo};
use crate::system::python::Project;

/// DevStack's service name: the process, `status`, `logs`.
pub(crate) const NAME: &str = "etcd3";
const ETCD: &str = "/usr/bin/etcd";

pub(crate) struct Etcd3;

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    packages: &["etcd-server", "etcd-client"],
    // lib/libraries installs it with etcd3: tooz's driver for the URL cinder gets.
    python: &[Project {
        dist: "etcd3gw",
        repo_var: "ETCD3GW_REPO",
    }],
    defaults: &[
        ("ETCD_PORT", "2379"),
        ("ETCD_PEER_PORT", "2380"),
        ("ETCD_DATA_DIR", "$DATA_DIR/etcd"),
    ],
    processes: &[NAME],
    ..Descriptor::named(NAME, Layer::Infra)
};

/// The client URL etcd answers on.
fn client_url(s: &Settings) -> String {
    format!("http://{}:{}", s.str("SERVICE_HOST"), s.str("ETCD_PORT"))
}

/// DevStack's cinder coordination URL when etcd3 is enabled (lib/cinder): tooz's
/// etcd3gw driver over the v3 gateway.
pub(crate) fn backend_url(s: &Settings) -> Option<String> {
    DESCRIPTOR.enabled(s).then(|| {
        format!(
            "etcd3+http://{}:{}?api_version=v3",
            s.str("SERVICE_HOST"),
            s.str("ETCD_PORT")
        )
    })
}

/// The host's name, etcd's member name as DevStack gives it (`$HOSTNAME`).
fn member_name() -> String {
    fs_err::read_to_string("/proc/sys/kernel/hostname")
        .map(|h| h.trim().to_owned())
        .ok()
        .filter(|h| !h.is_empty())
        .unwrap_or_else(|| "devstack".to_owned())
}

/// `start_etcd3`'s command line: a one-member cluster on `SERVICE_HOST`.
fn command(s: &Settings, member: &str) -> String {
    let host = s.str("SERVICE_HOST");
    let peer = format!("http://{host}:{}", s.str("ETCD_PEER_PORT"));
    let client = client_url(s);
    let mut cmd = format!(
        "exec {ETCD} --name {member} --data-dir {data} \
         --initial-cluster-state new --initial-cluster-token etcd-cluster-01 \
         --initial-cluster {member}={peer} --initial-advertise-peer-urls {peer} \
         --advertise-client-urls {client} --listen-peer-urls {peer} \
         --listen-client-urls {client}",
        data = s.path("ETCD_DATA_DIR").display(),
    );
    if s.flag("ENABLE_DEBUG_LOG_LEVEL", true) {
        // etcd 3.4 takes the level only with its structured logger.
        cmd.push_str(" --logger=zap --log-level=debug");
    }
    cmd
}

impl Service for Etcd3 {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        oslo::make_dir(cx.host, NAME, &s.path("ETCD_DATA_DIR"))?;
        // The address `devstack status` shows.
        let address = format!("{}:{}", s.str("SERVICE_HOST"), s.str("ETCD_PORT"));
        let command = command(&s, &member_name());
        let record = oslo::start_process(cx.host, NAME, NAME, &command, &[], Some(address))?;
        // 200 once the member has a leader (its own, at once); 503 before.
        let health = format!("{}/health", client_url(&s));
        oslo::wait_http(cx.host, NAME, &record, &health, |code| code == 200)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        oslo::stop_processes(cx.host, NAME, DESCRIPTOR.processes)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        daemon::remove_daemon_log(&cx.host.settings, NAME);
        let _ = fs_err::remove_dir_all(cx.host.settings.path("ETCD_DATA_DIR"));
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: &str, debug: &str) -> Settings {
        Settings::new(
            [
                ("ENABLED_SERVICES", enabled),
                ("SERVICE_HOST", "10.0.0.5"),
                ("ETCD_PORT", "2379"),
                ("ETCD_PEER_PORT", "2380"),
                ("ETCD_DATA_DIR", "/opt/stack/data/etcd"),
                ("ENABLE_DEBUG_LOG_LEVEL", debug),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        )
    }

    #[test]
    fn etcd_is_a_one_member_cluster_on_the_service_host() {
        let cmd = command(&settings("etcd3", "False"), "node1");
        assert_eq!(
            cmd,
            "exec /usr/bin/etcd --name node1 --data-dir /opt/stack/data/etcd \
             --initial-cluster-state new --initial-cluster-token etcd-cluster-01 \
             --initial-cluster node1=http://10.0.0.5:2380 \
             --initial-advertise-peer-urls http://10.0.0.5:2380 \
             --advertise-client-urls http://10.0.0.5:2379 \
             --listen-peer-urls http://10.0.0.5:2380 \
             --listen-client-urls http://10.0.0.5:2379"
        );
        assert!(
            command(&settings("etcd3", "True"), "node1").ends_with(" --log-level=debug"),
            "DevStack's debug level with ENABLE_DEBUG_LOG_LEVEL"
        );
    }

    #[test]
    fn cinder_coordinates_through_etcd_only_when_it_is_enabled() {
        assert_eq!(
            backend_url(&settings("c-vol,etcd3", "True")).as_deref(),
            Some("etcd3+http://10.0.0.5:2379?api_version=v3")
        );
        assert_eq!(backend_url(&settings("c-vol", "True")), None);
    }
}
