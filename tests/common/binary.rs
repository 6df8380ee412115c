//! The real binary run as an operator would: in a directory of the test's, without the
//! secrets, broker URL and log filter the test's own environment may hold.

use std::path::Path;
use std::process::{Command, Output};

/// Runs `agent-runner ARGS` in `dir` to completion.
pub fn agent_runner(args: &[&str], dir: &Path) -> Output {
    Command::new(env!("CARGO_BIN_EXE_agent-runner"))
        .args(args)
        .current_dir(dir)
        .env_remove("GIT_TOKEN")
        .env_remove("OPENAI_API_KEY")
        .env_remove("AMQP_URL")
        .env_remove("RUST_LOG")
        .output()
        .unwrap()
}

/// Standard error as text.
pub fn stderr(output: &Output) -> String {
    String::from_utf8_lossy(&output.stderr).into_owned()
}
