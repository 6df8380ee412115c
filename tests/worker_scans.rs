//! What a warm slot costs the worker in walks of the working tree, through the whole
//! pipeline: the first task on a slot clones and cleans it in full; every later task on
//! it walks the tree twice (the commit's special-file sweep and its one status) and the
//! slot pool, the reset and the repository view walk it not at all.
//!
//! A binary of its own: the walk counter is process-wide, and a test running beside it
//! would add its own walks.

mod common;

use agent_runner::demo::sample;
use agent_runner::llm::scripted::Script;
use agent_runner::metrics::{WORKTREE_SCANS, global};
use common::Harness;

#[tokio::test]
async fn a_warm_slot_costs_two_walks_per_task() {
    let answer = sample::scripted_answer();
    let harness = Harness::new("scans", Script::responder(move |_| answer.clone())).await;
    let mut walks = Vec::new();
    for n in 1..=3 {
        let task = sample::sample_task(&harness.repo_url(), &format!("scan.{n}"));
        harness.publish("task.backend", &serde_json::to_vec(&task).unwrap()).await;
        let before = global().value(&WORKTREE_SCANS, &[]);
        let report = harness.run_worker(harness.config(), 1, 1).await;
        assert_eq!((report.acked, report.dead_lettered), (1, 0), "task {n}");
        walks.push(global().value(&WORKTREE_SCANS, &[]) - before);
    }
    assert!(walks[0] > 2.0, "the first task cleans the new slot in full: {walks:?}");
    assert_eq!(walks[1..], [2.0, 2.0], "later tasks on the warm slot: {walks:?}");
}
