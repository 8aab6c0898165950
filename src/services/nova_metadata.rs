//! nova's metadata API (`n-api-meta`): `nova.wsgi.metadata` under uWSGI on
//! `NOVA_METADATA_SERVICE_PORT` (8775), reading nova.conf. Neutron's OVN metadata
//! agent forwards a guest's `169.254.169.254` requests to it, signed with
//! `METADATA_PROXY_SHARED_SECRET` (generated like a password, redacted). Kept apart
//! from nova.rs: nova.rs only calls [`neutron_options`] for its `[neutron]` section.

use std::path::PathBuf;

use crate::config::settings::Settings;
use crate::context::ServiceCtx;
use crate::ini::IniDoc;
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{Descriptor, Layer, Service, ServiceError, daemon, oslo};

const NAME: &str = "nova-metadata";
pub(crate) const PROCESS: &str = "n-api-meta";
const PREFIX: &str = "NOVA_METADATA";
pub(crate) const PORT: u16 = 8775;

pub(crate) struct NovaMetadata;

fn uwsgi_ini(s: &Settings) -> PathBuf {
    s.path("NOVA_CONF_DIR").join("nova-metadata-uwsgi.ini")
}

/// nova.conf's `[neutron]` metadata options (with `n-api-meta`: nova answers the
/// proxied requests neutron's metadata agent signs with the shared secret) and, with
/// OVN's controller here, `[os_vif_ovs] ovsdb_connection`.
pub(crate) fn neutron_options(doc: &mut IniDoc, s: &Settings) {
    if s.is_enabled(&["ovn-controller"]) {
        // os-vif's ovs plugin plugs guests' VIFs into br-int through this database.
        doc.set(
            "os_vif_ovs",
            "ovsdb_connection",
            crate::services::ovn::OVS_DB_SOCK,
        );
    }
    if !s.is_enabled(&[PROCESS]) {
        return;
    }
    doc.set("neutron", "service_metadata_proxy", "True");
    doc.set(
        "neutron",
        "metadata_proxy_shared_secret",
        s.str("METADATA_PROXY_SHARED_SECRET"),
    );
}

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[PROCESS],
    after: &["nova"],
    // Neutron's metadata agent shares it.
    secrets: &["METADATA_PROXY_SHARED_SECRET"],
    packages: uwsgi::PACKAGES,
    processes: &[PROCESS],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for NovaMetadata {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        let conf = s.path("NOVA_CONF");
        let paste = s.path("NOVA_CONF_DIR").join("api-paste.ini");
        let app = WsgiApp {
            wsgi: "nova.wsgi.metadata:application".into(),
            http: oslo::listen(&s, PREFIX, PORT),
            venv: crate::system::python::venv_dir(&s),
            env: vec![
                (
                    "OS_NOVA_CONFIG_DIR".into(),
                    s.path("NOVA_CONF_DIR").display().to_string(),
                ),
                (
                    "OS_NOVA_CONFIG_FILES".into(),
                    format!("{};{}", paste.display(), conf.display()),
                ),
            ],
            processes: s.number("API_WORKERS", 1),
            name: "nova-metadata".into(),
        };
        uwsgi::write_ini(cx.host, NAME, &uwsgi_ini(&s), &app)
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let ini = uwsgi_ini(&cx.host.settings);
        uwsgi::start_api(cx.host, NAME, PROCESS, &ini, PREFIX, PORT)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        daemon::remove_daemon_log(&cx.host.settings, PROCESS);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nova_answers_the_proxy_only_with_the_metadata_api() {
        let s = Settings::new(
            [
                ("ENABLED_SERVICES", "n-api,n-api-meta,ovn-controller"),
                ("METADATA_PROXY_SHARED_SECRET", "s3cret"),
            ]
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .into(),
        );
        let mut doc = IniDoc::default();
        neutron_options(&mut doc, &s);
        assert_eq!(
            doc.get("neutron", "service_metadata_proxy").as_deref(),
            Some("True")
        );
        assert_eq!(
            doc.get("neutron", "metadata_proxy_shared_secret")
                .as_deref(),
            Some("s3cret")
        );
        assert_eq!(
            doc.get("os_vif_ovs", "ovsdb_connection").as_deref(),
            Some("unix:/var/run/openvswitch/db.sock")
        );
        let s = Settings::new([("ENABLED_SERVICES".to_owned(), "n-api".to_owned())].into());
        let mut doc = IniDoc::default();
        neutron_options(&mut doc, &s);
        assert_eq!(doc.get("neutron", "service_metadata_proxy"), None);
    }
}
