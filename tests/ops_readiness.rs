//! `/livez` and `/readyz` of a worker on the real broker: not ready before it consumes,
//! ready while it does, unready once the broker closes its connection and for as long as
//! it refuses a new one. (One test per binary: readiness is process-wide.)

mod common;

use std::sync::Arc;
use std::time::Duration;

use agent_runner::http::{HttpServer, Readiness};
use agent_runner::llm::scripted::Script;
use agent_runner::pipeline::RunnerSecrets;
use agent_runner::worker::{Worker, WorkerOptions};
use common::Harness;
use common::broker::{BrokerUser, close_connection_named};
use tokio_util::sync::CancellationToken;

async fn get(base: &str, path: &str) -> (u16, String) {
    let response = common::http_client().get(format!("{base}{path}")).send().await.unwrap();
    (response.status().as_u16(), response.text().await.unwrap())
}

/// Polls `/readyz` until it answers `status` (bounded: 30 s).
async fn wait_for_readyz(base: &str, status: u16) -> String {
    let wait = async {
        loop {
            let (got, body) = get(base, "/readyz").await;
            if got == status {
                return body;
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), wait).await.expect("/readyz reached the expected status")
}

#[tokio::test]
async fn readyz_follows_the_broker_connection_and_livez_stays_up() {
    let harness = Harness::new("readyz", Script::replies(["unused"])).await;
    let server = HttpServer::bind("127.0.0.1:0".parse().unwrap()).await.unwrap();
    let base = format!("http://{}", server.local_addr().unwrap());
    let stop = CancellationToken::new();
    server.spawn(Readiness::process().clone(), stop.clone());
    assert_eq!(get(&base, "/readyz").await, (503, "not ready: starting\n".to_string()));
    assert_eq!(get(&base, "/livez").await, (200, "ok\n".to_string()));

    let user = BrokerUser::create("readyz");
    let mut config = harness.config();
    config.amqp.url = agent_runner::config::AmqpUrl::parse(&user.url()).unwrap();
    config.runner_id = format!("readyz-{}", &uuid::Uuid::new_v4().simple().to_string()[..8]);
    let secrets = RunnerSecrets { git_token: None, llm_api_key: None };
    let worker = Worker::connect(&config, secrets, harness.names.clone()).await.unwrap();
    let options = WorkerOptions {
        concurrency: 1,
        stop_after: None,
        consumer_tag: config.runner_id.clone(),
        idle_timeout: None,
    };
    let running = tokio::spawn(Arc::new(worker).run(options, stop.child_token()));
    assert_eq!(wait_for_readyz(&base, 200).await, "ready\n");

    // The broker drops the connection and refuses new ones: the worker is unready for as
    // long as that lasts (without the refusal it could be back before a poll sees it go).
    user.limit_connections(0);
    close_connection_named(&config.runner_id);
    let reason = wait_for_readyz(&base, 503).await;
    assert_eq!(reason, "not ready: not consuming: re-establishing the broker link\n");
    assert_eq!(get(&base, "/livez").await, (200, "ok\n".to_string()));
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(get(&base, "/readyz").await.0, 503, "still unready while the broker refuses it");
    // Once the broker takes connections again, the worker reconnects, consumes again,
    // and says so.
    user.limit_connections(-1);
    assert_eq!(wait_for_readyz(&base, 200).await, "ready\n");
    let metrics = get(&base, "/metrics").await.1;
    assert!(
        metrics.lines().any(|l| l.starts_with("agent_runner_broker_reconnects_total ") && !l.ends_with(" 0")),
        "{metrics}"
    );

    stop.cancel();
    let _ = tokio::time::timeout(Duration::from_secs(30), running).await.expect("worker stopped");
    harness.cleanup().await;
}
