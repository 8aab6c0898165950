//! horizon (`horizon`, in the default services as in DevStack): the dashboard, from PyPI (`horizon` 27.0.0, the 2026.2
//! release, pinned with Django and its XStatic packages in the constraints), with
//! DevStack's `local_settings.py` choices, its static files collected and
//! compressed at init (skipped when the venv and the settings are what they were),
//! served by uWSGI on a socket behind the front proxy at `/dashboard`
//! (DevStack's `HORIZON_APACHE_ROOT`), the static files by the proxy itself, and
//! sessions in the stack's memcached (a per-process cache loops back to the login
//! form with more than one worker).

use std::fmt::Write as _;
use std::path::{Path, PathBuf};

use sha2::{Digest, Sha256};

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::services::uwsgi::{self, WsgiApp};
use crate::services::{Descriptor, Layer, Service, ServiceError, frontproxy, oslo};
use crate::system::python::Project;

pub(crate) const NAME: &str = "horizon";
/// The site, socket and process name.
const SITE: &str = "horizon";

pub(crate) struct Horizon;

/// `HORIZON_APACHE_ROOT` (DevStack's default `/dashboard`).
fn webroot(s: &Settings) -> String {
    let root = s.get_or("HORIZON_APACHE_ROOT", "/dashboard");
    format!("/{}", root.trim_matches('/'))
}

fn data_dir(s: &Settings) -> PathBuf {
    s.path("DATA_DIR").join("horizon")
}

fn static_root(s: &Settings) -> PathBuf {
    data_dir(s).join("static")
}

fn uwsgi_ini(s: &Settings) -> PathBuf {
    data_dir(s).join("horizon-uwsgi.ini")
}

/// Where the installed `openstack_dashboard` package keeps its `local/` dir.
fn local_dir(s: &Settings) -> Option<PathBuf> {
    let lib = crate::system::python::venv_dir(s).join("lib");
    fs_err::read_dir(&lib)
        .ok()?
        .filter_map(Result::ok)
        .map(|e| e.path().join("site-packages/openstack_dashboard/local"))
        .find(|p| p.is_dir())
}

/// `$HORIZON_DIR` as DevStack's plugins use it: a directory holding
/// `openstack_dashboard/` (they copy their panels into
/// `$HORIZON_DIR/openstack_dashboard/local/enabled/`). Installed from PyPI, the package
/// is in the venv, so the directory links to it (the link follows the venv on each
/// stack); a checkout there (`HORIZON_REPO`) is left as it is.
fn link_horizon_dir(host: &mut Host) -> Result<(), ServiceError> {
    let s = &host.settings;
    let dir = s.path("HORIZON_DIR");
    let Some(package) = local_dir(s).and_then(|l| l.parent().map(Path::to_path_buf)) else {
        return Ok(());
    };
    if dir.as_os_str().is_empty() {
        return Ok(());
    }
    let link = dir.join("openstack_dashboard");
    let io = |path: &Path| {
        let path = path.to_path_buf();
        move |source| ServiceError::Io {
            service: NAME.into(),
            path,
            source,
        }
    };
    match fs_err::symlink_metadata(&link) {
        Ok(m) if !m.file_type().is_symlink() => return Ok(()),
        Ok(_) => fs_err::remove_file(&link).map_err(io(&link))?,
        Err(_) => {}
    }
    if !dir.is_dir() {
        fs_err::create_dir_all(&dir).map_err(io(&dir))?;
        host.ledger.record_dir(&dir);
    }
    std::os::unix::fs::symlink(&package, &link).map_err(io(&link))?;
    host.ledger.record_file(&link);
    Ok(())
}

fn py_str(v: &str) -> String {
    format!("'{}'", v.replace('\\', "\\\\").replace('\'', "\\'"))
}

/// DevStack's local_settings.py choices (lib/horizon's `configure_horizon` over
/// the example file): the web root, keystone v3 with `member` as default role,
/// offline compression, and ours: sessions in memcached, static files in DATA_DIR.
pub(crate) fn local_settings_text(s: &Settings) -> String {
    let root = webroot(s);
    let data = data_dir(s);
    let memcache = s
        .get_or("MEMCACHE_SERVERS", "127.0.0.1:11211")
        .split(',')
        .map(|m| py_str(m.trim()))
        .collect::<Vec<_>>()
        .join(", ");
    let mut t = String::from(
        "# Written by devstack-rs: DevStack's lib/horizon choices.\n\
         import os\n\n\
         from horizon.utils import secret_key\n\n\
         DEBUG = True\n\
         ALLOWED_HOSTS = ['*']\n",
    );
    let _ = writeln!(t, "WEBROOT = {}", py_str(&format!("{root}/")));
    let _ = writeln!(t, "LOCAL_PATH = {}", py_str(&data.display().to_string()));
    t.push_str(
        "SECRET_KEY = secret_key.generate_or_read_from_file(\n    \
         os.path.join(LOCAL_PATH, '.secret_key_store'))\n",
    );
    let _ = writeln!(
        t,
        "STATIC_ROOT = {}",
        py_str(&static_root(s).display().to_string())
    );
    let _ = writeln!(t, "STATIC_URL = {}", py_str(&format!("{root}/static/")));
    t.push_str(
        "COMPRESS_OFFLINE = True\n\
         COMPRESS_ENABLED = True\n\
         SESSION_ENGINE = 'django.contrib.sessions.backends.cache'\n",
    );
    let _ = writeln!(
        t,
        "CACHES = {{\n    'default': {{\n        'BACKEND': 'django.core.cache.backends.memcached.PyMemcacheCache',\n        'LOCATION': [{memcache}],\n    }},\n}}"
    );
    let _ = writeln!(
        t,
        "OPENSTACK_HOST = {}",
        py_str(s.get_or(
            "KEYSTONE_SERVICE_HOST",
            s.get_or("SERVICE_HOST", "127.0.0.1")
        ))
    );
    let _ = writeln!(
        t,
        "OPENSTACK_KEYSTONE_URL = {}",
        py_str(&format!("{}/v3", s.str("KEYSTONE_SERVICE_URI")))
    );
    t.push_str(
        "OPENSTACK_KEYSTONE_DEFAULT_ROLE = 'member'\n\
         OPENSTACK_API_VERSIONS = {'identity': 3}\n\
         TIME_ZONE = 'UTC'\n\
         EMAIL_BACKEND = 'django.core.mail.backends.console.EmailBackend'\n",
    );
    t
}

/// The proxy's site: the static files served by Apache itself, the rest routed to
/// the dashboard's socket (exclusion first: ProxyPass takes the first match).
pub(crate) fn site_text(s: &Settings) -> String {
    let root = webroot(s);
    let dir = static_root(s);
    format!(
        "Alias \"{root}/static\" \"{dir}\"\n\
         <Directory \"{dir}\">\n    Require all granted\n</Directory>\n\
         ProxyPass \"{root}/static\" !\n{}",
        frontproxy::proxy_pass_line(&root, SITE),
        dir = dir.display()
    )
}

/// collectstatic and compress, unless the static dir was made from this venv, these
/// settings and these enabled panels (plugins add theirs; its fingerprint file says so).
fn collect_static(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    let dir = static_root(&s);
    let mut h = Sha256::new();
    h.update(
        host.ledger
            .fact(crate::system::python::FINGERPRINT_FACT)
            .unwrap_or_default(),
    );
    h.update(local_settings_text(&s));
    if let Some(enabled) = local_dir(&s).map(|l| l.join("enabled")) {
        let mut panels: Vec<PathBuf> = fs_err::read_dir(&enabled)
            .into_iter()
            .flatten()
            .flatten()
            .map(|e| e.path())
            .collect();
        panels.sort();
        for panel in panels {
            h.update(panel.to_string_lossy().as_bytes());
            h.update(fs_err::read(&panel).unwrap_or_default());
        }
    }
    let print = crate::state::hex(&h.finalize());
    let marker = dir.join(".devstack-fingerprint");
    if fs_err::read_to_string(&marker).is_ok_and(|m| m.trim() == print) {
        host.log
            .note("horizon: static files already collected and compressed for this venv; skipped");
        return Ok(());
    }
    let t0 = std::time::Instant::now();
    for args in [
        &["collectstatic", "--noinput", "--clear"][..],
        &["compress", "--force"][..],
    ] {
        oslo::venv_cmd(host, "django-admin")
            .args(args)
            .env("DJANGO_SETTINGS_MODULE", "openstack_dashboard.settings")
            .label("horizon")
            .run()
            .map_err(|source| ServiceError::Process {
                service: NAME.into(),
                what: format!("django-admin {}", args[0]),
                source,
            })?;
    }
    fs_err::write(&marker, format!("{print}\n")).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: marker.clone(),
        source,
    })?;
    host.log.note(&format!(
        "horizon: static files collected and compressed in {:.1} s",
        t0.elapsed().as_secs_f64()
    ));
    Ok(())
}

fn write_config(host: &mut Host) -> Result<(), ServiceError> {
    let s = host.settings.clone();
    oslo::make_dir(host, NAME, &data_dir(&s))?;
    let Some(local) = local_dir(&s) else {
        return Err(ServiceError::failed(
            NAME,
            "openstack_dashboard is not installed in the venv",
        ));
    };
    let file = local.join("local_settings.py");
    fs_err::write(&file, local_settings_text(&s)).map_err(|source| ServiceError::Io {
        service: NAME.into(),
        path: file.clone(),
        source,
    })?;
    host.ledger.record_file(&file);
    let app = WsgiApp {
        wsgi: "openstack_dashboard.wsgi:application".into(),
        http: frontproxy::socket_path(SITE).display().to_string(),
        venv: crate::system::python::venv_dir(&s),
        env: vec![(
            "DJANGO_SETTINGS_MODULE".into(),
            "openstack_dashboard.settings".into(),
        )],
        processes: s.number("API_WORKERS", 1).max(2),
        name: SITE.into(),
    };
    uwsgi::write_ini(host, NAME, &uwsgi_ini(&s), &app)?;
    frontproxy::add_site(host, NAME, SITE, &site_text(&s), false)
}

/// The dashboard's URL, as the stack's summary prints it.
pub(crate) fn url(s: &Settings) -> String {
    let protocol = s.get_or("SERVICE_PROTOCOL", "http");
    let host = s.get_or("SERVICE_HOST", "127.0.0.1");
    let host = if host.contains(':') && !host.starts_with('[') {
        format!("[{host}]")
    } else {
        host.to_owned()
    };
    format!("{protocol}://{host}{}/", webroot(s))
}

pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME],
    after: &["keystone"],
    python: &[Project {
        dist: "horizon",
        repo_var: "HORIZON_REPO",
    }],
    packages: uwsgi::PACKAGES,
    defaults: &[("HORIZON_APACHE_ROOT", "/dashboard")],
    processes: &[NAME],
    ..Descriptor::named(NAME, Layer::OpenStack)
};

impl Service for Horizon {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn configure(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        link_horizon_dir(cx.host)?;
        write_config(cx.host)
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        // DevStack's init_horizon runs after the post-config phase, where plugins
        // copy their panels into $HORIZON_DIR/openstack_dashboard/local/enabled/.
        collect_static(cx.host)?;
        let s = cx.host.settings.clone();
        let record = oslo::start_process(
            cx.host,
            NAME,
            NAME,
            &uwsgi::command(&uwsgi_ini(&s)),
            &[],
            Some(frontproxy::socket_path(SITE).display().to_string()),
        )?;
        // The login page: 200 once Django is up behind the proxy.
        let login = frontproxy::probe_url(&s, &format!("{}/auth/login/", webroot(&s)));
        oslo::wait_http(cx.host, NAME, &record, &login, |c| c == 200)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        crate::services::daemon::remove_daemon_log(&s, NAME);
        // The collected static files stay in the cache only while the venv does.
        let _ = fs_err::remove_dir_all(data_dir(&s));
        Ok(())
    }
}

/// The summary's lines: the URL and the admin login, saying where the password is
/// (never the password itself).
pub(crate) fn summary(s: &Settings) -> String {
    format!(
        "Horizon: {} (user admin; password: ADMIN_PASSWORD in {}, mode 0600)",
        url(s),
        crate::config::passwords::file(&s.path("DATA_DIR")).display()
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn horizon_dir_holds_the_venvs_openstack_dashboard_and_a_checkout_is_kept() {
        let root = tempfile::tempdir().unwrap();
        let venv = root.path().join("venv");
        let package = venv.join("lib/python3.11/site-packages/openstack_dashboard");
        fs_err::create_dir_all(package.join("local/enabled")).unwrap();
        let horizon_dir = root.path().join("horizon");
        let (_tree, mut host) = crate::context::test_host(Settings::from_pairs(&[
            ("DEVSTACK_VENV", venv.to_str().unwrap()),
            ("HORIZON_DIR", horizon_dir.to_str().unwrap()),
        ]));
        link_horizon_dir(&mut host).unwrap();
        // Where plugins copy their panels: the package horizon loads them from.
        let enabled = horizon_dir.join("openstack_dashboard/local/enabled");
        fs_err::write(enabled.join("_90_fixture_panel.py"), "PANEL = 'x'\n").unwrap();
        assert!(package.join("local/enabled/_90_fixture_panel.py").is_file());
        assert!(
            host.ledger
                .has_file(&horizon_dir.join("openstack_dashboard"))
        );
        // Again (a re-stack): the link is made anew, nothing fails.
        link_horizon_dir(&mut host).unwrap();
        // A checkout at HORIZON_DIR (HORIZON_REPO) is left as it is.
        let checkout = root.path().join("checkout");
        fs_err::create_dir_all(checkout.join("openstack_dashboard")).unwrap();
        host.settings.set("HORIZON_DIR", checkout.to_str().unwrap());
        link_horizon_dir(&mut host).unwrap();
        assert!(
            !fs_err::symlink_metadata(checkout.join("openstack_dashboard"))
                .unwrap()
                .file_type()
                .is_symlink()
        );
    }

    fn settings() -> Settings {
        Settings::new(
            [
                ("DATA_DIR", "/opt/stack/data"),
                ("SERVICE_HOST", "127.0.0.1"),
                ("KEYSTONE_SERVICE_URI", "http://127.0.0.1/identity"),
                ("MEMCACHE_SERVERS", "127.0.0.1:11211"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
    }

    #[test]
    fn local_settings_are_devstacks_choices() {
        insta::assert_snapshot!(local_settings_text(&settings()));
    }

    #[test]
    fn the_site_serves_static_files_and_routes_the_rest() {
        let text = site_text(&settings());
        insta::assert_snapshot!(text);
        // The exclusion must come before the route that would swallow it.
        let excl = text.find("ProxyPass \"/dashboard/static\" !").unwrap();
        let route = text.find("ProxyPass \"/dashboard\" \"unix:").unwrap();
        assert!(excl < route);
        assert_eq!(url(&settings()), "http://127.0.0.1/dashboard/");
    }
}
