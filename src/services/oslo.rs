//! What the OpenStack services share beyond WSGI: their config files (written from
//! scratch, 0640, recorded so clean removes them), oslo's common options and
//! keystone auth sections, their processes under the supervisor (recorded in the
//! ledger, so unstack stops them whatever happens), waiting until an API answers
//! (every request with its own timeout, the whole wait within SERVICE_TIMEOUT),
//! stopping several processes concurrently (nova's take ~10 s each on TERM), and
//! running independent commands in parallel (database syncs).

use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::Host;
use crate::ini::IniDoc;
use crate::services::{ServiceError, daemon};
use crate::state::{ProcessKind, ProcessRecord};
use crate::system::process::Cmd;
use crate::system::supervisor::{ProcStatus, ProcessSpec};

/// Each readiness request gets at most this long.
pub(crate) const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);

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
pub(crate) fn make_dir(host: &mut Host, service: &str, dir: &Path) -> Result<(), ServiceError> {
    if !dir.exists() {
        fs_err::create_dir_all(dir).map_err(io(service, dir))?;
        host.ledger.record_dir(dir);
    }
    Ok(())
}

/// Writes a config file from scratch with `fill`, mode 0640 (it holds passwords),
/// recorded for clean.
pub(crate) fn write_conf(
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
        .map_err(|e| ServiceError::caused(service, format!("writing {}", path.display()), e))?;
    fs_err::set_permissions(path, std::os::unix::fs::PermissionsExt::from_mode(0o640))
        .map_err(io(service, path))?;
    host.ledger.record_file(path);
    Ok(())
}

/// Copies a file the wheel ships (`<venv>/etc/...`), recorded for clean.
pub(crate) fn copy_file(
    host: &mut Host,
    service: &str,
    from: &Path,
    to: &Path,
) -> Result<(), ServiceError> {
    if let Some(dir) = to.parent() {
        make_dir(host, service, dir)?;
    }
    fs_err::copy(from, to).map_err(io(service, from))?;
    host.ledger.record_file(to);
    Ok(())
}

/// Where a service listens: `SERVICE_LISTEN_ADDRESS:<PREFIX>_SERVICE_PORT` (the
/// port its catalog endpoint names).
pub(crate) fn listen(s: &Settings, prefix: &str, default_port: u16) -> String {
    format!(
        "{}:{}",
        s.get_or("SERVICE_LISTEN_ADDRESS", "127.0.0.1"),
        s.number(&format!("{prefix}_SERVICE_PORT"), u64::from(default_port))
    )
}

/// The root URL a local probe uses: `http://<listen>/`.
pub(crate) fn probe_url(s: &Settings, prefix: &str, default_port: u16) -> String {
    format!("http://{}/", listen(s, prefix, default_port))
}

/// A data file the wheel ships under `<venv>/etc/`, e.g. `nova/api-paste.ini`.
pub(crate) fn venv_etc(host: &Host, rel: &str) -> PathBuf {
    crate::system::python::venv_dir(&host.settings)
        .join("etc")
        .join(rel)
}

/// `[keystone_authtoken]` (keystonemiddleware) for a service user, as DevStack's
/// `configure_keystone_authtoken_middleware`.
pub(crate) fn authtoken(doc: &mut IniDoc, s: &Settings, user: &str) {
    let sec = "keystone_authtoken";
    keystoneauth(doc, s, sec, user);
    doc.set(sec, "www_authenticate_uri", s.str("KEYSTONE_SERVICE_URI"));
    doc.set(sec, "memcached_servers", s.str("MEMCACHE_SERVERS"));
    doc.set(sec, "service_token_roles_required", "true");
}

/// Password auth to keystone for a service user in `section` (DevStack's
/// `configure_keystoneauth`, used for [placement], [neutron], [nova], [service_user]).
pub(crate) fn keystoneauth(doc: &mut IniDoc, s: &Settings, section: &str, user: &str) {
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
pub(crate) fn common_defaults(doc: &mut IniDoc, s: &Settings) {
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

/// The environment of an OpenStack process: the venv's bin first on PATH, bytecode
/// written once (the image sets PYTHONDONTWRITEBYTECODE; we pass it on unset).
/// A service process's PATH: the venv's commands first, then the system's.
pub(crate) fn service_path(host: &Host) -> String {
    let venv_bin = crate::system::python::venv_bin(&host.settings, "");
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        venv_bin.display().to_string().trim_end_matches('/')
    )
}

/// PATH (unless `extra` gives its own) and `extra`.
fn service_env(host: &Host, extra: &[(String, String)]) -> Vec<(String, String)> {
    let mut env = Vec::new();
    if !extra.iter().any(|(k, _)| k == "PATH") {
        env.push(("PATH".to_owned(), service_path(host)));
    }
    env.extend(extra.iter().cloned());
    env
}

/// Starts (or restarts) process `name` under the supervisor, recorded in the state.
pub(crate) fn start_process(
    host: &mut Host,
    service: &str,
    name: &str,
    command: &str,
    env: &[(String, String)],
    address: Option<String>,
) -> Result<ProcessRecord, ServiceError> {
    let spec = ProcessSpec {
        name: name.to_owned(),
        command: command.to_owned(),
        env: service_env(host, env),
        user: None,
        group: None,
        log: daemon::daemon_log(&host.settings, name),
        workdir: Some(PathBuf::from("/")),
        address,
    };
    host.log.note(&format!(
        "{service}: starting {name}: {} (log {})",
        host.redactor().redact(command),
        spec.log.display()
    ));
    replace_process(host, service, &spec)
}

/// Starts `spec` under the supervisor in place of the recorded process of the same
/// name (stopped first), and records it; the ledger is saved. `run_process` and
/// [`start_process`] both end here.
pub(crate) fn replace_process(
    host: &mut Host,
    service: &str,
    spec: &ProcessSpec,
) -> Result<ProcessRecord, ServiceError> {
    let name = &spec.name;
    let inputs_key = format!("{PROCESS_INPUTS_PREFIX}{name}");
    let inputs = process_inputs(spec);
    if let Some(old) = host.ledger.process(ProcessKind::Service, name).cloned() {
        if host.keep_unchanged_processes
            && host.ledger.fact(&inputs_key) == Some(inputs.as_str())
            && alive(host, &old)
        {
            host.log.note(&format!(
                "{service}: {name} runs with the same command and config files: kept"
            ));
            return Ok(old);
        }
        host.supervisor
            .stop(&old)
            .map_err(|e| ServiceError::caused(service, format!("stopping {name}"), e))?;
        host.ledger.forget_process(ProcessKind::Service, name);
    }
    let record = crate::timing::timed(crate::timing::Bucket::RunProcess, || {
        host.supervisor.start(spec)
    })
    .map_err(|e| ServiceError::caused(service, format!("starting {name}"), e))?;
    host.ledger
        .record_process(ProcessKind::Service, record.clone());
    host.ledger.set_fact(&inputs_key, inputs);
    host.checkpoint();
    Ok(record)
}

/// The state fact (one per process) holding the digest of what it was started with.
const PROCESS_INPUTS_PREFIX: &str = "process-inputs:";

/// A digest of what a process runs with: its command, environment, user, group and
/// working directory, the content of every file its command line or environment
/// names by absolute path, and of every file under the `/etc/PROJECT` directories
/// they name (`--config-file /etc/nova/nova.conf`, `--ini
/// /etc/nova/nova-api-uwsgi.ini`: all of `/etc/nova`, policy and paste files too).
fn process_inputs(spec: &ProcessSpec) -> String {
    use sha2::{Digest, Sha256};
    let mut h = Sha256::new();
    h.update(format!(
        "{}\0{:?}\0{:?}\0{:?}\0{:?}\0",
        spec.command, spec.env, spec.user, spec.group, spec.workdir
    ));
    let words: Vec<&str> = std::iter::once(spec.command.as_str())
        .chain(spec.env.iter().map(|(_, value)| value.as_str()))
        .flat_map(|text| text.split(|c: char| c.is_whitespace() || c == '=' || c == ':'))
        .filter(|word| word.starts_with('/'))
        .collect();
    let mut files: Vec<PathBuf> = words
        .iter()
        .map(PathBuf::from)
        .filter(|path| path.is_file())
        .collect();
    for word in &words {
        let Some(project) = word
            .strip_prefix("/etc/")
            .and_then(|rest| rest.split('/').next())
        else {
            continue;
        };
        let dir = Path::new("/etc").join(project);
        if !project.is_empty() && dir.is_dir() {
            collect_files(&dir, 4, &mut files);
        }
    }
    files.sort();
    files.dedup();
    for file in files {
        h.update(file.as_os_str().as_encoded_bytes());
        h.update([0]);
        h.update(fs_err::read(&file).unwrap_or_default());
        h.update([0]);
    }
    crate::state::hex(&h.finalize())
}

/// Regular files under `dir`, `depth` levels down at most.
fn collect_files(dir: &Path, depth: usize, out: &mut Vec<PathBuf>) {
    let Ok(entries) = fs_err::read_dir(dir) else {
        return;
    };
    for entry in entries.flatten() {
        let path = entry.path();
        match entry.file_type() {
            Ok(t) if t.is_file() => out.push(path),
            Ok(t) if t.is_dir() && depth > 0 => collect_files(&path, depth - 1, out),
            _ => {}
        }
    }
}

/// Is the recorded process still alive (own backend), or unknown (systemd: assume)?
pub(crate) fn alive(host: &Host, record: &ProcessRecord) -> bool {
    matches!(
        host.supervisor.as_ref().status(record),
        ProcStatus::Running { .. }
    )
}

/// One HTTP GET with its own timeout: the status, or why there was none.
pub(crate) fn http_get(url: &str, token: Option<&str>, timeout: Duration) -> Result<u16, String> {
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

/// The sudoers file of DevStack's `add_sudo_secure_path` (the bash library's too):
/// its first line is `Defaults... secure_path=...`, directories appended.
const SUDO_SECURE_PATH_FILE: &str = "/etc/sudoers.d/zz-secure-path";

/// Adds `dir` to sudo's `secure_path` as DevStack's `add_sudo_secure_path` does
/// (oslo.privsep starts `sudo <project>-rootwrap ... privsep-helper`, both in the
/// venv). The file is recorded for clean.
fn add_sudo_secure_path(host: &mut Host, service: &str, dir: &str) -> Result<(), ServiceError> {
    let file = PathBuf::from(
        host.settings
            .get_or("SUDO_SECURE_PATH_FILE", SUDO_SECURE_PATH_FILE),
    );
    let first = fs_err::read_to_string(&file)
        .ok()
        .and_then(|t| t.lines().next().map(str::to_owned))
        .unwrap_or_else(|| {
            "Defaults secure_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin"
                .to_owned()
        });
    if !first.split([':', '=']).any(|p| p == dir) {
        let line = format!("{first}:{dir}\n");
        crate::state::write_atomic(&file, line.as_bytes(), 0o440).map_err(io(service, &file))?;
    }
    host.ledger.record_file(&file);
    Ok(())
}

/// A project's rootwrap, as DevStack's `configure_rootwrap`: its `rootwrap.conf` and
/// filters from the wheel into `conf_dir`, executables looked up in the venv too, and
/// sudo able to find them. Returns the rootwrap.conf path for `rootwrap_config`.
pub(crate) fn configure_rootwrap(
    host: &mut Host,
    service: &str,
    project: &str,
    conf_dir: &Path,
) -> Result<PathBuf, ServiceError> {
    let venv_bin = crate::system::python::venv_bin(&host.settings, "");
    let venv_bin = venv_bin.display().to_string();
    let venv_bin = venv_bin.trim_end_matches('/');
    let filters = conf_dir.join("rootwrap.d");
    make_dir(host, service, &filters)?;
    let shipped = venv_etc(host, &format!("{project}/rootwrap.d"));
    for entry in fs_err::read_dir(&shipped).map_err(io(service, &shipped))? {
        let path = entry.map_err(io(service, &shipped))?.path();
        if path.extension().is_some_and(|e| e == "filters") {
            let to = filters.join(path.file_name().unwrap_or_default());
            copy_file(host, service, &path, &to)?;
        }
    }
    let conf = conf_dir.join("rootwrap.conf");
    write_conf(host, service, &conf, |doc| {
        doc.set("DEFAULT", "filters_path", &filters.display().to_string());
        doc.set(
            "DEFAULT",
            "exec_dirs",
            &format!("{venv_bin},/sbin,/usr/sbin,/bin,/usr/bin,/usr/local/bin,/usr/local/sbin"),
        );
        doc.set("DEFAULT", "use_syslog", "False");
    })?;
    add_sudo_secure_path(host, service, venv_bin)?;
    Ok(conf)
}

/// An OpenStack REST API with the run's admin token: the few calls the stack makes
/// itself (volume types, flavors, images, networks) without one `openstack` CLI
/// process (2 s) per call. Every request has its own timeout.
pub(crate) struct Api {
    agent: ureq::Agent,
    token: String,
    service: String,
}

impl Api {
    pub(crate) fn new(host: &mut Host, service: &str) -> Result<Self, ServiceError> {
        let token = host
            .keystone()
            .and_then(|c| c.token().map(str::to_owned))
            .map_err(|e| ServiceError::caused(service, "a token for the API", e))?;
        let agent = ureq::Agent::config_builder()
            .http_status_as_error(false)
            .timeout_global(Some(REQUEST_TIMEOUT * 6))
            .build()
            .into();
        Ok(Self {
            agent,
            token,
            service: service.to_owned(),
        })
    }

    fn answer(
        &self,
        what: &str,
        result: Result<ureq::http::Response<ureq::Body>, ureq::Error>,
    ) -> Result<serde_json::Value, ServiceError> {
        let mut resp = result.map_err(|e| ServiceError::caused(&self.service, what, e))?;
        let status = resp.status();
        let text = resp.body_mut().read_to_string().unwrap_or_default();
        if !status.is_success() {
            return Err(ServiceError::failed(
                &self.service,
                format!(
                    "{what}: HTTP {status}: {}",
                    text.chars().take(300).collect::<String>()
                ),
            ));
        }
        if text.trim().is_empty() {
            return Ok(serde_json::Value::Null);
        }
        serde_json::from_str(&text).map_err(|e| ServiceError::caused(&self.service, what, e))
    }

    pub(crate) fn get(&self, url: &str) -> Result<serde_json::Value, ServiceError> {
        let what = format!("GET {url}");
        crate::timing::timed(crate::timing::Bucket::Osc, || {
            let result = self
                .agent
                .get(url)
                .header("X-Auth-Token", &self.token)
                .call();
            self.answer(&what, result)
        })
    }

    pub(crate) fn post(
        &self,
        url: &str,
        body: &serde_json::Value,
    ) -> Result<serde_json::Value, ServiceError> {
        let what = format!("POST {url}");
        crate::timing::timed(crate::timing::Bucket::Osc, || {
            let result = self
                .agent
                .post(url)
                .header("X-Auth-Token", &self.token)
                .send_json(body);
            self.answer(&what, result)
        })
    }
}

/// Polls `url` until it answers with a status `ok` accepts (per request
/// [`REQUEST_TIMEOUT`], in all SERVICE_TIMEOUT); fails at once when the process died.
pub(crate) fn wait_http(
    host: &Host,
    service: &str,
    record: &ProcessRecord,
    url: &str,
    ok: impl Fn(u16) -> bool,
) -> Result<(), ServiceError> {
    let timeout = daemon::service_timeout(&host.settings);
    let probe = || match http_get(url, None, REQUEST_TIMEOUT) {
        Ok(code) if ok(code) => Ok(()),
        Ok(code) => Err(format!("HTTP {code}")),
        Err(e) => Err(e),
    };
    let took = daemon::wait_until(
        service,
        &format!("GET {url}"),
        &record.log,
        timeout,
        probe,
        || !alive(host, record),
    )?;
    host.note(&format!(
        "{service}: {url} answered after {:.1} s",
        took.as_secs_f64()
    ));
    Ok(())
}

/// Stops the named processes concurrently (each TERM, then KILL after the grace)
/// and forgets them. Names the state does not know are skipped.
pub(crate) fn stop_processes(
    host: &mut Host,
    service: &str,
    names: &[&str],
) -> Result<(), ServiceError> {
    let records: Vec<ProcessRecord> = names
        .iter()
        .filter_map(|n| host.ledger.process(ProcessKind::Service, n).cloned())
        .collect();
    if records.is_empty() {
        return Ok(());
    }
    let sup = host.supervisor.as_ref();
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
                host.ledger.forget_process(ProcessKind::Service, &name);
                host.log.note(&format!("{service}: stopped {name}"));
            }
            Err(e) => errors.push(e),
        }
    }
    host.checkpoint();
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ServiceError::failed(service, errors.join("; ")))
    }
}

/// Runs commands, each list in order, the lists concurrently (independent database
/// syncs). The first failure is returned after all have ended.
pub(crate) fn run_parallel(jobs: &[(String, Vec<Cmd>)]) -> Result<(), ServiceError> {
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

/// A console script of the venv as a command builder (venv first on PATH, bytecode
/// written).
pub(crate) fn venv_cmd(host: &Host, script: &str) -> Cmd {
    let mut cmd = host
        .cmd(crate::system::python::venv_bin(&host.settings, script))
        .current_dir("/")
        .timeout(Duration::from_secs(600));
    for (k, v) in service_env(host, &[]) {
        cmd = cmd.env(k, v);
    }
    cmd
}
