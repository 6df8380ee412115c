//! A RabbitMQ cluster of a test's own (three nodes, or any number), on local ports: distinct node names, ports
//! and data directories, joined by classic peer discovery at boot, no plugins. The
//! machine's shared broker is never touched (its nodes only share the host's epmd).
//!
//! Nodes run as the `rabbitmq` user (Debian's `rabbitmq-server` switches to it), so the
//! data directories are handed to that user; the cluster needs root to start, as the
//! test machines run the suite. Killing a node is `kill -9` of its Erlang VM; stopping
//! one is `rabbitmqctl stop`; both come back with `start_node` and rejoin.
#![allow(dead_code)]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// How long a node may take to boot (or to rejoin after a restart).
const BOOT_LIMIT: Duration = Duration::from_secs(120);

pub struct RabbitCluster {
    dir: tempfile::TempDir,
    pub nodes: Vec<Node>,
}

pub struct Node {
    pub name: String,
    pub amqp_port: u16,
    dist_port: u16,
    dir: PathBuf,
    wrapper: Option<Child>,
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// `rabbitmqctl -n NODE ARGS…`, its output; panics naming the call when it fails.
pub fn rabbitmqctl(node: &str, args: &[&str]) -> String {
    let output = Command::new("rabbitmqctl").arg("-q").arg("-n").arg(node).args(args).output().unwrap();
    assert!(
        output.status.success(),
        "rabbitmqctl -n {node} {args:?}: {}{}",
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout).into_owned()
}

impl Node {
    fn start(&mut self) {
        let wrapper = Command::new("rabbitmq-server")
            .env("RABBITMQ_NODENAME", &self.name)
            .env("RABBITMQ_DIST_PORT", self.dist_port.to_string())
            .env("RABBITMQ_CONFIG_FILE", self.dir.join("rabbitmq.conf"))
            .env("RABBITMQ_ENABLED_PLUGINS_FILE", self.dir.join("enabled_plugins"))
            .env("RABBITMQ_MNESIA_BASE", self.dir.join("mnesia"))
            .env("RABBITMQ_LOG_BASE", self.dir.join("log"))
            .env("RABBITMQ_PID_FILE", self.dir.join("pid"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("rabbitmq-server (scripts/setup installs it)");
        self.wrapper = Some(wrapper);
    }

    /// Waits until the node runs; `await_startup` alone fails at once for a node not
    /// yet registered with epmd, so it is asked again until the node's VM is up.
    fn await_startup(&mut self) {
        let deadline = std::time::Instant::now() + BOOT_LIMIT;
        loop {
            let asked = Command::new("rabbitmqctl")
                .args(["-q", "-n", &self.name, "await_startup", "--timeout", "10"])
                .output()
                .unwrap();
            if asked.status.success() {
                return;
            }
            let exited = self.wrapper.as_mut().and_then(|w| w.try_wait().ok().flatten());
            let log = std::fs::read_dir(self.dir.join("log"))
                .into_iter()
                .flatten()
                .flatten()
                .filter_map(|e| std::fs::read_to_string(e.path()).ok())
                .collect::<String>();
            assert!(exited.is_none(), "node {} exited ({exited:?}) while booting:\n{log}", self.name);
            assert!(std::time::Instant::now() < deadline, "node {} did not boot:\n{log}", self.name);
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// The Erlang VM's pid, from the pid file the node writes.
    fn vm_pid(&self) -> Option<i32> {
        std::fs::read_to_string(self.dir.join("pid")).ok()?.trim().parse().ok()
    }

    fn reap(&mut self) {
        if let Some(mut wrapper) = self.wrapper.take() {
            let _ = wrapper.kill();
            let _ = wrapper.wait();
        }
    }

    /// `amqp://guest:guest@127.0.0.1:PORT/%2f`.
    pub fn url(&self) -> String {
        format!("amqp://guest:guest@127.0.0.1:{}/%2f", self.amqp_port)
    }
}

impl RabbitCluster {
    /// Boots three nodes named after `label` and waits until all run as one cluster.
    pub fn start(label: &str) -> RabbitCluster {
        Self::start_nodes(label, 3)
    }

    /// Boots `count` nodes named after `label` and waits until all run as one cluster.
    pub fn start_nodes(label: &str, count: usize) -> RabbitCluster {
        let dir = tempfile::tempdir().unwrap();
        let suffix = &uuid::Uuid::new_v4().simple().to_string()[..6];
        let names: Vec<String> = (1..=count).map(|i| format!("ar-{label}-{suffix}-{i}@localhost")).collect();
        let mut nodes = Vec::new();
        for name in &names {
            let node_dir = dir.path().join(name.split('@').next().unwrap_or("node"));
            std::fs::create_dir_all(&node_dir).unwrap();
            let amqp_port = free_port();
            let mut conf = format!(
                "listeners.tcp.default = {amqp_port}\nloopback_users = none\n\
                 cluster_formation.peer_discovery_backend = classic_config\n"
            );
            for (i, peer) in names.iter().enumerate() {
                conf.push_str(&format!("cluster_formation.classic_config.nodes.{} = {peer}\n", i + 1));
            }
            std::fs::write(node_dir.join("rabbitmq.conf"), conf).unwrap();
            std::fs::write(node_dir.join("enabled_plugins"), "[].\n").unwrap();
            nodes.push(Node {
                name: name.clone(),
                amqp_port,
                dist_port: free_port(),
                dir: node_dir,
                wrapper: None,
            });
        }
        let chown = Command::new("chown").args(["-R", "rabbitmq:rabbitmq"]).arg(dir.path()).status().unwrap();
        assert!(chown.success(), "the cluster's directories must belong to the rabbitmq user");
        let mut cluster = RabbitCluster { dir, nodes };
        for node in &mut cluster.nodes {
            node.start();
        }
        for node in &mut cluster.nodes {
            node.await_startup();
        }
        let status = rabbitmqctl(&cluster.nodes[0].name, &["cluster_status", "--formatter", "json"]);
        let status: serde_json::Value = serde_json::from_str(&status).unwrap();
        assert_eq!(status["running_nodes"].as_array().map(Vec::len), Some(count), "{status}");
        cluster
    }

    /// The nodes' URLs, comma-separated, starting at node `first` (a worker's failover list).
    pub fn url_list(&self, first: usize) -> String {
        let n = self.nodes.len();
        (0..n).map(|k| self.nodes[(first + k) % n].url()).collect::<Vec<_>>().join(",")
    }

    /// The index of the node leading quorum queue `queue`, asked of a running node.
    pub fn leader_of(&self, queue: &str, ask: usize) -> Option<usize> {
        let listed = rabbitmqctl(
            &self.nodes[ask].name,
            &["list_queues", "name", "leader", "members", "--formatter", "json"],
        );
        let queues: serde_json::Value = serde_json::from_str(&listed).ok()?;
        let leader = queues.as_array()?.iter().find(|q| q["name"] == queue)?["leader"].as_str()?.to_string();
        self.nodes.iter().position(|n| n.name == leader)
    }

    /// The members of quorum queue `queue`.
    pub fn members_of(&self, queue: &str, ask: usize) -> usize {
        let listed =
            rabbitmqctl(&self.nodes[ask].name, &["list_queues", "name", "members", "--formatter", "json"]);
        let queues: serde_json::Value = serde_json::from_str(&listed).unwrap();
        let found = queues.as_array().and_then(|q| q.iter().find(|q| q["name"] == queue).cloned());
        found.and_then(|q| q["members"].as_array().map(Vec::len)).unwrap_or(0)
    }

    /// `kill -9` of node `i`'s VM: no goodbye to its peers or clients.
    pub fn kill_node(&mut self, i: usize) {
        let node = &mut self.nodes[i];
        if let Some(pid) = node.vm_pid() {
            // SAFETY: kill(2) on the VM of a node this harness started.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
        node.reap();
        let _ = std::fs::remove_file(node.dir.join("pid"));
    }

    /// A graceful stop of node `i`.
    pub fn stop_node(&mut self, i: usize) {
        rabbitmqctl(&self.nodes[i].name, &["stop"]);
        self.nodes[i].reap();
    }

    /// Starts node `i` again and waits until it runs (it rejoins the cluster).
    pub fn start_node(&mut self, i: usize) {
        self.nodes[i].start();
        self.nodes[i].await_startup();
    }

    pub fn dir(&self) -> &Path {
        self.dir.path()
    }
}

impl Drop for RabbitCluster {
    fn drop(&mut self) {
        for i in 0..self.nodes.len() {
            self.kill_node(i);
        }
    }
}
