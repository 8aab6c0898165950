//! What DevStack plugins add to neutron through lib/neutron's variables, read in one
//! place so neutron.rs only calls [`ext_drivers`] and [`after_post_config`]:
//! `Q_SERVICE_PLUGIN_CLASSES` (neutron_service_plugin_class_add),
//! `Q_ML2_PLUGIN_EXT_DRIVERS` (neutron_ml2_extension_driver_add) and
//! `_Q_PLUGIN_EXTRA_CONF_FILES_ABS` (neutron_server_config_add, a shell array read
//! back as `NAME[@]`).

use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::context::Host;
use crate::ini::IniDoc;
use crate::services::ServiceError;

/// The uWSGI env variable that lists the server's config files (`;`-separated,
/// relative to its config dir; an absolute path stays absolute).
const FILES_ENV: &str = "OS_NEUTRON_CONFIG_FILES";

/// `a,b` ∪ `b,c` = `a,b,c`: order kept, empties and duplicates dropped.
pub(crate) fn comma_union(base: &str, add: &str) -> String {
    let mut out: Vec<&str> = Vec::new();
    for item in base.split(',').chain(add.split(',')).map(str::trim) {
        if !item.is_empty() && !out.contains(&item) {
            out.push(item);
        }
    }
    out.join(",")
}

/// `[ml2] extension_drivers`: `Q_ML2_PLUGIN_EXT_DRIVERS` (DevStack's default
/// `port_security`, from stackrc).
pub(crate) fn ext_drivers(s: &Settings) -> String {
    comma_union(s.get_or("Q_ML2_PLUGIN_EXT_DRIVERS", "port_security"), "")
}

/// The extra config files plugins gave the server.
pub(crate) fn extra_conf_files(s: &Settings) -> Vec<PathBuf> {
    s.array("_Q_PLUGIN_EXTRA_CONF_FILES_ABS")
        .into_iter()
        .map(PathBuf::from)
        .collect()
}

fn edit(service: &str, path: &Path, f: impl FnOnce(&mut IniDoc)) -> Result<(), ServiceError> {
    let mut doc = IniDoc::load(path).map_err(|e| ServiceError::failed(service, e.to_string()))?;
    f(&mut doc);
    doc.save(path)
        .map_err(|e| ServiceError::failed(service, e.to_string()))
}

/// As DevStack's `configure_neutron_after_post_config`, once local.conf's
/// post-config sections are merged: `service_plugins` = `base` ∪
/// `Q_SERVICE_PLUGIN_CLASSES` (written over what post-config set, as DevStack does);
/// `[ml2] extension_drivers` gains what plugins added since configure; the server's
/// uWSGI ini lists the extra config files after its own.
pub(crate) fn after_post_config(
    host: &Host,
    service: &str,
    conf: &Path,
    ml2_conf: &Path,
    uwsgi_ini: &Path,
    base_service_plugins: &str,
) -> Result<(), ServiceError> {
    let s = &host.settings;
    let plugins = comma_union(
        base_service_plugins,
        s.get_or("Q_SERVICE_PLUGIN_CLASSES", ""),
    );
    edit(service, conf, |doc| {
        doc.set("DEFAULT", "service_plugins", &plugins);
    })?;
    let added = ext_drivers(s);
    edit(service, ml2_conf, |doc| {
        let now = doc.get("ml2", "extension_drivers").unwrap_or_default();
        doc.set("ml2", "extension_drivers", &comma_union(&now, &added));
    })?;
    let extra = extra_conf_files(s);
    if !extra.is_empty() {
        edit(service, uwsgi_ini, |doc| add_conf_files(doc, &extra))?;
        host.log.note(&format!(
            "{service}: extra server config files: {}",
            extra
                .iter()
                .map(|p| p.display().to_string())
                .collect::<Vec<_>>()
                .join(" ")
        ));
    }
    Ok(())
}

/// Appends `files` (once each) to the `env = OS_NEUTRON_CONFIG_FILES=…` line.
fn add_conf_files(doc: &mut IniDoc, files: &[PathBuf]) {
    let envs: Vec<String> = doc
        .get_all("uwsgi", "env")
        .into_iter()
        .map(|e| {
            let Some(list) = e.strip_prefix(&format!("{FILES_ENV}=")) else {
                return e;
            };
            let mut items: Vec<String> = list.split(';').map(str::to_owned).collect();
            for f in files {
                let f = f.display().to_string();
                if !items.contains(&f) {
                    items.push(f);
                }
            }
            format!("{FILES_ENV}={}", items.join(";"))
        })
        .collect();
    doc.set_multi("uwsgi", "env", &envs);
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lists_merge_in_order_once() {
        assert_eq!(
            comma_union("router", "qos,router,,trunk"),
            "router,qos,trunk"
        );
        assert_eq!(comma_union("", ""), "");
    }

    #[test]
    fn plugin_additions_land_after_post_config() {
        let dir = tempfile::tempdir().unwrap();
        let conf = dir.path().join("neutron.conf");
        let ml2 = dir.path().join("ml2_conf.ini");
        let ini = dir.path().join("neutron-api-uwsgi.ini");
        fs_err::write(&conf, "[DEFAULT]\nservice_plugins = set_by_post_config\n").unwrap();
        fs_err::write(&ml2, "[ml2]\nextension_drivers = port_security,dns\n").unwrap();
        fs_err::write(
            &ini,
            "[uwsgi]\nenv = OS_NEUTRON_CONFIG_DIR=/etc/neutron\nenv = OS_NEUTRON_CONFIG_FILES=neutron.conf;plugins/ml2/ml2_conf.ini\nprocesses = 1\n",
        )
        .unwrap();
        let progress: std::sync::Arc<dyn crate::ui::Progress> =
            std::sync::Arc::new(crate::ui::TermProgress::new(crate::ui::Verbosity::Quiet));
        let log = std::sync::Arc::new(crate::ui::log::RunLog::new(progress.clone()));
        let mut host = Host::new(
            dir.path().to_path_buf(),
            crate::state::Ledger::empty(dir.path()),
            log,
            progress,
        );
        host.settings.set("Q_SERVICE_PLUGIN_CLASSES", "qos,trunk");
        host.settings
            .set("Q_ML2_PLUGIN_EXT_DRIVERS", "port_security,qos");
        host.settings.set(
            "_Q_PLUGIN_EXTRA_CONF_FILES_ABS[@]",
            "/etc/neutron/qos.ini\n/etc/neutron/x.ini",
        );
        after_post_config(&host, "neutron", &conf, &ml2, &ini, "router").unwrap();
        let c = IniDoc::load(&conf).unwrap();
        assert_eq!(
            c.get("DEFAULT", "service_plugins").as_deref(),
            Some("router,qos,trunk")
        );
        let m = IniDoc::load(&ml2).unwrap();
        assert_eq!(
            m.get("ml2", "extension_drivers").as_deref(),
            Some("port_security,dns,qos")
        );
        let text = fs_err::read_to_string(&ini).unwrap();
        assert!(
            text.contains("env = OS_NEUTRON_CONFIG_FILES=neutron.conf;plugins/ml2/ml2_conf.ini;/etc/neutron/qos.ini;/etc/neutron/x.ini\n"),
            "{text}"
        );
        assert!(text.contains("env = OS_NEUTRON_CONFIG_DIR=/etc/neutron\n"));
        // Twice is the same.
        after_post_config(&host, "neutron", &conf, &ml2, &ini, "router").unwrap();
        assert_eq!(fs_err::read_to_string(&ini).unwrap(), text);
    }
}
