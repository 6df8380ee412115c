//! The outside world of `scripts/test-deploy`: the sample origin repository, the sample
//! task for it, and a scripted OpenAI-compatible endpoint that answers it.
//!
//! ```sh
//! cargo run --example deploy_fixture -- DIR [FORWARD_ADDR]
//! ```
//!
//! Creates two bare origins under `DIR`, each with a task file naming it by a `file://`
//! URL (so a container that bind-mounts `DIR` at the same path can push there):
//! - `origin.git`, `task.json`: the demo's sample project;
//! - `probes.git`, `probes-task.json`: the same project whose playbook also runs the
//!   sandbox attacks ([`PROBES`]); the task passes, and its branch is pushed, only if
//!   every attack is refused.
//!
//! Then it starts the endpoint on 127.0.0.1, prints `LLM_ENDPOINT=<base URL>` as its
//! first line, and serves until it is interrupted (SIGINT or SIGTERM). With
//! `FORWARD_ADDR` (e.g. `0.0.0.0:0`) it also forwards connections from that address to
//! the endpoint, for containers on a bridge network, and prints `FORWARD_PORT=<port>`.

use std::path::PathBuf;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::{self, Script};
use anyhow::Context;
use tokio::net::{TcpListener, TcpStream};
use tokio::signal::unix::{SignalKind, signal};

/// The secret the check mounts as the worker's git token (`GIT_TOKEN_FILE`).
const TOKEN_PATH: &str = "/run/secrets/agent-runner/git-token";

/// Attacks a step might try inside the container, each failing the step if it works,
/// and controls showing the probes themselves run (so a broken probe cannot pass).
const PROBES: &str = r#"#!/bin/sh
fail=0
refused() {
    if sh -c "$2" >/dev/null 2>&1; then echo "ATTACK WORKED: $1"; fail=1; else echo "refused: $1"; fi
}
refused "read the worker's git token file" "cat __TOKEN__"
# The bracket keeps the pattern from matching grep's own command line in /proc.
refused "find the token through /proc" "grep -rqs 'deploy-check-secre[t]' /proc/*/environ /proc/*/cmdline /proc/*/root/run/secrets"
refused "write outside the workspace (/etc)" "touch /etc/escaped"
refused "write outside the workspace (/usr)" "touch /usr/escaped"
refused "see the worker's artifacts" "ls /var/lib/agent-runner/artifacts"
# The view's /var/lib/agent-runner is the sandbox's own (the workspace's parents, on its
# private root): scripts/test-deploy checks this file never reaches the worker's.
touch /var/lib/agent-runner/escaped 2>/dev/null || true
refused "open a Unix socket" "perl -e 'use Socket; socket(my \$s, PF_UNIX, SOCK_STREAM, 0) or exit 1'"
grep -q '^NoNewPrivs:[[:space:]]*1' /proc/self/status || { echo "no_new_privs is not set"; fail=1; }
touch ./probe-ran && rm ./probe-ran || { echo "control: cannot write the workspace"; fail=1; }
perl -e 'use Socket; socket(my $s, PF_INET, SOCK_STREAM, 0) or exit 1'     || { echo "control: perl cannot open any socket"; fail=1; }
exit $fail
"#;

const PROBES_PLAYBOOK: &str = "name: greeter checks and sandbox probes\nsteps:\n  - name: sandbox probes\n    command: sh tests/sandbox_probes.sh\n    timeout_seconds: 60\n  - name: unit tests\n    command: sh tests/test_greet.sh\n    timeout_seconds: 60\n";

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let dir: PathBuf = std::env::args_os().nth(1).context("usage: deploy_fixture DIR")?.into();
    let dir = std::path::absolute(&dir)?;
    std::fs::create_dir_all(&dir)?;
    let origin = dir.join("origin.git");
    sample::create_origin(&origin, "main", sample::SAMPLE_FILES).context("cannot create the origin")?;
    let task = sample::sample_task(&format!("file://{}", origin.display()), "deploy-1");
    std::fs::write(dir.join("task.json"), serde_json::to_vec_pretty(&task)?)?;

    let probes = PROBES.replace("__TOKEN__", TOKEN_PATH);
    let mut files: Vec<(&str, &str)> = sample::SAMPLE_FILES
        .iter()
        .copied()
        .filter(|(path, _)| *path != ".necrocode/playbook.yaml")
        .collect();
    files.push((".necrocode/playbook.yaml", PROBES_PLAYBOOK));
    files.push(("tests/sandbox_probes.sh", &probes));
    let probes_origin = dir.join("probes.git");
    sample::create_origin(&probes_origin, "main", &files).context("cannot create the probes origin")?;
    let task = sample::sample_task(&format!("file://{}", probes_origin.display()), "deploy-2");
    std::fs::write(dir.join("probes-task.json"), serde_json::to_vec_pretty(&task)?)?;

    let answer = sample::scripted_answer();
    let server = scripted::start(Script::responder(move |_| answer.clone())).await?;
    println!("LLM_ENDPOINT={}", server.base_url());
    if let Some(forward) = std::env::args().nth(2) {
        let listener = tokio::net::TcpListener::bind(&forward).await?;
        println!("FORWARD_PORT={}", listener.local_addr()?.port());
        let base = server.base_url();
        let target = base.trim_start_matches("http://").trim_end_matches("/v1").parse()?;
        tokio::spawn(forward_to(listener, target));
    }

    let mut terminate = signal(SignalKind::terminate())?;
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = terminate.recv() => {}
    }
    println!("chat requests answered: {}", server.requests().len());
    Ok(())
}

/// Relays each connection accepted on `listener` to `target`, both ways.
async fn forward_to(listener: TcpListener, target: std::net::SocketAddr) {
    while let Ok((mut inbound, _)) = listener.accept().await {
        tokio::spawn(async move {
            if let Ok(mut outbound) = TcpStream::connect(target).await {
                let _ = tokio::io::copy_bidirectional(&mut inbound, &mut outbound).await;
            }
        });
    }
}
