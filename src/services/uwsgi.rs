//! OpenStack APIs served by uWSGI: ini files for Debian's uwsgi with the
//! `python3XY` plugin and our venv (a unix socket behind the front proxy, DevStack's
//! form, or `http-socket` on the service's own port), starting one and waiting for
//! it, and [`UwsgiApi`]: what differs between the APIs that have a database of
//! their own (glance, placement, neutron), with their [`Route`] on the proxy.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::services::frontproxy;
use crate::services::oslo::{self, listen, probe_url};
use crate::services::{Descriptor, Service, ServiceError};
use crate::system::process::Cmd;

/// Debian's uwsgi (package `uwsgi-core`).
pub(crate) const UWSGI: &str = "/usr/bin/uwsgi";
pub(crate) const PLUGINS_DIR: &str = "/usr/lib/uwsgi/plugins";
/// The Debian packages that provide it, with the python plugin.
pub(crate) const PACKAGES: &[&str] = &["uwsgi-core", "uwsgi-plugin-python3"];

/// The python plugin matching Debian's python3 (`python311` on bookworm): the plugin
/// named for the exact version, else the generic `python3`.
pub(crate) fn python_plugin() -> String {
    let exact = fs_err::read_dir(PLUGINS_DIR)
        .ok()
        .into_iter()
        .flatten()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str().map(str::to_owned))
        .filter_map(|n| n.strip_suffix("_plugin.so").map(str::to_owned))
        .filter(|n| n.starts_with("python3") && n.len() > "python3".len())
        .max();
    exact.unwrap_or_else(|| "python3".into())
}

/// One WSGI application served by uwsgi.
#[derive(Debug, Clone)]
pub(crate) struct WsgiApp {
    /// `module:callable` (e.g. `nova.wsgi.osapi_compute:application`) or a file path.
    pub wsgi: String,
    /// `host:port` the http-socket binds; or an absolute path: a unix socket
    /// speaking the uwsgi protocol, behind the front proxy (DevStack's form B).
    pub http: String,
    pub venv: PathBuf,
    pub env: Vec<(String, String)>,
    pub processes: u64,
    /// The process name prefix (`--procname-prefix`), e.g. `nova-api`.
    pub name: String,
}

/// The text of a uwsgi ini file for `app` (DevStack's `write_uwsgi_config`, minus
/// Apache: the app is served on its own port).
pub(crate) fn ini_text(app: &WsgiApp) -> String {
    let mut t = String::from("[uwsgi]\n");
    let _ = writeln!(t, "plugins-dir = {PLUGINS_DIR}");
    let _ = writeln!(t, "plugin = {}", python_plugin());
    let _ = writeln!(t, "virtualenv = {}", app.venv.display());
    if app.wsgi.contains(':') && !app.wsgi.contains('/') {
        let _ = writeln!(t, "module = {}", app.wsgi);
    } else {
        let _ = writeln!(t, "wsgi-file = {}", app.wsgi);
    }
    for (k, v) in &app.env {
        let _ = writeln!(t, "env = {k}={v}");
    }
    if app.http.starts_with('/') {
        // DevStack's form B: the front proxy (running as another user) connects.
        let _ = writeln!(t, "socket = {}", app.http);
        // vacuum: the socket goes with the server (clean leaves nothing behind).
        t.push_str("chmod-socket = 666\nvacuum = true\n");
    } else {
        let _ = writeln!(t, "http-socket = {}", app.http);
    }
    if !app.name.is_empty() {
        let _ = writeln!(t, "procname-prefix = {}-", app.name);
    }
    t.push_str(
        "master = true\n\
         enable-threads = true\n\
         lazy-apps = true\n\
         die-on-term = true\n\
         exit-on-reload = false\n\
         thunder-lock = true\n\
         buffer-size = 65535\n\
         worker-reload-mercy = 1\n\
         hook-master-start = unix_signal:15 gracefully_kill_them_all\n\
         add-header = Connection: close\n\
         http-raw-body = true\n\
         http-chunked-input = true\n\
         chunked-input-limit = 4194304\n\
         http-auto-chunked = true\n\
         need-app = true\n",
    );
    let _ = writeln!(t, "processes = {}", app.processes.max(1));
    t
}

/// The command that serves an ini file.
pub(crate) fn command(ini: &Path) -> String {
    format!("exec {UWSGI} --ini {}", ini.display())
}

/// Writes the uwsgi ini of `app` to `path` (recorded for clean).
pub(crate) fn write_ini(
    host: &mut Host,
    service: &str,
    path: &Path,
    app: &WsgiApp,
) -> Result<(), ServiceError> {
    if let Some(dir) = path.parent() {
        oslo::make_dir(host, service, dir)?;
    }
    fs_err::write(path, ini_text(app)).map_err(|source| ServiceError::Io {
        service: service.to_owned(),
        path: path.to_path_buf(),
        source,
    })?;
    host.ledger.record_file(path);
    Ok(())
}

/// Starts process `name` serving the uwsgi ini `ini` on `<PREFIX>_SERVICE_PORT`
/// and waits until its root URL answers below 500.
pub(crate) fn start_api(
    host: &mut Host,
    service: &str,
    name: &str,
    ini: &Path,
    prefix: &str,
    port: u16,
) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let record = oslo::start_process(
        host,
        service,
        name,
        &command(ini),
        &[],
        Some(listen(&s, prefix, port)),
    )?;
    oslo::wait_http(host, service, &record, &probe_url(&s, prefix, port), |c| {
        c < 500
    })
}

/// An API published through the front proxy at `path` (DevStack's URL layout).
#[derive(Debug, Clone, Copy)]
pub struct Route {
    /// The site, socket and uWSGI name (`placement-api`).
    pub site: &'static str,
    /// The URL path the proxy routes (`/placement`).
    pub path: &'static str,
    /// True: uWSGI serves the uwsgi protocol on `/var/run/uwsgi/<site>.socket`
    /// (DevStack's `write_uwsgi_config … "" NAME`). False: the app keeps its HTTP
    /// port and the proxy forwards HTTP with chunked bodies as chunks (DevStack's
    /// `write_local_uwsgi_http_config`, glance's uploads).
    pub socket: bool,
}

/// Where an API's uWSGI binds: its socket when routed so, else its own port.
pub(crate) fn bind(s: &Settings, route: Option<Route>, prefix: &str, port: u16) -> String {
    match route {
        Some(r) if r.socket => frontproxy::socket_path(r.site).display().to_string(),
        _ => listen(s, prefix, port),
    }
}

/// Adds `route`'s site to the front proxy (and reloads it when it runs).
pub(crate) fn publish(
    host: &mut Host,
    service: &str,
    route: Route,
    prefix: &str,
    port: u16,
) -> Result<(), ServiceError> {
    let text = if route.socket {
        frontproxy::proxy_pass_line(route.path, route.site)
    } else {
        let s = &host.settings;
        let addr = match s.get_or("SERVICE_LISTEN_ADDRESS", "127.0.0.1") {
            "0.0.0.0" | "::" | "" => "127.0.0.1".to_owned(),
            a if a.contains(':') && !a.starts_with('[') => format!("[{a}]"),
            a => a.to_owned(),
        };
        let port = s.number(&format!("{prefix}_SERVICE_PORT"), u64::from(port));
        frontproxy::http_site_text(route.path, &format!("http://{addr}:{port}"))
    };
    frontproxy::add_site(host, service, route.site, &text, false)
}

/// Starts process `name` serving `ini` behind the front proxy and waits until
/// `route`'s path answers through it (below 500, and not the proxy's 404 of a
/// route it has not loaded yet).
pub(crate) fn start_routed(
    host: &mut Host,
    service: &str,
    name: &str,
    ini: &Path,
    route: Route,
) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let socket = frontproxy::socket_path(route.site);
    let record = oslo::start_process(
        host,
        service,
        name,
        &command(ini),
        &[],
        Some(socket.display().to_string()),
    )?;
    let url = frontproxy::probe_url(&s, &format!("{}/", route.path));
    oslo::wait_http(host, service, &record, &url, |c| c < 500 && c != 404)
}

/// What clean removes of a uwsgi-served service: its config dir, when we created it
/// (the ledger's dirs has it; the pipeline removes the recorded files).
pub(crate) fn clean_api(host: &Host, conf_dir: &Path) {
    if host.ledger.has_dir(conf_dir) {
        let _ = fs_err::remove_dir_all(conf_dir);
    }
}

/// An OpenStack API served by uWSGI with a database of its own (glance, placement,
/// neutron): only what differs between them. Every such API is a [`Service`] through
/// the impl below, so the steps they share are written once.
pub trait UwsgiApi: Sync {
    const DESCRIPTOR: &'static Descriptor;
    /// The DevStack service name of its API process (g-api).
    const PROCESS: &'static str;
    /// The variables' prefix (`GLANCE` for `GLANCE_SERVICE_PORT`) and default port.
    const PREFIX: &'static str;
    const PORT: u16;
    /// Its place behind the front proxy, when it has one.
    const ROUTE: Option<Route> = None;
    fn conf_dir(settings: &Settings) -> PathBuf;
    fn uwsgi_ini(settings: &Settings) -> PathBuf;
    fn write_config(host: &mut Host) -> Result<(), ServiceError>;
    /// The commands that fill its database.
    fn db_sync(host: &Host) -> Vec<Cmd>;
    /// Data directories of its own that clean removes.
    fn data_dirs(_settings: &Settings) -> Vec<PathBuf> {
        Vec::new()
    }
    /// After local.conf's post-config sections, before the API starts (neutron's
    /// plugin additions).
    fn before_start(_cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// After the API answers (neutron's warm-up request).
    fn after_start(_cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        Ok(())
    }
    /// After its processes stopped (what they left behind: neutron's haproxies).
    fn after_stop(_cx: &mut ServiceCtx<'_>) {}
}

impl<T: UwsgiApi> Service for T {
    fn descriptor(&self) -> &'static Descriptor {
        T::DESCRIPTOR
    }
    fn db_sync(&self, host: &Host) -> Vec<Cmd> {
        T::db_sync(host)
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        T::write_config(cx.host)?;
        match T::ROUTE {
            Some(route) => publish(cx.host, self.name(), route, T::PREFIX, T::PORT),
            None => Ok(()),
        }
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        T::before_start(cx)?;
        let ini = T::uwsgi_ini(&cx.host.settings);
        match T::ROUTE {
            Some(route) if route.socket => {
                start_routed(cx.host, self.name(), T::PROCESS, &ini, route)?;
            }
            _ => start_api(cx.host, self.name(), T::PROCESS, &ini, T::PREFIX, T::PORT)?,
        }
        T::after_start(cx)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        let result = oslo::stop_processes(cx.host, self.name(), self.descriptor().processes);
        T::after_stop(cx);
        result
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        for name in self.descriptor().processes {
            crate::services::daemon::remove_daemon_log(&s, name);
        }
        clean_api(cx.host, &T::conf_dir(&s));
        for dir in T::data_dirs(&s) {
            let _ = fs_err::remove_dir_all(dir);
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ini_serves_a_module_on_its_own_port_with_connection_close() {
        let text = ini_text(&WsgiApp {
            wsgi: "keystone.wsgi.api:application".into(),
            http: "127.0.0.1:5000".into(),
            venv: "/opt/stack/venv".into(),
            env: vec![("OS_KEYSTONE_CONFIG_DIR".into(), "/etc/keystone".into())],
            processes: 2,
            name: "keystone".into(),
        });
        assert!(text.contains("module = keystone.wsgi.api:application\n"));
        assert!(text.contains("http-socket = 127.0.0.1:5000\n"));
        assert!(text.contains("add-header = Connection: close\n"));
        assert!(text.contains("env = OS_KEYSTONE_CONFIG_DIR=/etc/keystone\n"));
        assert!(text.contains("processes = 2\n"));
        assert!(text.contains("plugin = python3"));
    }

    #[test]
    fn a_file_path_is_a_wsgi_file() {
        let text = ini_text(&WsgiApp {
            wsgi: "/opt/x/app.wsgi".into(),
            http: "127.0.0.1:1".into(),
            venv: "/v".into(),
            env: Vec::new(),
            processes: 0,
            name: String::new(),
        });
        assert!(text.contains("wsgi-file = /opt/x/app.wsgi\n"));
        assert!(text.contains("processes = 1\n"));
    }

    #[test]
    fn a_socket_path_serves_uwsgi_behind_the_proxy() {
        let text = ini_text(&WsgiApp {
            wsgi: "heat.wsgi.api:application".into(),
            http: "/var/run/uwsgi/heat-api.socket".into(),
            venv: "/opt/stack/data/venv".into(),
            env: Vec::new(),
            processes: 2,
            name: "heat-api".into(),
        })
        .replace(&python_plugin(), "python3XY");
        insta::assert_snapshot!(text);
    }
}
