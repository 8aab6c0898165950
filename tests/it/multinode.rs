//! Multi-node, DevStack's subnode model: a compute node's local.conf (only
//! compute-side services, SERVICE_HOST naming the controller) plans exactly that,
//! with every address derived by the real defaults from those few settings; a
//! compute node left on the loopback address is refused before anything runs.

use crate::Tree;

const SUBNODE_SERVICES: &str =
    "n-cpu,placement-client,ovn-controller,ovs-vswitchd,ovsdb-server,q-ovn-agent";

fn subnode_localrc(service_host: &str) -> String {
    format!(
        "HOST_IP=10.20.0.12\nSERVICE_HOST={service_host}\nDATABASE_HOST=$SERVICE_HOST\n\
         RABBIT_HOST=$SERVICE_HOST\nGLANCE_HOSTPORT=$SERVICE_HOST:9292\nQ_HOST=$SERVICE_HOST\n\
         ENABLE_CHASSIS_AS_GW=False\nENABLED_SERVICES={SUBNODE_SERVICES}\n\
         RABBIT_PASSWORD=rabbit-secret\n"
    )
}

#[test]
fn a_subnode_plans_only_its_compute_services_pointed_at_the_controller() {
    let t = Tree::new();
    t.local_conf(&subnode_localrc("10.20.0.11"), "");
    let run = t.devstack(&["plan"]);
    run.success();
    let out = &run.stdout;
    for want in [
        "node: compute (DevStack's subnode) of the controller at 10.20.0.11",
        "  database  10.20.0.11 (DATABASE_HOST)",
        "  messaging rabbit://stackrabbit@10.20.0.11:5672/",
        // KEYSTONE_SERVICE_URI and Q_META_DATA_IP follow SERVICE_HOST by default.
        "  identity  http://10.20.0.11/identity",
        "  image     10.20.0.11:9292 (GLANCE_HOSTPORT)",
        "  nova      my_ip=10.20.0.12",
        "  ovn       ovn-remote=tcp:10.20.0.11:6642 ovn-encap-type=geneve \
         ovn-encap-ip=10.20.0.12 gateway chassis: no",
        "  metadata  q-ovn-agent asks nova's metadata API at 10.20.0.11:8775",
    ] {
        assert!(out.contains(want), "{want}\nnot in\n{out}");
    }
    // The services of each step: only the compute side.
    let start = out.split("start services\n").nth(1).unwrap_or_default();
    let started: Vec<&str> = start
        .lines()
        .take_while(|l| l.starts_with("      "))
        .map(str::trim)
        .collect();
    assert_eq!(
        started,
        [
            "placement-client",
            "ovn",
            "neutron-agent",
            "nova",
            "start_nova_hypervisor"
        ],
        "{out}"
    );
    for absent in [
        "      mysql",
        "      rabbit",
        "      keystone",
        "      placement\n",
        "      glance",
        "      neutron\n",
        "      images",
        "      credentials",
        "      memcached",
    ] {
        assert!(
            !out.contains(absent),
            "{absent:?} in a subnode's plan:\n{out}"
        );
    }
    assert!(!out.contains("rabbit-secret"), "{out}");
}

#[test]
fn a_controller_with_subnodes_says_where_its_services_listen() {
    let t = Tree::new();
    t.local_conf("HOST_IP=10.20.0.11\nSERVICE_HOST=10.20.0.11\n", "");
    let run = t.devstack(&["plan"]);
    run.success();
    assert!(
        run.stdout.contains(
            "node: controller at 10.20.0.11 (compute nodes set SERVICE_HOST to it); its \
             services listen on 10.20.0.11 (SERVICE_LISTEN_ADDRESS), OVN's databases on \
             tcp:10.20.0.11:6641 and tcp:10.20.0.11:6642"
        ),
        "{}",
        run.stdout
    );
}

#[test]
fn a_subnode_on_the_loopback_address_is_refused_before_anything_runs() {
    let t = Tree::new();
    t.local_conf(
        &format!("ENABLED_SERVICES={SUBNODE_SERVICES}\nRABBIT_PASSWORD=x\n"),
        "",
    );
    let run = t.devstack(&["plan"]);
    run.failure();
    let all = format!("{}{}", run.stdout, run.stderr);
    assert!(
        all.contains(
            "this is a compute node (no controller service is enabled) but \
                      SERVICE_HOST, DATABASE_HOST, RABBIT_HOST are the loopback address"
        ),
        "{all}"
    );
    let run = t.devstack(&["stack"]);
    run.failure();
    assert!(
        run.stderr
            .contains("SERVICE_HOST, DATABASE_HOST, RABBIT_HOST are the loopback"),
        "{}",
        run.stderr
    );
    assert!(!t.dest.join("data/venv").exists(), "the stack went on");
}

/// The playbook's own local.conf for each node, through `devstack cluster` (which
/// installs ansible-core into its venv on first use): the controller's has the
/// default services and its own address as SERVICE_HOST; a compute node's only the
/// compute-side services, SERVICE_HOST at the controller, the same shared password,
/// its per-host `local_conf_extra`; and `devstack plan` of that file is a compute node
/// of the controller.
#[test]
#[ignore = "reason: installs ansible-core from PyPI into devstack cluster's venv (about 40 s the first time): ./run_tests.sh runs it"]
fn the_playbook_writes_a_controller_and_a_compute_local_conf_that_plan_as_such() {
    let dir = tempfile::tempdir().unwrap();
    let inv = dir.path().join("hosts.ini");
    let d = dir.path().display();
    std::fs::write(
        &inv,
        format!(
            "[controller]\nctl ansible_host=10.20.0.11 devstack_tree_dir={d}/ctl\n\
             [compute]\ncpu1 ansible_host=10.20.0.12 devstack_tree_dir={d}/cpu1 \
             local_conf_extra=\"LIBVIRT_TYPE=qemu\"\n\
             [all:vars]\nansible_connection=local\nansible_python_interpreter=/usr/bin/python3\n"
        ),
    )
    .unwrap();
    for node in ["ctl", "cpu1"] {
        std::fs::create_dir_all(dir.path().join(node)).unwrap();
    }
    let out = std::process::Command::new(crate::devstack_bin())
        .args(["--top-dir"])
        .arg(crate::project_root())
        .args(["cluster", "stack", "-i"])
        .arg(&inv)
        .args([
            "--",
            "--tags",
            "config",
            "-e",
            "devstack_tree_copy=false",
            "-e",
            "devstack_become=false",
        ])
        .output()
        .unwrap();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(out.status.success(), "{said}");
    let ctl = std::fs::read_to_string(dir.path().join("ctl/local.conf")).unwrap();
    let cpu = std::fs::read_to_string(dir.path().join("cpu1/local.conf")).unwrap();
    assert!(
        ctl.contains("HOST_IP=10.20.0.11\nSERVICE_HOST=10.20.0.11\n"),
        "{ctl}"
    );
    assert!(!ctl.contains("ENABLED_SERVICES"), "{ctl}");
    assert!(
        cpu.contains("HOST_IP=10.20.0.12\nSERVICE_HOST=10.20.0.11\n"),
        "{cpu}"
    );
    assert!(
        cpu.contains(&format!("ENABLED_SERVICES={SUBNODE_SERVICES}\n")),
        "{cpu}"
    );
    assert!(cpu.contains("ENABLE_CHASSIS_AS_GW=False\n"), "{cpu}");
    assert!(cpu.contains("LIBVIRT_TYPE=qemu\n"), "{cpu}");
    assert!(
        !ctl.contains("LIBVIRT_TYPE=qemu"),
        "per-host extra leaked: {ctl}"
    );
    let password = |text: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix("RABBIT_PASSWORD="))
            .unwrap_or_default()
            .to_owned()
    };
    assert_eq!(password(&ctl).len(), 24, "{ctl}");
    assert_eq!(password(&ctl), password(&cpu));
    assert!(!said.contains(&password(&ctl)), "the password was printed");
    let t = Tree::new();
    std::fs::write(t.top.join("local.conf"), &cpu).unwrap();
    let run = t.devstack(&["plan"]);
    run.success();
    assert!(
        run.stdout
            .contains("node: compute (DevStack's subnode) of the controller at 10.20.0.11"),
        "{}",
        run.stdout
    );
    // The teardown playbooks parse.
    for action in ["unstack", "clean", "status"] {
        let out = std::process::Command::new(crate::devstack_bin())
            .arg("--top-dir")
            .arg(crate::project_root())
            .args(["cluster", action, "-i"])
            .arg(&inv)
            .args(["--", "--syntax-check"])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "{action}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
