//! The `agent-runner` binary: everything lives in the library; see `agent_runner::cli`.

fn main() -> std::process::ExitCode {
    agent_runner::cli::main()
}
