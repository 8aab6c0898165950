//! The front proxy on port 80, as DevStack has it: Debian's Apache (`apache2` with
//! `mod_proxy_uwsgi`, package `libapache2-mod-proxy-uwsgi`) routing `/<path>` to each
//! WSGI app's uWSGI unix socket, the way DevStack's `write_uwsgi_config CONF WSGI
//! URL_PATH "" NAME` publishes an API.
//!
//! Why Apache rather than a lighter proxy Debian also ships (nginx): plugins write
//! Apache site files themselves (`apache_site_config_for`, `enable_apache_site`,
//! `ProxyPass` lines, `<Location>` blocks) and DevStack's own `write_uwsgi_config`
//! writes one `ProxyPass "/path" "unix:…|uwsgi://…"` line per app; only Apache reads
//! those as they are. It starts in about 0.1 s (tools/bench/frontproxy.sh).
//!
//! Without systemd it is a host [`Daemon`] under our supervisor:
//! `apache2 -f $APACHE_ROOT/apache2.conf -DFOREGROUND` with a main config we write
//! under a directory we own (the parent of `APACHE_CONF_DIR`, `$DATA_DIR/apache`),
//! which includes `APACHE_SETTINGS_DIR/*.conf` and the `sites-enabled/*.conf` beside
//! `APACHE_CONF_DIR`, where lib/apache's `enable_apache_site` links the sites. The
//! distro's /etc/apache2 is not read. Under systemd the distro's `apache2` unit runs,
//! and a one-line conf in /etc/apache2/conf-enabled includes the same directories.
//! Adding a route reloads it gracefully (SIGUSR1 after `apache2 -t`), as DevStack's
//! `restart_apache_server` does.

use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::config::settings::Settings;
use crate::context::{Host, ServiceCtx};
use crate::services::daemon::{self, Daemon};
use crate::services::{Descriptor, Layer, Service, ServiceError, oslo};
use crate::system::supervisor::ProcessSpec;

/// Its name in the ledger, `status` and `logs`, and DevStack's `APACHE_NAME`.
pub(crate) const NAME: &str = "apache2";
/// The port DevStack's Apache serves the APIs on.
pub(crate) const PORT: u16 = 80;
const APACHE: &str = "/usr/sbin/apache2";
const MODULES_DIR: &str = "/usr/lib/apache2/modules";
/// Where DevStack's uWSGI sockets live (`/var/run/uwsgi/<NAME>.socket`).
pub(crate) const SOCKET_DIR: &str = "/var/run/uwsgi";
/// The distro's conf dir, used only under systemd (its unit reads /etc/apache2).
const DISTRO_CONF_ENABLED: &str = "/etc/apache2/conf-enabled";

/// The modules the main config loads: the proxy and what site files commonly use
/// (`SetEnv`, `Header`, `Alias`, `Require`). Everything else in Debian's build is
/// left out, so a stray site needing mod_wsgi fails the config test loudly.
const MODULES: &[(&str, &str)] = &[
    ("mpm_event_module", "mod_mpm_event.so"),
    ("authz_core_module", "mod_authz_core.so"),
    ("authz_host_module", "mod_authz_host.so"),
    ("alias_module", "mod_alias.so"),
    ("env_module", "mod_env.so"),
    ("headers_module", "mod_headers.so"),
    ("mime_module", "mod_mime.so"),
    ("setenvif_module", "mod_setenvif.so"),
    ("proxy_module", "mod_proxy.so"),
    ("proxy_http_module", "mod_proxy_http.so"),
    ("proxy_uwsgi_module", "mod_proxy_uwsgi.so"),
];

/// Debian's packages for it (DevStack's general list has apache2; lib/apache's
/// install_apache_uwsgi adds the uwsgi proxy module).
pub(crate) const PACKAGES: &[&str] = &["apache2", "libapache2-mod-proxy-uwsgi"];

pub(crate) struct FrontProxy;

/// The directories and names the proxy's config is made of.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Layout {
    /// Ours: the main config, run dir, docroot (`$DATA_DIR/apache`).
    pub root: PathBuf,
    /// `APACHE_CONF_DIR`: the site files (`<site>.conf`).
    pub sites_available: PathBuf,
    /// Beside it: the links `enable_apache_site` makes.
    pub sites_enabled: PathBuf,
    /// `APACHE_SETTINGS_DIR`: conf snippets, all included.
    pub settings_dir: PathBuf,
    /// `APACHE_LOG_DIR`: the access log.
    pub log_dir: PathBuf,
    pub listen: String,
    pub port: u16,
    /// Apache refuses to serve as root: the stack user, else www-data.
    pub user: String,
    pub group: String,
}

impl Layout {
    pub(crate) fn new(s: &Settings) -> Self {
        let data = s.get_or("DATA_DIR", "/opt/stack/data");
        let sites_available = match s.get("APACHE_CONF_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => Path::new(data).join("apache/sites-available"),
        };
        let root = sites_available
            .parent()
            .map_or_else(|| Path::new(data).join("apache"), Path::to_path_buf);
        let settings_dir = match s.get("APACHE_SETTINGS_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => root.join("conf-enabled"),
        };
        let log_dir = match s.get("APACHE_LOG_DIR") {
            Some(d) if !d.is_empty() => PathBuf::from(d),
            _ => s.path("LOGDIR"),
        };
        let stack_user = s.get_or("STACK_USER", "root");
        let user = if stack_user.is_empty() || stack_user == "root" {
            "www-data".to_owned()
        } else {
            stack_user.to_owned()
        };
        let group = nix::unistd::User::from_name(&user)
            .ok()
            .flatten()
            .and_then(|u| nix::unistd::Group::from_gid(u.gid).ok().flatten())
            .map_or_else(|| user.clone(), |g| g.name);
        Self {
            sites_enabled: root.join("sites-enabled"),
            root,
            sites_available,
            settings_dir,
            log_dir,
            listen: s.get_or("SERVICE_LISTEN_ADDRESS", "127.0.0.1").to_owned(),
            port: u16::try_from(s.number("APACHE_PORT", u64::from(PORT))).unwrap_or(PORT),
            user,
            group,
        }
    }

    pub(crate) fn main_conf(&self) -> PathBuf {
        self.root.join("apache2.conf")
    }

    fn run_dir(&self) -> PathBuf {
        self.root.join("run")
    }

    /// `apache_site_config_for SITE`.
    pub(crate) fn site_file(&self, site: &str) -> PathBuf {
        self.sites_available.join(format!("{site}.conf"))
    }

    fn site_link(&self, site: &str) -> PathBuf {
        self.sites_enabled.join(format!("{site}.conf"))
    }
}

fn bracket(addr: &str) -> String {
    if addr.contains(':') && !addr.starts_with('[') {
        format!("[{addr}]")
    } else {
        addr.to_owned()
    }
}

/// The main config: ours alone (no /etc/apache2), errors to the supervisor's log,
/// one access log with the request time, then every conf snippet and enabled site.
pub(crate) fn main_conf_text(l: &Layout) -> String {
    let run = l.run_dir();
    let mut t = String::from(
        "# Written by devstack-rs: the front proxy (DevStack's Apache). Sites are the\n\
         # files linked in sites-enabled (enable_apache_site); write_uwsgi_config adds\n\
         # one ProxyPass line per WSGI app.\n",
    );
    let _ = writeln!(t, "ServerRoot \"{}\"", l.root.display());
    t.push_str("ServerName localhost\n");
    let _ = writeln!(t, "Listen {}:{}", bracket(&l.listen), l.port);
    let _ = writeln!(t, "PidFile \"{}\"", run.join("apache2.pid").display());
    let _ = writeln!(t, "DefaultRuntimeDir \"{}\"", run.display());
    let _ = writeln!(t, "Mutex file:{} default", run.display());
    let _ = writeln!(t, "User {}\nGroup {}", l.user, l.group);
    for (module, file) in MODULES {
        let _ = writeln!(t, "LoadModule {module} {MODULES_DIR}/{file}");
    }
    // install_apache_wsgi's module, for plugins' mod_wsgi sites.
    let _ = writeln!(
        t,
        "<IfFile {MODULES_DIR}/mod_wsgi.so>\n    LoadModule wsgi_module {MODULES_DIR}/mod_wsgi.so\n</IfFile>"
    );
    // Site files written for Debian's Apache use these names.
    let _ = writeln!(t, "Define APACHE_LOG_DIR {}", l.log_dir.display());
    let _ = writeln!(t, "Define APACHE_RUN_DIR {}", run.display());
    // mod_mime's table: Debian's (media-types), as the distro's apache2.conf has it.
    t.push_str("TypesConfig /etc/mime.types\n");
    t.push_str(
        "Timeout 300\n\
         KeepAlive On\n\
         MaxKeepAliveRequests 100\n\
         KeepAliveTimeout 5\n\
         ErrorLog /proc/self/fd/2\n\
         LogLevel warn\n\
         LogFormat \"%h %l %u %t \\\"%r\\\" %>s %b \\\"%{Referer}i\\\" \\\"%{User-Agent}i\\\"\" combined\n\
         LogFormat \"%h %t \\\"%r\\\" %>s %b %D\" devstack\n",
    );
    let _ = writeln!(
        t,
        "CustomLog \"{}\" devstack",
        l.log_dir.join("apache2-access.log").display()
    );
    let _ = writeln!(t, "DocumentRoot \"{}\"", l.root.join("htdocs").display());
    let _ = writeln!(
        t,
        "<Directory />\n    AllowOverride None\n    Require all denied\n</Directory>\n\
         <Directory \"{}\">\n    Require all granted\n</Directory>",
        l.root.join("htdocs").display()
    );
    let _ = writeln!(t, "IncludeOptional \"{}/*.conf\"", l.settings_dir.display());
    let _ = writeln!(
        t,
        "IncludeOptional \"{}/*.conf\"",
        l.sites_enabled.display()
    );
    t
}

/// The socket DevStack's form B gives app NAME.
pub(crate) fn socket_path(name: &str) -> PathBuf {
    Path::new(SOCKET_DIR).join(format!("{name}.socket"))
}

/// The line DevStack's `write_uwsgi_config` appends to the site file of NAME (a
/// trailing space included).
pub(crate) fn proxy_pass_line(url: &str, name: &str) -> String {
    format!(
        "ProxyPass \"{url}\" \"unix:{}|uwsgi://uwsgi-uds-{name}\" retry=0 acquire=1 \n",
        socket_path(name).display()
    )
}

/// DevStack's `write_local_proxy_http_config`: `url` proxied to a local HTTP server,
/// with chunked request bodies passed on as chunks (glance's uploads).
pub(crate) fn http_site_text(url: &str, target: &str) -> String {
    format!(
        "KeepAlive Off\nSetEnv proxy-sendchunked 1\nProxyPass \"{url}\" \"{target}\" retry=0 acquire=1\n"
    )
}

fn io_err(service: &str, path: &Path, source: std::io::Error) -> ServiceError {
    ServiceError::Io {
        service: service.to_owned(),
        path: path.to_path_buf(),
        source,
    }
}

/// Writes site NAME (`append`: adds the text unless the file has it already, where
/// DevStack would add a duplicate line), enables it and reloads the proxy when it runs.
pub(crate) fn add_site(
    host: &mut Host,
    service: &str,
    site: &str,
    text: &str,
    append: bool,
) -> Result<(), ServiceError> {
    let l = Layout::new(&host.settings);
    for dir in [&l.sites_available, &l.sites_enabled] {
        oslo::make_dir(host, service, dir)?;
    }
    let file = l.site_file(site);
    let old = fs_err::read_to_string(&file).unwrap_or_default();
    let new = if append && !old.contains(text) {
        format!("{old}{text}")
    } else if append {
        old.clone()
    } else {
        text.to_owned()
    };
    if new != old || !file.exists() {
        fs_err::write(&file, &new).map_err(|e| io_err(service, &file, e))?;
    }
    host.ledger.record_file(&file);
    enable_site(host, service, site)?;
    reload(host, service)
}

/// `enable_apache_site SITE`: the relative link a2ensite makes.
pub(crate) fn enable_site(host: &mut Host, service: &str, site: &str) -> Result<(), ServiceError> {
    let l = Layout::new(&host.settings);
    let link = l.site_link(site);
    let dir_name = l.sites_available.file_name().map_or_else(
        || "sites-available".into(),
        |n| n.to_string_lossy().into_owned(),
    );
    let target = Path::new("..").join(dir_name).join(format!("{site}.conf"));
    let _ = fs_err::remove_file(&link);
    std::os::unix::fs::symlink(&target, &link).map_err(|e| io_err(service, &link, e))?;
    host.ledger.record_file(&link);
    Ok(())
}

/// `disable_apache_site SITE`: removes the link, never the site file.
pub(crate) fn disable_site(host: &mut Host, site: &str) {
    let link = Layout::new(&host.settings).site_link(site);
    let _ = fs_err::remove_file(&link);
    host.ledger.forget_file(&link);
}

/// `apache2 -t` on our config: its output when it fails.
fn config_test(host: &Host, l: &Layout) -> Result<(), String> {
    host.cmd(APACHE)
        .arg("-t")
        .arg("-f")
        .arg(l.main_conf().display().to_string())
        .timeout(Duration::from_secs(30))
        .capture()
        .run()
        .map(|_| ())
        .map_err(|e| {
            let mut text = e.to_string();
            for line in e.tail() {
                text.push_str("\n  ");
                text.push_str(line);
            }
            text
        })
}

/// `restart_apache_server`: a graceful restart of ours (its config tested first: a
/// broken site must not take the running proxy down), or of the distro's unit.
/// Nothing when it is not running (its start reads the sites).
pub(crate) fn reload(host: &mut Host, service: &str) -> Result<(), ServiceError> {
    if daemon::use_systemctl() {
        if host.ledger.has_system_service(NAME) {
            return daemon::systemctl(host, service, "reload", NAME);
        }
        return Ok(());
    }
    let Some(record) = daemon::running(host, NAME) else {
        return Ok(());
    };
    let l = Layout::new(&host.settings);
    config_test(host, &l).map_err(|e| {
        ServiceError::failed(service, format!("the front proxy's config is broken: {e}"))
    })?;
    let Some(pid) = record.pid.and_then(|p| i32::try_from(p).ok()) else {
        return Ok(());
    };
    nix::sys::signal::kill(
        nix::unistd::Pid::from_raw(pid),
        nix::sys::signal::Signal::SIGUSR1,
    )
    .map_err(|e| ServiceError::caused(service, "reloading the front proxy", e))?;
    host.log
        .note(&format!("{service}: front proxy reloaded (pid {pid})"));
    Ok(())
}

/// The local URL a readiness probe uses for `path` (the proxy's listen address).
pub(crate) fn probe_url(s: &Settings, path: &str) -> String {
    let l = Layout::new(s);
    let addr = if l.listen == "0.0.0.0" || l.listen == "::" {
        "127.0.0.1".to_owned()
    } else {
        bracket(&l.listen)
    };
    format!("http://{addr}:{}{path}", l.port)
}

impl Daemon for FrontProxy {
    fn names(&self) -> &'static daemon::Names {
        &daemon::Names {
            name: NAME,
            unit: NAME,
            probe_what: "apache2 GET /",
        }
    }
    fn listen(&self, settings: &Settings) -> (String, Vec<u16>) {
        let l = Layout::new(settings);
        let addr = if l.listen == "0.0.0.0" {
            "127.0.0.1".to_owned()
        } else {
            l.listen
        };
        (addr, vec![l.port])
    }
    fn prepare(&self, host: &mut Host) -> Result<(), ServiceError> {
        write_main_conf(host)
    }
    fn spec(&self, host: &Host) -> Result<ProcessSpec, ServiceError> {
        let l = Layout::new(&host.settings);
        Ok(ProcessSpec {
            name: NAME.into(),
            command: format!("exec {APACHE} -f {} -DFOREGROUND", l.main_conf().display()),
            log: daemon::daemon_log(&host.settings, NAME),
            workdir: Some("/".into()),
            address: Some(format!("{}:{}", bracket(&l.listen), l.port)),
            ..ProcessSpec::default()
        })
    }
    fn probe(&self, host: &Host) -> Result<(), String> {
        oslo::http_get(&probe_url(&host.settings, "/"), None, daemon::PROBE_TIMEOUT).map(|_| ())
    }
}

/// Our main config, the directories it names, and the socket directory.
fn write_main_conf(host: &mut Host) -> Result<(), ServiceError> {
    let l = Layout::new(&host.settings);
    for dir in [
        &l.root,
        &l.sites_available,
        &l.sites_enabled,
        &l.settings_dir,
        &l.run_dir(),
        &l.root.join("htdocs"),
        &l.log_dir,
    ] {
        oslo::make_dir(host, NAME, dir)?;
    }
    // DevStack's tmpfiles line: `d /var/run/uwsgi 0755 <STACK_USER> root`.
    let stack_user = host.settings.get_or("STACK_USER", "root").to_owned();
    daemon::ensure_owned_dir(NAME, Path::new(SOCKET_DIR), &stack_user)?;
    let conf = l.main_conf();
    fs_err::write(&conf, main_conf_text(&l)).map_err(|e| io_err(NAME, &conf, e))?;
    host.ledger.record_file(&conf);
    Ok(())
}

/// Under systemd: the distro's Apache includes our directories, with the modules on.
fn hook_distro_apache(host: &mut Host) -> Result<(), ServiceError> {
    let l = Layout::new(&host.settings);
    let _ = host
        .cmd("a2enmod")
        .args(["-q", "proxy", "proxy_uwsgi", "proxy_http", "headers", "env"])
        .run();
    let file = Path::new(DISTRO_CONF_ENABLED).join("devstack-rs.conf");
    let text = format!(
        "# Written by devstack-rs: the sites and settings of the stack.\n\
         IncludeOptional \"{}/*.conf\"\nIncludeOptional \"{}/*.conf\"\n",
        l.settings_dir.display(),
        l.sites_enabled.display()
    );
    fs_err::write(&file, text).map_err(|e| io_err(NAME, &file, e))?;
    host.ledger.record_file(&file);
    Ok(())
}

pub(crate) fn start_server(host: &mut Host) -> Result<(), ServiceError> {
    if daemon::use_systemctl() {
        write_main_conf(host)?;
        hook_distro_apache(host)?;
    }
    daemon::start(host, &FrontProxy)
}

pub(crate) fn stop_server(host: &mut Host) -> Result<(), ServiceError> {
    daemon::stop(host, &FrontProxy)
}

/// The front proxy: there whenever a service publishes an API through it (every
/// core API does), or when asked for by name (`enable_service apache2`).
pub(crate) const DESCRIPTOR: Descriptor = Descriptor {
    enabled_by: &[NAME, "key", "horizon"],
    packages: PACKAGES,
    ..Descriptor::named(NAME, Layer::Infra)
};

impl Service for FrontProxy {
    fn descriptor(&self) -> &'static Descriptor {
        &DESCRIPTOR
    }
    fn start(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        start_server(cx.host)
    }
    fn stop(&self, cx: &mut ServiceCtx<'_>, _all: bool) -> Result<(), ServiceError> {
        // It fronts the cloud's APIs: it goes with them (DevStack's unstack stops
        // Apache's sites with their services).
        if !cx.host.ledger.has_system_service(NAME) {
            return Ok(());
        }
        stop_server(cx.host)
    }
    fn clean(&self, cx: &mut ServiceCtx<'_>) -> Result<(), ServiceError> {
        let s = cx.host.settings.clone();
        daemon::remove_daemon_log(&s, NAME);
        let l = Layout::new(&s);
        let _ = fs_err::remove_file(l.log_dir.join("apache2-access.log"));
        let _ = fs_err::remove_dir_all(l.run_dir());
        // The links enable_apache_site made (ours and plugins'): the site files stay,
        // as DevStack leaves them, unless the ledger has them.
        let _ = fs_err::remove_dir_all(&l.sites_enabled);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn layout() -> Layout {
        let s = Settings::new(
            [
                ("DATA_DIR", "/opt/stack/data"),
                ("LOGDIR", "/opt/stack/logs"),
                ("STACK_USER", "root"),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        );
        let mut l = Layout::new(&s);
        // The group depends on the machine's passwd; fixed for the snapshot.
        l.group = "www-data".into();
        l
    }

    #[test]
    fn main_conf_is_ours_alone_and_includes_the_enabled_sites() {
        let l = layout();
        assert_eq!(l.root, Path::new("/opt/stack/data/apache"));
        assert_eq!(l.user, "www-data", "Apache refuses to serve as root");
        insta::assert_snapshot!(main_conf_text(&l));
    }

    #[test]
    fn a_uwsgi_route_is_devstacks_proxypass_line() {
        assert_eq!(
            proxy_pass_line("/heat-api", "heat-api"),
            "ProxyPass \"/heat-api\" \"unix:/var/run/uwsgi/heat-api.socket|uwsgi://uwsgi-uds-heat-api\" retry=0 acquire=1 \n"
        );
        insta::assert_snapshot!(http_site_text("/image", "http://127.0.0.1:9292"));
    }

    #[test]
    fn probes_go_to_the_proxys_local_address() {
        let mut s = Settings::new(std::collections::BTreeMap::new());
        assert_eq!(
            probe_url(&s, "/identity/v3"),
            "http://127.0.0.1:80/identity/v3"
        );
        s.set("SERVICE_LISTEN_ADDRESS", "0.0.0.0");
        assert_eq!(probe_url(&s, "/x"), "http://127.0.0.1:80/x");
    }
}
