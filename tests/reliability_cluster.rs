//! Workers on a 3-node RabbitMQ cluster of the test's own (`cluster_support`), each given
//! the nodes as a failover list: the work queue's leader node is killed mid-run and
//! restarted, then a second node is stopped for a while. The workers reconnect to live
//! nodes and carry on; every task ends pushed once, nothing is dead-lettered or left.

mod cluster_support;
mod common;
mod reliability_support;

use std::path::Path;
use std::time::Duration;

use agent_runner::amqp::{AmqpSession, TopologyNames};
use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use cluster_support::RabbitCluster;
use reliability_support::{WorkerProcess, binary_config, commits_on_branch};

const TASKS: usize = 16;
/// Each task's test step takes three seconds, so tasks are in flight when nodes go.
const SLOW_PLAYBOOK: &str = "name: slow checks\nsteps:\n  - name: unit tests\n    command: sleep 3 && sh tests/test_greet.sh\n    timeout_seconds: 60\n";

fn pushed(origin: &Path) -> Vec<usize> {
    (0..TASKS)
        .map(|i| {
            commits_on_branch(origin, "main", &format!("feature/task-greeter-c.{i}")).map_or(0, |c| c.len())
        })
        .collect()
}

async fn wait_until(what: &str, seconds: u64, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(seconds);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "not in {seconds} s: {what}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn workers_on_a_three_node_cluster_carry_on_through_leader_loss_and_a_node_down() {
    let mut cluster = tokio::task::spawn_blocking(|| RabbitCluster::start("leader")).await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let origin = dir.path().join("origin.git");
    let mut files: Vec<(&str, &str)> =
        sample::SAMPLE_FILES.iter().copied().filter(|(path, _)| !path.ends_with("playbook.yaml")).collect();
    files.push((".necrocode/playbook.yaml", SLOW_PLAYBOOK));
    sample::create_origin(&origin, "main", &files).unwrap();
    let answer = sample::scripted_answer();
    let llm = scripted::start(Script::responder(move |_| answer.clone())).await.unwrap();

    let names =
        TopologyNames::isolated(&format!("test.cluster.{}", &uuid::Uuid::new_v4().simple().to_string()[..8]));
    let session = AmqpSession::connect(&cluster.url_list(0), "cluster-test").await.unwrap();
    session.declare(&names).await.unwrap();
    assert_eq!(cluster.members_of(&names.work_queue, 0), 3, "the work queue is replicated on every node");
    for i in 0..TASKS {
        let task = sample::sample_task(&format!("file://{}", origin.display()), &format!("c.{i}"));
        session.publish_task(&names, "task.backend", &serde_json::to_vec(&task).unwrap()).await.unwrap();
    }

    // Two workers, each with every node, starting from different ones.
    let mut workers = Vec::new();
    for (label, first) in [("1", 0), ("2", 1)] {
        let worker_dir = dir.path().join(format!("worker-{label}"));
        std::fs::create_dir_all(&worker_dir).unwrap();
        let top = format!(
            "runner_id: cluster-worker-{label}\npool_dir: {}\nartifact_store_url: file://{}\nplaybooks_dir: {}\n\
             llm:\n  endpoint: {}\n{}",
            worker_dir.join("slots").display(),
            dir.path().join("artifacts").display(),
            Path::new(env!("CARGO_MANIFEST_DIR")).join("playbooks").display(),
            llm.base_url(),
            common::local_remotes_yaml(dir.path()),
        );
        let config = binary_config(&names, &cluster.url_list(first), &top)
            .replace("  url:", "  concurrency: 1\n  url:");
        std::fs::write(worker_dir.join("c.yaml"), config).unwrap();
        workers.push(WorkerProcess::start(&worker_dir, label, &[]));
    }

    wait_until("two tasks pushed", 120, || pushed(&origin).iter().filter(|c| **c > 0).count() >= 2).await;
    let leader = cluster.leader_of(&names.work_queue, 0).expect("the work queue has a leader");
    let before = pushed(&origin).iter().filter(|c| **c > 0).count();
    eprintln!("killing the work queue's leader, node {leader}, with {before} of {TASKS} tasks pushed");
    let origin_path = origin.clone();
    let (leader_name, cluster) = tokio::task::spawn_blocking(move || {
        let origin = origin_path;
        cluster.kill_node(leader);
        std::thread::sleep(Duration::from_secs(2));
        cluster.start_node(leader);
        // A second node away for a while: the other two keep the quorum.
        let other = (leader + 1) % 3;
        eprintln!(
            "stopping node {other} with {} of {TASKS} tasks pushed",
            pushed(&origin).iter().filter(|c| **c > 0).count()
        );
        cluster.stop_node(other);
        std::thread::sleep(Duration::from_secs(5));
        cluster.start_node(other);
        (cluster.nodes[leader].name.clone(), cluster)
    })
    .await
    .unwrap();

    let after = pushed(&origin).iter().filter(|c| **c > 0).count();
    eprintln!("nodes back, {after} of {TASKS} tasks pushed");
    wait_until("every task pushed", 240, || pushed(&origin).iter().all(|c| *c > 0)).await;
    assert_eq!(pushed(&origin), vec![1; TASKS], "each task pushed exactly once");
    let check = AmqpSession::connect(&cluster.url_list(2), "cluster-check").await.unwrap();
    let mut depths = (u32::MAX, u32::MAX);
    for _ in 0..100 {
        depths = (
            check.ready_count(&names.work_queue).await.unwrap(),
            check.ready_count(&names.dead_letter_queue).await.unwrap(),
        );
        if depths == (0, 0) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    assert_eq!(depths, (0, 0), "work queue and DLQ empty");
    for worker in &workers {
        worker.terminate();
    }
    let mut reconnects = 0;
    for (label, worker) in ["1", "2"].into_iter().zip(workers) {
        let status = worker.wait(Duration::from_secs(60)).await;
        let log =
            std::fs::read_to_string(dir.path().join(format!("worker-{label}/worker-{label}.log"))).unwrap();
        assert!(status.success(), "worker {label}: {status:?}\n{log}");
        reconnects += log.matches("connected to another broker node").count();
    }
    assert!(reconnects > 0, "some worker moved to another node after {leader_name} went");
    check.delete(&names).await.unwrap();
}
