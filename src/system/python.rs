//! Python: `uv` (installed by us into `$DEST/.uv-venv`), the one virtualenv at
//! `DEVSTACK_VENV` on Debian's `/usr/bin/python3`, and installs into it with the
//! project's constraints file (`files/constraints/openstack-2026.2.txt`).
//!
//! Every OpenStack project a stack needs goes in ONE `uv pip install` (batched);
//! `--offline` first (a warm cache answers in about a second: the registry's answers
//! are not cacheable, so an online install re-downloads and rebuilds sdists), online
//! when that fails. A project whose `<PROJECT>_REPO` points at a local checkout (and
//! each library named in `LIBS_FROM_GIT` found at `$DEST/NAME`) is installed editable
//! instead, with its own pin removed from the constraints. When the venv already
//! holds the same requirement set (a fingerprint kept in the state's facts and in the
//! venv), nothing runs at all.
//!
//! The shell shims (`inc/python`: `setup_develop`, `pip_install`, `pip_install_gr`,
//! `setup_dev_lib`) call [`dispatch`].

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

use crate::config::settings::Settings;
use crate::system::Machine;
use crate::system::process::{Cmd, ProcessError};

/// The interpreter every venv is built on (Debian's: Debian's uwsgi plugin is linked
/// against its libpython, and its packages match it).
pub(crate) const SYSTEM_PYTHON: &str = "/usr/bin/python3";
/// uv's cache: outside `$DEST`, so it survives clean and makes the next stack warm.
pub(crate) const UV_CACHE_DIR: &str = "/var/cache/devstack-rs/uv";
/// The constraints file, relative to the tree.
pub(crate) const CONSTRAINTS: &str = "files/constraints/openstack-2026.2.txt";
/// The fact (and the file in the venv) holding the installed requirement set's hash.
pub(crate) const FINGERPRINT_FACT: &str = "python-venv-fingerprint";
const FINGERPRINT_FILE: &str = ".devstack-requirements";
/// An install may take this long (a cold one with sdist builds takes under a minute).
const INSTALL_TIMEOUT: Duration = Duration::from_secs(1800);

#[derive(Debug, thiserror::Error)]
pub(crate) enum PythonError {
    #[error("{what}")]
    Process {
        what: String,
        #[source]
        source: ProcessError,
    },
    #[error("{path}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("{0}")]
    Invalid(String),
}

impl PythonError {
    pub(crate) fn tail(&self) -> &[String] {
        match self {
            Self::Process { source, .. } => source.tail(),
            _ => &[],
        }
    }
}

fn io_err(path: &Path) -> impl FnOnce(std::io::Error) -> PythonError + '_ {
    move |source| PythonError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// A project DevStack installs from PyPI, and the variable that points at a checkout.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Project {
    /// The distribution name on PyPI.
    pub dist: &'static str,
    /// `<PROJECT>_REPO`: when it names a local directory, that checkout is used.
    pub repo_var: &'static str,
}

/// What every stack with an OpenStack service installs besides the services: the
/// client, the database and memcached drivers.
pub(crate) const COMMON: &[&str] = &[
    "python-openstackclient",
    "osc-placement",
    "pymysql",
    "python-memcached",
    "pymemcache",
];

/// PEP 503 normalisation (`oslo.messaging` and `oslo_messaging` are one name).
pub(crate) fn normalize(name: &str) -> String {
    let mut out = String::new();
    let mut sep = false;
    for c in name.trim().chars() {
        if matches!(c, '-' | '_' | '.') {
            sep = true;
            continue;
        }
        if sep && !out.is_empty() {
            out.push('-');
        }
        sep = false;
        out.push(c.to_ascii_lowercase());
    }
    out
}

/// Does `dir` look like a Python source checkout?
pub(crate) fn is_checkout(dir: &Path) -> bool {
    dir.join("setup.py").is_file()
        || dir.join("pyproject.toml").is_file()
        || dir.join("setup.cfg").is_file()
}

/// The distribution name of a checkout (`[metadata] name` in setup.cfg, `name` in
/// pyproject's `[project]`), else the directory name.
pub(crate) fn checkout_name(dir: &Path) -> String {
    if let Ok(doc) = crate::ini::IniDoc::load(&dir.join("setup.cfg")) {
        if let Some(name) = doc.get("metadata", "name") {
            return name.trim().to_owned();
        }
    }
    if let Ok(text) = fs_err::read_to_string(dir.join("pyproject.toml")) {
        let mut in_project = false;
        for line in text.lines() {
            let line = line.trim();
            if line.starts_with('[') {
                in_project = line == "[project]";
            } else if in_project {
                if let Some(v) = line.strip_prefix("name") {
                    let v = v.trim_start();
                    if let Some(v) = v.strip_prefix('=') {
                        return v.trim().trim_matches(['"', '\'']).to_owned();
                    }
                }
            }
        }
    }
    dir.file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default()
}

/// One requirement of an install.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord)]
pub(crate) enum Req {
    /// A name (or a spec such as `foo>=1`) resolved from PyPI under the constraints.
    Pypi(String),
    /// A local checkout installed editable; `extras` without brackets.
    Editable {
        dir: PathBuf,
        name: String,
        extras: String,
    },
}

/// What the stack installs: the enabled services' projects from PyPI (or their
/// checkouts), the common tools, and the `LIBS_FROM_GIT` libraries under `$DEST`.
pub(crate) fn requirements(s: &Settings, projects: &[Project], extra: &[String]) -> Vec<Req> {
    let mut reqs = Vec::new();
    for p in projects {
        let repo = s.str(p.repo_var);
        let dir = Path::new(repo);
        if !repo.is_empty() && dir.is_dir() && is_checkout(dir) {
            reqs.push(Req::Editable {
                dir: dir.to_path_buf(),
                name: checkout_name(dir),
                extras: String::new(),
            });
        } else {
            reqs.push(Req::Pypi(p.dist.to_owned()));
        }
    }
    if s.str("DATABASE_TYPE") == "postgresql" || s.is_enabled(&["postgresql"]) {
        reqs.push(Req::Pypi("psycopg2-binary".into()));
    }
    for name in COMMON {
        reqs.push(Req::Pypi((*name).to_owned()));
    }
    for lib in s
        .str("LIBS_FROM_GIT")
        .split([',', ' '])
        .filter(|l| !l.is_empty())
    {
        let dir = s.path("DEST").join(lib);
        if is_checkout(&dir) {
            reqs.push(Req::Editable {
                name: checkout_name(&dir),
                dir,
                extras: String::new(),
            });
        }
    }
    reqs.extend(extra.iter().map(|e| Req::Pypi(e.clone())));
    // Editable ones replace their PyPI namesakes.
    let editable: Vec<String> = reqs
        .iter()
        .filter_map(|r| match r {
            Req::Editable { name, .. } => Some(normalize(name)),
            Req::Pypi(_) => None,
        })
        .collect();
    reqs.retain(|r| match r {
        Req::Pypi(n) => !editable.contains(&normalize(n)),
        Req::Editable { .. } => true,
    });
    reqs.sort();
    reqs.dedup();
    reqs
}

/// The venv's directory (`DEVSTACK_VENV`, default DevStack's `$DATA_DIR/venv`).
pub(crate) fn venv_dir(s: &Settings) -> PathBuf {
    let v = s.path("DEVSTACK_VENV");
    if v.as_os_str().is_empty() {
        s.path("DATA_DIR").join("venv")
    } else {
        v
    }
}

/// `<venv>/bin/NAME`.
pub(crate) fn venv_bin(s: &Settings, name: &str) -> PathBuf {
    venv_dir(s).join("bin").join(name)
}

fn uv_home(s: &Settings) -> PathBuf {
    let dest = s.path("DEST");
    let dest = if dest.as_os_str().is_empty() {
        PathBuf::from("/opt/stack")
    } else {
        dest
    };
    dest.join(".uv-venv")
}

fn run(cmd: &Cmd, what: &str) -> Result<crate::system::process::Output, PythonError> {
    cmd.run().map_err(|source| PythonError::Process {
        what: what.to_owned(),
        source,
    })
}

/// uv, installed by us with pip into a venv of its own when it is not there yet.
pub(crate) fn ensure_uv(host: &Machine<'_>) -> Result<PathBuf, PythonError> {
    let home = uv_home(host.settings);
    let uv = home.join("bin/uv");
    if uv.is_file() {
        return Ok(uv);
    }
    host.note(&format!("python: installing uv into {}", home.display()));
    if let Some(parent) = home.parent() {
        fs_err::create_dir_all(parent).map_err(io_err(parent))?;
    }
    run(
        &host
            .cmd(SYSTEM_PYTHON)
            .args(["-m", "venv", "--clear"])
            .arg(&home)
            .timeout(Duration::from_secs(300)),
        "creating the venv for uv",
    )?;
    run(
        &installer_env(host.cmd(home.join("bin/pip")))
            .args(["install", "--disable-pip-version-check", "uv"])
            .env("PIP_DEFAULT_TIMEOUT", "180")
            .timeout(Duration::from_secs(600)),
        "pip install uv",
    )?;
    if !uv.is_file() {
        return Err(PythonError::Invalid(format!(
            "pip installed uv, but {} is not there",
            uv.display()
        )));
    }
    Ok(uv)
}

/// What an installer needs from our environment to reach the registry: the
/// machine's CA bundle, proxies, a configured index.
const NETWORK_ENV: &[&str] = &[
    "SSL_CERT_FILE",
    "SSL_CERT_DIR",
    "HTTP_PROXY",
    "HTTPS_PROXY",
    "NO_PROXY",
    "http_proxy",
    "https_proxy",
    "no_proxy",
    "UV_INDEX_URL",
    "UV_DEFAULT_INDEX",
    "UV_EXTRA_INDEX_URL",
    "PIP_INDEX_URL",
    "PIP_EXTRA_INDEX_URL",
    "PIP_CERT",
];

/// What every installer call (uv, pip; the product's and the tests') needs to reach
/// the registry: our proxies, CA bundle and index, the machine's trust store, and
/// pip's index for uv when only that one is configured.
pub fn installer_env(mut cmd: Cmd) -> Cmd {
    for key in NETWORK_ENV {
        if let Some(v) = std::env::var_os(key) {
            cmd = cmd.env(key, v);
        }
    }
    // The machine's trust store (a registry behind a local CA works).
    cmd = cmd.env("UV_NATIVE_TLS", "1");
    if std::env::var_os("UV_INDEX_URL").is_none() {
        if let Some(index) = std::env::var_os("PIP_INDEX_URL") {
            cmd = cmd.env("UV_INDEX_URL", index);
        }
    }
    cmd
}

fn uv_cmd(host: &Machine<'_>, uv: &Path) -> Cmd {
    installer_env(host.cmd(uv))
        .env("UV_CACHE_DIR", UV_CACHE_DIR)
        .env("UV_PYTHON_DOWNLOADS", "never")
        .env("UV_NO_PROGRESS", "1")
        .label("uv")
}

/// The venv, created with uv on Debian's python when it does not exist.
pub(crate) fn ensure_venv(host: &Machine<'_>, uv: &Path) -> Result<PathBuf, PythonError> {
    let venv = venv_dir(host.settings);
    let python = venv.join("bin/python3");
    if python.is_file()
        && host
            .cmd(&python)
            .args(["-c", "import sys"])
            .timeout(Duration::from_secs(60))
            .run()
            .is_ok()
    {
        return Ok(venv);
    }
    run(
        &uv_cmd(host, uv)
            .args(["venv", "--allow-existing", "--python", SYSTEM_PYTHON])
            .arg(&venv)
            .timeout(Duration::from_secs(300)),
        "creating the virtualenv",
    )?;
    Ok(venv)
}

/// The constraints for an install: the project's file without the pins of what is
/// installed from a checkout (DevStack's edit-constraints). Written beside the state.
fn constraints_for(host: &Machine<'_>, reqs: &[Req]) -> Result<PathBuf, PythonError> {
    let source = host.top_dir.join(CONSTRAINTS);
    let text = fs_err::read_to_string(&source).map_err(io_err(&source))?;
    let editable: Vec<String> = reqs
        .iter()
        .filter_map(|r| match r {
            Req::Editable { name, .. } => Some(normalize(name)),
            Req::Pypi(_) => None,
        })
        .collect();
    if editable.is_empty() {
        return Ok(source);
    }
    let mut out = String::new();
    for line in text.lines() {
        let name = line
            .split(['=', '<', '>', '!', '~', ';', ' ', '['])
            .next()
            .unwrap_or("");
        if !name.is_empty() && !line.starts_with('#') && editable.contains(&normalize(name)) {
            let _ = writeln!(out, "# {line}  (installed from a checkout)");
        } else {
            let _ = writeln!(out, "{line}");
        }
    }
    let path = crate::state::state_dir(host.top_dir).join("constraints.txt");
    if let Some(dir) = path.parent() {
        fs_err::create_dir_all(dir).map_err(io_err(dir))?;
    }
    fs_err::write(&path, out).map_err(io_err(&path))?;
    Ok(path)
}

fn install_args(reqs: &[Req]) -> Vec<String> {
    let mut args = Vec::new();
    for r in reqs {
        match r {
            Req::Pypi(name) => args.push(name.clone()),
            Req::Editable { dir, extras, .. } => {
                args.push("-e".into());
                if extras.is_empty() {
                    args.push(dir.display().to_string());
                } else {
                    args.push(format!("{}[{extras}]", dir.display()));
                }
            }
        }
    }
    args
}

/// The fingerprint of an install: what is asked, under which constraints, into
/// which interpreter.
fn fingerprint(reqs: &[Req], constraints: &Path) -> String {
    let mut h = Sha256::new();
    h.update(SYSTEM_PYTHON.as_bytes());
    h.update(fs_err::read(constraints).unwrap_or_default());
    for a in install_args(reqs) {
        h.update(a.as_bytes());
        h.update([0]);
    }
    crate::state::hex(&h.finalize())
}

/// `uv pip install -c CONSTRAINTS ARGS...` into the venv, offline first.
fn uv_install(
    host: &Machine<'_>,
    uv: &Path,
    constraints: &Path,
    args: &[String],
) -> Result<(), PythonError> {
    let python = venv_dir(host.settings).join("bin/python3");
    let base = uv_cmd(host, uv)
        .args(["pip", "install", "--python"])
        .arg(&python)
        .arg("-c")
        .arg(constraints)
        .timeout(INSTALL_TIMEOUT);
    let offline = base.clone().arg("--offline").args(args).run();
    if offline.is_ok() {
        return Ok(());
    }
    host.note("python: the offline install missed the cache; installing online");
    run(&base.args(args), "uv pip install")?;
    Ok(())
}

/// Installs `reqs`; with `record`, skips when the fingerprint matches and keeps it.
pub(crate) fn install(
    host: &mut Machine<'_>,
    reqs: &[Req],
    record: bool,
) -> Result<(), PythonError> {
    if reqs.is_empty() {
        return Ok(());
    }
    let t0 = Instant::now();
    let constraints = constraints_for(host, reqs)?;
    let print = fingerprint(reqs, &constraints);
    let venv = venv_dir(host.settings);
    let marker = venv.join(FINGERPRINT_FILE);
    let has_python = venv.join("bin/python3").is_file();
    if record && has_python && fs_err::read_to_string(&marker).is_ok_and(|m| m.trim() == print) {
        host.ledger.set_fact(FINGERPRINT_FACT, print.clone());
        host.note("python: the venv already holds this requirement set; nothing to install");
        return Ok(());
    }
    let uv = ensure_uv(host)?;
    ensure_venv(host, &uv)?;
    fs_err::create_dir_all(UV_CACHE_DIR).map_err(io_err(Path::new(UV_CACHE_DIR)))?;
    let args = install_args(reqs);
    uv_install(host, &uv, &constraints, &args)?;
    if record {
        fs_err::write(&marker, format!("{print}\n")).map_err(io_err(&marker))?;
        host.ledger.set_fact(FINGERPRINT_FACT, print);
    }
    host.note(&format!(
        "python: installed {} requirement(s) in {:.1} s",
        reqs.len(),
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn settings(pairs: &[(&str, &str)]) -> Settings {
        Settings::from_pairs(pairs)
    }

    fn projects(names: &[&'static str]) -> Vec<Project> {
        names
            .iter()
            .map(|n| Project {
                dist: n,
                repo_var: "UNSET_REPO",
            })
            .collect()
    }

    #[test]
    fn names_normalise() {
        assert_eq!(normalize("oslo.messaging"), "oslo-messaging");
        assert_eq!(normalize("Oslo__Messaging"), "oslo-messaging");
        assert_eq!(normalize("openstack-placement"), "openstack-placement");
    }

    #[test]
    fn projects_and_the_tools_are_required() {
        let s = settings(&[]);
        let reqs = requirements(
            &s,
            &projects(&[
                "keystone",
                "glance",
                "openstack-placement",
                "neutron",
                "nova",
            ]),
            &[],
        );
        for name in [
            "keystone",
            "glance",
            "openstack-placement",
            "neutron",
            "nova",
        ] {
            assert!(reqs.contains(&Req::Pypi(name.into())), "{name}: {reqs:?}");
        }
        assert!(reqs.contains(&Req::Pypi("python-openstackclient".into())));
    }

    #[test]
    fn a_local_checkout_replaces_the_release() {
        let dir = tempfile::tempdir().unwrap();
        fs_err::write(dir.path().join("setup.cfg"), "[metadata]\nname = nova\n").unwrap();
        let s = settings(&[
            ("ENABLED_SERVICES", "n-api"),
            ("NOVA_REPO", dir.path().to_str().unwrap()),
        ]);
        let nova = Project {
            dist: "nova",
            repo_var: "NOVA_REPO",
        };
        let reqs = requirements(&s, &[nova], &[]);
        assert!(!reqs.contains(&Req::Pypi("nova".into())));
        assert!(reqs.iter().any(
            |r| matches!(r, Req::Editable { name, dir: d, .. } if name == "nova" && d == dir.path())
        ));
        let args = install_args(&reqs);
        let i = args.iter().position(|a| a == "-e").unwrap();
        assert_eq!(args[i + 1], dir.path().display().to_string());
    }

    #[test]
    fn fingerprints_follow_the_set() {
        let dir = tempfile::tempdir().unwrap();
        let c = dir.path().join("c.txt");
        fs_err::write(&c, "a==1\n").unwrap();
        let a = fingerprint(&[Req::Pypi("nova".into())], &c);
        assert_eq!(a, fingerprint(&[Req::Pypi("nova".into())], &c));
        assert_ne!(a, fingerprint(&[Req::Pypi("glance".into())], &c));
        fs_err::write(&c, "a==2\n").unwrap();
        assert_ne!(a, fingerprint(&[Req::Pypi("nova".into())], &c));
    }
}
