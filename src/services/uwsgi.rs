//! What the OpenStack services share: uwsgi ini files (Debian's uwsgi with the
//! `python3XY` plugin and our venv; `http-socket` on the service's port, since we run
//! no Apache), starting their processes under the supervisor (recorded in the state's
//! `processes`, so unstack stops them whatever happens), waiting until an API answers
//! (every request with its own timeout, the whole wait within SERVICE_TIMEOUT),
//! stopping several processes concurrently (nova's take ~10 s each on TERM), config
//! files and directories recorded so clean removes them.

use std::fmt::Write as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use crate::config::settings::Settings;
use crate::host::Host;
use crate::ini::IniDoc;
use crate::pipeline::Run;
use crate::services::database;
use crate::services::keystone::{self, DbJob};
use crate::services::{Layer, Service, ServiceError};
use crate::shell::{Call, Reply};
use crate::state::ProcessRecord;
use crate::system::process::Cmd;
use crate::system::supervisor::{OwnSupervisor, ProcStatus, ProcessSpec, Supervisor};

/// Debian's uwsgi (package `uwsgi-core`).
pub const UWSGI: &str = "/usr/bin/uwsgi";
pub const PLUGINS_DIR: &str = "/usr/lib/uwsgi/plugins";
/// The Debian packages that provide it, with the python plugin.
pub const PACKAGES: &[&str] = &["uwsgi-core", "uwsgi-plugin-python3"];
/// Each readiness request gets at most this long.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
const POLL_INTERVAL: Duration = Duration::from_millis(250);

/// The python plugin matching Debian's python3 (`python311` on bookworm): the plugin
/// named for the exact version, else the generic `python3`.
pub fn python_plugin() -> String {
    let exact = std::fs::read_dir(PLUGINS_DIR)
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
pub struct WsgiApp {
    /// `module:callable` (e.g. `nova.wsgi.osapi_compute:application`) or a file path.
    pub wsgi: String,
    /// `host:port` the http-socket binds.
    pub http: String,
    pub venv: PathBuf,
    pub env: Vec<(String, String)>,
    pub processes: u64,
    /// The process name prefix (`--procname-prefix`), e.g. `nova-api`.
    pub name: String,
}

/// The text of a uwsgi ini file for `app` (DevStack's `write_uwsgi_config`, minus
/// Apache: the app is served on its own port).
pub fn ini_text(app: &WsgiApp) -> String {
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
    let _ = writeln!(t, "http-socket = {}", app.http);
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
         http-auto-chunked = true\n\
         need-app = true\n",
    );
    let _ = writeln!(t, "processes = {}", app.processes.max(1));
    t
}

/// The command that serves an ini file.
pub fn command(ini: &Path) -> String {
    format!("exec {UWSGI} --ini {}", ini.display())
}

fn io(service: &str, path: &Path) -> impl FnOnce(std::io::Error) -> ServiceError {
    let service = service.to_owned();
    let path = path.to_path_buf();
    move |source| ServiceError::Io {
        service,
        path,
        source,
    }
}

/// Creates a directory; when it did not exist, records it so clean removes it.
pub fn make_dir(host: &mut Host, service: &str, dir: &Path) -> Result<(), ServiceError> {
    if !dir.exists() {
        std::fs::create_dir_all(dir).map_err(io(service, dir))?;
        host.state.state.dirs.insert(dir.to_path_buf());
    }
    Ok(())
}

/// Writes a config file from scratch with `fill`, mode 0640 (it holds passwords),
/// recorded for clean.
pub fn write_conf(
    host: &mut Host,
    service: &str,
    path: &Path,
    fill: impl FnOnce(&mut IniDoc),
) -> Result<(), ServiceError> {
    if let Some(dir) = path.parent() {
        make_dir(host, service, dir)?;
    }
    let mut doc = IniDoc::default();
    fill(&mut doc);
    doc.save(path)
        .map_err(|e| ServiceError::failed(service, e.to_string()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o640))
        .map_err(io(service, path))?;
    host.state.state.files.insert(path.to_path_buf());
    Ok(())
}

/// Edits an existing config file in place (keeps what others wrote).
pub fn edit_conf(
    service: &str,
    path: &Path,
    edit: impl FnOnce(&mut IniDoc),
) -> Result<(), ServiceError> {
    let mut doc = IniDoc::load(path).map_err(|e| ServiceError::failed(service, e.to_string()))?;
    edit(&mut doc);
    doc.save(path)
        .map_err(|e| ServiceError::failed(service, e.to_string()))
}

/// Copies a file the wheel ships (`<venv>/etc/...`), recorded for clean.
pub fn copy_file(
    host: &mut Host,
    service: &str,
    from: &Path,
    to: &Path,
) -> Result<(), ServiceError> {
    if let Some(dir) = to.parent() {
        make_dir(host, service, dir)?;
    }
    std::fs::copy(from, to).map_err(io(service, from))?;
    host.state.state.files.insert(to.to_path_buf());
    Ok(())
}

/// Writes the uwsgi ini of `app` to `path` (recorded for clean).
pub fn write_ini(
    host: &mut Host,
    service: &str,
    path: &Path,
    app: &WsgiApp,
) -> Result<(), ServiceError> {
    if let Some(dir) = path.parent() {
        make_dir(host, service, dir)?;
    }
    std::fs::write(path, ini_text(app)).map_err(io(service, path))?;
    host.state.state.files.insert(path.to_path_buf());
    Ok(())
}

/// Where a service listens: `SERVICE_LISTEN_ADDRESS:<PREFIX>_SERVICE_PORT` (the
/// port its catalog endpoint names).
pub fn listen(s: &Settings, prefix: &str, default_port: u16) -> String {
    format!(
        "{}:{}",
        s.get_or("SERVICE_LISTEN_ADDRESS", "127.0.0.1"),
        s.number(&format!("{prefix}_SERVICE_PORT"), u64::from(default_port))
    )
}

/// The root URL a local probe uses: `http://<listen>/`.
pub fn probe_url(s: &Settings, prefix: &str, default_port: u16) -> String {
    format!("http://{}/", listen(s, prefix, default_port))
}

/// A data file the wheel ships under `<venv>/etc/`, e.g. `nova/api-paste.ini`.
pub fn venv_etc(host: &Host, rel: &str) -> PathBuf {
    crate::system::python::venv_dir(host).join("etc").join(rel)
}

/// `[keystone_authtoken]` (keystonemiddleware) for a service user, as DevStack's
/// `configure_keystone_authtoken_middleware`.
pub fn authtoken(doc: &mut IniDoc, s: &Settings, user: &str) {
    let sec = "keystone_authtoken";
    keystoneauth(doc, s, sec, user);
    doc.set(sec, "www_authenticate_uri", s.str("KEYSTONE_SERVICE_URI"));
    doc.set(sec, "memcached_servers", s.str("MEMCACHE_SERVERS"));
    doc.set(sec, "service_token_roles_required", "true");
}

/// Password auth to keystone for a service user in `section` (DevStack's
/// `configure_keystoneauth`, used for [placement], [neutron], [nova], [service_user]).
pub fn keystoneauth(doc: &mut IniDoc, s: &Settings, section: &str, user: &str) {
    doc.set(section, "auth_type", "password");
    doc.set(section, "auth_url", s.str("KEYSTONE_SERVICE_URI"));
    doc.set(section, "username", user);
    doc.set(section, "password", s.str("SERVICE_PASSWORD"));
    doc.set(
        section,
        "user_domain_name",
        s.get_or("SERVICE_DOMAIN_NAME", "Default"),
    );
    doc.set(
        section,
        "project_name",
        s.get_or("SERVICE_PROJECT_NAME", "service"),
    );
    doc.set(
        section,
        "project_domain_name",
        s.get_or("SERVICE_DOMAIN_NAME", "Default"),
    );
    doc.set(section, "region_name", s.get_or("REGION_NAME", "RegionOne"));
}

/// `[DEFAULT] debug`, log format: what every service gets.
pub fn common_defaults(doc: &mut IniDoc, s: &Settings) {
    doc.set(
        "DEFAULT",
        "debug",
        if s.flag("ENABLE_DEBUG_LOG_LEVEL", true) {
            "True"
        } else {
            "False"
        },
    );
    doc.set("DEFAULT", "use_stderr", "True");
}

fn supervisor(host: &Host) -> &dyn Supervisor {
    static OWN: OwnSupervisor = OwnSupervisor {
        grace: crate::system::supervisor::STOP_GRACE,
    };
    host.supervisor.as_deref().unwrap_or(&OWN)
}

/// The environment of an OpenStack process: the venv's bin first on PATH, bytecode
/// written once (the image sets PYTHONDONTWRITEBYTECODE; we pass it on unset).
fn service_env(host: &Host, extra: &[(String, String)]) -> Vec<(String, String)> {
    let venv_bin = crate::system::python::venv_bin(host, "");
    let path = format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        venv_bin.display().to_string().trim_end_matches('/')
    );
    let mut env = vec![("PATH".to_owned(), path)];
    env.extend(extra.iter().cloned());
    env
}

/// Starts (or restarts) process `name` under the supervisor, recorded in the state.
pub fn start_process(
    host: &mut Host,
    service: &str,
    name: &str,
    command: &str,
    env: &[(String, String)],
    address: Option<String>,
) -> Result<ProcessRecord, ServiceError> {
    if let Some(old) = host.state.state.processes.get(name).cloned() {
        supervisor(host)
            .stop(&old)
            .map_err(|e| ServiceError::failed(service, e.to_string()))?;
        host.state.state.processes.remove(name);
    }
    let spec = ProcessSpec {
        name: name.to_owned(),
        command: command.to_owned(),
        env: service_env(host, env),
        user: None,
        group: None,
        log: database::daemon_log(&host.settings, name),
        workdir: Some(PathBuf::from("/")),
        address,
    };
    host.log.note(&format!(
        "{service}: starting {name}: {} (log {})",
        host.redactor.redact(command),
        spec.log.display()
    ));
    let record = supervisor(host)
        .start(&spec)
        .map_err(|e| ServiceError::failed(service, e.to_string()))?;
    host.state
        .state
        .processes
        .insert(name.to_owned(), record.clone());
    let _ = host.save_state();
    Ok(record)
}

/// The Debian packages of every uwsgi-served service, as `Service::packages` wants them.
pub fn packages() -> Vec<String> {
    PACKAGES.iter().map(|p| (*p).to_owned()).collect()
}

/// Starts process `name` serving the uwsgi ini `ini` on `<PREFIX>_SERVICE_PORT`
/// and waits until its root URL answers below 500.
pub fn start_api(
    host: &mut Host,
    service: &str,
    name: &str,
    ini: &Path,
    prefix: &str,
    port: u16,
) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let record = start_process(
        host,
        service,
        name,
        &command(ini),
        &[],
        Some(listen(&s, prefix, port)),
    )?;
    wait_http(host, service, &record, &probe_url(&s, prefix, port), |c| {
        c < 500
    })
}

/// What clean removes of a uwsgi-served service: its processes' daemon logs and its
/// config dir, when we created it (the state's `dirs` has it; remove_created does
/// the rest for recorded ones).
pub fn clean_api(host: &Host, names: &[&str], conf_dir: &Path) {
    for name in names {
        let _ = std::fs::remove_file(database::daemon_log(&host.settings, name));
    }
    if host.state.state.dirs.contains(conf_dir) {
        let _ = std::fs::remove_dir_all(conf_dir);
    }
}

/// Is the recorded process still alive (own backend), or unknown (systemd: assume)?
pub fn alive(host: &Host, record: &ProcessRecord) -> bool {
    matches!(supervisor(host).status(record), ProcStatus::Running { .. })
}

/// One HTTP GET with its own timeout: the status, or why there was none.
pub fn http_get(url: &str, token: Option<&str>, timeout: Duration) -> Result<u16, String> {
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        // A 300 (glance's version list) is an answer, not a redirect to follow.
        .max_redirects(0)
        .timeout_global(Some(timeout))
        .build()
        .into();
    let mut req = agent.get(url);
    if let Some(t) = token {
        req = req.header("X-Auth-Token", t);
    }
    req.call()
        .map(|r| r.status().as_u16())
        .map_err(|e| e.to_string())
}

/// Polls `url` until it answers with a status `ok` accepts (per request
/// [`REQUEST_TIMEOUT`], in all SERVICE_TIMEOUT); fails at once when the process died.
pub fn wait_http(
    host: &Host,
    service: &str,
    record: &ProcessRecord,
    url: &str,
    ok: impl Fn(u16) -> bool,
) -> Result<(), ServiceError> {
    let timeout = database::service_timeout(&host.settings);
    let t0 = Instant::now();
    loop {
        let last = match http_get(url, None, REQUEST_TIMEOUT) {
            Ok(code) if ok(code) => {
                host.log.note(&format!(
                    "{service}: {url} answered {code} after {:.1} s",
                    t0.elapsed().as_secs_f64()
                ));
                return Ok(());
            }
            Ok(code) => format!("HTTP {code}"),
            Err(e) => e,
        };
        let died = !alive(host, record);
        if died || t0.elapsed() >= timeout {
            let mut tail = database::log_tail(&record.log, database::LOG_TAIL);
            tail.push(format!("(last probe: {last})"));
            return Err(ServiceError::NotReady {
                service: service.into(),
                what: if died {
                    format!("GET {url}; the process exited")
                } else {
                    format!("GET {url}")
                },
                timeout_secs: timeout.as_secs(),
                log: Some(record.log.clone()),
                tail,
            });
        }
        std::thread::sleep(POLL_INTERVAL);
    }
}

/// Stops the named processes concurrently (each TERM, then KILL after the grace)
/// and forgets them. Names the state does not know are skipped.
pub fn stop_processes(host: &mut Host, service: &str, names: &[&str]) -> Result<(), ServiceError> {
    let records: Vec<ProcessRecord> = names
        .iter()
        .filter_map(|n| host.state.state.processes.get(*n).cloned())
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let sup = supervisor(host);
    let results: Vec<(String, Result<(), String>)> = std::thread::scope(|scope| {
        let handles: Vec<_> = records
            .iter()
            .map(|r| scope.spawn(move || (r.name.clone(), sup.stop(r).map_err(|e| e.to_string()))))
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| (String::new(), Err("panicked".into())))
            })
            .collect()
    });
    let mut errors = Vec::new();
    for (name, result) in results {
        match result {
            Ok(()) => {
                host.state.state.processes.remove(&name);
                host.log.note(&format!("{service}: stopped {name}"));
            }
            Err(e) => errors.push(e),
        }
    }
    let _ = host.save_state();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::failed(service, errors.join("; ")))
    }
}

/// Runs commands, each list in order, the lists concurrently (independent database
/// syncs). The first failure is returned after all have ended.
pub fn run_parallel(jobs: &[(String, Vec<Cmd>)]) -> Result<(), ServiceError> {
    let results: Vec<Result<(), ServiceError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = jobs
            .iter()
            .map(|(service, cmds)| {
                scope.spawn(move || {
                    for cmd in cmds {
                        cmd.run().map_err(|source| ServiceError::Process {
                            service: service.clone(),
                            what: "database sync failed".into(),
                            source,
                        })?;
                    }
                    Ok(())
                })
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join()
                    .unwrap_or_else(|_| Err(ServiceError::failed("db sync", "a thread panicked")))
            })
            .collect()
    });
    results.into_iter().collect()
}

/// The one batched Python install for every enabled service (the first service's
/// `install` does it; the others find the fingerprint unchanged).
pub fn install_python(run: &mut crate::pipeline::Run) -> Result<(), ServiceError> {
    use crate::system::python::{PythonError, install_for_enabled};
    install_for_enabled(&mut run.host).map_err(|e| match e {
        PythonError::Process { what, source } => ServiceError::Process {
            service: "python".into(),
            what,
            source,
        },
        other => ServiceError::failed("python", other.to_string()),
    })
}

/// A console script of the venv as a command builder (venv first on PATH, bytecode
/// written).
pub fn venv_cmd(host: &Host, script: &str) -> Cmd {
    let mut cmd = host
        .cmd(crate::system::python::venv_bin(host, script))
        .current_dir("/")
        .timeout(Duration::from_secs(600));
    for (k, v) in service_env(host, &[]) {
        cmd = cmd.env(k, v);
    }
    cmd
}

/// `write_uwsgi_config CONF WSGI URL [HTTP] [NAME]` and `remove_uwsgi_config CONF`
/// for plugins (`lib/apache`).
pub fn dispatch(host: &mut Host, call: &Call) -> Option<Reply> {
    let args: Vec<&str> = call.args().iter().map(String::as_str).collect();
    let arg = |i: usize| args.get(i).copied().unwrap_or("");
    Some(match call.op() {
        "uwsgi-write-config" => {
            let (conf, wsgi, http, name) = (arg(0), arg(1), arg(3), arg(4));
            if conf.is_empty() || wsgi.is_empty() {
                return Some(Reply::error(
                    2,
                    "usage: write_uwsgi_config CONF WSGI URL [HTTP] [NAME]",
                ));
            }
            if http.is_empty() {
                return Some(Reply::error(
                    2,
                    format!(
                        "write_uwsgi_config {conf}: devstack-rs runs no Apache, so the app \
                         needs its own address: pass HTTP (host:port) as the 4th argument"
                    ),
                ));
            }
            let app = WsgiApp {
                wsgi: wsgi.to_owned(),
                http: http.to_owned(),
                venv: crate::system::python::venv_dir(host),
                env: Vec::new(),
                processes: host.settings.number("API_WORKERS", 1),
                name: name.to_owned(),
            };
            match write_ini(host, "write_uwsgi_config", Path::new(conf), &app) {
                Ok(()) => {
                    let _ = host.save_state();
                    Reply::ok()
                }
                Err(e) => Reply::error(1, e.to_string()),
            }
        }
        "uwsgi-remove-config" => {
            let conf = PathBuf::from(arg(0));
            let _ = std::fs::remove_file(&conf);
            host.state.state.files.remove(&conf);
            let _ = host.save_state();
            Reply::ok()
        }
        _ => return None,
    })
}

/// An OpenStack API served by uWSGI with a database of its own (glance, placement,
/// neutron): only what differs between them. Every such API is a [`Service`] through
/// the impl below, so the steps they share are written once.
pub trait UwsgiApi {
    /// The lib name (glance) and the DevStack service name of its process (g-api).
    const NAME: &'static str;
    const SERVICE: &'static str;
    /// The variables' prefix (`GLANCE` for `GLANCE_SERVICE_PORT`) and default port.
    const PREFIX: &'static str;
    const PORT: u16;
    fn enabled(settings: &Settings) -> bool;
    fn conf_dir(settings: &Settings) -> PathBuf;
    fn uwsgi_ini(settings: &Settings) -> PathBuf;
    fn write_config(host: &mut Host) -> Result<(), ServiceError>;
    fn db_job(host: &Host) -> Option<DbJob>;
    /// Data directories of its own that clean removes.
    fn data_dirs(_settings: &Settings) -> Vec<PathBuf> {
        Vec::new()
    }
    /// After the API answers (neutron's warm-up request).
    fn after_start(_run: &mut Run) -> Result<(), ServiceError> {
        Ok(())
    }
}

impl<T: UwsgiApi> Service for T {
    fn name(&self) -> &'static str {
        T::NAME
    }
    fn layer(&self) -> Layer {
        Layer::OpenStack
    }
    fn is_enabled(&self, settings: &Settings) -> bool {
        T::enabled(settings)
    }
    fn packages(&self, _settings: &Settings) -> Vec<String> {
        packages()
    }
    fn install(&self, run: &mut Run) -> Result<(), ServiceError> {
        install_python(run)
    }
    fn configure(&self, run: &mut Run) -> Result<(), ServiceError> {
        T::write_config(&mut run.host)
    }
    fn init(&self, run: &mut Run) -> Result<(), ServiceError> {
        keystone::ensure_synced(&mut run.host, T::db_job)
    }
    fn start(&self, run: &mut Run) -> Result<(), ServiceError> {
        let ini = T::uwsgi_ini(&run.host.settings);
        start_api(&mut run.host, T::NAME, T::SERVICE, &ini, T::PREFIX, T::PORT)?;
        T::after_start(run)
    }
    fn stop(&self, run: &mut Run, _all: bool) -> Result<(), ServiceError> {
        stop_processes(&mut run.host, T::NAME, &[T::SERVICE])
    }
    fn clean(&self, run: &mut Run) -> Result<(), ServiceError> {
        let s = run.host.settings.clone();
        clean_api(&run.host, &[T::SERVICE], &T::conf_dir(&s));
        for dir in T::data_dirs(&s) {
            let _ = std::fs::remove_dir_all(dir);
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
}
