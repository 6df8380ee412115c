//! `agent-runner demo`: see [`crate::demo`].

use std::path::PathBuf;
use std::process::ExitCode;

use crate::config::RunnerConfig;

#[derive(Debug, clap::Args)]
pub struct DemoArgs {
    /// Where the demo keeps its repository, slots and artifacts (wiped first).
    #[arg(long, value_name = "DIR", default_value = ".agent-runner/demo")]
    pub home: PathBuf,
    #[command(flatten)]
    pub runner: super::args::RunnerArgs,
}

pub async fn run(config: RunnerConfig, args: DemoArgs) -> anyhow::Result<ExitCode> {
    let home = std::path::absolute(&args.home)?;
    let report = crate::demo::run_demo(config, home, &|line| println!("• {line}")).await?;
    println!();
    println!("events seen ({}):", report.events.len());
    for event in &report.events {
        let detail = event["data"]["step"]
            .as_str()
            .or_else(|| event["data"]["type"].as_str())
            .or_else(|| event["data"]["error_kind"].as_str())
            .unwrap_or("");
        println!("  {:<18} {}", event["type"].as_str().unwrap_or("?"), detail);
    }
    println!();
    match &report.pushed_commit {
        Some((commit, message)) => {
            println!(
                "pushed branch: {} at {} in {}",
                report.branch,
                &commit[..12.min(commit.len())],
                report.origin.display()
            );
            println!("commit message:\n    {}", message.trim().replace('\n', "\n    "));
        }
        None => println!("no branch was pushed"),
    }
    println!("artifacts:");
    for uri in &report.artifact_uris {
        println!("  {uri}");
    }
    if report.worker.acked == 1 {
        println!("\nthe task was acked: done");
        Ok(ExitCode::SUCCESS)
    } else {
        println!("\nthe task did not complete (see the events and the log artifact above)");
        Ok(ExitCode::FAILURE)
    }
}
