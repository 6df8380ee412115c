//! The turn protocol against the scripted server, with answers shaped the way a small
//! real model (Qwen2.5-Coder-1.5B behind llama.cpp) gave them: `finish` with no edit or
//! after a failing test, tool calls written as text, the tool's schema echoed as its
//! arguments, code in a Markdown fence, the same prose again and again, an empty answer,
//! and edit blocks with the format's placeholders copied.

mod engine_support;

use agent_runner::llm::scripted::{self, Script, ScriptedCall, ScriptedLlmHandle, Step};
use agent_runner::llm::{AgentSession, EngineMode, EngineSettings, ImplementError, ImplementationResult};
use engine_support::{FIXED_GREET, WRONG_GREET, last_user_text, run_round, tool_results, workspace};
use serde_json::{Value, json};
use tempfile::TempDir;

fn fixed_greet() -> String {
    format!("#!/bin/sh\n{FIXED_GREET}")
}

/// `first`, then the steps that fix greet.sh and finish.
fn then_fix<const N: usize>(first: [Step; N]) -> Script {
    let mut steps = Vec::from(first);
    steps.push(Step::call("write_file", json!({"path": "greet.sh", "content": fixed_greet()})));
    steps.push(Step::call("finish", json!({"summary": "fixed"})));
    Script::Steps(steps)
}

/// One default round of `script` on a fresh workspace.
async fn play(
    script: Script,
) -> (TempDir, ScriptedLlmHandle, Result<ImplementationResult, ImplementError>, AgentSession) {
    let ws = workspace();
    let server = scripted::start(script).await.unwrap();
    let (outcome, session) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    (ws, server, outcome, session)
}

fn assistant_messages(request: &Value) -> Vec<Value> {
    request["messages"].as_array().unwrap().iter().filter(|m| m["role"] == "assistant").cloned().collect()
}

#[tokio::test]
async fn finish_without_a_change_is_refused_and_the_model_goes_on() {
    let (_ws, server, outcome, session) =
        play(then_fix([Step::call("finish", json!({"summary": "Fixed the greeting."}))])).await;
    let result = outcome.unwrap();
    let requests = server.requests();
    assert_eq!(requests.len(), 3);
    let refusal = &tool_results(&requests[1])[0].1;
    assert!(refusal.starts_with("error: finish refused: nothing has changed in this round"), "{refusal}");
    assert_eq!(result.explanation, "fixed");
    // The last finish came after an untested change: the engine ran the tests itself.
    let transcript = session.transcript().to_json();
    assert!(transcript.contains("tests run by the engine on finish: tests PASSED"), "{transcript}");
}

#[tokio::test]
async fn finish_after_a_failing_change_gets_the_test_output_and_a_second_insistence_ends_the_round() {
    let ws = workspace();
    let server = scripted::start(Script::steps([
        Step::call("write_file", json!({"path": "greet.sh", "content": WRONG_GREET.replace("Hi", "Hey")})),
        Step::call("finish", json!({"summary": "done"})),
        Step::call("finish", json!({"summary": "done, really"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let refusal = &tool_results(&server.requests()[2])[0].1;
    assert!(refusal.starts_with("error: finish refused: the last test run failed"), "{refusal}");
    assert!(refusal.contains("tests FAILED") && refusal.contains("got 'Hey World'"), "{refusal}");
    // Insisting ends the round; the pipeline's test step judges it and a repair round follows.
    assert_eq!(outcome.unwrap().explanation, "done, really");
}

#[tokio::test]
async fn calls_after_a_failed_call_in_the_same_turn_are_dropped_and_reported() {
    let (_ws, server, outcome, _) = play(then_fix([Step::ToolCalls(vec![
        ScriptedCall::new("edit_file", json!({"path": "greet.sh", "search": "absent", "replace": "x"})),
        ScriptedCall::new("run_tests", json!({})),
        ScriptedCall::new("finish", json!({"summary": "Fixed."})),
    ])]))
    .await;
    assert_eq!(outcome.unwrap().explanation, "fixed");
    let results: Vec<String> = tool_results(&server.requests()[1]).into_iter().map(|(_, t)| t).collect();
    assert!(results[0].starts_with("error: the search text was not found"), "{results:?}");
    for dropped in &results[1..] {
        assert!(
            dropped.starts_with("error: not run: the edit_file call before it in this turn failed"),
            "{dropped}"
        );
    }
}

#[tokio::test]
async fn tool_calls_written_as_text_are_run_and_answered_in_a_user_message() {
    let ws = workspace();
    let write = json!({"name": "write_file", "arguments": {"path": "greet.sh", "content": fixed_greet()}});
    let server = scripted::start(Script::replies([
        format!("I will fix it.\n<tool_call>\n{write}\n</tool_call>"),
        "```json\n{\"name\": \"finish\", \"arguments\": {\"summary\": \"fixed greet.sh\"}}\n```".to_string(),
    ]))
    .await
    .unwrap();
    let (outcome, session) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    let result = outcome.unwrap();
    assert_eq!(std::fs::read_to_string(ws.path().join("greet.sh")).unwrap(), fixed_greet());
    assert_eq!(
        (result.explanation.as_str(), result.files_changed.as_slice()),
        ("fixed greet.sh", &["greet.sh".to_string()][..])
    );
    let second = &server.requests()[1];
    // The answer goes back as the text it was, its result as a user message.
    let answered = assistant_messages(second);
    assert!(answered[0]["content"].as_str().unwrap().contains("<tool_call>"));
    assert!(answered[0].get("tool_calls").is_none());
    assert_eq!(last_user_text(second), "[1] write_file result:\nwrote greet.sh (37 bytes)");
    let transcript = session.transcript().to_json();
    assert!(transcript.contains("tool calls read from the answer (text: <tool_call> tags): write_file"));
    assert!(transcript.contains("tool calls read from the answer (text: JSON): finish"));
}

#[tokio::test]
async fn an_echoed_schema_is_refused_with_a_correct_example() {
    let (_ws, server, outcome, _) = play(then_fix([
        Step::ToolCalls(vec![ScriptedCall::raw(
            "list_dir",
            r#"{"properties":{"path":{"type":"string"}},"required":[],"type":"object"}"#,
        )]),
        Step::call("read_file", json!({"file": "greet.sh"})),
    ]))
    .await;
    outcome.unwrap();
    let requests = server.requests();
    let schema = &tool_results(&requests[1])[0].1;
    assert_eq!(
        schema,
        r#"error: the arguments of list_dir are its JSON schema, not values; send the values themselves, e.g. {"name": "list_dir", "arguments": {"path":""}}"#
    );
    let unknown = &tool_results(&requests[2])[0].1;
    assert!(
        unknown.contains("unknown field `file`") && unknown.contains(r#"{"name": "read_file""#),
        "{unknown}"
    );
}

#[tokio::test]
async fn code_in_a_fence_gets_the_exact_call_to_make() {
    let ws = workspace();
    let answer =
        format!("Here is the corrected `greet.sh`:\n```sh\n{}```\nThis prints the greeting.", fixed_greet());
    let write = json!({"name": "write_file", "arguments": {"path": "greet.sh", "content": fixed_greet()}});
    let server = scripted::start(Script::steps([
        Step::Reply(answer),
        Step::Reply(format!("<tool_call>{write}</tool_call>")),
        Step::call("finish", json!({"summary": "fixed"})),
    ]))
    .await
    .unwrap();
    let (outcome, _) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    outcome.unwrap();
    let nudge = last_user_text(&server.requests()[1]);
    let expected_call = format!(
        "{{\"name\": \"write_file\", \"arguments\": {}}}",
        json!({"content": fixed_greet(), "path": "greet.sh"})
    );
    assert!(nudge.starts_with("Your answer shows code for greet.sh but calls no tool"), "{nudge}");
    assert!(nudge.contains(&expected_call), "{nudge}");
    assert!(nudge.contains("greet.sh exists already") && nudge.contains("edit_file"), "{nudge}");
}

#[tokio::test]
async fn the_same_prose_again_and_again_is_a_stall() {
    let ws = workspace();
    let prose = "The greeting is now fixed and the tests pass.";
    let server = scripted::start(Script::replies([prose, prose, prose, prose, "wrap-up"])).await.unwrap();
    let (outcome, session) = run_round(ws.path(), &server, &EngineSettings::default(), 0).await;
    match outcome {
        Err(ImplementError::BudgetExhausted { limit, .. }) => {
            assert_eq!(limit, "engine.stall_repeated_calls")
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    let requests = server.requests();
    assert_eq!(requests.len(), 5, "four answers, then the wrap-up turn");
    let nudge = last_user_text(&requests[1]);
    assert!(
        nudge.starts_with("Your answer did not call any tool") && nudge.contains("<tool_call>"),
        "{nudge}"
    );
    assert!(nudge.contains(r#""path":"greet.sh""#), "the example names the task's file: {nudge}");
    assert_eq!(session.totals().unwrap().explanation, "wrap-up");
}

#[tokio::test]
async fn an_empty_answer_never_goes_back_as_an_empty_assistant_message() {
    let (_ws, server, outcome, _) = play(then_fix([Step::Reply(String::new())])).await;
    outcome.unwrap();
    for request in server.requests() {
        for message in assistant_messages(&request) {
            let content = message["content"].as_str().unwrap_or("");
            assert!(!content.is_empty() || message.get("tool_calls").is_some(), "{message}");
        }
    }
    assert!(last_user_text(&server.requests()[1]).starts_with("Your answer was empty."));
}

#[tokio::test]
async fn edit_blocks_show_a_real_file_and_copied_placeholders_are_format_errors() {
    let ws = workspace();
    let placeholder = "path/to/greet.sh\n<<<<<<< SEARCH\necho \"Hi $1\"\n=======\necho hi\n>>>>>>> REPLACE\n";
    let orphan = "greet.sh\necho \"Hi $1\"\n=======\necho hi\n>>>>>>> REPLACE\n";
    let good = format!("greet.sh\n<<<<<<< SEARCH\necho \"Hi $1\"\n=======\n{FIXED_GREET}>>>>>>> REPLACE\n");
    let server = scripted::start(Script::replies([
        "All done, the greeting works.".to_string(),
        placeholder.to_string(),
        orphan.to_string(),
        good,
        "greet.sh now prints Hello.".to_string(),
    ]))
    .await
    .unwrap();
    let engine = EngineSettings { mode: EngineMode::EditBlocks, ..EngineSettings::default() };
    let (outcome, _) = run_round(ws.path(), &server, &engine, 0).await;
    assert_eq!(outcome.unwrap().explanation, "greet.sh now prints Hello.");
    let requests = server.requests();
    let system = requests[0]["messages"][0]["content"].as_str().unwrap();
    assert!(
        system.contains("to change a line of greet.sh:\n\ngreet.sh\n<<<<<<< SEARCH\n#!/bin/sh\n=======\n"),
        "{system}"
    );
    let told: Vec<String> = requests[1..4].iter().map(last_user_text).collect();
    assert!(told[0].starts_with("finish refused: nothing has changed in this round"), "{}", told[0]);
    assert!(told[1].contains("path/to/greet.sh, the example's placeholder"), "{}", told[1]);
    assert!(
        told[2].contains("is an edit-block marker but no block starts with <<<<<<< SEARCH"),
        "{}",
        told[2]
    );
    assert_eq!(std::fs::read_to_string(ws.path().join("greet.sh")).unwrap(), fixed_greet());
}

#[tokio::test]
async fn an_answer_cut_off_at_the_token_limit_is_asked_again_in_smaller_pieces() {
    // A whole file in a text call, cut before its closing brace (finish_reason: length).
    let cut = format!(
        "<tool_call>\n{{\"name\": \"write_file\", \"arguments\": {{\"path\": \"greet.sh\", \"content\": \"#!/bin/sh\\n{}",
        "echo line\\n".repeat(40)
    );
    let (_ws, server, outcome, _session) = play(then_fix([Step::CutOff(cut)])).await;
    assert_eq!(outcome.unwrap().explanation, "fixed");
    let requests = server.requests();
    let reply = last_user_text(&requests[1]);
    let limit = requests[0]["max_tokens"].as_u64().unwrap();
    assert!(
        reply.starts_with(&format!(
            "Your answer was cut off at the {limit}-token limit before it ended, so nothing was run."
        )),
        "{reply}"
    );
    assert!(reply.contains("edit_file on just the lines that change"), "{reply}");
}

#[tokio::test]
async fn the_same_look_twice_in_a_row_is_not_run_again_but_answered_with_an_edit_to_make() {
    let look = || Step::call("list_dir", json!({"path": "."}));
    let (_ws, server, outcome, _session) = play(then_fix([look(), look()])).await;
    assert_eq!(outcome.unwrap().explanation, "fixed");
    let requests = server.requests();
    let first = &tool_results(&requests[1])[0].1;
    assert!(first.contains("greet.sh"), "{first}");
    // Near-greedy sampling gave the same answer twice: the next request is hotter, and
    // the configured temperature is back once a file changed.
    let temperatures: Vec<String> =
        requests.iter().map(|r| format!("{:.2}", r["temperature"].as_f64().unwrap())).collect();
    assert_eq!(temperatures, ["0.20", "0.20", "0.70", "0.20"]);
    let second = &tool_results(&requests[2])[0].1;
    assert!(
        second.starts_with("not run: this is the same list_dir call as your previous one")
            && second.contains(r#"{"name": "edit_file", "arguments": {"#)
            && !second.contains("greet.sh ("),
        "{second}"
    );
}

#[tokio::test]
async fn a_file_read_twice_in_a_row_is_answered_with_an_edit_of_that_file() {
    let read = || Step::call("read_file", json!({"path": "greet.sh"}));
    let (_ws, server, outcome, _session) = play(then_fix([read(), read()])).await;
    assert_eq!(outcome.unwrap().explanation, "fixed");
    let second = &tool_results(&server.requests()[2])[0].1;
    assert!(second.starts_with("not run: you read greet.sh in your previous call"), "{second}");
    // The example edits a line that is really in the file, so copying it can apply.
    let (_, call) = second.split_once("<tool_call>\n").unwrap();
    let (call, _) = call.split_once("\n</tool_call>").unwrap();
    let call: Value = serde_json::from_str(call).unwrap();
    assert_eq!(call["arguments"]["path"], "greet.sh");
    let search = call["arguments"]["search"].as_str().unwrap();
    assert_eq!(WRONG_GREET.matches(search).count(), 1, "{search:?} in {WRONG_GREET:?}");
}

#[tokio::test]
async fn a_write_that_would_drop_most_of_a_file_is_refused_until_the_file_is_deleted_first() {
    let long: String = (1..=10).map(|i| format!("echo line {i}\n")).collect();
    let write = |content: &str| Step::call("write_file", json!({"path": "lines.sh", "content": content}));
    let delete = Step::call("delete_file", json!({"path": "lines.sh"}));
    let (ws, server, outcome, _session) = play(then_fix([
        write(&long),
        write("echo line 1\n"),
        write("echo line 1\n"),
        delete,
        write("echo line 1\n"),
    ]))
    .await;
    outcome.unwrap();
    let requests = server.requests();
    for refused in [2, 3] {
        let text = &tool_results(&requests[refused])[0].1;
        assert!(
            text.starts_with("error: not written: this would replace the 10 lines of lines.sh with 1."),
            "{text}"
        );
    }
    assert!(
        tool_results(&requests[5])[0].1.starts_with("wrote lines.sh"),
        "{:?}",
        tool_results(&requests[5])
    );
    assert_eq!(std::fs::read_to_string(ws.path().join("lines.sh")).unwrap(), "echo line 1\n");
}

#[tokio::test]
async fn rewriting_a_file_with_what_it_holds_is_no_change() {
    let same = || Step::call("write_file", json!({"path": "greet.sh", "content": WRONG_GREET}));
    let (_ws, server, outcome, _session) = play(then_fix([same()])).await;
    let result = outcome.unwrap();
    assert_eq!(tool_results(&server.requests()[1])[0].1, "no change: greet.sh already holds exactly this");
    assert_eq!(result.tool_calls.get("write_file"), Some(&2));
}

#[tokio::test]
async fn a_look_refused_for_its_arguments_is_run_again_when_repeated() {
    let bad = || Step::call("read_file", json!({"path": "greet.sh", "start_line": "one"}));
    let (_ws, server, outcome, _session) = play(then_fix([bad(), bad()])).await;
    outcome.unwrap();
    let requests = server.requests();
    for request in &requests[1..3] {
        let result = &tool_results(request)[0].1;
        assert!(result.starts_with("error: the arguments of read_file are not valid"), "{result}");
    }
}

#[tokio::test]
async fn the_same_turn_of_several_calls_again_and_again_is_a_stall() {
    let turn = || {
        Step::ToolCalls(vec![
            ScriptedCall::new("read_file", json!({"path": "greet.sh"})),
            ScriptedCall::new("run_tests", json!({})),
        ])
    };
    let (_ws, server, outcome, _session) =
        play(Script::Steps(vec![turn(), turn(), turn(), turn(), Step::Reply("wrap-up".into())])).await;
    match outcome {
        Err(ImplementError::BudgetExhausted { limit, detail }) => {
            assert_eq!(limit, "engine.stall_repeated_calls");
            assert_eq!(detail, "the same turn of several calls was made 4 times in a row");
        }
        other => panic!("expected a stall, got {other:?}"),
    }
    // From the second identical turn on, the requests go hotter.
    let temperatures: Vec<String> =
        server.requests().iter().map(|r| format!("{:.2}", r["temperature"].as_f64().unwrap())).collect();
    assert_eq!(temperatures[..4], ["0.20", "0.20", "0.70", "0.70"]);
}
