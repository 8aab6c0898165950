//! The shell library (`functions` and what it sources) outside a run: a plain bash
//! that sources `$TOP_DIR/functions`, so Rust-backed functions go through the real
//! `devstack __call`. Behaviour is DevStack's (reference/devstack-behaviour.md §1.6,
//! §4.4, §5).

use std::fmt::Write as _;

use crate::{Run, Tree};

/// Runs SCRIPT after sourcing the library.
fn lib(tree: &Tree, script: &str) -> Run {
    tree.bash(&format!("source ./functions\n{script}"))
}

/// stdout as lines.
fn lines(run: &Run) -> Vec<&str> {
    run.stdout.lines().collect()
}

#[test]
fn trueorfalse_normalises_like_devstack() {
    let tree = Tree::new();
    let cases = [
        ("1", "True"),
        ("yes", "True"),
        ("Yes", "True"),
        ("YES", "True"),
        ("true", "True"),
        ("True", "True"),
        ("TRUE", "True"),
        ("tRuE", "DEF"),
        ("yEs", "DEF"),
        ("on", "DEF"),
        ("ON", "DEF"),
        ("0", "False"),
        ("no", "False"),
        ("No", "False"),
        ("NO", "False"),
        ("false", "False"),
        ("False", "False"),
        ("FALSE", "False"),
        ("off", "DEF"),
        ("Off", "DEF"),
        ("fAlSe", "DEF"),
        ("", "DEF"),
        ("maybe", "DEF"),
        ("2", "DEF"),
    ];
    let mut script = String::new();
    for (value, _) in cases {
        writeln!(script, "X='{value}'; echo \"$(trueorfalse DEF X)\"").unwrap();
    }
    script.push_str("unset Y; echo \"$(trueorfalse True Y)\"\n");
    let run = lib(&tree, &script);
    run.success();
    let got = lines(&run);
    let mut want: Vec<&str> = cases.iter().map(|(_, w)| *w).collect();
    want.push("True");
    assert_eq!(got, want, "stderr: {}", run.stderr);
}

#[test]
fn trueorfalse_without_a_variable_name_dies() {
    let tree = Tree::new();
    let run = lib(&tree, "trueorfalse True\necho not-reached");
    run.failure();
    assert!(
        run.stderr.contains("variable to normalize required"),
        "{}",
        run.stderr
    );
    assert!(!run.stdout.contains("not-reached"));
}

#[test]
fn die_prints_trace_and_error_and_exits_with_previous_status() {
    let tree = Tree::new();
    let logdir = tree.path("logs");
    std::fs::create_dir_all(&logdir).unwrap();
    tree.write(
        "plugin.sh",
        "# fixture: dies from inside a function\nfail_here() {\n    (exit 3) || die $LINENO \"it broke\"\n}\nfail_here\necho not-reached\n",
    );
    let run = tree.bash(&format!(
        "source ./functions\nLOGDIR={}\nsource \"$TOP_DIR/plugin.sh\"",
        logdir.display()
    ));
    assert_eq!(run.status, 3, "stderr: {}", run.stderr);
    assert!(!run.stdout.contains("not-reached"));
    let plugin = tree.path("plugin.sh");
    let err_line = format!("[ERROR] {}:3 it broke", plugin.display());
    let stderr: Vec<&str> = run.stderr.lines().collect();
    let trace_at = stderr
        .iter()
        .position(|l| *l == "[Call Trace]")
        .expect("a call trace");
    let err_at = stderr
        .iter()
        .position(|l| *l == err_line)
        .expect("the [ERROR] line");
    assert!(trace_at < err_at, "{}", run.stderr);
    assert!(
        stderr[trace_at..err_at].contains(&format!("{}:3:die", plugin.display()).as_str()),
        "{}",
        run.stderr
    );
    let log = std::fs::read_to_string(logdir.join("error.log")).unwrap();
    assert_eq!(log.trim_end(), err_line);
}

#[test]
fn die_after_success_exits_one_and_tolerates_missing_logdir() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        "LOGDIR=/nonexistent/dir\ntrue\ndie $LINENO \"plain\"",
    );
    assert_eq!(run.status, 1);
    // Line 4 of the script: lib() puts `source ./functions` first.
    assert!(run.stderr.contains(":4 plain"), "{}", run.stderr);
    assert!(!run.stderr.contains("No such file"), "{}", run.stderr);
}

#[test]
fn die_if_not_set_and_err_if_not_set() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        "FOO=x\ndie_if_not_set $LINENO FOO \"foo missing\"\necho survived\ndie_if_not_set $LINENO BAR \"bar missing\"\necho not-reached",
    );
    assert_eq!(run.status, 1);
    assert_eq!(lines(&run), ["survived"]);
    assert!(run.stderr.contains(":5 bar missing"), "{}", run.stderr);

    let run = lib(
        &tree,
        "err_if_not_set $LINENO BAR \"bar unset\"; echo \"rc=$?\"",
    );
    run.success();
    assert!(
        run.stderr.contains("[ERROR] ") && run.stderr.contains(" bar unset"),
        "{}",
        run.stderr
    );
    assert_eq!(lines(&run), ["rc=0"]);
}

#[test]
fn warn_prints_devstack_format_on_stdout_and_keeps_status() {
    let tree = Tree::new();
    tree.write(
        "hook.sh",
        "# fixture\nfalse || warn $LINENO \"careful now\"\necho \"rc=$?\"\n",
    );
    let run = lib(&tree, "source \"$TOP_DIR/hook.sh\"");
    run.success();
    let hook = tree.path("hook.sh");
    assert_eq!(
        lines(&run),
        [
            format!("[WARNING] {}:2 careful now", hook.display()).as_str(),
            "rc=1"
        ]
    );
    assert_eq!(run.stderr, "");
}

#[test]
fn err_prints_error_without_exiting() {
    let tree = Tree::new();
    let run = lib(&tree, "err $LINENO \"soft failure\"\necho still-here");
    run.success();
    assert_eq!(lines(&run), ["still-here"]);
    assert!(
        run.stderr.contains(":2 soft failure") && run.stderr.starts_with("[ERROR] "),
        "{}",
        run.stderr
    );
}

#[test]
fn is_service_enabled_groups_and_negation_through_the_binary() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        r#"ENABLED_SERVICES=key,n-api,g-api,q-svc,mysql,-mysql
disable_negated_services
echo "list=$ENABLED_SERVICES"
for s in nova glance neutron keystone key n-api cinder swift mysql n-cpu; do
    if is_service_enabled "$s"; then echo "$s=yes"; else echo "$s=no"; fi
done
is_service_enabled cinder swift nova && echo any=yes
is_service_enabled cinder swift || echo none=no
function is_my-thing_enabled { return 0; }
is_service_enabled my-thing && echo func=yes
"#,
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "list=key,n-api,g-api,q-svc",
            "nova=yes",
            "glance=yes",
            "neutron=yes",
            "keystone=yes",
            "key=yes",
            "n-api=yes",
            "cinder=no",
            "swift=no",
            "mysql=no",
            "n-cpu=no",
            "any=yes",
            "none=no",
            "func=yes",
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn enable_and_disable_service_change_enabled_services() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        r#"ENABLED_SERVICES=key,n-api
enable_service c-api c-vol
echo "1=$ENABLED_SERVICES"
enable_service c-api
echo "2=$ENABLED_SERVICES"
disable_service n-api
echo "3=$ENABLED_SERVICES;$DISABLED_SERVICES"
enable_service n-api
echo "4=$ENABLED_SERVICES"
disable_all_services
echo "5=[$ENABLED_SERVICES]"
"#,
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "1=key,n-api,c-api,c-vol",
            "2=key,n-api,c-api,c-vol",
            "3=key,c-api,c-vol;n-api",
            "4=key,c-api,c-vol",
            "5=[]",
        ]
    );
    assert!(
        run.stderr
            .contains("Attempt to enable_service n-api when it has been disabled"),
        "{}",
        run.stderr
    );
}

#[test]
fn service_list_helpers_in_bash() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        r#"remove_disabled_services "a,b,c,,d" "b,d"
ENABLED_SERVICES=x,y; OPTS="db1 db2 db3"
use_exclusive_service OPTS CHOSEN db2
echo "chosen=$CHOSEN enabled=$ENABLED_SERVICES disabled=$DISABLED_SERVICES"
use_exclusive_service OPTS CHOSEN nope || echo refused
ENABLED_SERVICES+=,db1
verify_disabled_services
echo not-reached
"#,
    );
    assert_eq!(run.status, 1);
    assert_eq!(
        lines(&run),
        [
            "a,c",
            "chosen=db2 enabled=x,y,db2 disabled=db1,db3",
            "refused"
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("ENABLED_SERVICES directly modified to overcome 'disable_service db1'"),
        "{}",
        run.stderr
    );
}

#[test]
fn iniset_iniget_round_trip() {
    let tree = Tree::new();
    let conf = tree.path("etc/x.conf");
    tree.write("etc/x.conf", "# keep me\n[DEFAULT]\ndebug=False\n");
    let run = lib(
        &tree,
        &format!(
            r#"f={}
iniset "$f" DEFAULT debug True
iniset -sudo "$f" database connection "mysql+pymysql://u:p@127.0.0.1/db?charset=utf8"
echo "debug=$(iniget "$f" DEFAULT debug)"
echo "conn=$(iniget "$f" database connection)"
echo "missing=[$(iniget "$f" database nope)]"
ini_has_option "$f" database connection && echo has
ini_has_option "$f" database nope || echo has-not
iniset_multiline "$f" filter f A B
iniadd "$f" filter f C
iniget_multiline "$f" filter f
inicomment "$f" DEFAULT debug
ini_has_option "$f" DEFAULT debug || echo commented
iniuncomment "$f" DEFAULT debug
inidelete "$f" filter f
iniget_sections "$f"
"#,
            conf.display()
        ),
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "debug=True",
            "conn=mysql+pymysql://u:p@127.0.0.1/db?charset=utf8",
            "missing=[]",
            "has",
            "has-not",
            "A B C",
            "commented",
            "DEFAULT database filter",
        ],
        "stderr: {}",
        run.stderr
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.starts_with("# keep me\n[DEFAULT]\ndebug=True\n"),
        "{text}"
    );
    assert!(
        text.contains("[database]\nconnection = mysql+pymysql://"),
        "{text}"
    );
}

#[test]
fn merge_config_file_applies_a_meta_section() {
    let tree = Tree::new();
    let conf = tree.path("etc/nova.conf");
    tree.write("etc/nova.conf", "[DEFAULT]\ndebug = False\n");
    tree.write(
        "local.conf",
        "[[local|localrc]]\nFOO=1\n[[post-config|$NOVA_CONF]]\n[DEFAULT]\ndebug = True\n# a comment\nhost = $MY_HOST\n[filter]\nf = A\nf = B\n[[post-config|/other/file]]\n[x]\ny = z\n",
    );
    let run = lib(
        &tree,
        &format!(
            "NOVA_CONF={}\nMY_HOST=box1\nget_meta_section_files local.conf post-config\nmerge_config_file local.conf post-config '$NOVA_CONF'\niniget_multiline \"$NOVA_CONF\" filter f\n",
            conf.display()
        ),
    );
    run.success();
    assert_eq!(
        lines(&run),
        ["$NOVA_CONF", "/other/file", "A B"],
        "stderr: {}",
        run.stderr
    );
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(text.contains("debug = True"), "{text}");
    assert!(text.contains("host = box1"), "{text}");
    assert!(!text.contains("comment") && !text.contains("[x]"), "{text}");
}

#[test]
fn get_distro_and_is_ubuntu_on_this_machine() {
    let os_release = std::fs::read_to_string("/etc/os-release").unwrap_or_default();
    let field = |key: &str| {
        os_release
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{key}=")))
            .map(|v| v.trim_matches('"').to_owned())
            .unwrap_or_default()
    };
    let id = field("ID");
    let deb = id == "debian" || id == "ubuntu";
    let tree = Tree::new();
    let run = lib(
        &tree,
        "GetDistro\necho \"$DISTRO\"\nis_ubuntu && echo ubuntu=yes || echo ubuntu=no\nis_debian && echo debian=yes || echo debian=no\nis_fedora && echo fedora=yes || echo fedora=no\necho \"$os_PACKAGE\"",
    );
    run.success();
    let yes_no = |b: bool| if b { "yes" } else { "no" };
    if deb {
        let codename = field("VERSION_CODENAME");
        assert_eq!(
            lines(&run),
            [
                codename.as_str(),
                "ubuntu=yes",
                &format!("debian={}", yes_no(id == "debian")),
                "fedora=no",
                "deb",
            ]
        );
    } else {
        assert_eq!(lines(&run)[1], "ubuntu=no");
    }
}

#[test]
fn get_os_version_reads_debian_and_fedora_files() {
    let tree = Tree::new();
    tree.write(
        "debian-os-release",
        "PRETTY_NAME=\"Debian GNU/Linux 12 (bookworm)\"\nNAME=\"Debian GNU/Linux\"\nVERSION_ID=\"12\"\nVERSION=\"12 (bookworm)\"\nVERSION_CODENAME=bookworm\nID=debian\n",
    );
    tree.write(
        "fedora-os-release",
        "NAME=\"Fedora Linux\"\nVERSION=\"40 (Server Edition)\"\nID=fedora\nVERSION_ID=40\n",
    );
    let run = lib(
        &tree,
        "for f in debian fedora; do\n  _DS_OS_RELEASE=./$f-os-release GetDistro\n  echo \"$os_VENDOR $os_RELEASE $os_CODENAME $os_PACKAGE $DISTRO\"\n  is_ubuntu && echo ubuntu; is_debian && echo debian; is_fedora && echo fedora\ndone\nexit_distro_not_supported \"the moon\"",
    );
    assert_eq!(run.status, 1);
    assert_eq!(
        lines(&run),
        [
            "Debian 12 bookworm deb bookworm",
            "ubuntu",
            "debian",
            "Fedora 40 Server rpm f40",
            "fedora",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Support for f40 is incomplete: no support for the moon"),
        "{}",
        run.stderr
    );
}

#[test]
fn enable_plugin_records_and_second_call_dies() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        r#"DEST=/srv/stack
enable_plugin foo https://example.org/foo
enable_plugin bar https://example.org/bar stable/2025.1
echo "$DEVSTACK_PLUGINS"
echo "${GITREPO[foo]} ${GITBRANCH[foo]} ${GITDIR[foo]}"
echo "${GITREPO[bar]} ${GITBRANCH[bar]} ${GITDIR[bar]}"
is_plugin_enabled bar && echo bar-enabled
is_plugin_enabled ba || echo ba-not-enabled
enable_plugin foo https://example.org/other
echo not-reached
"#,
    );
    assert_eq!(run.status, 1);
    assert_eq!(
        lines(&run),
        [
            ",foo,bar",
            "https://example.org/foo master /srv/stack/foo",
            "https://example.org/bar stable/2025.1 /srv/stack/bar",
            "bar-enabled",
            "ba-not-enabled",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(
        run.stderr
            .contains("Plugin attempted to be enabled twice: foo https://example.org/other master"),
        "{}",
        run.stderr
    );
}

#[test]
fn sudo_fallback_runs_the_command_without_sudo_options() {
    let tree = Tree::new();
    // A PATH without sudo: only the few tools the script needs.
    let run = tree.bash(
        r#"mkdir -p fakebin
for t in id env; do ln -sf "$(command -v "$t")" "fakebin/$t"; done
PATH=$PWD/fakebin
source ./functions
echo "type=$(type -t sudo)"
sudo -E -H -u root -n -- id -u
sudo -EH FOO=bar env | while read -r l; do [[ $l == FOO=bar ]] && echo "$l"; done
sudo -n true && echo ok
"#,
    );
    run.success();
    if nix_is_root() {
        assert_eq!(
            lines(&run),
            ["type=function", "0", "FOO=bar", "ok"],
            "stderr: {}",
            run.stderr
        );
    } else {
        // Not root: no fallback may pretend to be sudo.
        assert!(!run.stdout.contains("type=function"), "{}", run.stdout);
    }
}

fn nix_is_root() -> bool {
    std::process::Command::new("id")
        .arg("-u")
        .output()
        .is_ok_and(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
}

#[test]
fn double_sourcing_is_harmless_and_globals_survive_function_scope() {
    let tree = Tree::new();
    let run = tree.bash(
        r#"load() { source ./functions; }
load
ENABLED_SERVICES=key
enable_service foo
enable_plugin p https://example.org/p
source ./functions
source "$TOP_DIR/functions"
echo "$ENABLED_SERVICES $DEVSTACK_PLUGINS ${GITREPO[p]}"
declare -p GITREPO | cut -c1-11
is_service_enabled foo && echo foo-enabled
"#,
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "key,foo ,p https://example.org/p",
            "declare -A ",
            "foo-enabled"
        ],
        "stderr: {}",
        run.stderr
    );
}

#[test]
fn time_start_twice_and_stop_without_start_are_fatal() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        "time_start a\ntime_stop a\necho \"total=${_TIME_TOTAL[a]}\"\ntime_start a\ntime_start a\necho not-reached",
    );
    assert_eq!(run.status, 1);
    assert_eq!(lines(&run).len(), 1);
    assert!(lines(&run)[0].starts_with("total="), "{}", run.stdout);
    assert!(
        run.stderr
            .contains("Trying to start the clock on a, but it's already been started"),
        "{}",
        run.stderr
    );

    let run = lib(&tree, "time_stop b");
    assert_eq!(run.status, 1);
    assert!(
        run.stderr
            .contains("Trying to stop the clock on b, but it was never started"),
        "{}",
        run.stderr
    );
}

#[test]
fn small_helpers_behave_like_devstack() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        r#"echo "| id | name |" | get_field 1
echo "| abc | def |" | get_field -2
h=$(generate_hex_string 8); echo "${#h}"; [[ $h =~ ^[0-9a-f]+$ ]] && echo hex
echo "$(bool_to_int True)$(bool_to_int False)"
A=""; isset A && echo isset; is_set A || echo not-is_set; isset NOPE_X || echo unset
vercmp 1.10 ">" 1.9 && echo gt; vercmp 2.0 "<=" 2.0 && echo le; vercmp 3 "<" 2 || echo not-lt
function_exists iniset && echo fn; function_exists nope_fn || echo no-fn
LIBS_FROM_GIT=oslo.config,nova; use_library_from_git nova && echo git; use_library_from_git nov || echo pypi
DEVSTACK_VENV=/v; echo "$(get_python_exec_prefix)"; GLOBAL_VENV=False; echo "$(get_python_exec_prefix)"
echo "$(get_extra_file file:///tmp/x.img)"
is_package_installed bash && echo bash-installed
is_package_installed devstack-no-such-package-xyz || echo missing
deprecated "old thing"; echo "[$DEPRECATED_TEXT]" | tr '\n' ' '; echo
echo_summary "a summary line"
"#,
    );
    run.success();
    assert_eq!(
        lines(&run),
        [
            "id",
            "abc",
            "16",
            "hex",
            "10",
            "isset",
            "not-is_set",
            "unset",
            "gt",
            "le",
            "not-lt",
            "fn",
            "no-fn",
            "git",
            "pypi",
            "/v/bin",
            "/usr/local/bin",
            "/tmp/x.img",
            "bash-installed",
            "missing",
            "[ old thing] ",
            "a summary line",
        ],
        "stderr: {}",
        run.stderr
    );
    assert!(run.stderr.contains("WARNING: old thing"), "{}", run.stderr);
}

#[test]
fn stack_install_service_calls_install_function_or_dies() {
    let tree = Tree::new();
    let run = lib(
        &tree,
        "install_foo() { echo installing foo; }\nstack_install_service foo\nstack_install_service bar\necho not-reached",
    );
    assert_eq!(run.status, 1);
    assert_eq!(lines(&run), ["installing foo"]);
    assert!(
        run.stderr
            .contains("No function declared with name 'install_bar'."),
        "{}",
        run.stderr
    );
}

#[test]
fn hypervisor_fake_configures_nova() {
    let tree = Tree::new();
    let conf = tree.path("nova.conf");
    let run = lib(
        &tree,
        &format!(
            "NOVA_CONF={}\nsource lib/nova_plugins/hypervisor-fake\ninstall_nova_hypervisor && configure_nova_hypervisor && start_nova_hypervisor && stop_nova_hypervisor && cleanup_nova_hypervisor && echo ok",
            conf.display()
        ),
    );
    run.success();
    assert_eq!(lines(&run), ["ok"]);
    let text = std::fs::read_to_string(&conf).unwrap();
    assert!(
        text.contains("[DEFAULT]\ncompute_driver = fake.FakeDriverWithoutFakeNodes\n"),
        "{text}"
    );
    assert!(
        text.contains("[quota]\ndriver = nova.quota.NoopQuotaDriver\n"),
        "{text}"
    );
}
