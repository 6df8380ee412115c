//! The S3 artifact backend against a real S3-compatible server: moto's standalone
//! server from PyPI (`scripts/setup` installs it), started on a free port by the test
//! and stopped when it ends.

use std::net::TcpListener;
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use agent_runner::artifacts::{ArtifactKey, ArtifactKind, S3Settings, StoreOptions, open_location};
use agent_runner::config::ArtifactStoreLocation;
use agent_runner::error::Classify;

/// A moto server process, killed on drop.
struct MotoServer {
    child: Child,
    endpoint: String,
}

impl Drop for MotoServer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Starts `python3 -m moto.server` and waits (bounded) until it answers.
async fn start_moto() -> MotoServer {
    let port = free_port();
    let child = Command::new("python3")
        .args(["-m", "moto.server", "-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("python3 is installed (scripts/setup installs moto[server])");
    let server = MotoServer { child, endpoint: format!("http://127.0.0.1:{port}") };
    let client = agent_runner::tls::http_client_builder().build().unwrap();
    let ready = async {
        loop {
            if client.get(&server.endpoint).send().await.is_ok() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    };
    tokio::time::timeout(Duration::from_secs(30), ready)
        .await
        .expect("moto server answers (install it with scripts/setup: pip install 'moto[server]')");
    server
}

fn settings(endpoint: &str) -> S3Settings {
    S3Settings {
        endpoint: Some(endpoint.to_string()),
        region: Some("us-east-1".into()),
        access_key_id: Some("test-key".into()),
        secret_access_key: Some("test-secret".to_string().into()),
        session_token: None,
    }
}

fn key(kind: ArtifactKind) -> ArtifactKey {
    ArtifactKey { spec_name: "chat".into(), task_id: "1.1".into(), kind }
}

#[tokio::test]
async fn artifacts_round_trip_through_an_s3_compatible_server() {
    let moto = start_moto().await;
    // moto accepts unsigned requests: create the bucket the way an operator would once.
    let created = agent_runner::tls::http_client_builder()
        .build()
        .unwrap()
        .put(format!("{}/runs", moto.endpoint))
        .send()
        .await
        .unwrap();
    assert!(created.status().is_success(), "{}", created.status());

    let location = ArtifactStoreLocation::S3("s3://runs/agent-runner".parse().unwrap());
    let options = StoreOptions { s3: settings(&moto.endpoint), ..StoreOptions::default() };
    let store = open_location(&location, &options).unwrap();

    let mut uris = Vec::new();
    for (kind, content) in [
        (ArtifactKind::Diff, "--- a/x\n+++ b/x\n"),
        (ArtifactKind::Log, "[slot] started\n"),
        (ArtifactKind::Test, "{\"success\":true}"),
        (ArtifactKind::Summary, "{\"task_id\":\"1.1\"}"),
    ] {
        let uri = store.put(&key(kind), content.as_bytes()).await.unwrap();
        assert_eq!(store.get(&uri).await.unwrap(), content.as_bytes());
        uris.push(uri);
    }
    assert_eq!(
        uris,
        [
            "s3://runs/agent-runner/chat/1.1/diff.patch",
            "s3://runs/agent-runner/chat/1.1/execution.log",
            "s3://runs/agent-runner/chat/1.1/test-results.json",
            "s3://runs/agent-runner/chat/1.1/summary.json",
        ]
    );

    // A retried task overwrites its artifact under the same key.
    let again = store.put(&key(ArtifactKind::Diff), b"second attempt").await.unwrap();
    assert_eq!(again, uris[0]);
    assert_eq!(store.get(&again).await.unwrap(), b"second attempt");

    // Missing objects and foreign buckets are permanent errors naming the location.
    let missing = store.get("s3://runs/agent-runner/chat/9.9/diff.patch").await.unwrap_err();
    assert!(!missing.is_transient());
    assert!(
        missing.to_string().starts_with("object store s3://runs/agent-runner/chat/9.9/diff.patch: "),
        "{missing}"
    );
    let foreign = store.get("s3://other/chat/1.1/diff.patch").await.unwrap_err();
    assert_eq!(
        foreign.to_string(),
        "artifact store URL s3://other/chat/1.1/diff.patch is not supported: not in this store's bucket (s3://runs/)"
    );
    // The store's clients come from the shared TLS configuration, which an http
    // endpoint never asks for roots.
    assert!(!agent_runner::tls::platform_roots_loaded(), "an http S3 endpoint read the trust roots");
}

#[tokio::test]
async fn a_missing_bucket_fails_the_upload_without_leaking_credentials() {
    let moto = start_moto().await;
    let location = ArtifactStoreLocation::S3("s3://no-such-bucket".parse().unwrap());
    let options = StoreOptions { s3: settings(&moto.endpoint), ..StoreOptions::default() };
    let store = open_location(&location, &options).unwrap();
    let error = store.put(&key(ArtifactKind::Diff), b"x").await.unwrap_err();
    let text = error.to_string();
    assert!(text.starts_with("object store s3://no-such-bucket/chat/1.1/diff.patch: "), "{text}");
    assert!(!text.contains("test-secret"));
    assert_eq!(error.failure_kind().as_str(), "artifact_upload");
}
