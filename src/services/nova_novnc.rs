//! nova's noVNC console proxy (`n-novnc`): `nova-novncproxy` on
//! `SERVICE_LISTEN_ADDRESS:6080`, serving the noVNC web client and proxying its
//! websocket to the guest's VNC server on the compute host, as DevStack runs it.
//!
//! Mirrors DevStack's `lib/nova`: `install_nova` (its n-novnc part: the web client),
//! `configure_console_proxies` and `configure_console_compute` (the `[vnc]` options,
//! written by [`vnc_options`] into nova.conf, which nova-cpu.conf is derived from),
//! `start_nova_console_proxies` (its `n-novnc` process, single conductor: one proxy
//! reading nova.conf), `stop_nova` (the default stop: its process).
//!
//! The web client is Debian 12's `novnc` package (`/usr/share/novnc`), DevStack's
//! `NOVNC_FROM_PACKAGE=True` path, rather than a git clone of noVNC. Debian's
//! 1.3.0 ships both `vnc_lite.html` and `vnc_auto.html` (there a link to the full
//! `vnc.html`, which waits for a click); the URL nova hands out is DevStack's default
//! one, `http://$SERVICE_HOST:6080/vnc_lite.html`, which connects on load.
//!
//! Like DevStack, the proxy answers on its own port (6080), not through the front
//! proxy on port 80: DevStack's console URL has that port, horizon's console tab
//! opens that URL, and the websocket goes straight to it.
//!
//! Reads: `NOVNC_WEB_DIR`, `NOVNCPROXY_URL`, `VNCSERVER_LISTEN`,
//! `VNCSERVER_PROXYCLIENT_ADDRESS` (its own defaults, below), `NOVA_VNC_ENABLED`
//! (DevStack's `trueorfalse False`: VNC on the guests without the proxy here),
//! `SERVICE_LISTEN_ADDRESS`, `NOVA_CONF`.
//!
//! Records: the process `n-novnc` (unstack stops it); its log (clean removes it).

use crate::config::settings::Settings;
use crate::context::ServiceCtx;
use crate::ini::IniDoc;
use crate::services::{Descriptor, Layer, Service, ServiceError};
use crate::services::{daemon, oslo};

const NAME: &str = "nova-novnc";
/// Its process and DevStack's `ENABLED_SERVICES` name.
pub(crate) const PROCESS: &str = "n-novnc";
/// DevStack's `6080 + offset` for the first (only) cell.
pub(crate) const PORT: u16 = 6080;
/// The page a probe asks for: what the console URL points at.
const PAGE: &str = "vnc_lite.html";

pub(crate) struct NovaNovnc;

fn compute(s: &Settings) -> bool {
    s.is_enabled(&["n-cpu"])
}

/// Whether the guests get a VNC server: with the proxy here, or asked for on a
/// compute node whose proxy runs elsewhere (`NOVA_VNC_ENABLED`).
fn vnc_enabled(s: &Settings) -> bool {
    DESCRIPTOR.enabled(s) || s.flag("NOVA_VNC_ENABLED", false)
}

/// nova.conf's `[vnc]` section as DevStack writes it between nova.conf and
/// nova-cpu.conf: the proxy's own address, the guests' VNC servers listening on
/// `VNCSERVER_LISTEN` and reached by the proxy at `VNCSERVER_PROXYCLIENT_ADDRESS`
/// (libvirt puts that listen address in each guest's `<graphics type='vnc'>`), the
/// URL users are given; `enabled = False` when no guest should have VNC.
pub(crate) fn vnc_options(doc: &mut IniDoc, s: &Settings) {
    if compute(s) {
        // Written even with VNC off, as DevStack does: harmless, and a proxy
        // started later finds it.
        doc.set("vnc", "novncproxy_base_url", s.str("NOVNCPROXY_URL"));
    }
    if !vnc_enabled(s) {
        doc.set("vnc", "enabled", "False");
        return;
    }
    doc.set("vnc", "enabled", "True");
    doc.set("vnc", "novncproxy_host", s.str("SERVICE_LISTEN_ADDRESS"));
    doc.set("vnc", "novncproxy_port", &PORT.to_string());
    doc.set("vnc", "server_listen", s.str("VNCSERVER_LISTEN"));
    doc.set(
        "vnc",
        "server_proxyclient_address",
        s.str("VNCSERVER_PROXYCLIENT_ADDRESS"),
    );
}

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[PROCESS],
    after: &["nova"],
    packages: &["novnc"],
    defaults: &[
        ("NOVNC_FROM_PACKAGE", "True"),
        ("NOVNC_WEB_DIR", "/usr/share/novnc"),
        ("NOVNCPROXY_URL", "http://$SERVICE_HOST:6080/vnc_lite.html"),
        ("VNCSERVER_LISTEN", "$SERVICE_LISTEN_ADDRESS"),
        ("VNCSERVER_PROXYCLIENT_ADDRESS", "$HOST_IP"),
    ],
    processes: &[PROCESS],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

/// The proxy's command line (DevStack's `run_process n-novnc`).
fn command(s: &Settings) -> String {
    format!(
        "exec {} --config-file {} --web {}",
        crate::system::python::venv_bin(s, "nova-novncproxy").display(),
        s.path("NOVA_CONF").display(),
        s.path("NOVNC_WEB_DIR").display()
    )
}

/// Where a local probe finds the page the console URL names.
fn probe_url(s: &Settings) -> String {
    format!("http://{}:{PORT}/{PAGE}", s.str("SERVICE_LISTEN_ADDRESS"))
}

impl Service for NovaNovnc {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let page = s.path("NOVNC_WEB_DIR").join(PAGE);
        if !page.is_file() {
            return Err(ServiceError::failed(
                NAME,
                format!(
                    "the noVNC web client is missing ({}): Debian's `novnc` package \
                     provides it; does NOVNC_WEB_DIR name another directory?",
                    page.display()
                ),
            ));
        }
        // The address `devstack status` shows.
        let address = format!("{}:{PORT}", s.str("SERVICE_LISTEN_ADDRESS"));
        let record = oslo::start_process(cx.host, NAME, PROCESS, &command(&s), &[], Some(address))?;
        oslo::wait_http(cx.host, NAME, &record, &probe_url(&s), |code| code == 200)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        daemon::remove_daemon_log(&cx.host.settings, PROCESS);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(enabled: &str, extra: &[(&str, &str)]) -> Settings {
        let mut pairs = vec![
            ("ENABLED_SERVICES", enabled),
            ("SERVICE_HOST", "10.0.0.5"),
            ("SERVICE_LISTEN_ADDRESS", "10.0.0.5"),
            ("HOST_IP", "10.0.0.5"),
            ("NOVNCPROXY_URL", "http://10.0.0.5:6080/vnc_lite.html"),
            ("VNCSERVER_LISTEN", "10.0.0.5"),
            ("VNCSERVER_PROXYCLIENT_ADDRESS", "10.0.0.6"),
        ];
        pairs.extend_from_slice(extra);
        Settings::new(
            pairs
                .into_iter()
                .map(|(k, v)| (k.to_owned(), v.to_owned()))
                .collect(),
        )
    }

    fn vnc(doc: &IniDoc, key: &str) -> Option<String> {
        doc.get("vnc", key)
    }

    #[test]
    fn with_the_proxy_the_guests_get_vnc_and_users_get_devstacks_url() {
        let mut doc = IniDoc::default();
        vnc_options(&mut doc, &settings("n-api,n-cpu,n-novnc", &[]));
        assert_eq!(vnc(&doc, "enabled").as_deref(), Some("True"));
        assert_eq!(vnc(&doc, "novncproxy_host").as_deref(), Some("10.0.0.5"));
        assert_eq!(vnc(&doc, "novncproxy_port").as_deref(), Some("6080"));
        assert_eq!(vnc(&doc, "server_listen").as_deref(), Some("10.0.0.5"));
        assert_eq!(
            vnc(&doc, "server_proxyclient_address").as_deref(),
            Some("10.0.0.6")
        );
        assert_eq!(
            vnc(&doc, "novncproxy_base_url").as_deref(),
            Some("http://10.0.0.5:6080/vnc_lite.html")
        );
    }

    #[test]
    fn disabled_the_guests_get_no_vnc_server() {
        let mut doc = IniDoc::default();
        vnc_options(&mut doc, &settings("n-api,n-cpu", &[]));
        assert_eq!(vnc(&doc, "enabled").as_deref(), Some("False"));
        assert_eq!(vnc(&doc, "server_listen"), None);
        assert_eq!(vnc(&doc, "novncproxy_port"), None);
    }

    #[test]
    fn nova_vnc_enabled_gives_a_compute_node_vnc_without_the_proxy() {
        let mut doc = IniDoc::default();
        vnc_options(
            &mut doc,
            &settings("n-cpu", &[("NOVA_VNC_ENABLED", "True")]),
        );
        assert_eq!(vnc(&doc, "enabled").as_deref(), Some("True"));
        assert_eq!(vnc(&doc, "server_listen").as_deref(), Some("10.0.0.5"));
    }

    #[test]
    fn the_proxy_serves_the_web_client_with_nova_conf() {
        let s = settings(
            "n-novnc",
            &[
                ("DEVSTACK_VENV", "/opt/stack/data/venv"),
                ("NOVA_CONF", "/etc/nova/nova.conf"),
                ("NOVNC_WEB_DIR", "/usr/share/novnc"),
            ],
        );
        assert_eq!(
            command(&s),
            "exec /opt/stack/data/venv/bin/nova-novncproxy --config-file \
             /etc/nova/nova.conf --web /usr/share/novnc"
        );
        assert_eq!(probe_url(&s), "http://10.0.0.5:6080/vnc_lite.html");
    }
}
