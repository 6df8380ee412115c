//! The evaluation harness: the engine measured against a real model on a public task set
//! (`benches/eval/tasks/`), outside the test command.
//!
//! Run with `scripts/eval` (it starts a local llama.cpp server unless given `--endpoint`,
//! builds the release binary and passes its arguments on). Per task and engine mode: a
//! bare origin from the task's `repo/`, `agent-runner run` on a task message and config
//! written for it, then the harness's own check of the pushed branch (`verify.rs`). It
//! prints a line per task and writes `EVALUATION.md`.
//!
//! `--check-solutions` tests the harness without a model: every task's tests must fail
//! on its base and pass with its reference solution, and a branch that also edits a
//! protected test file must be refused. `--replay-solutions` runs the whole loop through
//! the binary against the project's scripted model server answering with the solutions.

mod git;
mod outcome;
mod replay;
mod report;
mod solutions;
mod spec;
mod verify;
mod worker_run;

use std::path::{Path, PathBuf};

use clap::Parser;

use outcome::TaskOutcome;
use worker_run::{RunSettings, Sampling};

#[derive(Debug, Parser)]
#[command(name = "eval", about = "Evaluate the engine against a model on benches/eval/tasks")]
struct Args {
    /// OpenAI-compatible base URL of the model server (scripts/eval starts one when unset).
    #[arg(long, env = "EVAL_ENDPOINT")]
    endpoint: Option<String>,
    /// Model name sent to the server and shown in the report.
    #[arg(long, env = "EVAL_MODEL", default_value = "local")]
    model: String,
    /// `tools`, `edit_blocks` or `both`.
    #[arg(long, default_value = "both")]
    mode: String,
    /// Comma-separated task names (default: all).
    #[arg(long, value_delimiter = ',')]
    tasks: Option<Vec<String>>,
    /// Where the report goes (default: EVALUATION.md at the repository root).
    #[arg(long)]
    out: Option<PathBuf>,
    /// Check every task's base (tests fail) and reference solution (check passes); no model.
    #[arg(long)]
    check_solutions: bool,
    /// Write the report from an earlier run's `results.json` (one stopped part-way by
    /// an older driver) instead of running anything; the other flags describe that run.
    #[arg(long, value_name = "RESULTS_JSON")]
    report_from: Option<PathBuf>,
    /// Run every task through the binary with a scripted model answering the solutions.
    #[arg(long)]
    replay_solutions: bool,
    #[arg(long, default_value_t = 12)]
    max_turns: u32,
    /// Wall time of the implement phase per task (`engine.max_wall_seconds`).
    #[arg(long, default_value_t = 600)]
    max_wall_seconds: u64,
    #[arg(long, default_value_t = 1)]
    repair_rounds: u32,
    /// `llm.timeout_seconds`: one answer of a small model on two cores can take minutes.
    #[arg(long, default_value_t = 300)]
    llm_timeout_seconds: u64,
    /// Write llm.temperature, llm.max_tokens and llm.context_tokens into the config
    /// (`--sampling-keys false` for an engine built before those keys: the config refuses
    /// unknown keys).
    #[arg(long, default_value_t = true, action = clap::ArgAction::Set)]
    sampling_keys: bool,
    #[arg(long, default_value_t = 0.2)]
    temperature: f64,
    #[arg(long, default_value_t = 1024)]
    max_tokens: u32,
    #[arg(long, default_value_t = 4096)]
    context_tokens: u32,
    /// The server's command line, for the report (scripts/eval sets it).
    #[arg(long, env = "EVAL_SERVER_FLAGS", default_value = "not recorded (external endpoint)")]
    server_flags: String,
    #[arg(long, env = "EVAL_MODEL_SHA256", default_value = "not recorded")]
    model_sha256: String,
    /// The worker binary (default: target/release/agent-runner, which scripts/eval builds).
    #[arg(long)]
    binary: Option<PathBuf>,
    /// Task runs at a time. A llama.cpp server started with as many slots (`--parallel`)
    /// decodes them in one batch, which on a CPU costs little more than one: two jobs
    /// nearly double the runs per hour. Results keep the task order whatever the finish order.
    #[arg(long, default_value_t = 1, value_parser = clap::value_parser!(u16).range(1..=16))]
    jobs: u16,
    /// Passed by `cargo bench`; ignored.
    #[arg(long, hide = true)]
    bench: bool,
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let tasks = spec::load_tasks(&root.join("benches/eval/tasks"), args.tasks.as_deref())?;
    if let Some(results) = &args.report_from {
        return report_from(&args, results, &root);
    }
    let work = root.join("target/eval");
    if work.exists() {
        std::fs::remove_dir_all(&work)?;
    }
    std::fs::create_dir_all(&work)?;
    if args.check_solutions {
        return solutions::check_all(&tasks, &work);
    }
    let modes: Vec<&str> = match args.mode.as_str() {
        "both" => vec!["tools", "edit_blocks"],
        "tools" => vec!["tools"],
        "edit_blocks" => vec!["edit_blocks"],
        other => anyhow::bail!("--mode {other}: expected tools, edit_blocks or both"),
    };
    let binary = args.binary.clone().unwrap_or_else(|| root.join("target/release/agent-runner"));
    anyhow::ensure!(
        binary.exists(),
        "no {}: cargo build --release first (scripts/eval does)",
        binary.display()
    );
    // The binary runs from each task's directory.
    let binary = std::fs::canonicalize(&binary)?;
    let scripted = if args.replay_solutions { Some(replay::start(&tasks).await?) } else { None };
    let endpoint = match (&scripted, &args.endpoint) {
        (Some(server), _) => server.base_url(),
        (None, Some(url)) => url.clone(),
        (None, None) => anyhow::bail!("--endpoint is required (or --replay-solutions, --check-solutions)"),
    };
    let model = if scripted.is_some() { "scripted-solutions" } else { args.model.as_str() };
    let settings = run_settings(&args, binary, root.join("playbooks"), endpoint, model);
    // Blocking work (git, the binary) runs on this thread while the scripted server, when
    // there is one, answers on the runtime's workers.
    // The report is rewritten after every task, so a run stopped part-way (a session's
    // end, a server gone) leaves the report of what it measured.
    let out = match (&scripted, &args.out) {
        (Some(_), None) => None,
        (_, Some(out)) => Some(out.clone()),
        (None, None) => Some(root.join("EVALUATION.md")),
    };
    let info = run_info(&args, &settings, &root);
    let report = |so_far: &[TaskOutcome]| -> anyhow::Result<()> {
        match &out {
            Some(out) => Ok(std::fs::write(out, report::markdown(&info, &modes, so_far))?),
            None => Ok(()),
        }
    };
    let outcomes =
        tokio::task::block_in_place(|| evaluate(&tasks, &modes, &settings, &work, args.jobs, &report))?;
    for mode in &modes {
        let (passed, total) = report::pass_rate(&outcomes, mode);
        println!("{mode}: {passed}/{total} passed");
    }
    match &out {
        Some(out) => {
            eprintln!("eval: wrote {} (raw results: {})", out.display(), work.join("results.json").display())
        }
        None => {
            eprintln!("eval: replayed solutions; EVALUATION.md left as it is (pass --out to write a report)")
        }
    }
    Ok(())
}

/// `--report-from`: the report of the results in `results`, for the run the flags describe.
fn report_from(args: &Args, results: &Path, root: &Path) -> anyhow::Result<()> {
    let outcomes: Vec<TaskOutcome> = serde_json::from_slice(&std::fs::read(results)?)?;
    let mut modes: Vec<&str> = outcomes.iter().map(|o| o.mode.as_str()).collect();
    modes.dedup();
    let endpoint = args.endpoint.clone().unwrap_or_else(|| "not recorded".to_string());
    let binary = args.binary.clone().unwrap_or_else(|| root.join("target/release/agent-runner"));
    let settings = run_settings(args, binary, root.join("playbooks"), endpoint, &args.model);
    let out = args.out.clone().unwrap_or_else(|| root.join("EVALUATION.md"));
    std::fs::write(&out, report::markdown(&run_info(args, &settings, root), &modes, &outcomes))?;
    eprintln!("eval: wrote {} from {}", out.display(), results.display());
    Ok(())
}

fn run_settings(
    args: &Args,
    binary: PathBuf,
    playbooks_dir: PathBuf,
    endpoint: String,
    model: &str,
) -> RunSettings {
    RunSettings {
        binary,
        playbooks_dir,
        endpoint,
        model: model.to_string(),
        max_turns: args.max_turns,
        max_wall_seconds: args.max_wall_seconds,
        repair_rounds: args.repair_rounds,
        llm_timeout_seconds: args.llm_timeout_seconds,
        sampling: args.sampling_keys.then_some(Sampling {
            temperature: args.temperature,
            max_tokens: args.max_tokens,
            context_tokens: args.context_tokens,
        }),
    }
}

/// Every task in every mode, `jobs` at a time; one line printed as each finishes, and
/// the results so far in `results.json` and through `report` (in task order), so an
/// interrupted run keeps what it measured.
fn evaluate(
    tasks: &[spec::EvalTask],
    modes: &[&str],
    settings: &RunSettings,
    work: &Path,
    jobs: u16,
    report: &(dyn Fn(&[TaskOutcome]) -> anyhow::Result<()> + Sync),
) -> anyhow::Result<Vec<TaskOutcome>> {
    let protected = verify::protected_globs()?;
    let runs: Vec<(&str, &spec::EvalTask)> =
        modes.iter().flat_map(|mode| tasks.iter().map(move |task| (*mode, task))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    let done: std::sync::Mutex<Vec<Option<TaskOutcome>>> =
        std::sync::Mutex::new(runs.iter().map(|_| None).collect());
    let record = |index: usize, outcome: TaskOutcome| -> anyhow::Result<()> {
        let mut done = done.lock().map_err(|_| anyhow::anyhow!("a run thread panicked"))?;
        println!("{}", report::line(&outcome));
        done[index] = Some(outcome);
        let so_far: Vec<TaskOutcome> = done.iter().flatten().cloned().collect();
        std::fs::write(work.join("results.json"), serde_json::to_string_pretty(&so_far)?)?;
        report(&so_far)
    };
    let worker = || -> anyhow::Result<()> {
        loop {
            let index = next.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            let Some((mode, task)) = runs.get(index) else { return Ok(()) };
            // A server gone mid-run (killed, crashed) would fail every remaining task as
            // the model's doing; stop instead, keeping the results so far.
            anyhow::ensure!(
                endpoint_answers(&settings.endpoint),
                "the model server at {} does not answer before {mode}/{}: stopped; results so far in {}",
                settings.endpoint,
                task.name,
                work.join("results.json").display()
            );
            let outcome = evaluate_one(task, mode, settings, work, &protected)?;
            record(index, outcome)?;
        }
    };
    std::thread::scope(|scope| {
        let handles: Vec<_> = (0..jobs).map(|_| scope.spawn(worker)).collect();
        handles
            .into_iter()
            .try_for_each(|handle| handle.join().map_err(|_| anyhow::anyhow!("a run thread panicked"))?)
    })?;
    let done = done.into_inner().map_err(|_| anyhow::anyhow!("a run thread panicked"))?;
    Ok(done.into_iter().flatten().collect())
}

/// One task in one mode: its origin, the binary's run, the check of what it pushed.
fn evaluate_one(
    task: &spec::EvalTask,
    mode: &str,
    settings: &RunSettings,
    work: &Path,
    protected: &globset::GlobSet,
) -> anyhow::Result<TaskOutcome> {
    let dir = work.join(mode).join(&task.name);
    std::fs::create_dir_all(&dir)?;
    let origin = git::make_origin(&task.repo, &dir)?;
    let run = worker_run::run_worker(settings, task, mode, &dir, &origin.url())?;
    let verdict = match run.pushed_branch() {
        Some(branch) => Some(verify::check_branch(task, &origin, &branch, &dir, protected)?),
        None => None,
    };
    Ok(outcome::outcome(&task.name, &task.file.required_skill, mode, &run, verdict.as_ref()))
}

/// True when `GET <endpoint>/models` gets any HTTP answer (llama.cpp, the scripted server
/// and OpenAI all serve it).
fn endpoint_answers(endpoint: &str) -> bool {
    let url = format!("{}/models", endpoint.trim_end_matches('/'));
    std::process::Command::new("curl")
        .args(["-s", "-o", "/dev/null", "-w", "%{http_code}", "--max-time", "30", &url])
        .output()
        .is_ok_and(|out| out.stdout != b"000" && !out.stdout.is_empty())
}

fn run_info(args: &Args, settings: &RunSettings, root: &Path) -> report::RunInfo {
    let sampling = match settings.sampling {
        Some(s) => format!(
            "sent by the engine (llm.* keys): temperature {}, max_tokens {}, context_tokens {}",
            s.temperature, s.max_tokens, s.context_tokens
        ),
        None => "not sent by the engine (it has no llm.temperature / llm.max_tokens / llm.context_tokens keys yet): \
                 the server's settings apply (its flags above: --temp, --n-predict, -c)"
            .to_string(),
    };
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_string())
        })
        .unwrap_or_else(|| "unknown CPU".to_string());
    let cores = std::thread::available_parallelism().map(|n| n.get()).unwrap_or(0);
    report::RunInfo {
        model: settings.model.clone(),
        model_sha256: args.model_sha256.clone(),
        endpoint: settings.endpoint.clone(),
        server_flags: args.server_flags.clone(),
        sampling,
        budgets: format!(
            "engine.max_turns {}, engine.max_wall_seconds {}, playbook.repair_rounds {}, llm.timeout_seconds {}, llm_retry_count 1",
            settings.max_turns,
            settings.max_wall_seconds,
            settings.repair_rounds,
            settings.llm_timeout_seconds
        ),
        machine: format!("{cores} cores (nproc), {cpu}"),
        date: chrono::Utc::now().format("%Y-%m-%d %H:%M UTC").to_string(),
        engine_commit: git::git(root, &["rev-parse", "--short", "HEAD"])
            .unwrap_or_else(|_| "unknown".to_string()),
    }
}
