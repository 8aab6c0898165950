//! Layer 1 with the real servers (issue 3): MariaDB, PostgreSQL, RabbitMQ, and
//! processes a plugin starts with run_process. Needs the Debian packages that
//! run_tests.sh installs (mariadb-server, mariadb-client, postgresql,
//! postgresql-client, rabbitmq-server, memcached, python3-pika). Tests that use the
//! servers share their ports, so they take one lock.

use std::path::Path;
use std::process::Command;
use std::sync::Mutex;

use crate::Tree;

static SERVERS: Mutex<()> = Mutex::new(());

/// Held while a test uses the real servers: a mutex for this test binary and a file
/// lock for other test runs on the same machine (they share the ports).
pub(crate) struct ServerLock {
    _flock: nix::fcntl::Flock<std::fs::File>,
    _guard: std::sync::MutexGuard<'static, ()>,
}

pub(crate) fn lock() -> ServerLock {
    let guard = SERVERS
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let file = std::fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(std::env::temp_dir().join("devstack-rs-layer1-tests.lock"))
        .expect("lock file");
    let flock = nix::fcntl::Flock::lock(file, nix::fcntl::FlockArg::LockExclusive)
        .map_err(|(_, e)| e)
        .expect("flock");
    ServerLock {
        _flock: flock,
        _guard: guard,
    }
}

/// A live (not zombie) process?
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat")).is_ok_and(|s| {
        let rest = &s[s.rfind(')').unwrap() + 2..];
        !rest.starts_with('Z') && !rest.starts_with('X')
    })
}

/// Live processes whose command line contains `needle`.
fn processes_matching(needle: &str) -> Vec<u32> {
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| {
            std::fs::read(format!("/proc/{pid}/cmdline")).is_ok_and(|c| {
                String::from_utf8_lossy(&c)
                    .replace('\0', " ")
                    .contains(needle)
            })
        })
        .filter(|&pid| alive(pid))
        .collect()
}

/// The pids `devstack status` shows (second-to-last-but-two column).
fn status_pids(stdout: &str) -> Vec<(String, u32)> {
    stdout
        .lines()
        .skip(1)
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            Some((f.first()?.to_string(), f.get(2)?.parse().ok()?))
        })
        .collect()
}

/// Splits `scheme://user:pass@host[:port]/db?...`.
fn url_parts(url: &str) -> (String, String, String, String) {
    let rest = url.split_once("://").unwrap().1;
    let (cred, rest) = rest.split_once('@').unwrap();
    let (user, pass) = cred.split_once(':').unwrap();
    let (host, path) = rest.split_once('/').unwrap();
    let db = path.split('?').next().unwrap();
    (user.into(), pass.into(), host.into(), db.into())
}

fn output(cmd: &mut Command) -> (bool, String) {
    let out = cmd.output().expect("run");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.success(), text)
}

/// A plugin fixture: creates a database, writes the URLs it was given, starts a
/// supervised process whose command line carries `marker`.
fn plugin(marker: &str) -> String {
    format!(
        "if [[ $1 == stack && $2 == install ]]; then\n\
         \x20   recreate_database plugdb\n\
         \x20   database_connection_url plugdb > \"$TRACE_FILE.db\"\n\
         \x20   get_transport_url > \"$TRACE_FILE.mq\"\n\
         \x20   run_process plugin-sleeper \"exec -a {marker} /bin/sleep 1000\"\n\
         \x20   is_running plugin-sleeper\n\
         fi\n"
    )
}

fn read_trimmed(path: &Path) -> String {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .trim()
        .to_owned()
}

fn amqp_round_trip(url: &str) {
    let script = r#"
import sys, pika
url = sys.argv[1]
params = pika.URLParameters(url)
conn = pika.BlockingConnection(params)
ch = conn.channel()
ch.queue_declare(queue="devstack-rs-test", auto_delete=True)
ch.basic_publish(exchange="", routing_key="devstack-rs-test", body=b"hello layer 1")
for _ in range(50):
    m, props, body = ch.basic_get(queue="devstack-rs-test", auto_ack=True)
    if body is not None:
        print(body.decode())
        break
    conn.sleep(0.1)
conn.close()
"#;
    let (ok, text) = output(Command::new("/usr/bin/python3").args(["-c", script, url]));
    assert!(
        ok && text.contains("hello layer 1"),
        "AMQP publish/consume failed:\n{text}"
    );
}

/// Is `service` listed as running in `devstack status`'s output?
fn listed_running(status: &str, service: &str) -> bool {
    status
        .lines()
        .any(|l| l.starts_with(service) && l.contains("running"))
}

/// `devstack status` says nothing is recorded.
fn assert_nothing_recorded(tree: &Tree) {
    let status = tree.devstack(&["status"]);
    assert!(
        status.stdout.contains("nothing recorded"),
        "{}",
        status.stdout
    );
}

/// A tree with `services` and the [`plugin`] fixture enabled, stacked; returns the
/// tree and the plugin process's marker.
fn stacked_with_plugin(services: &str, marker: &str) -> (Tree, String) {
    let tree = Tree::new();
    let marker = format!("{marker}-{}", std::process::id());
    tree.local_conf(
        &format!(
            "disable_all_services\nenable_service {services} plugin-sleeper\nSERVICE_TIMEOUT=90"
        ),
        "",
    );
    tree.extras("50-plugin.sh", &plugin(&marker));
    forget_earlier_runs(&tree, services);
    tree.devstack(&["stack"]).success();
    (tree, marker)
}

/// The machine's server keeps what an earlier, uncleaned run made (root's TCP
/// logins, the plugin's database); stack records only what it creates, so the
/// test starts from a server without them to see clean drop exactly those.
fn forget_earlier_runs(tree: &Tree, services: &str) {
    let Some(service) = services.split_whitespace().next() else {
        return;
    };
    let sql = match service {
        "mysql" => {
            "mariadb --no-defaults -e \"DROP DATABASE IF EXISTS plugdb; DROP USER IF EXISTS 'root'@'%'; DROP USER IF EXISTS 'root'@'127.0.0.1'\""
        }
        "postgresql" => {
            "runuser -u postgres -- psql -X -q -c 'DROP DATABASE IF EXISTS plugdb' -c 'DROP ROLE IF EXISTS root'"
        }
        _ => return,
    };
    let logs = tempfile::tempdir().expect("temp dir");
    server_query(tree, service, sql, logs.path());
}

/// Outside a run (before stack, after clean): starts `service` through the shell
/// library (start_service), runs `query` (a shell command), stops it; the query's
/// output.
fn query_machine_server(tree: &Tree, service: &str, query: &str) -> String {
    server_query(tree, service, query, &tree.dest.join("logs"))
}

fn server_query(tree: &Tree, service: &str, query: &str, logs: &std::path::Path) -> String {
    let script = format!(
        "source functions\nLOGDIR={logs}\nDATA_DIR={data}\nDATABASE_HOST=127.0.0.1\nSERVICE_TIMEOUT=60\n\
         start_service {service} || exit 9\n\
         {query}\n\
         stop_service {service}\n",
        logs = logs.display(),
        data = tree.dest.join("data").display(),
    );
    let run = tree.bash(&script);
    run.success();
    run.stdout.trim().to_owned()
}

/// `unstack --all`: none of the processes `status` listed is left.
fn unstack_all_stops(tree: &Tree, pids: &[(String, u32)]) {
    tree.devstack(&["unstack", "--all"]).success();
    for (name, pid) in pids {
        assert!(
            !alive(*pid),
            "{name} (pid {pid}) still runs after unstack --all"
        );
    }
}

/// What every backend test checks after stack: status, unstack (plugin process
/// stopped, servers kept), unstack --all (none of our processes left).
fn status_then_teardown(tree: &Tree, marker: &str, servers: &[&str]) {
    let status = tree.devstack(&["status"]);
    status.success();
    for s in servers.iter().chain(["plugin-sleeper"].iter()) {
        assert!(
            listed_running(&status.stdout, s),
            "{s} not running:\n{}",
            status.stdout
        );
    }
    let pids = status_pids(&status.stdout);
    assert_eq!(processes_matching(marker).len(), 1);

    tree.devstack(&["unstack"]).success();
    assert!(
        processes_matching(marker).is_empty(),
        "unstack left the plugin's process"
    );
    let status = tree.devstack(&["status"]);
    for s in servers {
        assert!(listed_running(&status.stdout, s), "{}", status.stdout);
    }

    unstack_all_stops(tree, &pids);
    assert_nothing_recorded(tree);
}

#[test]
#[ignore = "reason: starts real servers (root, the machine's ports): ./run_tests.sh runs it"]
fn mysql_and_rabbit_real_servers_stack_serve_and_go_away() {
    let _guard = lock();
    let t0 = std::time::Instant::now();
    let (tree, marker) = stacked_with_plugin("mysql rabbit", "ds-test-sleeper");
    eprintln!("stack mysql+rabbit: {:.1} s", t0.elapsed().as_secs_f64());

    // The database the plugin made answers to the URL it was given.
    let url = read_trimmed(&tree.trace.with_extension("db"));
    assert!(
        url.starts_with("mysql+pymysql://") && url.ends_with("/plugdb?charset=utf8"),
        "{url}"
    );
    let (user, pass, host, db) = url_parts(&url);
    let (ok, text) = output(
        Command::new("mariadb")
            .args([
                "--protocol=TCP",
                "-h",
                &host,
                "-u",
                &user,
                &db,
                "--batch",
                "--skip-column-names",
                "-e",
            ])
            .arg("CREATE TABLE t (x INT); INSERT INTO t VALUES (42); SELECT x FROM t;")
            .env("MYSQL_PWD", &pass),
    );
    assert!(ok && text.trim() == "42", "{text}");
    // The password never reached the run log.
    let log = std::fs::read_to_string(tree.dest.join("logs/stack.sh.log")).unwrap();
    assert!(!log.contains(&pass), "the database password is in the log");

    // Publish and consume with the credentials get_transport_url gave.
    let mq = read_trimmed(&tree.trace.with_extension("mq"));
    assert!(
        mq.starts_with("rabbit://") && mq.ends_with(":5672/"),
        "{mq}"
    );
    amqp_round_trip(&mq.replacen("rabbit://", "amqp://", 1));

    // Stacking again reuses the running servers: still one of each.
    let pids_before = status_pids(&tree.devstack(&["status"]).stdout);
    tree.devstack(&["stack"]).success();
    let pids_after = status_pids(&tree.devstack(&["status"]).stdout);
    let servers = |p: &[(String, u32)]| {
        p.iter()
            .filter(|(n, _)| n != "plugin-sleeper")
            .cloned()
            .collect::<Vec<_>>()
    };
    assert_eq!(servers(&pids_before), servers(&pids_after));
    assert_eq!(
        processes_matching(&marker).len(),
        1,
        "one plugin process after two stacks"
    );

    let t0 = std::time::Instant::now();
    status_then_teardown(&tree, &marker, &["mysql", "rabbit"]);
    eprintln!(
        "status + unstack + unstack --all: {:.1} s",
        t0.elapsed().as_secs_f64()
    );

    // A port taken by a foreign program is named.
    {
        let _foreign = std::net::TcpListener::bind("127.0.0.1:3306")
            .expect("3306 is free after unstack --all");
        let run = tree.devstack(&["stack"]);
        run.failure();
        assert!(run.stderr.contains("3306"), "{}", run.stderr);
    }

    tree.devstack(&["stack"]).success();
    tree.devstack(&["clean"]).success();
    assert!(
        !tree.dest.join("logs").exists(),
        "clean left the log directory"
    );
    assert!(!tree.path(".devstack/state.json").exists());

    // The database and the user are gone.
    let left = query_machine_server(
        &tree,
        "mysql",
        &format!(
            // DATABASE_USER is root (DevStack's): root@localhost stays (the socket
            // login); the password logins stack added must be gone.
            "mariadb --no-defaults --batch --skip-column-names -e \"SHOW DATABASES LIKE 'plugdb'; SELECT user FROM mysql.user WHERE user='{user}' AND host IN ('%', '127.0.0.1')\""
        ),
    );
    assert_eq!(left, "", "clean left a database or user: {left}");
    assert!(
        processes_matching("mariadbd").iter().all(|p| !alive(*p))
            || processes_matching("mariadbd").is_empty()
    );
}

#[test]
#[ignore = "reason: starts real servers (root, the machine's ports): ./run_tests.sh runs it"]
fn postgresql_real_server_stacks_serves_and_goes_away() {
    let _guard = lock();
    let (tree, marker) = stacked_with_plugin("postgresql", "ds-test-pg-sleeper");

    let url = read_trimmed(&tree.trace.with_extension("db"));
    assert!(
        url.starts_with("postgresql://") && url.ends_with("/plugdb?client_encoding=utf8"),
        "{url}"
    );
    let (user, pass, host, db) = url_parts(&url);
    let (ok, text) = output(
        Command::new("psql")
            .args(["-X", "-tA", "-h", &host, "-U", &user, "-d", &db, "-c"])
            .arg("CREATE TABLE t (x INT); INSERT INTO t VALUES (42); SELECT x FROM t;")
            .env("PGPASSWORD", &pass),
    );
    assert!(ok && text.trim().ends_with("42"), "{text}");

    status_then_teardown(&tree, &marker, &["postgresql"]);
    tree.devstack(&["stack"]).success();
    tree.devstack(&["clean"]).success();
    assert!(!tree.dest.join("logs").exists());

    let left = query_machine_server(
        &tree,
        "postgresql",
        &format!(
            "runuser -u postgres -- psql -X -tA -c \"SELECT datname FROM pg_database WHERE datname='plugdb' UNION ALL SELECT rolname FROM pg_roles WHERE rolname='{user}'\""
        ),
    );
    assert_eq!(left, "", "clean left a database or role: {left}");
}

#[test]
#[ignore = "reason: starts real servers (root, the machine's ports): ./run_tests.sh runs it"]
fn memcached_answers_when_keystone_needs_it() {
    let _guard = lock();
    let tree = Tree::new();
    tree.local_conf("disable_all_services\nenable_service memcached", "");
    tree.devstack(&["stack"]).success();
    let (ok, text) = output(Command::new("bash").args([
        "-c",
        "exec 3<>/dev/tcp/127.0.0.1/11211; printf 'version\\r\\n' >&3; head -c 8 <&3",
    ]));
    assert!(ok && text.starts_with("VERSION"), "{text}");
    let status = tree.devstack(&["status"]);
    status.success();
    unstack_all_stops(&tree, &status_pids(&status.stdout));
    tree.devstack(&["clean"]).success();
}

/// No servers: a plugin's run_process alone (no lock needed).
#[test]
fn a_plugins_run_process_is_supervised_and_stopped_by_unstack() {
    let tree = Tree::new();
    let marker = format!("ds-test-only-sleeper-{}", std::process::id());
    tree.local_conf("disable_all_services\nenable_service only-sleeper", "");
    tree.extras(
        "50-plugin.sh",
        &format!(
            "if [[ $1 == stack && $2 == extra ]]; then\n\
             \x20   run_process only-sleeper \"exec -a {marker} /bin/sleep 1000\" '' '' 'GREETING=hi'\n\
             \x20   run_process not-enabled \"/bin/sleep 1000\"\n\
             fi\n"
        ),
    );
    tree.devstack(&["stack"]).success();
    let status = tree.devstack(&["status"]);
    status.success();
    assert!(
        status.stdout.contains("only-sleeper") && !status.stdout.contains("not-enabled"),
        "{}",
        status.stdout
    );
    let pids = processes_matching(&marker);
    assert_eq!(pids.len(), 1);
    let env = std::fs::read(format!("/proc/{}/environ", pids[0])).unwrap();
    assert!(String::from_utf8_lossy(&env).contains("GREETING=hi"));
    // It runs in its own process group, detached from the devstack process.
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pids[0])).unwrap();
    let pgrp: u32 = stat[stat.rfind(')').unwrap() + 2..]
        .split_whitespace()
        .nth(2)
        .unwrap()
        .parse()
        .unwrap();
    assert_eq!(pgrp, pids[0]);
    assert!(tree.dest.join("logs/only-sleeper.log").exists());
    tree.devstack(&["unstack"]).success();
    assert!(processes_matching(&marker).is_empty());
    assert_nothing_recorded(&tree);
}

/// A process that dies makes `status` fail and say so.
#[test]
fn status_fails_when_a_recorded_process_died() {
    let tree = Tree::new();
    tree.local_conf("disable_all_services\nenable_service short-lived", "");
    tree.extras(
        "50-plugin.sh",
        "if [[ $1 == stack && $2 == extra ]]; then\n    run_process short-lived \"/bin/sh -c 'echo bye; exit 3'\"\nfi\n",
    );
    tree.devstack(&["stack"]).success();
    std::thread::sleep(std::time::Duration::from_millis(300));
    let status = tree.devstack(&["status"]);
    status.failure();
    assert!(
        status.stdout.contains("short-lived") && status.stdout.contains("failed"),
        "{}",
        status.stdout
    );
    let logs = tree.devstack(&["logs", "short-lived"]);
    logs.success();
    assert_eq!(logs.stdout, "bye\n");
    tree.devstack(&["unstack"]).success();
}

/// Links of the root namespace whose name is `name`.
fn link_exists(name: &str) -> bool {
    Path::new("/sys/class/net").join(name).exists()
}

#[test]
#[ignore = "reason: starts Open vSwitch and OVN (root, /var/run/openvswitch, the machine's bridges): ./run_tests.sh runs it"]
fn ovs_and_ovn_daemons_start_register_the_chassis_and_leave_nothing() {
    let _guard = lock();
    let tree = Tree::new();
    tree.local_conf(
        "disable_all_services\nenable_service ovn-northd ovn-controller",
        "",
    );
    let t0 = std::time::Instant::now();
    tree.devstack(&["stack"]).success();
    eprintln!("stack ovs+ovn: {:.1} s", t0.elapsed().as_secs_f64());
    let status = tree.devstack(&["status"]);
    status.success();
    for s in [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovn-ovsdb-server-nb",
        "ovn-ovsdb-server-sb",
        "ovn-northd",
        "ovn-controller",
    ] {
        assert!(listed_running(&status.stdout, s), "{s}:\n{}", status.stdout);
    }
    let datapath = if Path::new("/sys/module/openvswitch").exists() {
        "system"
    } else {
        "netdev"
    };
    assert!(
        status.stdout.contains(&format!("datapath: {datapath}")),
        "{}",
        status.stdout
    );
    // The chassis registered, with this host's name and a geneve encap.
    let (ok, chassis) = output(Command::new("ovn-sbctl").args(["--timeout=5", "show"]));
    assert!(ok && chassis.contains("Encap geneve"), "{chassis}");
    let (ok, dp) = output(Command::new("ovs-vsctl").args([
        "--timeout=5",
        "get",
        "Bridge",
        "br-int",
        "datapath_type",
    ]));
    assert!(ok && dp.trim() == datapath, "{dp}");
    let (ok, tcp) =
        output(Command::new("ovn-nbctl").args(["--timeout=5", "--db=tcp:127.0.0.1:6641", "show"]));
    assert!(ok, "the northbound database answers on tcp: {tcp}");
    let pids = status_pids(&status.stdout);

    // Plain unstack stops them (DevStack's stop_neutron stops OVN), bridges gone.
    tree.devstack(&["unstack"]).success();
    for (name, pid) in &pids {
        assert!(!alive(*pid), "{name} (pid {pid}) still runs after unstack");
    }
    assert!(!link_exists("br-int"), "unstack left br-int");
    assert!(!link_exists("ovs-netdev"), "unstack left ovs-netdev");
    tree.devstack(&["clean"]).success();
    assert!(!tree.dest.join("data/ovn").exists());
    assert!(!tree.dest.join("data/ovs").exists());
    for d in [
        "ovsdb-server",
        "ovs-vswitchd",
        "ovn-northd",
        "ovn-controller",
    ] {
        assert!(processes_matching(d).is_empty(), "{d} still runs");
    }
}

/// Host-wide names (the metadata agent's `ovnmeta-*` namespaces, the public veth) are
/// touched only by the tree whose state says it made them: another tree's unstack
/// (a test's, a second checkout's) leaves a running cloud's networking alone.
#[test]
#[ignore = "reason: creates a network namespace (root): ./run_tests.sh runs it"]
fn another_trees_unstack_leaves_the_hosts_metadata_namespaces_alone() {
    let ns = format!("ovnmeta-ds-test-{}", std::process::id());
    let ip = |args: &[&str]| Command::new("ip").args(args).status().unwrap().success();
    assert!(ip(&["netns", "add", &ns]));
    let tree = Tree::new();
    // The default services (neutron with the OVN metadata agent), never stacked here.
    tree.local_conf("", "");
    let unstack = tree.devstack(&["unstack", "--all"]);
    let clean = tree.devstack(&["clean"]);
    let still_there = std::path::Path::new("/var/run/netns").join(&ns).exists();
    ip(&["netns", "del", &ns]);
    unstack.success();
    clean.success();
    assert!(still_there, "another tree's unstack or clean deleted {ns}");
}
