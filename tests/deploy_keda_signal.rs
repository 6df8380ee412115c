//! The queue depth KEDA scales on, read the way `deploy/kubernetes` configures its
//! trigger (RabbitMQ scaler, `protocol: http`, `mode: QueueLength`): the management API's
//! `messages` for the work queue. While a worker runs a task that count is 1, where a
//! passive declare (what `protocol: amqp` reads) says 0: with the AMQP signal KEDA would
//! scale the fleet in under the running task. Needs the broker's management plugin
//! (`scripts/setup` enables it).

mod common;

use std::time::Duration;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use common::Harness;
use common::processes::wait_for;
use serde_json::{Value, json};

/// The management URL the TriggerAuthentication hands KEDA, for the test broker: the
/// vhost (`/`, encoded) is its path, as in `secret.example.yaml`.
const MANAGEMENT_URL: &str = "http://guest:guest@127.0.0.1:15672/%2f";

/// How many times to read the management API before giving up: its queue figures come
/// from statistics the broker emits every few seconds, so a new count shows late.
const STATISTICS_READS: u32 = 600;
const STATISTICS_READ_PAUSE: Duration = Duration::from_millis(100);

/// `GET /api/queues/<vhost>/<queue>` as KEDA's scaler sends it: the vhost from the host
/// URL's path, the credentials from its user info.
async fn queue_info(queue: &str) -> Value {
    let base = reqwest::Url::parse(MANAGEMENT_URL).unwrap();
    let vhost = base.path().trim_start_matches('/').to_string();
    let mut url = base.clone();
    url.set_username("").unwrap();
    url.set_password(None).unwrap();
    url.set_path(&format!("/api/queues/{vhost}/{}", urlencode(queue)));
    let response = common::http_client()
        .get(url)
        .basic_auth(base.username(), base.password())
        .send()
        .await
        .expect("the management API answers (scripts/setup enables rabbitmq_management)");
    assert!(response.status().is_success(), "management API: {}", response.status());
    response.json().await.unwrap()
}

/// Queue names of ours are dotted words; encode what a path segment cannot hold.
fn urlencode(segment: &str) -> String {
    segment
        .bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'.' | b'_' | b'~' => (b as char).to_string(),
            _ => format!("%{b:02X}"),
        })
        .collect()
}

/// (messages, ready, unacknowledged) once the API reports `expected`, or as last read.
async fn queue_depth_reaching(queue: &str, expected: (u64, u64, u64)) -> (u64, u64, u64) {
    let mut seen = (u64::MAX, u64::MAX, u64::MAX);
    for _ in 0..STATISTICS_READS {
        let info = queue_info(queue).await;
        let count = |key: &str| info[key].as_u64().unwrap_or(u64::MAX);
        seen = (count("messages"), count("messages_ready"), count("messages_unacknowledged"));
        if seen == expected {
            break;
        }
        tokio::time::sleep(STATISTICS_READ_PAUSE).await;
    }
    seen
}

#[tokio::test]
async fn a_running_task_counts_in_the_queue_length_keda_reads() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("keda-signal", Script::responder(move |_| answer.clone())).await;
    let started = harness.dir.path().join("test-step-started");
    let release = harness.dir.path().join("release-test-step");
    let mut task = sample::sample_task(&harness.repo_url(), "k.1");
    // The test step holds the task (and its unacked delivery) until the test releases it.
    task["playbook"] = json!({ "name": "held", "steps": [{
        "name": "held",
        "command": format!(
            "touch {} && while [ ! -e {} ]; do sleep 0.05; done",
            started.display(),
            release.display()
        )
    }]});
    harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
    let queue = harness.names.work_queue.clone();
    assert_eq!(queue_depth_reaching(&queue, (1, 1, 0)).await, (1, 1, 0), "the queued task");

    let (report, (while_running, passive)) =
        tokio::join!(harness.run_worker(harness.config(), 1, 1), async {
            wait_for("the test step started", || started.exists()).await;
            let while_running = queue_depth_reaching(&queue, (1, 0, 1)).await;
            // What KEDA's `protocol: amqp` reads: a passive declare's message count.
            let passive = harness.session.ready_count(&queue).await.unwrap();
            let _ = std::fs::File::create(&release).unwrap();
            (while_running, passive)
        });

    assert_eq!(while_running, (1, 0, 1), "messages = ready 0 + unacknowledged 1");
    assert_eq!(passive, 0, "a passive declare does not see the running task");
    assert_eq!((report.acked, report.dead_lettered), (1, 0), "the task finished once released");
    assert_eq!(queue_depth_reaching(&queue, (0, 0, 0)).await, (0, 0, 0), "nothing left once it is acked");
    harness.cleanup().await;
}
