//! The keystone REST client, DevStack's account layout and the lib/keystone shims.
//!
//! `slow_real_keystone_*` runs against a real keystone: a venv with keystone from
//! PyPI (uv, the project's constraints file) kept in a cache dir
//! (`/var/cache/devstack-rs-test/keystone-venv`, built on first use: ~5-10 s with
//! network to PyPI, ~2 s once uv's cache is warm), a sqlite database, fernet and
//! credential keys in a temp dir, `bootstrap`, served by Debian's uWSGI
//! (`uwsgi-core` + `uwsgi-plugin-python3`; without them uWSGI is built from PyPI into
//! the venv, ~20 s once) on a port in 15100-15199. The server is always stopped (guard
//! with Drop). Needs: uv (on PATH, else installed with pip into the cache dir),
//! /usr/bin/python3 with venv, network to PyPI on the first run.

use std::io::Read as _;
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::process::{Child, Stdio};
use std::time::{Duration, Instant};

use devstack::testing::{
    Client, Cmd, Credentials, KeystoneError, Registry, Settings, accounts, installer_env,
};

use crate::{Tree, project_root};

const ADMIN_PASSWORD: &str = "adm1n-Secret";
const SERVICE_PASSWORD: &str = "svc-Secret-42";
const PORTS: std::ops::Range<u16> = 15100..15200;

pub(crate) fn cache_dir() -> PathBuf {
    let dir = std::env::var_os("DEVSTACK_RS_TEST_CACHE").map_or_else(
        || PathBuf::from("/var/cache/devstack-rs-test"),
        PathBuf::from,
    );
    if std::fs::create_dir_all(&dir).is_ok() {
        dir
    } else {
        let dir = std::env::temp_dir().join("devstack-rs-test-cache");
        std::fs::create_dir_all(&dir).expect("cache dir");
        dir
    }
}

fn run(cmd: &Cmd) -> String {
    match cmd.clone().capture().run() {
        Ok(out) => out.stdout,
        Err(e) => panic!("{e}\n{}", e.tail().join("\n")),
    }
}

/// `uv` on PATH, else one installed with pip into the cache dir.
pub(crate) fn uv(cache: &Path) -> PathBuf {
    if Cmd::new("uv").arg("--version").capture().run().is_ok() {
        return PathBuf::from("uv");
    }
    let tools = cache.join("uv-venv");
    let bin = tools.join("bin/uv");
    if !bin.exists() {
        run(&Cmd::new("/usr/bin/python3")
            .args(["-m", "venv"])
            .arg(&tools));
        run(&installer_env(Cmd::new(tools.join("bin/pip")))
            .args(["install", "-q", "uv"])
            .timeout(Duration::from_secs(300)));
    }
    bin
}

/// The keystone venv, built once (under a file lock) and reused.
fn venv() -> PathBuf {
    let cache = cache_dir();
    let lock = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(cache.join("keystone-venv.lock"))
        .expect("lock file");
    let _lock = nix::fcntl::Flock::lock(lock, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    let venv = cache.join("keystone-venv");
    let ready = venv.join(".devstack-rs-ready");
    if ready.exists() {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let uv = uv(&cache);
    let constraints = project_root().join("files/constraints/openstack-2026.2.txt");
    run(&installer_env(Cmd::new(&uv))
        .args(["venv", "-q", "--python", "/usr/bin/python3"])
        .arg(&venv)
        .timeout(Duration::from_secs(120)));
    let python = venv.join("bin/python");
    let mut packages = vec!["keystone", "python-openstackclient", "python-memcached"];
    if !Path::new("/usr/bin/uwsgi_python311").exists() {
        packages.push("uwsgi");
    }
    let install = |offline: bool| {
        let mut cmd = installer_env(Cmd::new(&uv))
            .args(["pip", "install", "-q", "--python"])
            .arg(&python)
            .arg("-c")
            .arg(&constraints)
            .args(&packages)
            .timeout(Duration::from_secs(600));
        if offline {
            cmd = cmd.arg("--offline");
        }
        cmd.run()
    };
    if install(true).is_err() {
        if let Err(e) = install(false) {
            panic!("installing keystone: {e}\n{}", e.tail().join("\n"));
        }
    }
    std::fs::write(&ready, "").unwrap();
    venv
}

/// A real keystone on 127.0.0.1, stopped when dropped.
struct Keystone {
    child: Child,
    dir: tempfile::TempDir,
    url: String,
    venv: PathBuf,
}

impl Keystone {
    fn start() -> Self {
        let venv = venv();
        let dir = tempfile::tempdir().expect("temp dir");
        let d = dir.path();
        let port = free_port();
        let url = format!("http://127.0.0.1:{port}");
        let conf = d.join("keystone.conf");
        std::fs::write(
            &conf,
            format!(
                "[DEFAULT]\nlog_file = {d}/keystone.log\n\
                 [database]\nconnection = sqlite:///{d}/keystone.db\n\
                 [token]\nprovider = fernet\n\
                 [fernet_tokens]\nkey_repository = {d}/fernet-keys\n\
                 [fernet_receipts]\nkey_repository = {d}/fernet-keys\n\
                 [credential]\nkey_repository = {d}/credential-keys\n\
                 [identity]\npassword_hash_rounds = 4\n\
                 [cache]\nenabled = true\nbackend = dogpile.cache.memory\n",
                d = d.display()
            ),
        )
        .unwrap();
        let user = nix::unistd::User::from_uid(nix::unistd::getuid())
            .ok()
            .flatten()
            .map_or_else(|| "root".to_owned(), |u| u.name);
        let group = nix::unistd::Group::from_gid(nix::unistd::getgid())
            .ok()
            .flatten()
            .map_or_else(|| "root".to_owned(), |g| g.name);
        let manage = |args: &[&str]| {
            run(&Cmd::new(venv.join("bin/keystone-manage"))
                .arg("--config-file")
                .arg(&conf)
                .args(args)
                .timeout(Duration::from_secs(120)));
        };
        manage(&["db_sync"]);
        manage(&[
            "fernet_setup",
            "--keystone-user",
            &user,
            "--keystone-group",
            &group,
        ]);
        manage(&[
            "credential_setup",
            "--keystone-user",
            &user,
            "--keystone-group",
            &group,
        ]);
        manage(&[
            "bootstrap",
            "--bootstrap-password",
            ADMIN_PASSWORD,
            "--bootstrap-username",
            "admin",
            "--bootstrap-project-name",
            "admin",
            "--bootstrap-role-name",
            "admin",
            "--bootstrap-service-name",
            "keystone",
            "--bootstrap-region-id",
            "RegionOne",
            "--bootstrap-public-url",
            &url,
        ]);
        let debian = Path::new("/usr/bin/uwsgi_python311");
        let uwsgi = if debian.exists() {
            debian.to_path_buf()
        } else {
            venv.join("bin/uwsgi")
        };
        let child = Cmd::new(uwsgi)
            .arg("--virtualenv")
            .arg(&venv)
            .args(["--module", "keystone.wsgi.api:application"])
            .args(["--http-socket", &format!("127.0.0.1:{port}")])
            .args([
                "--master",
                "--processes",
                "1",
                "--die-on-term",
                "--lazy-apps",
            ])
            .args(["--add-header", "Connection: close"])
            .arg("--logto")
            .arg(d.join("uwsgi.log"))
            .env("OS_KEYSTONE_CONFIG_FILES", &conf)
            .to_std()
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start uwsgi");
        let mut keystone = Self {
            child,
            dir,
            url,
            venv,
        };
        keystone.wait_ready(Duration::from_secs(90));
        keystone
    }

    fn log(&self, name: &str) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(self.dir.path().join(name)) {
            let _ = f.read_to_string(&mut text);
        }
        let lines: Vec<&str> = text.lines().collect();
        lines[lines.len().saturating_sub(40)..].join("\n")
    }

    /// Polls GET /v3 (2 s per request) until it answers 200.
    fn wait_ready(&mut self, deadline: Duration) {
        let agent: ureq::Agent = ureq::Agent::config_builder()
            .timeout_global(Some(Duration::from_secs(2)))
            .http_status_as_error(false)
            .proxy(None)
            .build()
            .into();
        let started = Instant::now();
        loop {
            if let Ok(r) = agent.get(format!("{}/v3", self.url)).call() {
                if r.status() == 200 {
                    return;
                }
            }
            if let Ok(Some(status)) = self.child.try_wait() {
                panic!("uwsgi exited ({status}):\n{}", self.log("uwsgi.log"));
            }
            assert!(
                started.elapsed() < deadline,
                "keystone did not answer within {deadline:?}:\n{}\n{}",
                self.log("uwsgi.log"),
                self.log("keystone.log")
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    fn settings(&self) -> Settings {
        Settings::new(
            [
                ("KEYSTONE_SERVICE_URI", self.url.as_str()),
                ("ADMIN_PASSWORD", ADMIN_PASSWORD),
                ("SERVICE_PASSWORD", SERVICE_PASSWORD),
                ("SERVICE_HOST", "127.0.0.1"),
                ("REGION_NAME", "RegionOne"),
                ("SERVICE_PROJECT_NAME", "service"),
                ("SERVICE_DOMAIN_NAME", "Default"),
                (
                    "ENABLED_SERVICES",
                    "mysql,rabbit,key,g-api,placement-api,q-svc,n-api,n-cond,n-sch,n-cpu,horizon",
                ),
            ]
            .into_iter()
            .map(|(k, v)| (k.to_owned(), v.to_owned()))
            .collect(),
        )
    }

    fn admin(&self) -> Client {
        Client::new(
            Credentials::admin(&self.url, ADMIN_PASSWORD),
            Duration::from_secs(30),
        )
        .unwrap()
    }

    /// Bash exports for the shims.
    fn exports(&self) -> String {
        format!(
            "export KEYSTONE_SERVICE_URI={} ADMIN_PASSWORD={ADMIN_PASSWORD} \
             SERVICE_PASSWORD={SERVICE_PASSWORD} REGION_NAME=RegionOne \
             SERVICE_PROJECT_NAME=service SERVICE_DOMAIN_NAME=Default\n",
            self.url
        )
    }
}

impl Drop for Keystone {
    fn drop(&mut self) {
        let pgid = nix::unistd::Pid::from_raw(i32::try_from(self.child.id()).unwrap());
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGTERM);
        let started = Instant::now();
        while started.elapsed() < Duration::from_secs(10) {
            if matches!(self.child.try_wait(), Ok(Some(_))) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = nix::sys::signal::killpg(pgid, nix::sys::signal::Signal::SIGKILL);
        let _ = self.child.wait();
    }
}

/// A free port in 15100-15199 (the research engineer uses 15000-15099).
fn free_port() -> u16 {
    let offset = u16::try_from(std::process::id() % 100).unwrap();
    (0..100)
        .map(|i| PORTS.start + (offset + i) % 100)
        .find(|p| TcpListener::bind(("127.0.0.1", *p)).is_ok())
        .expect("a free port in 15100-15199")
}

/// Slow (a real keystone: ~15-25 s, more on the first run that builds the venv).
/// DevStack's whole account layout twice (same ids, nothing duplicated), endpoints,
/// a service user's token, passwords of existing users untouched, endpoint URL
/// updates, and the bash shims outside a run.
#[test]
#[ignore = "reason: builds a keystone venv from PyPI and runs it with MariaDB (root): ./run_tests.sh runs it"]
fn slow_real_keystone_accounts_endpoints_and_shims() {
    let ks = Keystone::start();
    let settings = ks.settings();
    let mut admin = ks.admin();

    // The whole layout, twice: the second run finds everything.
    let default_cloud = Settings::new(
        [(
            "ENABLED_SERVICES".to_owned(),
            devstack::testing::DEFAULT_SERVICES.to_owned(),
        )]
        .into(),
    );
    let catalog = Registry::builtin().catalog(&default_cloud);
    let first = accounts::create_all(&mut admin, &settings, &catalog).unwrap();
    let second = accounts::create_all(&mut admin, &settings, &catalog).unwrap();
    assert_eq!(first.core, second.core);
    assert_eq!(first.services, second.services);
    let types: Vec<&str> = first
        .services
        .iter()
        .map(|s| s.service_type.as_str())
        .collect();
    assert_eq!(
        types,
        [
            "identity",
            "image",
            "placement",
            "network",
            "compute",
            "block-storage",
            "volumev3"
        ]
    );
    eprintln!(
        "accounts: first {} requests in {:?}, second {} requests in {:?}",
        first.requests, first.elapsed, second.requests, second.elapsed
    );

    // Endpoints exist with DevStack's path-routed URLs (behind the front proxy),
    // once each.
    for (kind, url) in [
        ("image", "http://127.0.0.1/image"),
        ("placement", "http://127.0.0.1/placement"),
        ("network", "http://127.0.0.1/networking"),
        ("compute", "http://127.0.0.1/compute/v2.1"),
        ("block-storage", "http://127.0.0.1/volume/v3"),
        ("volumev3", "http://127.0.0.1/volume/v3"),
        ("identity", ks.url.as_str()),
    ] {
        let sid = admin.service_id(kind).unwrap();
        let (_, found) = admin
            .find_endpoint(&sid, "public", "RegionOne")
            .unwrap()
            .unwrap_or_else(|| panic!("no public endpoint for {kind}"));
        assert_eq!(found, url, "{kind}");
    }

    // A service user gets a token with its password, in the service project.
    let service_creds = |user: &str, password: &str| Credentials {
        auth_url: ks.url.clone(),
        username: user.into(),
        password: password.into(),
        user_domain: "Default".into(),
        project_name: "service".into(),
        project_domain: "Default".into(),
    };
    for user in ["glance", "placement", "neutron", "nova"] {
        let mut c = Client::new(
            service_creds(user, SERVICE_PASSWORD),
            Duration::from_secs(30),
        )
        .unwrap();
        assert!(!c.token().unwrap().is_empty(), "{user}");
    }
    // The demo user (the `devstack` cloud) gets one in the demo project.
    let mut demo = Client::new(
        Credentials {
            project_name: "demo".into(),
            ..service_creds("demo", ADMIN_PASSWORD)
        },
        Duration::from_secs(30),
    )
    .unwrap();
    demo.token().unwrap();

    // get_or_create_user does not reset an existing user's password.
    let nova = first.services.iter().find(|s| s.name == "nova").unwrap();
    let again = admin
        .get_or_create_user("nova", "a-different-password", "Default", None)
        .unwrap();
    assert_eq!(Some(again), nova.user_id);
    let mut c = Client::new(
        service_creds("nova", SERVICE_PASSWORD),
        Duration::from_secs(30),
    )
    .unwrap();
    c.token().unwrap();
    // A wrong password: 401, and the password is in no message.
    let mut bad = Client::new(
        service_creds("nova", "a-different-password"),
        Duration::from_secs(30),
    )
    .unwrap();
    let err = bad.token().unwrap_err();
    assert_eq!(err.status(), Some(401), "{err}");
    assert!(
        !err.report().contains("a-different-password"),
        "{}",
        err.report()
    );

    // An endpoint whose URL differs is updated in place (same id).
    let glance = first.services.iter().find(|s| s.name == "glance").unwrap();
    let moved = admin
        .get_or_create_endpoints("image", "RegionOne", "http://127.0.0.1:19292", None, None)
        .unwrap();
    assert_eq!(moved, glance.public_endpoint_id);
    let (_, url) = admin
        .find_endpoint(&glance.service_id, "public", "RegionOne")
        .unwrap()
        .unwrap();
    assert_eq!(url, "http://127.0.0.1:19292");

    // Errors name what failed: an unknown role.
    let err = admin
        .get_or_add_user_project_role("no-such-role", "nova", "service", None, None)
        .unwrap_err();
    assert!(matches!(err, KeystoneError::NotFound { .. }), "{err}");

    // The bash shims, outside a run (`devstack __call`).
    let tree = Tree::new();
    let script = format!(
        "{}source ./functions\n\
         set -e\n\
         sid=$(get_or_create_service fixture-svc fixture 'Fixture Service')\n\
         sid2=$(get_or_create_service fixture-svc fixture 'Fixture Service')\n\
         echo \"service=$sid again=$sid2\"\n\
         eid=$(get_or_create_endpoint fixture RegionOne http://127.0.0.1:7777/ '' http://127.0.0.1:7778/)\n\
         echo \"endpoint=$eid\"\n\
         uid=$(create_service_user fixture-user)\n\
         echo \"user=$uid\"\n\
         pid=$(get_or_create_project fixture-project Default)\n\
         rid=$(get_or_create_role fixture-role)\n\
         did=$(get_or_create_domain fixture-domain 'A fixture domain')\n\
         u2=$(get_or_create_user fixture-user2 pw2-Secret fixture-domain fixture@example.com)\n\
         echo \"role=$(get_or_add_user_project_role fixture-role fixture-user fixture-project Default Default)\"\n\
         echo \"domainrole=$(get_or_add_user_domain_role fixture-role fixture-user2 fixture-domain)\"\n\
         echo \"rid=$rid pid=$pid did=$did u2=$u2\"\n\
         if get_or_create_role 2>/dev/null; then echo usage-not-checked; fi\n",
        ks.exports()
    );
    let out = tree.bash(&script);
    out.success();
    let value = |key: &str| -> String {
        out.stdout
            .split_whitespace()
            .find_map(|w| w.strip_prefix(&format!("{key}=")))
            .unwrap_or_else(|| panic!("no {key}= in {}", out.stdout))
            .to_owned()
    };
    let sid = value("service");
    assert_eq!(sid.len(), 32, "{}", out.stdout);
    assert_eq!(sid, value("again"));
    assert_eq!(admin.service_id("fixture-svc").unwrap(), sid);
    assert_eq!(admin.service_id("fixture").unwrap(), sid);
    let (eid, url) = admin
        .find_endpoint(&sid, "public", "RegionOne")
        .unwrap()
        .unwrap();
    assert_eq!(eid, value("endpoint"));
    assert_eq!(url, "http://127.0.0.1:7777/");
    assert!(
        admin
            .find_endpoint(&sid, "internal", "RegionOne")
            .unwrap()
            .is_some()
    );
    assert_eq!(
        admin.user_id("fixture-user", Some("Default")).unwrap(),
        value("user")
    );
    assert_eq!(value("role"), value("rid"));
    assert_eq!(value("domainrole"), value("rid"));
    assert!(!out.stdout.contains("usage-not-checked"), "{}", out.stdout);
    // The service user made by the shim logs in with SERVICE_PASSWORD.
    Client::new(
        service_creds("fixture-user", SERVICE_PASSWORD),
        Duration::from_secs(30),
    )
    .unwrap()
    .token()
    .unwrap();

    // The one-session path (what a run and tools/bench/keystone.sh use).
    let out = tree.bash(&format!(
        "{}export ENABLED_SERVICES=key,g-api,placement-api,q-svc,n-api\nsource ./functions\n\
         _ds_call \"${{_DS_KEYSTONE_VARS[@]}}\" keystone-create-accounts\n",
        ks.exports()
    ));
    out.success();
    assert!(
        out.stdout.contains("keystone accounts: 5 services"),
        "{}",
        out.stdout
    );
    assert!(!out.stdout.contains(SERVICE_PASSWORD) && !out.stderr.contains(ADMIN_PASSWORD));
    let _ = &ks.venv;
}

/// The shims fail cleanly when keystone cannot be reached, naming the URL and
/// never the password.
#[test]
fn keystone_shim_reports_an_unreachable_keystone() {
    let tree = Tree::new();
    let port = {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        l.local_addr().unwrap().port()
    };
    let out = tree.bash(&format!(
        "export KEYSTONE_SERVICE_URI=http://127.0.0.1:{port} ADMIN_PASSWORD=pw-Never-Shown\n\
         source ./functions\n\
         get_or_create_service svc kind 'A service'; echo \"rc=$?\"\n\
         ADMIN_PASSWORD='' get_or_create_role r; echo \"rc=$?\"\n"
    ));
    out.success();
    assert!(out.stdout.contains("rc=1\nrc=1"), "{}", out.stdout);
    assert!(
        out.stderr.contains(&format!(
            "cannot reach POST http://127.0.0.1:{port}/v3/auth/tokens"
        )),
        "{}",
        out.stderr
    );
    assert!(
        out.stderr.contains("ADMIN_PASSWORD is not set"),
        "{}",
        out.stderr
    );
    assert!(!out.stderr.contains("pw-Never-Shown"), "{}", out.stderr);
}

/// configure_keystone_authtoken_middleware and configure_keystoneauth write
/// DevStack's options with iniset.
#[test]
fn authtoken_middleware_and_keystoneauth_options() {
    let tree = Tree::new();
    let conf = tree.path("svc.conf");
    let out = tree.bash(&format!(
        "export KEYSTONE_SERVICE_URI=http://10.0.0.5:5000 SERVICE_PASSWORD=svcpw \
         SERVICE_DOMAIN_NAME=Default SERVICE_PROJECT_NAME=service REGION_NAME=RegionOne \
         MEMCACHE_SERVERS=10.0.0.5:11211\n\
         source ./functions\n\
         configure_keystone_authtoken_middleware {c} glance '' image\n\
         configure_keystoneauth {c} nova placement\n",
        c = conf.display()
    ));
    out.success();
    let text = std::fs::read_to_string(&conf).unwrap();
    let section = |name: &str| -> Vec<String> {
        text.split("\n[")
            .find(|s| s.trim_start_matches('[').starts_with(&format!("{name}]")))
            .unwrap_or_else(|| panic!("no [{name}] in {text}"))
            .lines()
            .skip(1)
            .filter(|l| !l.trim().is_empty())
            .map(|l| l.replace(' ', ""))
            .collect()
    };
    let authtoken = section("keystone_authtoken");
    for want in [
        "auth_type=password",
        "interface=public",
        "auth_url=http://10.0.0.5:5000",
        "username=glance",
        "password=svcpw",
        "user_domain_name=Default",
        "project_name=service",
        "project_domain_name=Default",
        "region_name=RegionOne",
        "www_authenticate_uri=http://10.0.0.5:5000",
        "memcached_servers=10.0.0.5:11211",
        "service_type=image",
    ] {
        assert!(
            authtoken.iter().any(|l| l == want),
            "{want} in {authtoken:?}"
        );
    }
    let placement = section("placement");
    assert!(
        placement.iter().any(|l| l == "username=nova"),
        "{placement:?}"
    );
    assert!(
        placement.iter().any(|l| l == "region_name=RegionOne"),
        "{placement:?}"
    );
    assert!(
        !placement
            .iter()
            .any(|l| l.starts_with("www_authenticate_uri"))
    );
}
