//! The plugin API in bash (issue 9): every library file sourced alone, from any cwd,
//! and the functions and variables DevStack plugins use, each compared with DevStack's
//! documented behaviour (reference/devstack-plugin-api.md).

use std::path::Path;
use std::process::Command;

use crate::{Run, Tree, devstack_bin, project_root, recording_hook};

/// Runs SCRIPT in a fresh bash whose cwd is a temporary directory (also `$T`), without
/// TOP_DIR; `$LIB` is the project tree. Returns the directory (kept alive) and the run.
fn bash_in_tmp(script: &str) -> (tempfile::TempDir, Run) {
    let dir = tempfile::tempdir().expect("temp dir");
    let run = bash_at(dir.path(), script);
    (dir, run)
}

/// The library as a tree of its own under `root` (symlinks to the project's files):
/// sourced from there, its TOP_DIR and so its state are the test's, never those of a
/// cloud stacked from this checkout.
fn library_tree(root: &Path) -> std::path::PathBuf {
    let top = root.join(".ds-lib");
    if !top.exists() {
        std::fs::create_dir_all(&top).unwrap();
        for name in [
            "functions",
            "functions-common",
            "stackrc",
            "inc",
            "lib",
            "files",
            "tools",
        ] {
            let src = project_root().join(name);
            if src.exists() {
                std::os::unix::fs::symlink(&src, top.join(name)).unwrap();
            }
        }
    }
    top
}

fn bash_at(cwd: &Path, script: &str) -> Run {
    let lib = library_tree(cwd);
    let out = Command::new("bash")
        .arg("-c")
        .arg(script)
        .current_dir(cwd)
        .env_remove("TOP_DIR")
        .env_remove("ENABLED_SERVICES")
        .env("T", cwd)
        .env("LIB", &lib)
        .env("DEVSTACK_BIN", devstack_bin())
        .output()
        .expect("run bash");
    Run {
        status: out.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// SCRIPT after `source $LIB/functions`, from a temporary cwd.
fn lib(script: &str) -> (tempfile::TempDir, Run) {
    bash_in_tmp(&format!("source \"$LIB/functions\"\n{script}"))
}

fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

// ---------------------------------------------------------------------------------
// Sourcing: each file alone, twice, in any order, from any cwd
// ---------------------------------------------------------------------------------

/// Each library file with a call of one of its functions and what it prints.
const ALONE: &[(&str, &str, &str)] = &[
    (
        "functions",
        "iniset \"$T/x.conf\" DEFAULT a b; iniget \"$T/x.conf\" DEFAULT a",
        "b",
    ),
    (
        "functions-common",
        "ENABLED_SERVICES=key,n-api; is_service_enabled nova && echo yes",
        "yes",
    ),
    (
        "stackrc",
        "echo \"$SYSLOG $PRIVATE_NETWORK_NAME $Q_AGENT\"",
        "False private ovn",
    ),
    (
        "inc/ini-config",
        "iniset \"$T/x.conf\" s a b; iniget \"$T/x.conf\" s a",
        "b",
    ),
    (
        "inc/meta-config",
        "printf '[[post-config|$T/m.conf]]\\n[d]\\nk = v\\n' >\"$T/local.conf\"; merge_config_file \"$T/local.conf\" post-config '$T/m.conf'; iniget \"$T/m.conf\" d k",
        "v",
    ),
    (
        "inc/process",
        "ENABLED_SERVICES=key; run_process nothere /bin/true && echo skipped",
        "skipped",
    ),
    ("inc/python", "python3_enabled && echo yes", "yes"),
    (
        "inc/rootwrap",
        "SUDO_SECURE_PATH_FILE=$T/sp STACK_USER=stack add_sudo_secure_path /opt/x; cat \"$T/sp\"",
        "Defaults:stack secure_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin:/opt/x",
    ),
    (
        "inc/async",
        "f() { J=done; }; async_runfunc f >/dev/null; echo \"$J\"",
        "done",
    ),
    (
        "lib/apache",
        "APACHE_CONF_DIR=$T/sa; apache_site_config_for foo | sed \"s|$T|T|\"",
        "T/sa/foo.conf",
    ),
    (
        "lib/tls",
        "ensure_certificates FOO; echo \"${FOO_SSL_CERT##*/} ${FOO_SSL_CA##*/}\"",
        "devstack-cert.crt ca-chain.pem",
    ),
    (
        "lib/lvm",
        "VOLUME_GROUP_NAME=x; echo \"$DEFAULT_VOLUME_GROUP_NAME $VOLUME_BACKING_FILE_SIZE\"",
        "stack-volumes-default 30G",
    ),
    (
        "lib/database",
        "recreate_database() { echo \"$DATABASE_TYPE $1\"; }; DATABASE_TYPE=postgresql; recreate_database_mysql nova",
        "mysql nova",
    ),
    (
        "lib/keystone",
        "configure_keystoneauth \"$T/k.conf\" nova; iniget \"$T/k.conf\" keystone_authtoken username",
        "nova",
    ),
    (
        "lib/rpc_backend",
        "RABBIT_USERID=u RABBIT_PASSWORD=p RABBIT_HOST=h; get_transport_url",
        "rabbit://u:p@h:5672/",
    ),
    (
        "lib/stack",
        "install_x() { echo installed; }; stack_install_service x",
        "installed",
    ),
    (
        "lib/nova",
        "NOVA_CONF_DIR=/etc/nova; conductor_conf 1",
        "/etc/nova/nova_cell1.conf",
    ),
    (
        "lib/neutron",
        "neutron_service_plugin_class_add qos; echo \"$Q_SERVICE_PLUGIN_CLASSES\"",
        "qos",
    ),
    (
        "lib/neutron-legacy",
        "is_neutron_legacy_enabled && echo yes",
        "yes",
    ),
    (
        "lib/neutron_plugins/ml2",
        "populate_ml2_config \"$T/ml2.ini\" ml2 mechanism_drivers=ovn; iniget \"$T/ml2.ini\" ml2 mechanism_drivers",
        "ovn",
    ),
    (
        "lib/neutron_plugins/ovs_source",
        "echo \"$OVS_REPO_NAME $OVS_BRANCH\"",
        "ovs branch-3.3",
    ),
];

#[test]
fn every_library_file_works_sourced_alone_twice_from_another_cwd() {
    for (file, call, want) in ALONE {
        let (_dir, run) = bash_in_tmp(&format!(
            "source \"$LIB/{file}\"\nsource \"$LIB/{file}\"\n{call}"
        ));
        assert_eq!(
            (run.status, run.stdout.trim_end()),
            (0, *want),
            "{file}: stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn library_files_source_in_any_order_and_by_relative_path() {
    let orders = [
        "source \"$LIB/inc/process\"; source \"$LIB/functions\"; source \"$LIB/inc/ini-config\"",
        "source \"$LIB/lib/neutron\"; source \"$LIB/functions-common\"; source \"$LIB/inc/meta-config\"; source \"$LIB/functions\"",
        "source \"$LIB/inc/ini-config\"; source \"$LIB/lib/keystone\"; source \"$LIB/stackrc\"; source \"$LIB/functions\"; source \"$LIB/inc/process\"",
        "source \"$LIB/lib/tls\"; source \"$LIB/lib/lvm\"; source \"$LIB/functions\"; source \"$LIB/lib/tls\"",
        "cd \"$LIB/lib\" && source rpc_backend && cd \"$T\" && source \"$LIB/functions\"",
    ];
    for order in orders {
        let (_dir, run) = bash_in_tmp(&format!(
            "{order}\niniset \"$T/x.conf\" DEFAULT a b\niniget \"$T/x.conf\" DEFAULT a\nENABLED_SERVICES=g-api\nis_service_enabled glance && echo glance\nconductor_conf 2 | sed 's|.*/||'\n"
        ));
        assert_eq!(
            lines(&run),
            ["b", "glance", "nova_cell2.conf"],
            "{order}: stderr: {}",
            run.stderr
        );
    }
}

#[test]
fn shimmed_calls_name_the_tree_whatever_the_cwd_and_top_dir() {
    // TOP_DIR unset, TOP_DIR pointing at a plugin's directory (not a tree), and the
    // tree itself: the fallback reaches `devstack __call` for the library's tree.
    for top in ["", "export TOP_DIR=$T", "export TOP_DIR=$LIB"] {
        let (_dir, run) = bash_in_tmp(&format!(
            "{top}\nsource \"$LIB/functions\"\nENABLED_SERVICES=q-svc\nis_service_enabled neutron; echo \"rc=$?\"\niniset \"$T/a.ini\" s k v; echo \"rc=$?\"\nenable_service tempest; echo \"$ENABLED_SERVICES\""
        ));
        assert_eq!(
            lines(&run),
            ["rc=0", "rc=0", "q-svc,tempest"],
            "{top}: stderr: {}",
            run.stderr
        );
    }
}

// ---------------------------------------------------------------------------------
// stackrc
// ---------------------------------------------------------------------------------

#[test]
fn stackrc_has_devstack_defaults_and_user_values_win() {
    let (_dir, run) = bash_in_tmp(
        "SYSLOG=True PUBLIC_NETWORK_NAME=outside SERVICE_PROJECT_NAME=svc KEYSTONE_SERVICE_URI=http://k:5000\n\
         SERVICE_TENANT_NAME=ignored\n\
         source \"$LIB/stackrc\"\n\
         for v in SYSLOG PUBLIC_NETWORK_NAME PRIVATE_NETWORK_NAME PUBLIC_PHYSICAL_NETWORK PUBLIC_BRIDGE Q_AGENT \
                  TARGET_BRANCH USE_VENV GLOBAL_VENV APACHE_NAME SUBNETPOOL_PREFIX_V4 \
                  SERVICE_TENANT_NAME CIRROS_VERSION DEFAULT_IMAGE_NAME \
                  DATABASE_BACKENDS LOG_COLOR; do echo \"$v=${!v}\"; done\n\
         [[ $(declare -p PROJECT_VENV) == 'declare -A'* ]] && echo PROJECT_VENV=assoc\n\
         [[ $LOCAL_HOSTNAME == \"$(hostname -s)\" ]] && echo LOCAL_HOSTNAME=ok\n\
         [[ $SSL_BUNDLE_FILE == */ca-bundle.pem ]] && echo SSL_BUNDLE_FILE=ok\n\
         [[ $IPV6_ADDRS_SAFE_TO_USE =~ ^fd[0-9a-f]{2}:[0-9a-f]{4}:[0-9a-f]{4}::/56$ ]] && echo IPV6=ok\n\
         for v in NOVA_DIR GLANCE_REPO CINDER_BRANCH GLANCE_URL GLANCE_HOSTPORT VERBOSE; do              echo \"$v=${!v}\"; done\n         [[ $USE_SYSTEMD == True && -d /run/systemd/system || $USE_SYSTEMD == False ]] && echo USE_SYSTEMD=ok\n         SYSLOG=changed; source \"$LIB/stackrc\"; echo \"again=$SYSLOG\"\n",
    );
    run.success();
    let arch = std::env::consts::ARCH;
    let want = [
        "SYSLOG=True".to_owned(),
        "PUBLIC_NETWORK_NAME=outside".into(),
        "PRIVATE_NETWORK_NAME=private".into(),
        "PUBLIC_PHYSICAL_NETWORK=public".into(),
        "PUBLIC_BRIDGE=br-ex".into(),
        "Q_AGENT=ovn".into(),
        "TARGET_BRANCH=master".into(),
        "USE_VENV=False".into(),
        "GLOBAL_VENV=True".into(),
        "APACHE_NAME=apache2".into(),
        "SUBNETPOOL_PREFIX_V4=10.0.0.0/22".into(),
        "SERVICE_TENANT_NAME=svc".into(),
        "CIRROS_VERSION=0.6.3".into(),
        format!("DEFAULT_IMAGE_NAME=cirros-0.6.3-{arch}-disk"),
        "DATABASE_BACKENDS= mysql postgresql".into(),
        "LOG_COLOR=False".into(),
        "PROJECT_VENV=assoc".into(),
        "LOCAL_HOSTNAME=ok".into(),
        "SSL_BUNDLE_FILE=ok".into(),
        "IPV6=ok".into(),
        "NOVA_DIR=/opt/stack/nova".into(),
        "GLANCE_REPO=https://opendev.org/openstack/glance.git".into(),
        "CINDER_BRANCH=master".into(),
        "GLANCE_URL=http://127.0.0.1/image".into(),
        "GLANCE_HOSTPORT=127.0.0.1:9292".into(),
        "VERBOSE=True".into(),
        "USE_SYSTEMD=ok".into(),
        "again=changed".into(),
    ];
    assert_eq!(lines(&run), want, "stderr: {}", run.stderr);
}

#[test]
fn a_run_sources_stackrc_after_localrc() {
    let t = Tree::new();
    t.local_conf("disable_all_services\nPRIVATE_NETWORK_NAME=mine", "");
    t.extras(
        "10-vars.sh",
        &recording_hook(
            "10-vars.sh",
            &[
                "SYSLOG",
                "PRIVATE_NETWORK_NAME",
                "SERVICE_TENANT_NAME",
                "KEYSTONE_SERVICE_URI_V3",
            ],
        ),
    );
    let run = t.devstack(&["plan"]);
    run.success();
    let trace = t.trace();
    let line = trace
        .lines()
        .find(|l| l.starts_with("10-vars.sh override_defaults"))
        .unwrap_or_else(|| panic!("no override_defaults call in {trace}"));
    assert!(
        line.contains(" SYSLOG=False PRIVATE_NETWORK_NAME=mine SERVICE_TENANT_NAME=service"),
        "{line}"
    );
    // keystone's own variables come with its lib defaults, after override_defaults
    // (DevStack sources lib/keystone then), and before `source`.
    assert!(line.ends_with("KEYSTONE_SERVICE_URI_V3="), "{line}");
    let line = trace
        .lines()
        .find(|l| l.starts_with("10-vars.sh source"))
        .unwrap_or_else(|| panic!("no source call in {trace}"));
    // DevStack's URL: keystone behind the front proxy at /identity.
    assert!(line.ends_with("/identity/v3"), "{line}");
}

/// The `source` line of the 10-vars.sh recording hook, after a `plan` with `localrc`.
fn cinder_vars_at_source(localrc: &str) -> (Tree, String) {
    let t = Tree::new();
    t.local_conf(localrc, "");
    t.extras(
        "10-vars.sh",
        &recording_hook(
            "10-vars.sh",
            &[
                "CINDER_ENABLED_BACKENDS",
                "CINDER_TARGET_HELPER",
                "CINDER_LVM_TYPE",
                "VOLUME_GROUP_NAME",
            ],
        ),
    );
    t.devstack(&["plan"]).success();
    let trace = t.trace();
    let line = trace
        .lines()
        .find(|l| l.starts_with("10-vars.sh source"))
        .unwrap_or_else(|| panic!("no source call in {trace}"))
        .to_owned();
    (t, line)
}

fn probed(t: &Tree) -> bool {
    std::fs::read_to_string(t.top.join(".devstack/state.json"))
        .unwrap_or_default()
        .contains("cinder-storage-probe")
}

#[test]
fn cinder_backends_default_to_the_storage_probes_choice_and_a_users_is_kept() {
    // No volume service here: DevStack's own defaults, and nothing probed.
    let (t, line) = cinder_vars_at_source("disable_all_services\nenable_service c-api");
    assert!(
        line.ends_with(
            " CINDER_ENABLED_BACKENDS=lvm:lvmdriver-1 CINDER_TARGET_HELPER=lioadm \
             CINDER_LVM_TYPE=auto VOLUME_GROUP_NAME=stack-volumes"
        ),
        "{line}"
    );
    assert!(!probed(&t));
    // The user's choice is kept, and with NFS only nothing is probed.
    let (t, line) = cinder_vars_at_source(
        "disable_all_services\nenable_service c-vol\nCINDER_ENABLED_BACKENDS=nfs:nfs-1",
    );
    assert!(
        line.contains(" CINDER_ENABLED_BACKENDS=nfs:nfs-1 CINDER_TARGET_HELPER=lioadm "),
        "{line}"
    );
    assert!(!probed(&t));
    // A volume node without a choice gets the probe's (this machine's answer: LVM or
    // NFS), kept in the state for the rest of the run.
    let (t, line) = cinder_vars_at_source("disable_all_services\nenable_service c-vol");
    assert!(
        line.contains(" CINDER_ENABLED_BACKENDS=lvm:lvmdriver-1 CINDER_TARGET_HELPER=")
            || line.contains(" CINDER_ENABLED_BACKENDS=nfs:nfs CINDER_TARGET_HELPER=lioadm "),
        "{line}"
    );
    assert!(probed(&t));
}

// ---------------------------------------------------------------------------------
// Logging
// ---------------------------------------------------------------------------------

const E: &str = "\u{1b}";

fn ini_values(run: &Run) -> Vec<String> {
    run.stdout.lines().map(str::to_owned).collect()
}

const LOG_KEYS: &str = "for k in use_journal logging_debug_format_suffix logging_context_format_string \
    logging_default_format_string logging_exception_prefix log_color logging_user_identity_format; do \
    echo \"$k=$(iniget \"$T/s.conf\" DEFAULT $k)\"; done";

#[test]
fn setup_systemd_logging_writes_devstack_formats() {
    let (_dir, run) = lib(&format!(
        "LOG_COLOR=False; setup_systemd_logging \"$T/s.conf\"; echo \"journal=$USE_JOURNAL\"; {LOG_KEYS}"
    ));
    run.success();
    assert_eq!(
        ini_values(&run),
        [
            "journal=False".to_owned(),
            "use_journal=".into(),
            format!(
                "logging_debug_format_suffix={E}[00;33m{{{{(pid=%(process)d) %(funcName)s %(pathname)s:%(lineno)d}}}}{E}[00m"
            ),
            format!(
                "logging_context_format_string=%(color)s%(levelname)s %(name)s [{E}[01;36m%(global_request_id)s %(request_id)s {E}[00;36m%(project_name)s %(user_name)s%(color)s] {E}[01;35m%(instance)s%(color)s%(message)s{E}[00m"
            ),
            format!(
                "logging_default_format_string=%(color)s%(levelname)s %(name)s [{E}[00;36m-%(color)s] {E}[01;35m%(instance)s%(color)s%(message)s{E}[00m"
            ),
            format!("logging_exception_prefix=ERROR %(name)s {E}[01;35m%(instance)s{E}[00m"),
            "log_color=False".into(),
            "logging_user_identity_format=".into(),
        ]
    );
}

#[test]
fn setup_systemd_logging_with_the_journal_drops_the_pid() {
    let (_dir, run) = lib(&format!(
        "USE_JOURNAL=yes LOG_COLOR=True; setup_systemd_logging \"$T/s.conf\"; echo \"journal=$USE_JOURNAL\"; {LOG_KEYS}"
    ));
    run.success();
    let v = ini_values(&run);
    assert_eq!(v[0], "journal=True");
    assert_eq!(v[1], "use_journal=True");
    assert_eq!(
        v[2],
        format!(
            "logging_debug_format_suffix={E}[00;33m{{{{%(funcName)s %(pathname)s:%(lineno)d}}}}{E}[00m"
        )
    );
    assert_eq!(v[6], "log_color=True");
}

#[test]
fn setup_colorized_logging_writes_devstack_formats() {
    let (_dir, run) = lib(&format!(
        "LOG_COLOR=True; setup_colorized_logging \"$T/s.conf\"; {LOG_KEYS}"
    ));
    run.success();
    assert_eq!(
        ini_values(&run),
        [
            "use_journal=".to_owned(),
            format!(
                "logging_debug_format_suffix={E}[00;33mfrom (pid=%(process)d) %(funcName)s %(pathname)s:%(lineno)d{E}[00m"
            ),
            format!(
                "logging_context_format_string=%(asctime)s.%(msecs)03d %(color)s%(levelname)s %(name)s [{E}[01;36m%(request_id)s {E}[00;36m%(project_name)s %(user_name)s%(color)s] {E}[01;35m%(instance)s%(color)s%(message)s{E}[00m"
            ),
            format!(
                "logging_default_format_string=%(asctime)s.%(msecs)03d %(color)s%(levelname)s %(name)s [{E}[00;36m-%(color)s] {E}[01;35m%(instance)s%(color)s%(message)s{E}[00m"
            ),
            format!(
                "logging_exception_prefix=%(color)s%(asctime)s.%(msecs)03d TRACE %(name)s {E}[01;35m%(instance)s{E}[00m"
            ),
            "log_color=True".into(),
            "logging_user_identity_format=".into(),
        ]
    );
}

#[test]
fn setup_logging_is_systemd_logging_under_systemd_else_devstacks_non_systemd_choice() {
    let probe = "iniget \"$T/s.conf\" DEFAULT logging_context_format_string | grep -c global_request_id; \
                 iniget \"$T/s.conf\" DEFAULT logging_context_format_string | grep -c asctime; \
                 echo \"id=$(iniget \"$T/s.conf\" DEFAULT logging_user_identity_format)\"";
    let cases = [
        (
            "_DS_SYSTEMD_RUN_DIR=$T LOG_COLOR=False SYSLOG=False",
            ["1", "0", "id="],
        ),
        (
            "_DS_SYSTEMD_RUN_DIR=$T/none LOG_COLOR=True SYSLOG=False",
            ["0", "1", "id="],
        ),
        (
            "_DS_SYSTEMD_RUN_DIR=$T/none LOG_COLOR=True SYSLOG=True",
            ["0", "0", "id=%(project_name)s %(user_name)s"],
        ),
    ];
    for (env, want) in cases {
        let (_dir, run) = lib(&format!(
            "{env}; setup_logging \"$T/s.conf\" ignored-second-argument; {probe}"
        ));
        assert_eq!(lines(&run), want, "{env}: stderr: {}", run.stderr);
    }
}

// ---------------------------------------------------------------------------------
// Small utilities
// ---------------------------------------------------------------------------------

#[test]
fn ipv6_unquote_removes_brackets() {
    let (_dir, run) = lib(
        "ipv6_unquote '[fd00::1]'; ipv6_unquote 10.0.0.1; ipv6_unquote '[::]'; ipv6_unquote ' [a   b] ' extra",
    );
    assert_eq!(lines(&run), ["fd00::1", "10.0.0.1", "::", "a b"]);
}

#[test]
fn python_version_is_python2s_and_python3_version_python3s() {
    let (_dir, run) = lib("python_version; python3_version");
    run.success();
    let out = lines(&run);
    let python2 = Command::new("python2")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_owned());
    // "python" alone where python2 does not run (every supported distribution).
    assert_eq!(out[0], format!("python{}", python2.unwrap_or_default()));
    let v = Command::new("python3")
        .args(["-c", "import sys; print('%d.%d' % sys.version_info[:2])"])
        .output()
        .unwrap();
    assert_eq!(
        out[1],
        format!("python{}", String::from_utf8_lossy(&v.stdout).trim())
    );
}

#[test]
fn test_with_retry_succeeds_eventually_and_dies_on_timeout() {
    let (_dir, run) = lib("rm -f \"$T/flag\"; (sleep 0.3; touch \"$T/flag\") &\n\
         test_with_retry \"test -e $T/flag\" \"no flag\" 5 0.1; echo \"rc=$?\"\n\
         test_with_retry false \"it never worked\" 1 0.2\necho not-reached");
    assert_eq!(run.status, 1, "stderr: {}", run.stderr);
    assert_eq!(lines(&run), ["rc=0"]);
    assert!(
        run.stderr.contains("[ERROR] ") && run.stderr.contains(" it never worked"),
        "{}",
        run.stderr
    );
}

#[test]
fn get_rootwrap_location_uses_the_exec_prefix() {
    let (_dir, run) = lib(
        "GLOBAL_VENV=True DEVSTACK_VENV=/v get_rootwrap_location nova\n\
         GLOBAL_VENV=False get_rootwrap_location neutron",
    );
    assert_eq!(
        lines(&run),
        ["/v/bin/nova-rootwrap", "/usr/local/bin/neutron-rootwrap"]
    );
}

#[test]
fn export_proxy_variables_exports_only_what_is_set() {
    let (_dir, run) = lib(
        "unset http_proxy https_proxy no_proxy; http_proxy=http://p:3128; https_proxy=''\n\
         export_proxy_variables\n\
         env | grep -E '^(http|https|no)_proxy=' | sort",
    );
    assert_eq!(lines(&run), ["http_proxy=http://p:3128", "https_proxy="]);
}

#[test]
fn write_user_unit_file_writes_devstacks_unit() {
    let (dir, run) = lib(
        "SYSTEMD_DIR=$T/units SYSTEMCTL='echo SYSTEMCTL' _DS_SYSTEMD_RUN_DIR=$T\n\
         write_user_unit_file devstack@foo.service '/usr/bin/foo --x' grp stack 'A=1 B=2'\n\
         SYSTEMD_DIR=$T/units2 _DS_SYSTEMD_RUN_DIR=$T/none write_user_unit_file devstack@bar.service /bin/bar '' stack",
    );
    run.success();
    assert_eq!(
        lines(&run),
        ["SYSTEMCTL daemon-reload"],
        "stderr: {}",
        run.stderr
    );
    let unit = read(&dir.path().join("units/devstack@foo.service"));
    let kill = Command::new("bash")
        .args(["-c", "type -P kill"])
        .output()
        .unwrap();
    let kill = String::from_utf8_lossy(&kill.stdout).trim().to_owned();
    for want in [
        "[Unit]",
        "Description = Devstack devstack@foo.service",
        "[Service]",
        "Environment = A=1 B=2",
        "User = stack",
        "ExecStart = /usr/bin/foo --x",
        "KillMode = process",
        "TimeoutStopSec = 300",
        &format!("ExecReload = {kill} -HUP $MAINPID"),
        "Group = grp",
        "[Install]",
        "WantedBy = multi-user.target",
    ] {
        assert!(
            unit.lines().any(|l| l == want),
            "missing {want:?} in\n{unit}"
        );
    }
    assert!(
        !unit.contains("PATH="),
        "ENVVARS replace the PATH line:\n{unit}"
    );
    let bar = read(&dir.path().join("units2/devstack@bar.service"));
    assert!(
        bar.lines().any(|l| l.starts_with("Environment = \"PATH=")),
        "{bar}"
    );
    assert!(!bar.contains("Group"), "{bar}");
}

#[test]
fn read_password_keeps_a_set_value_and_generates_a_missing_one() {
    let (dir, run) = lib("export TOP_DIR=$T\n\
         QPID_PASSWORD=given; read_password QPID_PASSWORD 'ENTER A PASSWORD'; echo \"$QPID_PASSWORD\"\n\
         [[ -e $T/.localrc.password ]] || echo no-file\n\
         unset OTHER_PASSWORD; read_password OTHER_PASSWORD 'ENTER'; echo \"$OTHER_PASSWORD\"");
    run.success();
    let out = lines(&run);
    assert_eq!(out[..2], ["given", "no-file"]);
    let pw = out[2];
    assert!(
        pw.len() == 20 && pw.chars().all(|c| c.is_ascii_hexdigit()),
        "{pw}"
    );
    let file = read(&dir.path().join(".localrc.password"));
    assert_eq!(file, format!("OTHER_PASSWORD={pw}\n"));

    // With a localrc file, the value goes there.
    let (dir, run) =
        lib("export TOP_DIR=$T; echo 'X=1' >\"$T/localrc\"; unset P_PW; read_password P_PW p");
    run.success();
    let localrc = read(&dir.path().join("localrc"));
    assert!(
        localrc.starts_with("X=1\nP_PW=") && localrc.len() == "X=1\nP_PW=\n".len() + 20,
        "{localrc}"
    );
}

#[test]
fn async_runfunc_runs_the_job_and_async_wait_collects_it() {
    let (_dir, run) = lib("job() { JOB_RESULT=\"$1-$2\"; echo \"job ran $*\"; }\n\
         async_runfunc job a b; echo \"rc=$? result=$JOB_RESULT\"\n\
         async_wait job; echo \"rc=$?\"\n\
         async_wait job\n\
         failing() { return 3; }\n\
         async_runfunc failing; echo \"rc=$?\"");
    run.success();
    let out = lines(&run);
    assert!(
        out[0].ends_with("Async job:self]: Running synchronously: job a b"),
        "{out:?}"
    );
    assert_eq!(out[1], "job ran a b");
    assert_eq!(out[2], "rc=0 result=a-b");
    assert!(
        out[4].ends_with("finished job a b with result 0 in 0 seconds"),
        "{out:?}"
    );
    assert_eq!(out[5], "rc=0");
    assert_eq!(
        out[6],
        "Not waiting for async task job that we never started or has already been waited for"
    );
    assert_eq!(out[8], "rc=3");
}

#[test]
fn localconf_set_edits_meta_sections_as_devstack() {
    let (dir, run) = lib("f=$T/local.conf\n\
         localconf_set \"$f\" post-config '$NOVA_CONF' libvirt virt_type qemu\n\
         localrc_set \"$f\" HOST_IP 10.0.0.5\n\
         localrc_set \"$f\" HOST_IP 10.0.0.6\n\
         localconf_set \"$f\" post-config '$NOVA_CONF' libvirt virt_type kvm\n\
         localconf_set \"$f\" post-config '$NOVA_CONF' libvirt cpu_mode none\n\
         localconf_set \"$f\" post-config '$NOVA_CONF' DEFAULT debug True\n\
         localrc_set \"$f\" EMPTY ''\n\
         localconf_set \"$f\" '' '$NOVA_CONF' DEFAULT x y");
    run.success();
    assert_eq!(
        read(&dir.path().join("local.conf")),
        "\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug=True\n[libvirt]\ncpu_mode=none\nvirt_type=kvm\n\n[[local|localrc]]\nHOST_IP=10.0.0.6\n"
    );
}

#[test]
fn install_bindep_selects_by_platform_and_profile_and_skips_a_missing_file() {
    let (_dir, run) = lib(
        "printf 'ID=debian\\nNAME=\"Debian GNU/Linux\"\\nVERSION_ID=\"12\"\\nVERSION_CODENAME=bookworm\\n' >\"$T/os-release\"\n\
         _DS_OS_RELEASE=$T/os-release; GetOSVersion; DEST=$T; DEVSTACK_VENV=$T/venv; PATH=/usr/bin:/bin\n\
         printf '%s\\n' '# comment' gcc 'libffi-dev [platform:dpkg]' 'libffi-devel [platform:rpm]' \
             'python3-dev [platform:dpkg test]' 'mysql-client [platform:dpkg !platform:debian]' \
             'docpkg [doc]' 'notest [!test]' 'pkg-bookworm [platform:debian-bookworm]' 'ver >= 1.0' >\"$T/bindep.txt\"\n\
         install_package() { echo \"install: $*\"; }\n\
         install_bindep \"$T/bindep.txt\"\n\
         install_bindep \"$T/bindep.txt\" test\n\
         install_bindep \"$T/missing.txt\"; echo \"rc=$?\"",
    );
    run.success();
    let out = lines(&run);
    assert_eq!(out[0], "install: gcc libffi-dev notest pkg-bookworm ver");
    assert_eq!(
        out[1],
        "install: gcc libffi-dev python3-dev pkg-bookworm ver"
    );
    assert!(
        out[2].starts_with("[WARNING] ")
            && out[2].contains(" Can not find bindep file: ")
            && out[2].ends_with("/missing.txt"),
        "{out:?}"
    );
    assert_eq!(out[3], "rc=0");
}

#[test]
fn setup_package_handles_bindep_flags_and_extras() {
    let (_dir, run) = lib("install_bindep() { echo \"bindep $*\"; }\n\
         setup_develop() { echo \"develop $*\"; }\n\
         pip_install() { echo \"pip $*\"; }\n\
         setup_package -bindep=test /src/foo -e\n\
         setup_package /src/foo extra1\n\
         setup_package /src/foo --no-deps x\n\
         setup_package -bindep /src/bar");
    run.success();
    assert_eq!(
        lines(&run),
        [
            "bindep /src/foo/bindep.txt test",
            "develop /src/foo ",
            "develop /src/foo extra1",
            "pip --no-deps /src/foo[x]",
            "bindep /src/bar/bindep.txt ",
            "develop /src/bar ",
        ]
    );
}

#[test]
fn recreate_database_mysql_dispatches_with_the_mysql_backend() {
    let (_dir, run) = lib("recreate_database() { echo \"$DATABASE_TYPE:$1\"; }\n\
         DATABASE_TYPE=postgresql\n\
         recreate_database_mysql heat; recreate_database_postgresql heat; echo \"after=$DATABASE_TYPE\"");
    assert_eq!(
        lines(&run),
        ["mysql:heat", "postgresql:heat", "after=postgresql"]
    );
}

#[test]
fn conductor_conf_is_the_cell_config_path() {
    let (_dir, run) = lib("conductor_conf 1; NOVA_CONF_DIR=/x conductor_conf 2");
    assert_eq!(
        lines(&run),
        ["/etc/nova/nova_cell1.conf", "/x/nova_cell2.conf"]
    );
}

#[test]
fn apache_site_helpers_keep_site_files_and_links_where_plugins_look() {
    let (dir, run) = lib("APACHE_CONF_DIR=$T/apache/sites-available\n\
         f=$(apache_site_config_for foo-api); echo \"$f\" | sed \"s|$T|T|\"\n\
         echo 'Listen 1' >\"$f\"\n\
         enable_apache_site foo-api; echo \"enable=$?\"\n\
         readlink \"$T/apache/sites-enabled/foo-api.conf\"\n\
         enable_apache_site missing; echo \"missing=$?\"\n\
         restart_apache_server; echo \"restart=$?\"\n\
         disable_apache_site foo-api; echo \"disable=$?\"\n\
         [[ -e $T/apache/sites-enabled/foo-api.conf ]] || echo unlinked\n\
         disable_apache_site never-there; echo \"disable2=$?\"\n\
         install_apache_wsgi; echo \"wsgi=$?\"\n\
         apache_site_config_for two words | sed \"s|$T|T|\"");
    assert_eq!(
        lines(&run),
        [
            "T/apache/sites-available/foo-api.conf",
            "enable=0",
            "../sites-available/foo-api.conf",
            "missing=1",
            "restart=0",
            "disable=0",
            "unlinked",
            "disable2=0",
            "wsgi=0",
            "T/apache/sites-available/two words.conf",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Site missing does not exist"),
        "{}",
        run.stderr
    );
    assert_eq!(
        read(&dir.path().join("apache/sites-available/foo-api.conf")),
        "Listen 1\n"
    );
}

// ---------------------------------------------------------------------------------
// Neutron
// ---------------------------------------------------------------------------------

#[test]
fn neutron_lists_keep_devstacks_variables() {
    let (_dir, run) = lib("neutron_service_plugin_class_add router\n\
         neutron_service_plugin_class_add qos\n\
         neutron_service_plugin_class_add router\n\
         echo \"$Q_SERVICE_PLUGIN_CLASSES\"\n\
         Q_SERVICE_PLUGIN_CLASSES=a.b.Plugin; neutron_service_plugin_class_add a.b.Plugin; neutron_service_plugin_class_add a.x.Plugin\n\
         echo \"$Q_SERVICE_PLUGIN_CLASSES\"\n\
         Q_SERVICE_PLUGIN_CLASSES=axb; neutron_service_plugin_class_add a.b; echo \"$Q_SERVICE_PLUGIN_CLASSES\"\n\
         plugin_agent_add_l2_agent_extension qos; plugin_agent_add_l2_agent_extension qos\n\
         plugin_agent_add_l2_agent_extension fdb; echo \"$L2_AGENT_EXTENSIONS\"\n\
         neutron_server_config_add /etc/neutron/a.conf; neutron_server_config_add '/etc/neutron/b c.conf'\n\
         printf '%s|' \"${_Q_PLUGIN_EXTRA_CONF_FILES_ABS[@]}\"; echo\n\
         neutron_ml2_extension_driver_add qos; echo \"$Q_ML2_PLUGIN_EXT_DRIVERS\"\n\
         is_neutron_legacy_enabled && echo legacy");
    assert_eq!(
        lines(&run),
        [
            "router,qos",
            "a.b.Plugin,a.x.Plugin",
            "axb",
            "qos,fdb",
            "/etc/neutron/a.conf|/etc/neutron/b c.conf|",
            "port_security,qos",
            "legacy",
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn populate_ml2_config_sets_one_option_like_devstack() {
    let (dir, run) = lib(
        "populate_ml2_config \"$T/ml2.ini\" ml2 mechanism_drivers=ovn,logger\n\
         populate_ml2_config \"$T/ml2.ini\" ml2 'tenant_network_types=vxlan geneve'\n\
         populate_ml2_config \"$T/none.ini\" ml2 ''; [[ -e $T/none.ini ]] || echo untouched\n\
         populate_ml2_config \"$T/ml2.ini\" ml2_type_vxlan 'vni_ranges=1:1000' 'ignored=1'\n\
         echo \"leaked: $CONF $SECTION $I\" | sed \"s|$T|T|\"",
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "untouched",
            "leaked: T/ml2.ini ml2_type_vxlan vni_ranges=1:1000"
        ]
    );
    let ini = read(&dir.path().join("ml2.ini"));
    for want in [
        "mechanism_drivers = ovn,logger",
        "tenant_network_types = vxlan",
        "vni_ranges = 1:1000",
    ] {
        assert!(ini.lines().any(|l| l == want), "{want:?} in\n{ini}");
    }
    assert!(!ini.contains("ignored"), "{ini}");
}

#[test]
fn ovs_source_defaults_and_load_module() {
    let (_dir, run) = lib("source \"$LIB/lib/neutron_plugins/ovs_source\"\n\
         echo \"$Q_BUILD_OVS_FROM_GIT $OVS_REPO $OVS_REPO_NAME $OVS_BRANCH\"\n\
         sudo() { [[ $1 == modprobe ]] && { echo \"modprobe $2\"; [[ $2 == good ]]; return; }; true; }\n\
         load_module good; load_module bad False; echo \"rc=$?\"\n\
         for f in compile_ovs prepare_for_ovs_compilation load_ovs_kernel_modules reload_ovs_kernel_modules \
                  action_openvswitch start_new_ovs stop_new_ovs remove_ovs_packages load_conntrack_gre_module; do\n\
             declare -F \"$f\" >/dev/null || echo \"missing $f\"; done\n\
         load_module bad; echo not-reached");
    assert_ne!(run.status, 0);
    assert_eq!(
        lines(&run),
        [
            "False https://github.com/openvswitch/ovs.git ovs branch-3.3",
            "Loading good",
            "modprobe good",
            "Loading bad",
            "modprobe bad",
            "FAILED TO LOAD bad",
            "rc=0",
            "Loading bad",
            "modprobe bad",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("FAILED TO LOAD bad"), "{}", run.stderr);
}

#[test]
fn configure_rootwrap_installs_filters_conf_and_sudoers() {
    if !Path::new("/etc/sudoers.d").is_dir() || !nix_is_root() {
        eprintln!("skipped: needs root and /etc/sudoers.d");
        return;
    }
    let (dir, run) = lib(
        "trap 'rm -rf /etc/dsrwtest /etc/sudoers.d/dsrwtest-rootwrap' EXIT\n\
         mkdir -p \"$T/src/etc/dsrwtest/rootwrap.d\" \"$T/bin\"\n\
         echo '[Filters]' >\"$T/src/etc/dsrwtest/rootwrap.d/a.filters\"\n\
         printf '[DEFAULT]\\nfilters_path=/somewhere\\nexec_dirs=/sbin,/bin\\n' >\"$T/src/etc/dsrwtest/rootwrap.conf\"\n\
         touch \"$T/bin/dsrwtest-rootwrap-daemon\"\n\
         DSRWTEST_DIR=$T/src DSRWTEST_BIN_DIR=$T/bin STACK_USER=stack SUDO_SECURE_PATH_FILE=$T/secure\n\
         configure_rootwrap dsrwtest\n\
         cat /etc/dsrwtest/rootwrap.conf; ls /etc/dsrwtest/rootwrap.d\n\
         sed \"s|$T|T|g\" /etc/sudoers.d/dsrwtest-rootwrap; stat -c %a /etc/sudoers.d/dsrwtest-rootwrap\n\
         sed \"s|$T|T|g\" \"$T/secure\"",
    );
    assert_eq!(
        lines(&run),
        [
            "[DEFAULT]",
            "filters_path=/etc/dsrwtest/rootwrap.d",
            "#exec_dirs=/sbin,/bin",
            "a.filters",
            "stack ALL=(root) NOPASSWD: T/bin/dsrwtest-rootwrap /etc/dsrwtest/rootwrap.conf *",
            "stack ALL=(root) NOPASSWD: T/bin/dsrwtest-rootwrap-daemon /etc/dsrwtest/rootwrap.conf",
            "440",
            "Defaults:stack secure_path=/usr/local/sbin:/usr/local/bin:/usr/sbin:/sbin:/usr/bin:/bin:T/bin",
        ],
        "stderr: {}",
        run.stderr
    );
    drop(dir);
    assert!(!Path::new("/etc/dsrwtest").exists());
}

fn nix_is_root() -> bool {
    nix::unistd::Uid::effective().is_root()
}

#[test]
fn create_disk_makes_a_sparse_xfs_image_with_one_fstab_line_and_destroy_disk_undoes_it() {
    // mkfs.xfs, mount and umount are recorded, not run; the files are real.
    let (dir, run) = lib(
        "sudo() { case $1 in mkfs.xfs | mount | umount) echo \"sudo $*\" | sed \"s|$T|T|g\" ;; *) command \"$@\" ;; esac; }\n\
         _DS_FSTAB=$T/fstab; echo 'UUID=x / ext4 defaults 0 1' >\"$T/fstab\"\n\
         create_disk \"$T/images/swift.img\" \"$T/mnt/sdb1\" 1G >/dev/null\n\
         create_disk \"$T/images/swift.img\" \"$T/mnt/sdb1\" 2G | sed \"s|$T|T|g\"\n\
         stat -c %s \"$T/images/swift.img\"; [[ -d $T/mnt/sdb1 ]] && echo mountpoint\n\
         cp \"$T/fstab\" \"$T/fstab.created\"\n\
         destroy_disk \"$T/images/swift.img\" \"$T/mnt/sdb1\"; [[ -e $T/images/swift.img ]] || echo removed",
    );
    run.success();
    let t = dir.path().display().to_string();
    let image = format!("{t}/images/swift.img");
    let key = format!("devstack-{}", &image[2..]);
    let line =
        format!("{image} {t}/mnt/sdb1 xfs loop,noatime,nodiratime,logbufs=8,comment={key} 0 0");
    assert_eq!(
        lines(&run),
        [
            "sudo mkfs.xfs -f -i size=1024 T/images/swift.img",
            &line.replace(&t, "T"),
            "sudo mount -v T/mnt/sdb1",
            "2147483648",
            "mountpoint",
            "removed",
        ],
        "stderr: {}",
        run.stderr
    );
    assert_eq!(
        read(&dir.path().join("fstab.created")),
        format!("UUID=x / ext4 defaults 0 1\n{line}\n")
    );
    assert_eq!(
        read(&dir.path().join("fstab")),
        "UUID=x / ext4 defaults 0 1\n"
    );
}

#[test]
fn the_new_functions_work_inside_a_run() {
    let t = Tree::new();
    let conf = t.top.parent().unwrap().join("svc.conf");
    t.local_conf("disable_all_services", "");
    t.extras(
        "10-api.sh",
        &format!(
            "# fixture: calls the plugin API inside the plugin shell\n\
             if [[ $1 == override_defaults ]]; then\n\
             source \"$TOP_DIR/stackrc\"\n\
             source \"$TOP_DIR/lib/neutron_plugins/ovs_source\"\n\
             neutron_service_plugin_class_add qos\n\
             setup_systemd_logging {conf}\n\
             job() {{ JOB=ran; }}\n\
             async_runfunc job >/dev/null; async_wait job >/dev/null\n\
             echo \"api $Q_SERVICE_PLUGIN_CLASSES $(conductor_conf 1) $JOB $(ipv6_unquote '[::1]') $(V=on; trueorfalse X V)\" >>\"$TRACE_FILE\"\n\
             fi\n",
            conf = conf.display()
        ),
    );
    let run = t.devstack(&["plan"]);
    run.success();
    assert!(
        t.trace_lines()
            .contains(&"api qos /etc/nova/nova_cell1.conf ran ::1 X".to_owned()),
        "{}\nstderr: {}",
        t.trace(),
        run.stderr
    );
    let text = read(&conf);
    assert!(text.contains("log_color = False"), "{text}");
}

#[test]
fn write_uwsgi_config_with_a_url_path_serves_a_socket_behind_the_front_proxy() {
    let (dir, run) = lib("DATA_DIR=$T/data API_WORKERS=2\n\
         mkdir -p \"$T/etc/heat\"\n\
         write_uwsgi_config \"$T/etc/heat/heat-api-uwsgi.ini\" heat.wsgi.api:application /heat-api \"\" heat-api; echo \"write=$?\"\n\
         write_uwsgi_config \"$T/etc/heat/heat-api-uwsgi.ini\" heat.wsgi.api:application /heat-api \"\" heat-api >/dev/null; echo \"again=$?\"\n\
         readlink \"$T/data/apache/sites-enabled/heat-api.conf\"\n\
         write_uwsgi_config \"$T/etc/heat/m.ini\" /opt/x/octavia-wsgi /load-balancer >/dev/null; echo \"three=$?\"\n\
         write_uwsgi_config \"$T/etc/heat/none.ini\" x.y:app \"\" \"\" none; echo \"neither=$?\"\n\
         remove_uwsgi_config \"$T/etc/heat/heat-api-uwsgi.ini\" heat-api; echo \"remove=$?\"\n\
         [[ -e $T/etc/heat/heat-api-uwsgi.ini ]] || echo ini-gone\n\
         [[ -e $T/data/apache/sites-enabled/heat-api.conf ]] || echo unlinked\n\
         [[ -e $T/data/apache/sites-available/heat-api.conf ]] && echo site-kept");
    let t = dir.path();
    assert_eq!(
        lines(&run),
        [
            "ProxyPass \"/heat-api\" \"unix:/var/run/uwsgi/heat-api.socket|uwsgi://uwsgi-uds-heat-api\" retry=0 acquire=1 ",
            "write=0",
            "again=0",
            "../sites-available/heat-api.conf",
            "three=0",
            "neither=2",
            "remove=0",
            "ini-gone",
            "unlinked",
            "site-kept",
        ],
        "stderr: {}",
        run.stderr
    );
    // One line, though written twice (DevStack would append a duplicate).
    assert_eq!(
        read(&t.join("data/apache/sites-available/heat-api.conf")),
        "ProxyPass \"/heat-api\" \"unix:/var/run/uwsgi/heat-api.socket|uwsgi://uwsgi-uds-heat-api\" retry=0 acquire=1 \n"
    );
    // The three-argument form: NAME is the script's basename.
    let ini = read(&t.join("etc/heat/m.ini"));
    assert!(
        ini.contains("socket = /var/run/uwsgi/octavia-wsgi.socket\n"),
        "{ini}"
    );
    assert!(ini.contains("wsgi-file = /opt/x/octavia-wsgi\n"), "{ini}");
    assert!(
        read(&t.join("data/apache/sites-available/octavia-wsgi.conf"))
            .starts_with("ProxyPass \"/load-balancer\" ")
    );
}

// ---------------------------------------------------------------------------------
// Keystone
// ---------------------------------------------------------------------------------

/// A keystone that knows tokens, the Default domain (id `default`) and groups,
/// on 127.0.0.1: answers one request per connection and records each as
/// "METHOD PATH BODY". The thread ends with the test's process.
struct FakeKeystone {
    url: String,
    seen: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl FakeKeystone {
    fn start() -> Self {
        use std::io::{BufRead, BufReader, Read, Write};
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let record = seen.clone();
        std::thread::spawn(move || {
            let mut groups: Vec<(String, String)> = Vec::new();
            for stream in listener.incoming() {
                let Ok(stream) = stream else { continue };
                let mut reader = BufReader::new(stream.try_clone().unwrap());
                let mut line = String::new();
                if reader.read_line(&mut line).is_err() {
                    continue;
                }
                let mut parts = line.split_whitespace();
                let method = parts.next().unwrap_or("").to_owned();
                let path = parts.next().unwrap_or("").to_owned();
                let mut length = 0usize;
                loop {
                    let mut h = String::new();
                    if reader.read_line(&mut h).unwrap_or(0) == 0 || h.trim().is_empty() {
                        break;
                    }
                    if let Some((k, v)) = h.split_once(':') {
                        if k.eq_ignore_ascii_case("content-length") {
                            length = v.trim().parse().unwrap_or(0);
                        }
                    }
                }
                let mut buf = vec![0; length];
                let _ = reader.read_exact(&mut buf);
                let body = String::from_utf8_lossy(&buf).into_owned();
                let json: serde_json::Value =
                    serde_json::from_str(&body).unwrap_or(serde_json::Value::Null);
                let (status, headers, answer) = match (method.as_str(), path.as_str()) {
                    ("POST", "/v3/auth/tokens") => {
                        (201, "X-Subject-Token: tok\r\n", "{\"token\":{}}".to_owned())
                    }
                    ("GET", "/v3/domains?name=Default") => (
                        200,
                        "",
                        "{\"domains\":[{\"id\":\"default\",\"name\":\"Default\"}]}".to_owned(),
                    ),
                    ("GET", "/v3/domains/default") => (
                        200,
                        "",
                        "{\"domain\":{\"id\":\"default\",\"name\":\"Default\"}}".to_owned(),
                    ),
                    ("GET", p) if p.starts_with("/v3/domains") => {
                        if p.contains('?') {
                            (200, "", "{\"domains\":[]}".to_owned())
                        } else {
                            (404, "", "{\"error\":{\"code\":404}}".to_owned())
                        }
                    }
                    ("POST", "/v3/groups") => {
                        let name = json
                            .pointer("/group/name")
                            .and_then(|v| v.as_str())
                            .unwrap_or("")
                            .to_owned();
                        if groups.iter().any(|(n, _)| *n == name) {
                            (409, "", "{\"error\":{\"code\":409}}".to_owned())
                        } else {
                            let id = format!("gid-{name}");
                            groups.push((name, id.clone()));
                            (201, "", format!("{{\"group\":{{\"id\":\"{id}\"}}}}"))
                        }
                    }
                    ("GET", p) if p.starts_with("/v3/groups?name=") => {
                        let name = p["/v3/groups?name=".len()..]
                            .split('&')
                            .next()
                            .unwrap_or("");
                        let found: Vec<String> = groups
                            .iter()
                            .filter(|(n, _)| n == name)
                            .map(|(_, id)| format!("{{\"id\":\"{id}\"}}"))
                            .collect();
                        (200, "", format!("{{\"groups\":[{}]}}", found.join(",")))
                    }
                    _ => (404, "", "{\"error\":{\"code\":404}}".to_owned()),
                };
                record
                    .lock()
                    .unwrap()
                    .push(format!("{method} {path} {body}").trim_end().to_owned());
                let mut stream = stream;
                let _ = write!(
                    stream,
                    "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\n{headers}Content-Length: {}\r\nConnection: close\r\n\r\n{answer}",
                    answer.len()
                );
            }
        });
        Self { url, seen }
    }

    /// The requests seen so far, tokens left out.
    fn requests(&self) -> Vec<String> {
        self.seen
            .lock()
            .unwrap()
            .iter()
            .filter(|r| !r.starts_with("POST /v3/auth/tokens"))
            .cloned()
            .collect()
    }
}

#[test]
fn get_or_create_group_prints_the_id_of_a_new_or_existing_group() {
    let ks = FakeKeystone::start();
    let (_dir, run) = lib(&format!(
        "export KEYSTONE_SERVICE_URI={} ADMIN_PASSWORD=pw-Never-Shown\n\
         g=$(get_or_create_group admins default 'openstack admin group'); echo \"rc=$? $g\"\n\
         g=$(get_or_create_group admins Default); echo \"rc=$? $g\"\n\
         g=$(get_or_create_group readers Default); echo \"rc=$? $g\"\n\
         g=$(get_or_create_group x no-such-domain 2>\"$T/err\"); echo \"rc=$? [$g]\"\n\
         get_or_create_group only-a-name 2>\"$T/usage\"; echo \"rc=$?\"\n\
         cat \"$T/err\" \"$T/usage\" >&2",
        ks.url
    ));
    assert_eq!(
        lines(&run),
        [
            "rc=0 gid-admins",
            "rc=0 gid-admins",
            "rc=0 gid-readers",
            "rc=1 []",
            "rc=2"
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("no-such-domain"), "{}", run.stderr);
    assert!(
        run.stderr
            .contains("usage: get_or_create_group NAME DOMAIN [DESCRIPTION]"),
        "{}",
        run.stderr
    );
    assert!(!run.stderr.contains("pw-Never-Shown"), "{}", run.stderr);
    let requests = ks.requests();
    let posts: Vec<&String> = requests
        .iter()
        .filter(|r| r.starts_with("POST /v3/groups"))
        .collect();
    // Created with its domain and description (empty by default); the second call
    // met the existing group (409) and found it instead.
    assert_eq!(
        posts,
        [
            "POST /v3/groups {\"group\":{\"description\":\"openstack admin group\",\"domain_id\":\"default\",\"name\":\"admins\"}}",
            "POST /v3/groups {\"group\":{\"description\":\"\",\"domain_id\":\"default\",\"name\":\"admins\"}}",
            "POST /v3/groups {\"group\":{\"description\":\"\",\"domain_id\":\"default\",\"name\":\"readers\"}}",
        ],
        "{requests:#?}"
    );
    assert!(
        requests.contains(&"GET /v3/groups?name=admins&domain_id=default".to_owned()),
        "{requests:#?}"
    );
}

// ---------------------------------------------------------------------------------
// RPC backend
// ---------------------------------------------------------------------------------

/// Bash script lines that write `$T/bin/NAME`, a stub that appends "NAME ARGS" to
/// `$T/calls` (a fixed path: devstack-rs gives its children an explicit environment)
/// and then runs the bash code BODY.
fn stub(name: &str, body: &str) -> String {
    let body = body.replace('\'', "'\\''");
    format!(
        "mkdir -p \"$T/bin\"\n\
         printf '#!/bin/bash\\necho \"{name} $*\" >>%q\\n%s\\n' \"$T/calls\" '{body}' >\"$T/bin/{name}\"\n\
         chmod +x \"$T/bin/{name}\"\n"
    )
}

#[test]
fn rpc_backend_add_vhost_adds_a_missing_vhost_with_permissions_or_refuses_without_rabbit() {
    let (dir, run) = lib(&format!(
        "{}export PATH=$T/bin:$PATH\n\
         ENABLED_SERVICES=key,rabbit RABBIT_USERID=stackrabbit\n\
         rpc_backend_add_vhost nova_cell2; echo \"new=$?\"\n\
         rpc_backend_add_vhost nova_cell1; echo \"listed=$?\"\n\
         rpc_backend_add_vhost cell; echo \"substring=$?\"\n\
         ENABLED_SERVICES=key rpc_backend_add_vhost other; echo \"norabbit=$?\"\n\
         rpc_backend_add_vhost broken 2>\"$T/err\"; echo \"broken=$?\"\n",
        stub(
            "rabbitmqctl",
            "case \" $* \" in *\" list_vhosts \"*) printf \"/\\nnova_cell1\\n\" ;; *broken*) exit 3 ;; esac"
        )
    ));
    assert_eq!(
        lines(&run),
        [
            "new=0",
            "listed=0",
            "substring=0",
            "RPC backend does not support vhosts",
            "norabbit=1",
            "broken=1",
        ],
        "stderr: {}",
        run.stderr
    );
    let calls = read(&dir.path().join("calls"));
    let ctl = "rabbitmqctl -q -n rabbit@localhost";
    assert_eq!(
        calls.lines().collect::<Vec<_>>(),
        [
            format!("{ctl} list_vhosts"),
            format!("{ctl} add_vhost nova_cell2"),
            format!("{ctl} set_permissions -p nova_cell2 stackrabbit .* .* .*"),
            format!("{ctl} list_vhosts"),
            // DevStack's grep: "cell" is in a listed name, so nothing is added.
            format!("{ctl} list_vhosts"),
            format!("{ctl} list_vhosts"),
            format!("{ctl} add_vhost broken"),
        ]
    );
    let err = read(&dir.path().join("err"));
    assert!(
        err.contains("rpc_backend_add_vhost") && err.contains("rabbitmqctl add_vhost"),
        "{err}"
    );
}

// ---------------------------------------------------------------------------------
// Starting and stopping keystone and neutron (lib/keystone, lib/neutron)
// ---------------------------------------------------------------------------------

#[test]
fn stop_keystone_and_stop_neutron_stop_the_processes_of_their_services() {
    // Real processes through `devstack __call` (the library tree's own state):
    // stop_keystone stops `key` only, stop_neutron neutron's (`q-svc`); a plugin's
    // own process stays.
    let (_dir, run) = lib(
        "LOGDIR=$T/logs DATA_DIR=$T/data ENABLED_SERVICES=key,q-svc,mine\n\
         for p in key q-svc mine; do run_process $p '/bin/sleep 300'; done\n\
         stop_keystone; echo \"stop_keystone=$?\"\n\
         for p in key q-svc mine; do is_running $p && echo \"$p up\" || echo \"$p down\"; done\n\
         stop_neutron; echo \"stop_neutron=$?\"\n\
         for p in key q-svc mine; do is_running $p && echo \"$p up\" || echo \"$p down\"; done\n\
         stop_process mine",
    );
    assert_eq!(
        lines(&run),
        [
            "stop_keystone=0",
            "key down",
            "q-svc up",
            "mine up",
            "stop_neutron=0",
            "key down",
            "q-svc down",
            "mine up",
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn start_keystone_and_start_neutron_service_and_check_reach_the_services_steps() {
    // The ops recorded instead of done (a running cloud would be needed): each
    // function's op with the variables it sends; a failed start dies as DevStack's.
    let (_dir, run) = lib(
        "_ds_call() { local vars=''; while [[ $1 == -v ]]; do vars+=\" $2\"; shift 2; done\n\
             echo \"op $* |$vars\" | sed -E 's/\\| .*(DEST|SERVICE_TIMEOUT|Q_AGENT|SKIP_STOP_OVN).*/| vars ok/'\n\
             [[ $1 != \"${FAIL_OP:-}\" ]]; }\n\
         start_keystone; echo \"rc=$?\"\n\
         start_neutron_service_and_check; echo \"rc=$?\"\n\
         stop_neutron; echo \"rc=$?\"\n\
         FAIL_OP=neutron-start start_neutron_service_and_check; echo not-reached",
    );
    assert_eq!(run.status, 1, "stderr: {}", run.stderr);
    assert_eq!(
        lines(&run),
        [
            "Waiting for keystone to start...",
            "op keystone-start | vars ok",
            "op system-service restart memcached | vars ok",
            "rc=0",
            "op neutron-start | vars ok",
            "rc=0",
            "op neutron-stop | vars ok",
            "rc=0",
            "op neutron-start | vars ok",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr.contains("Neutron did not start"),
        "{}",
        run.stderr
    );
}

// ---------------------------------------------------------------------------------
// Images (functions: upload_image)
// ---------------------------------------------------------------------------------

#[test]
fn upload_image_names_and_formats_images_like_devstack() {
    // `openstack` and `qemu-img` are stubs: each call recorded in $T/calls (with
    // the content of the file uploaded); the UEC kernel and ramdisk get ids.
    let (dir, run) = lib(&format!(
        "{}{}export PATH=$T/bin:$PATH FILES=$T/files REGION_NAME=RegionOne\n\
         VIRT_DRIVER=libvirt LIBVIRT_TYPE=qemu\n\
         printf q >\"$T/amphora.qcow2\"; upload_image \"file://$T/amphora.qcow2\" >/dev/null; echo \"qcow2=$?\"\n\
         printf i >\"$T/cirros.img\"; upload_image \"file://$T/cirros.img\" >/dev/null\n\
         VIRT_DRIVER=fake\n\
         printf v | gzip >\"$T/disk.vhdx.gz\"; upload_image \"file://$T/disk.vhdx.gz\" >/dev/null\n\
         upload_image \"file://$T/missing.qcow2\"; echo \"missing=$?\"\n\
         : >\"$T/empty.raw\"; upload_image \"file://$T/empty.raw\"; echo \"empty=$?\"\n\
         mkdir -p \"$T/files\"; printf c >\"$T/files/cached.iso\"; upload_image https://example.org/x/cached.iso >/dev/null; echo \"cached=$?\"\n\
         printf z >\"$T/thing.zip\"; upload_image \"file://$T/thing.zip\"; echo \"unknown=$?\"\n\
         mkdir -p \"$T/uec\"; printf k >\"$T/uec/foo-vmlinuz-6\"; printf r >\"$T/uec/foo-initrd-6\"; printf r >\"$T/uec/foo.img\"\n\
         tar -czf \"$T/foo.tar.gz\" -C \"$T/uec\" . && upload_image \"file://$T/foo.tar.gz\" >/dev/null\n\
         printf w >\"$T/win-thin:ide:vmxnet3.vmdk\"; upload_image \"file://$T/win-thin:ide:vmxnet3.vmdk\" >/dev/null\n\
         GLANCE_USE_IMPORT_WORKFLOW=True upload_image \"file://$T/amphora.qcow2\" >/dev/null; echo \"import=$?\"\n\
         ls \"$T/files/images\"",
        stub(
            "openstack",
            "f=${@: -1}; [[ -f $f ]] && echo \"content $(cat \"$f\")\" >>\"${0%/bin/*}/calls\"; \
             case \" $* \" in *\" -c id \"*) echo \"id-$5\" ;; *) echo \"| id | $5 |\" ;; esac"
        ),
        stub("qemu-img", "echo 'file format: qcow2'"),
    ));
    let out: Vec<String> = run.stdout.lines().map(str::to_owned).collect();
    let t = dir.path().display().to_string();
    assert_eq!(
        out,
        [
            "qcow2=0".to_owned(),
            format!("Not found: file://{t}/missing.qcow2"),
            "missing=0".into(),
            format!("Not found: file://{t}/empty.raw"),
            "empty=0".into(),
            "cached=0".into(),
            "Do not know what to do with thing.zip".into(),
            "unknown=1".into(),
            "import=0".into(),
            "foo".into(),
        ],
        "stderr: {}",
        run.stderr
    );
    let arch = match std::env::consts::ARCH {
        "x86_64" => "",
        other => panic!("expected properties for {other} are not written here"),
    };
    let osc = "openstack --os-cloud=devstack-admin --os-region-name=RegionOne image create";
    let calls = read(&dir.path().join("calls")).replace(&t, "T");
    let calls: Vec<&str> = calls.lines().collect();
    let uec = "T/files/images/foo/.";
    let want = [
        format!(
            "{osc} amphora --public --container-format bare --disk-format qcow2 --property hw_rng_model=virtio{arch} --file T/amphora.qcow2"
        ),
        "content q".into(),
        "qemu-img info T/cirros.img".into(),
        format!(
            "{osc} cirros --public --container-format bare --disk-format qcow2 --property hw_rng_model=virtio --file T/cirros.img"
        ),
        "content i".into(),
        format!("{osc} disk --public --container-format bare --disk-format vhdx --file TMP/disk"),
        "content v".into(),
        format!(
            "{osc} cached --public --container-format bare --disk-format iso --file T/files/cached.iso"
        ),
        "content c".into(),
        format!(
            "{osc} foo-kernel --public --container-format aki --disk-format aki --file {uec}/foo-vmlinuz-6 -f value -c id"
        ),
        format!(
            "{osc} foo-ramdisk --public --container-format ari --disk-format ari --file {uec}/foo-initrd-6 -f value -c id"
        ),
        format!(
            "{osc} foo --public --container-format ami --disk-format ami --property kernel_id=id-foo-kernel --property ramdisk_id=id-foo-ramdisk --file {uec}/foo.img"
        ),
        "content r".into(),
        format!(
            "{osc} win-thin:ide:vmxnet3 --public --container-format bare --disk-format vmdk --property vmware_disktype=thin --property vmware_adaptertype=ide --property hw_vif_model=vmxnet3 --file T/win-thin:ide:vmxnet3.vmdk"
        ),
        "content w".into(),
        format!(
            "{osc} amphora --public --container-format bare --disk-format qcow2 --import --file T/amphora.qcow2"
        ),
        "content q".into(),
    ];
    // The decompressed file is in a temporary directory, removed after the upload.
    let tmp_line = calls
        .iter()
        .find(|l| l.contains(" disk --public"))
        .unwrap_or_else(|| panic!("{calls:#?}"));
    let tmp = tmp_line.rsplit(' ').next().unwrap();
    assert!(!Path::new(tmp).exists(), "{tmp} left behind");
    let tmp_dir = tmp.trim_end_matches("/disk");
    let calls: Vec<String> = calls
        .iter()
        .map(|l| l.replace(tmp_dir, "TMP").replace("/./", "/"))
        .collect();
    let want: Vec<String> = want.iter().map(|l| l.replace("/./", "/")).collect();
    assert_eq!(calls, want);
}

// ---------------------------------------------------------------------------------
// lib/tls
// ---------------------------------------------------------------------------------

/// Sources lib/tls with DATA_DIR, SERVICE_HOST and the Apache directories in `$T`;
/// sudo only records (the system trust store is never touched).
const TLS_ENV: &str = "export DATA_DIR=$T/data SERVICE_HOST=10.1.2.3 APACHE_CONF_DIR=$T/sa \
     APACHE_SETTINGS_DIR=$T/ce APACHE_LOG_DIR=$T/logs\n\
     source \"$LIB/functions\"\n\
     sudo() { echo \"sudo $*\" | sed \"s|$T|T|g\" >>\"$T/sudo\"; }\n";

#[test]
fn init_ca_and_make_cert_give_certificates_that_verify_against_the_chain_with_cn_and_sans() {
    let (dir, run) = bash_in_tmp(&format!(
        "{TLS_ENV}\
         configure_CA; init_CA >/dev/null 2>&1 || echo init_CA failed\n\
         init_cert >/dev/null 2>&1 || echo init_cert failed\n\
         make_cert \"$INT_CA_DIR\" foo foo.example DNS:alt.example >/dev/null 2>&1\n\
         # A second init_CA keeps both CAs (the chain is appended again, as DevStack's).\n\
         openssl x509 -in \"$ROOT_CA_DIR/cacert.pem\" -noout -fingerprint >\"$T/fp1\"\n\
         init_CA >/dev/null 2>&1; openssl x509 -in \"$ROOT_CA_DIR/cacert.pem\" -noout -fingerprint >\"$T/fp2\"\n\
         cmp -s \"$T/fp1\" \"$T/fp2\" && echo root-kept\n\
         echo \"${{ROOT_CA_DIR#$T/}} ${{INT_CA_DIR#$T/}} ${{DEVSTACK_CERT#$T/}}\"\n\
         openssl verify -CAfile \"$ROOT_CA_DIR/cacert.pem\" -untrusted \"$INT_CA_DIR/cacert.pem\" \"$INT_CA_DIR/foo.crt\" | sed \"s|$T|T|\"\n\
         openssl verify -CAfile \"$INT_CA_DIR/ca-chain.pem\" \"$INT_CA_DIR/devstack-cert.crt\" | sed \"s|$T|T|\"\n\
         openssl x509 -in \"$INT_CA_DIR/foo.crt\" -noout -subject -ext subjectAltName,extendedKeyUsage\n\
         openssl x509 -in \"$ROOT_CA_DIR/cacert.pem\" -noout -subject\n\
         openssl x509 -in \"$INT_CA_DIR/cacert.pem\" -noout -subject -issuer\n\
         openssl x509 -in \"$INT_CA_DIR/devstack-cert.crt\" -noout -ext subjectAltName | tail -1\n\
         [[ -f $INT_CA_DIR/private/foo.key && -f $INT_CA_DIR/signing.conf && ! -f $ROOT_CA_DIR/signing.conf ]] && echo files\n\
         grep -c BEGIN \"$DEVSTACK_CERT\"; grep -c 'BEGIN CERTIFICATE' \"$INT_CA_DIR/ca-chain.pem\" \"$T/data/ca-bundle.pem\" | sed \"s|$T|T|\"\n"
    ));
    assert_eq!(run.status, 0, "stderr: {}", run.stderr);
    let host = String::from_utf8(Command::new("hostname").arg("-f").output().unwrap().stdout)
        .unwrap()
        .trim()
        .to_owned();
    let want = [
        "root-kept".to_owned(),
        "data/CA/root-ca data/CA/int-ca data/devstack-cert.pem".into(),
        "T/data/CA/int-ca/foo.crt: OK".into(),
        "T/data/CA/int-ca/devstack-cert.crt: OK".into(),
        "subject=O = OpenStack, OU = DevStack Servers, CN = foo.example".into(),
        "X509v3 Extended Key Usage: ".into(),
        "    TLS Web Server Authentication, TLS Web Client Authentication".into(),
        "X509v3 Subject Alternative Name: ".into(),
        "    DNS:foo.example, DNS:alt.example, IP Address:10.1.2.3".into(),
        "subject=O = OpenStack, OU = DevStack Certificate Authority, CN = Root CA".into(),
        "subject=O = OpenStack, OU = DevStack Certificate Authority, CN = Intermediate CA".into(),
        "issuer=O = OpenStack, OU = DevStack Certificate Authority, CN = Root CA".into(),
        // TLS_IP (SERVICE_HOST), then SERVICE_HOST again as the CN is the host name.
        format!("    DNS:{host}, IP Address:10.1.2.3, IP Address:10.1.2.3"),
        "files".into(),
        "3".into(),
        // Two init_CA calls, as DevStack's: the chain gets 2 + 2 certificates, the
        // bundle the chain each time (2 + 4).
        "T/data/CA/int-ca/ca-chain.pem:4".into(),
        "T/data/ca-bundle.pem:6".into(),
    ];
    assert_eq!(lines(&run), want, "stderr: {}", run.stderr);
    // Debian: both CA certificates into the trust store, then update-ca-certificates.
    let sudo = read(&dir.path().join("sudo"));
    assert!(
        sudo.starts_with(
            "sudo cp T/data/CA/int-ca/cacert.pem /usr/local/share/ca-certificates/devstack-int.crt\n\
             sudo cp T/data/CA/root-ca/cacert.pem /usr/local/share/ca-certificates/devstack-root.crt\n\
             sudo update-ca-certificates\n"
        ),
        "{sudo}"
    );
}

#[test]
fn ensure_certificates_defaults_all_three_dies_on_some_and_bundles_the_ca_when_all_are_set() {
    let (_dir, run) = bash_in_tmp(&format!(
        "{TLS_ENV}\
         ensure_certificates KEYSTONE\n\
         for v in KEYSTONE_SSL_CERT KEYSTONE_SSL_KEY KEYSTONE_SSL_CA; do echo \"${{!v#$T/}}\"; done\n\
         [[ -e $T/data/ca-bundle.pem ]] || echo no-bundle\n\
         echo 'MY CA' >\"$T/my-ca.pem\"\n\
         NOVA_SSL_CERT=$T/c NOVA_SSL_KEY=$T/k NOVA_SSL_CA=$T/my-ca.pem; ensure_certificates NOVA; echo \"all=$?\"\n\
         cat \"$T/data/ca-bundle.pem\"\n\
         (GLANCE_SSL_CERT=$T/c; ensure_certificates GLANCE 2>\"$T/err\"; echo unreachable); echo \"some=$?\"\n\
         grep -o 'Missing either the GLANCE_SSL_CERT GLANCE_SSL_KEY or GLANCE_SSL_CA variable to enable SSL for GLANCE' \"$T/err\"\n"
    ));
    assert_eq!(
        lines(&run),
        [
            "data/CA/int-ca/devstack-cert.crt",
            "data/CA/int-ca/private/devstack-cert.key",
            "data/CA/int-ca/ca-chain.pem",
            "no-bundle",
            "all=0",
            "MY CA",
            "some=1",
            "Missing either the GLANCE_SSL_CERT GLANCE_SSL_KEY or GLANCE_SSL_CA variable to enable SSL for GLANCE",
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn start_tls_proxy_writes_devstacks_site_enables_it_and_restarts_the_proxy() {
    let (dir, run) = bash_in_tmp(&format!(
        "{TLS_ENV}\
         restart_apache_server() {{ echo restarted; }}\n\
         echo old >\"$(apache_site_config_for foo-tls-proxy)\"\n\
         start_tls_proxy foo '*' 8443 10.0.0.5 18443\n\
         start_tls_proxy http-services '*' 443 10.1.2.3 80 16384\n\
         start_tls_proxy bar 10.1.2.3 9443 127.0.0.1 19443\n\
         readlink \"$T/sites-enabled/foo-tls-proxy.conf\"\n\
         grep -c 'ServerLimit           8' \"$T/ce/connection-tuning.conf\"\n\
         head -2 \"$T/sa/bar-tls-proxy.conf\"; head -1 \"$T/sa/http-services-tls-proxy.conf\"\n\
         grep LimitRequestFieldSize \"$T/sa/http-services-tls-proxy.conf\"\n"
    ));
    assert_eq!(
        lines(&run),
        [
            "restarted",
            "restarted",
            "restarted",
            "../sa/foo-tls-proxy.conf",
            "2",
            "Listen 10.1.2.3:9443",
            "<VirtualHost 10.1.2.3:9443>",
            "<VirtualHost *:443>",
            "    LimitRequestFieldSize 16384",
        ],
        "stderr: {}",
        run.stderr
    );
    let t = dir.path().display().to_string();
    let site = read(&dir.path().join("sa/foo-tls-proxy.conf"));
    for want in [
        "Listen 8443\n<VirtualHost *:8443>\n    SSLEngine On\n".to_owned(),
        format!("    SSLCertificateFile {t}/data/devstack-cert.pem\n"),
        "    SSLProtocol -all +TLSv1.3 +TLSv1.2\n".into(),
        "    KeepAlive Off\n".into(),
        "    LimitRequestFieldSize 8190\n".into(),
        "    RequestHeader set X-Forwarded-Proto \"https\"\n".into(),
        "    SetEnv proxy-initial-not-pooled\n".into(),
        "    <Location />\n        ProxyPass http://10.0.0.5:18443/ retry=0 nocanon acquire=1\n        ProxyPassReverse http://10.0.0.5:18443/\n    </Location>\n".into(),
        format!("    ErrorLog {t}/logs/tls-proxy_error.log\n"),
        "    LogLevel info\n".into(),
        format!("    CustomLog {t}/logs/tls-proxy_access.log combined\n</VirtualHost>\n"),
    ] {
        assert!(site.contains(&want), "{want:?} not in:\n{site}");
    }
    assert!(site.starts_with("Listen 8443\n"), "{site}");
}

// ---------------------------------------------------------------------------------
// lib/lvm
// ---------------------------------------------------------------------------------

/// PATH stubs for the LVM tools: the VG exists once vgcreate ran ($T/vg), the file
/// is attached once losetup --find ran ($T/attached); truncate is the real one.
fn lvm_stubs() -> String {
    [
        stub("vgs", "[[ -e $T/vg ]]"),
        stub("vgcreate", "touch \"$T/vg\""),
        stub("lvremove", ""),
        stub("pvcreate", ""),
        stub("truncate", "/usr/bin/truncate \"$@\""),
        stub(
            "losetup",
            "case $1 in -h) echo \"      --direct-io[=<on|off>]\" ;; --find) touch \"$T/attached\"; echo /dev/loop7 ;; --associated) [[ -e $T/attached ]] && echo /dev/loop7 ;; esac; true",
        ),
        stub("systemctl", "touch \"$T/attached\""),
    ]
    .concat()
}

fn calls_in(dir: &Path) -> Vec<String> {
    let t = dir.display().to_string();
    read(&dir.join("calls"))
        .lines()
        .map(|l| l.replace(&t, "T"))
        .collect()
}

#[test]
fn init_lvm_volume_group_creates_file_loop_and_vg_only_when_missing_and_always_clears_lvs() {
    let (dir, run) = lib(&format!(
        "{}export PATH=$T/bin:$PATH DATA_DIR=$T/data ENABLED_SERVICES=key\n\
         sudo() {{ \"$@\"; }}\n\
         init_lvm_volume_group stack-volumes-lvmdriver-1 1G >/dev/null; echo \"rc=$?\"\n\
         stat -c %s \"$T/data/stack-volumes-lvmdriver-1-backing-file\"\n\
         echo --- >>\"$T/calls\"\n\
         init_lvm_volume_group stack-volumes-lvmdriver-1 1G >/dev/null; echo \"again=$?\"\n",
        lvm_stubs()
    ));
    assert_eq!(
        lines(&run),
        ["rc=0", "1073741824", "again=0"],
        "stderr: {}",
        run.stderr
    );
    let file = "T/data/stack-volumes-lvmdriver-1-backing-file";
    assert_eq!(
        calls_in(dir.path()),
        [
            "vgs stack-volumes-lvmdriver-1".to_owned(),
            format!("truncate -s 1G {file}"),
            "losetup -h".into(),
            format!("losetup --associated {file} -O NAME -n"),
            format!("losetup --find --show --direct-io=on {file}"),
            format!("losetup --associated {file} -O NAME -n"),
            "vgs stack-volumes-lvmdriver-1".into(),
            "vgcreate stack-volumes-lvmdriver-1 /dev/loop7".into(),
            "lvremove -f stack-volumes-lvmdriver-1".into(),
            "---".into(),
            // The VG exists: only its logical volumes are removed.
            "vgs stack-volumes-lvmdriver-1".into(),
            "lvremove -f stack-volumes-lvmdriver-1".into(),
        ]
    );
}

#[test]
fn init_lvm_volume_group_reuses_an_attached_file_and_default_group_is_made_once() {
    // The backing file exists and is attached, the VG is missing (a re-stack after
    // the VG was removed): neither truncate nor a second loop device.
    let (dir, run) = lib(&format!(
        "{}export PATH=$T/bin:$PATH DATA_DIR=$T/data ENABLED_SERVICES=key\n\
         sudo() {{ \"$@\"; }}\n\
         mkdir -p \"$T/data\"; : >\"$T/data/stack-volumes-default-backing-file\"; touch \"$T/attached\"\n\
         init_default_lvm_volume_group >/dev/null; echo \"rc=$?\"\n\
         init_default_lvm_volume_group >/dev/null; echo \"again=$?\"\n",
        lvm_stubs()
    ));
    assert_eq!(lines(&run), ["rc=0", "again=0"], "stderr: {}", run.stderr);
    let file = "T/data/stack-volumes-default-backing-file";
    assert_eq!(
        calls_in(dir.path()),
        [
            "vgs stack-volumes-default".to_owned(),
            "losetup -h".into(),
            format!("losetup --associated {file} -O NAME -n"),
            format!("losetup --associated {file} -O NAME -n"),
            "vgs stack-volumes-default".into(),
            "vgcreate stack-volumes-default /dev/loop7".into(),
            "lvremove -f stack-volumes-default".into(),
        ]
    );
}

#[test]
fn init_lvm_volume_group_under_systemd_writes_devstacks_unit_once_and_cinder_targets_go() {
    let (dir, run) = lib(&format!(
        "{}{}export PATH=$T/bin:$PATH DATA_DIR=$T/data ENABLED_SERVICES=key,c-vol\n\
         sudo() {{ \"$@\"; }}\n\
         _DS_SYSTEMD_RUN_DIR=$T SYSTEMD_DIR=$T/units SYSTEMCTL=systemctl; mkdir -p \"$T/units\"\n\
         init_lvm_volume_group vg1 2G >/dev/null; echo \"rc=$?\"\n",
        lvm_stubs(),
        stub(
            "cinder-rtstool",
            "[[ $1 == get-targets ]] && printf \"iqn.a\\niqn.b\\n\"; true"
        ),
    ));
    assert_eq!(lines(&run), ["rc=0"], "stderr: {}", run.stderr);
    let file = "T/data/vg1-backing-file";
    assert_eq!(
        calls_in(dir.path()),
        [
            "vgs vg1".to_owned(),
            format!("truncate -s 2G {file}"),
            "losetup -h".into(),
            "systemctl daemon-reload".into(),
            "systemctl enable --now vg1-backing-file.service".into(),
            format!("losetup --associated {file} -O NAME -n"),
            "vgs vg1".into(),
            "vgcreate vg1 /dev/loop7".into(),
            "cinder-rtstool get-targets".into(),
            "cinder-rtstool delete iqn.a".into(),
            "cinder-rtstool delete iqn.b".into(),
            "lvremove -f vg1".into(),
        ]
    );
    let unit = read(&dir.path().join("units/vg1-backing-file.service"));
    let t = dir.path().display();
    assert!(
        unit.contains(&format!(
            "ExecStart={t}/bin/losetup --find --show --direct-io=on {t}/data/vg1-backing-file\n"
        )) && unit.contains("RemainAfterExit=yes\nType=oneshot\n")
            && unit.contains("Before=lvm2-activation-early.service\n")
            && unit.contains("WantedBy=local-fs.target\n"),
        "{unit}"
    );
}
