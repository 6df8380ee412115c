//! The implementation engine against the scripted OpenAI-compatible server over real HTTP:
//! multi-turn tool-calling scripts on a real workspace (a git repository in a temporary
//! directory), the playbook's tests run by the real executor, and the requests the engine
//! sent checked as the server recorded them.

mod engine_support;

use std::time::Duration;

use agent_runner::error::{Classify, FailureKind};
use agent_runner::llm::agent::ProtectedPaths;
use agent_runner::llm::scripted::{self, Script, ScriptedCall, Step};
use agent_runner::llm::{EngineMode, EngineSettings, ImplementError};
use engine_support::{FIXED_GREET, TEST_SCRIPT, last_user_text, run_round, tool_results, workspace};
use serde_json::json;

#[tokio::test]
async fn read_edit_test_finish_changes_the_file_and_reports_every_tool() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::call("read_file", json!({"path": "greet.sh", "start_line": 2, "end_line": 2})),
        Step::call(
            "edit_file",
            json!({"path": "greet.sh", "search": "echo \"Hi $1\"\n", "replace": FIXED_GREET}),
        ),
        Step::call("run_tests", json!({})),
        Step::call("finish", json!({"summary": "greet.sh now says Hello"})),
    ]))
    .await
    .unwrap();
    let (outcome, session) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let result = outcome.unwrap();

    assert_eq!(
        std::fs::read_to_string(ws.path().join("greet.sh")).unwrap(),
        format!("#!/bin/sh\n{FIXED_GREET}")
    );
    let requests = server.requests();
    assert_eq!(requests.len(), 4);
    assert_eq!(
        tool_results(&requests[1]),
        [("call_1_0".to_string(), "greet.sh (lines 2-2 of 2)\necho \"Hi $1\"\n".to_string())]
    );
    assert_eq!(tool_results(&requests[2]), [("call_2_0".to_string(), "edited greet.sh".to_string())]);
    assert_eq!(
        tool_results(&requests[3]),
        [("call_3_0".to_string(), "tests PASSED\nall steps passed".to_string())]
    );
    // Every request offers the tools, run_tests included.
    let offered: Vec<&str> = requests[0]["tools"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| t["function"]["name"].as_str().unwrap())
        .collect();
    assert_eq!(
        offered,
        [
            "list_dir",
            "read_file",
            "search_text",
            "write_file",
            "edit_file",
            "delete_file",
            "run_tests",
            "finish"
        ]
    );
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(system.contains("tests/**") && system.contains("never weaken"), "{system}");
    let user = requests[0]["messages"][1]["content"].as_str().unwrap();
    assert!(
        user.contains("Title: Fix the greeting")
            && user.contains("The tests are run with: sh tests/test_greet.sh")
    );

    assert_eq!(result.files_changed, ["greet.sh"]);
    assert_eq!(result.explanation, "greet.sh now says Hello");
    assert_eq!((result.turns, result.rounds), (4, 1));
    let calls: Vec<(&str, u32)> = result.tool_calls.iter().map(|(k, v)| (k.as_str(), *v)).collect();
    assert_eq!(calls, [("edit_file", 1), ("finish", 1), ("read_file", 1), ("run_tests", 1)]);
    assert!(result.tokens_used > 0 && result.tokens_used == result.prompt_tokens + result.completion_tokens);
    assert_eq!(result.estimated_cost_usd, None);
    assert_eq!(session.totals(), Some(&result));
    let transcript = session.transcript().to_json();
    assert!(transcript.contains("\"speaker\": \"tool\"") && transcript.contains("edited greet.sh"));
}

#[tokio::test]
async fn a_malformed_argument_is_answered_with_an_error_and_the_loop_continues() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::ToolCalls(vec![ScriptedCall::raw("read_file", "{\"path\": greet.sh")]),
        Step::ToolCalls(vec![
            ScriptedCall::raw("no_such_tool", "{}"),
            ScriptedCall::new("write_file", json!({"path": "greet.sh"})),
        ]),
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "done"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    assert_eq!(outcome.unwrap().files_changed, ["greet.sh"]);
    let requests = server.requests();
    let first = tool_results(&requests[1]);
    assert_eq!(first[0].0, "call_1_0");
    assert!(
        first[0].1.starts_with(
            "error: the arguments of read_file are not valid: expected value at line 1 column 10"
        ),
        "{}",
        first[0].1
    );
    // A failed call drops the rest of its turn: they were written before the failure.
    let second = tool_results(&requests[2]);
    assert!(second[0].1.starts_with("error: there is no tool named \"no_such_tool\""), "{}", second[0].1);
    assert_eq!(
        second[1].1,
        "error: not run: the no_such_tool call before it in this turn failed; read that result and call again"
    );
}

#[tokio::test]
async fn a_rate_limit_with_retry_after_is_waited_out() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::RateLimited { retry_after_seconds: 1 },
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "done"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 1).await;
    assert_eq!(outcome.unwrap().turns, 2);
    let arrivals = server.arrivals();
    assert_eq!(arrivals.len(), 3);
    // Backoff alone would retry after ~200 ms; the server asked for a second.
    assert!(arrivals[1] - arrivals[0] >= Duration::from_secs(1), "{:?}", arrivals[1] - arrivals[0]);
}

#[tokio::test]
async fn a_rate_limit_beyond_the_retry_count_fails_as_transient() {
    let ws = workspace();
    let server =
        scripted::start(Script::steps([Step::RateLimited { retry_after_seconds: 0 }])).await.unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let error = outcome.unwrap_err();
    assert!(matches!(error, ImplementError::Request { status: Some(429), transient: true, .. }), "{error:?}");
    assert_eq!(error.failure_kind(), FailureKind::Implementation);
}

#[cfg(unix)]
#[tokio::test]
async fn paths_outside_the_workspace_are_refused_and_nothing_outside_is_written() {
    let ws = workspace();
    let outside = tempfile::tempdir().unwrap();
    std::fs::write(outside.path().join("secret.txt"), "outside data").unwrap();
    std::os::unix::fs::symlink(outside.path(), ws.path().join("out")).unwrap();
    let absolute = outside.path().join("abs.txt").display().to_string();
    let calls = vec![
        ScriptedCall::new("write_file", json!({"path": "../escape.txt", "content": "x"})),
        ScriptedCall::new("write_file", json!({"path": absolute, "content": "x"})),
        ScriptedCall::new("write_file", json!({"path": "out/evil.txt", "content": "x"})),
        ScriptedCall::new("read_file", json!({"path": "out/secret.txt"})),
        ScriptedCall::new("write_file", json!({"path": ".git/hooks/pre-commit", "content": "#!/bin/sh\n"})),
        ScriptedCall::new("read_file", json!({"path": ".git/config"})),
        ScriptedCall::new("list_dir", json!({"path": "out"})),
        ScriptedCall::new("search_text", json!({"pattern": "outside data"})),
    ];
    // One call a turn: a failed call drops the rest of its turn.
    let count = calls.len();
    let mut steps: Vec<Step> = calls.into_iter().map(|call| Step::ToolCalls(vec![call])).collect();
    steps.push(Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})));
    steps.push(Step::call("finish", json!({"summary": "done"})));
    let server = scripted::start(Script::steps(steps)).await.unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    assert_eq!(outcome.unwrap().files_changed, ["greet.sh"]);
    let requests = server.requests();
    let results: Vec<String> = (1..=count).map(|i| tool_results(&requests[i]).remove(0).1).collect();
    assert_eq!(
        results,
        [
            "error: ../escape.txt: \"..\" is not allowed in paths".to_string(),
            format!("error: {absolute}: absolute paths are not allowed"),
            "error: out/evil.txt: out resolves outside the workspace through a symlink".to_string(),
            "error: out/secret.txt resolves outside the workspace".to_string(),
            "error: .git/hooks/pre-commit: writes into .git are not allowed".to_string(),
            "error: paths inside .git are not allowed".to_string(),
            "error: out resolves outside the workspace".to_string(),
            "no match for \"outside data\"".to_string(),
        ]
    );
    let mut outside_files: Vec<String> = std::fs::read_dir(outside.path())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    outside_files.sort();
    assert_eq!(outside_files, ["secret.txt"]);
    assert!(!ws.path().parent().unwrap().join("escape.txt").exists());
    assert!(!ws.path().join(".git/hooks/pre-commit").exists());
}

#[tokio::test]
async fn an_edit_to_a_protected_test_file_is_refused_and_recorded() {
    let ws = workspace();
    let weaken = json!({"path": "tests/test_greet.sh", "search": "exit 1", "replace": "exit 0"});
    let server = scripted::start(Script::steps([
        Step::call("edit_file", weaken),
        Step::call("delete_file", json!({"path": "tests/test_greet.sh"})),
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "fixed the code instead"})),
    ]))
    .await
    .unwrap();
    let (outcome, session) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let result = outcome.unwrap();
    assert_eq!(std::fs::read_to_string(ws.path().join("tests/test_greet.sh")).unwrap(), TEST_SCRIPT);
    let refused = tool_results(&server.requests()[1]);
    assert_eq!(
        refused[0].1,
        "error: tests/test_greet.sh is protected (matches `tests/**`): it may be read but not created, changed \
         or deleted; make the tests pass by changing the code, not the tests"
    );
    assert!(tool_results(&server.requests()[2])[0].1.starts_with("error: tests/test_greet.sh is protected"));
    assert_eq!(result.refusals, ["tests/test_greet.sh (protected by `tests/**`)"; 2]);
    assert_eq!(result.files_changed, ["greet.sh"]);
    assert!(session.transcript().to_json().contains("refused a write to tests/test_greet.sh"));
}

#[cfg(unix)]
#[tokio::test]
async fn a_symlinked_directory_does_not_unlock_a_protected_file() {
    let ws = workspace();
    std::os::unix::fs::symlink(ws.path().join("tests"), ws.path().join("t")).unwrap();
    let server = scripted::start(Script::steps([
        Step::call("write_file", json!({"path": "t/helper.sh", "content": "exit 0\n"})),
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "done"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    assert_eq!(outcome.unwrap().refusals, ["t/helper.sh (protected by `tests/**`)"]);
    assert!(!ws.path().join("tests/helper.sh").exists());
}

#[tokio::test]
async fn edit_errors_say_whether_the_text_is_absent_or_ambiguous() {
    let ws = workspace();
    std::fs::write(ws.path().join("twice.txt"), "a\na\n").unwrap();
    let server = scripted::start(Script::steps([
        Step::call("edit_file", json!({"path": "greet.sh", "search": "Hello", "replace": "x"})),
        Step::call("edit_file", json!({"path": "twice.txt", "search": "a\n", "replace": "b\n"})),
        Step::ToolCalls(vec![
            ScriptedCall::new("search_text", json!({"pattern": "Hi", "path": ""})),
            ScriptedCall::new("list_dir", json!({})),
        ]),
        Step::call(
            "edit_file",
            json!({"path": "twice.txt", "search": "a\n", "replace": "b\n", "replace_all": true}),
        ),
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "done"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    outcome.unwrap();
    let requests = server.requests();
    let mut results: Vec<String> =
        (1..=3).flat_map(|i| tool_results(&requests[i])).map(|(_, text)| text).collect();
    results.push(tool_results(&requests[4]).remove(0).1);
    assert_eq!(
        results,
        [
            // A small file missed by a search text is shown whole, to copy from.
            "error: the search text was not found in greet.sh; copy the text exactly, including whitespace. \
             greet.sh now reads:\n#!/bin/sh\necho \"Hi $1\"\n",
            "error: the search text occurs 2 times in twice.txt; include more surrounding lines so it occurs exactly \
             once, or set replace_all to true to replace every occurrence (a rename)",
            "greet.sh:2: echo \"Hi $1\"",
            "(workspace root): 4 entries\nREADME.md (10 bytes)\ngreet.sh (23 bytes)\ntests/\ntwice.txt (4 bytes)",
            "edited twice.txt: 2 occurrences replaced",
        ]
    );
    assert_eq!(std::fs::read_to_string(ws.path().join("twice.txt")).unwrap(), "b\nb\n");
}

#[tokio::test]
async fn the_fallback_mode_applies_edit_blocks_with_the_same_confinement() {
    let ws = workspace();
    let first = "I will fix greet.sh.\n\ngreet.sh\n<<<<<<< SEARCH\necho \"Hi $1\"\n=======\necho \"Hello, ${1:-world}!\"\n\
                 >>>>>>> REPLACE\n\nNOTES.md\n<<<<<<< SEARCH\n=======\nFixed.\n>>>>>>> REPLACE\n\n\
                 ../escape.txt\n<<<<<<< SEARCH\n=======\nx\n>>>>>>> REPLACE\nDELETE FILE: tests/test_greet.sh\nRUN TESTS\n";
    let server =
        scripted::start(Script::replies([first, "Done: greet.sh prints Hello and NOTES.md says so."]))
            .await
            .unwrap();
    let engine = EngineSettings { mode: EngineMode::EditBlocks, ..EngineSettings::default() };
    let (outcome, _) = run_round(ws.path(), &server, &engine, 0).await;
    let result = outcome.unwrap();

    assert_eq!(
        std::fs::read_to_string(ws.path().join("greet.sh")).unwrap(),
        format!("#!/bin/sh\n{FIXED_GREET}")
    );
    assert_eq!(std::fs::read_to_string(ws.path().join("NOTES.md")).unwrap(), "Fixed.\n");
    assert!(ws.path().join("tests/test_greet.sh").exists());
    let requests = server.requests();
    assert_eq!(requests.len(), 2);
    assert!(requests[0].get("tools").is_none(), "edit-block mode offers no tools");
    assert!(requests[0]["messages"][0]["content"].as_str().unwrap().contains("<<<<<<< SEARCH"));
    assert_eq!(
        last_user_text(&requests[1]),
        "[1] edited greet.sh\n\n[2] wrote NOTES.md (7 bytes)\n\n[3] error: ../escape.txt: \"..\" is not allowed in paths\n\n\
         [4] error: tests/test_greet.sh is protected (matches `tests/**`): it may be read but not created, changed or \
         deleted; make the tests pass by changing the code, not the tests\n\n[5] tests PASSED\nall steps passed"
    );
    assert_eq!(result.files_changed, ["greet.sh", "NOTES.md"]);
    assert_eq!(result.explanation, "Done: greet.sh prints Hello and NOTES.md says so.");
    assert_eq!(result.refusals, ["tests/test_greet.sh (protected by `tests/**`)"]);
}

#[tokio::test]
async fn a_plain_answer_with_the_single_shot_json_is_applied() {
    let ws = workspace();
    let answer = json!({"code_changes": [{"file_path": "greet.sh", "operation": "modify", "content": FIXED_GREET}],
                        "explanation": "rewrote greet.sh"});
    let server = scripted::start(Script::replies([answer.to_string()])).await.unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let result = outcome.unwrap();
    assert_eq!(
        (result.files_changed.as_slice(), result.explanation.as_str()),
        (&["greet.sh".to_string()][..], "rewrote greet.sh")
    );
    assert_eq!(server.requests().len(), 1);
}

#[tokio::test]
async fn an_empty_protected_list_allows_test_edits() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::call("write_file", json!({"path": "tests/extra_test.sh", "content": "exit 0\n"})),
        Step::call("write_file", json!({"path": "greet.sh", "content": FIXED_GREET})),
        Step::call("finish", json!({"summary": "added a test"})),
    ]))
    .await
    .unwrap();
    let engine = EngineSettings { protected: ProtectedPaths::new(&[]).unwrap(), ..EngineSettings::default() };
    let (outcome, _) = run_round(ws.path(), &server, &engine, 0).await;
    assert_eq!(outcome.unwrap().files_changed, ["tests/extra_test.sh", "greet.sh"]);
}

#[tokio::test]
async fn a_single_shot_answer_touching_a_protected_file_is_refused_whole() {
    let ws = workspace();
    let weakened = json!({"code_changes": [
        {"file_path": "greet.sh", "operation": "modify", "content": FIXED_GREET},
        {"file_path": "tests/test_greet.sh", "operation": "modify", "content": "exit 0\n"},
    ]});
    let fixed = json!({"code_changes": [{"file_path": "greet.sh", "operation": "modify", "content": FIXED_GREET}],
                       "explanation": "fixed the code only"});
    let server = scripted::start(Script::replies([weakened.to_string(), fixed.to_string()])).await.unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let result = outcome.unwrap();
    assert_eq!(result.refusals, ["tests/test_greet.sh (protected by `tests/**`)"]);
    assert_eq!(result.explanation, "fixed the code only");
    assert_eq!(std::fs::read_to_string(ws.path().join("tests/test_greet.sh")).unwrap(), TEST_SCRIPT);
    let told = last_user_text(&server.requests()[1]);
    assert!(
        told.starts_with("Nothing was applied: tests/test_greet.sh is protected (matches `tests/**`)"),
        "{told}"
    );
}
