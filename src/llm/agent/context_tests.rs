//! Fitting conversations: what goes first, what always stays, and valid pairing.

use async_openai::types::chat::ChatCompletionRequestMessage as Message;
use serde_json::json;

use super::super::transcript::CallRecord;
use super::super::turn::{self, Turn};
use super::*;

fn limits(window: u32) -> ContextLimits {
    ContextLimits { window, scale: 1.0 }
}

fn answer(calls: &[(&str, &str, serde_json::Value)]) -> Message {
    turn::assistant(&Turn {
        content: String::new(),
        calls: calls
            .iter()
            .map(|(id, name, args)| CallRecord {
                id: id.to_string(),
                name: name.to_string(),
                arguments: args.to_string(),
            })
            .collect(),
        prompt_tokens: 0,
        completion_tokens: 0,
        model: "m".into(),
        truncated: false,
        max_tokens: 0,
        fit: FitReport::default(),
    })
}

fn plain(text: &str) -> Message {
    turn::assistant(&Turn {
        content: text.to_string(),
        calls: Vec::new(),
        prompt_tokens: 0,
        completion_tokens: 0,
        model: "m".into(),
        truncated: false,
        max_tokens: 0,
        fit: FitReport::default(),
    })
}

/// A long conversation: task, then `reads` read_file exchanges of 3000 characters each, a
/// failing test run, a nudge twice and a last read.
fn conversation(reads: usize) -> Vec<Message> {
    let mut messages = vec![turn::system("rules".into()), turn::user("TASK: fix greet.sh".into())];
    for i in 0..reads {
        let id = format!("r{i}");
        messages.push(answer(&[(&id, "read_file", json!({"path": format!("src/f{i}.py")}))]));
        messages.push(turn::tool_result(&id, "line of code\n".repeat(250)));
    }
    messages.push(answer(&[("t", "run_tests", json!({}))]));
    messages.push(turn::tool_result("t", format!("tests FAILED\n{}expected 'Hello'", "noise\n".repeat(100))));
    for _ in 0..2 {
        messages.push(plain("I think it is done."));
        messages.push(turn::user("Your answer did not call any tool.".into()));
    }
    messages.push(answer(&[("last", "read_file", json!({"path": "greet.sh"}))]));
    messages.push(turn::tool_result("last", "echo hi\n".into()));
    messages
}

fn total_chars(messages: &[Message]) -> usize {
    messages.iter().map(|m| text(m).len()).sum()
}

/// Every tool message follows the answer holding its id; no answer is empty.
fn assert_valid(messages: &[Message]) {
    let mut open: Vec<String> = Vec::new();
    for message in messages {
        match message {
            Message::Assistant(a) => {
                open = call_ids(a);
                assert!(a.content.is_some() || a.tool_calls.as_ref().is_some_and(|c| !c.is_empty()), "{a:?}");
            }
            Message::Tool(t) => assert!(open.contains(&t.tool_call_id), "orphan {}", t.tool_call_id),
            _ => open.clear(),
        }
    }
}

#[test]
fn a_conversation_that_fits_is_sent_as_it_is() {
    let messages = conversation(1);
    let fitted = fit(&messages, 0, limits(100_000), 1024);
    assert_eq!(fitted.messages, messages);
    assert_eq!(fitted.report, FitReport::default());
    assert_eq!(fitted.max_tokens, 1024);
}

#[test]
fn old_results_are_summarised_first_and_the_latest_stay() {
    let messages = conversation(3);
    let fitted = fit(&messages, 0, limits(4096), 1024);
    assert!(fitted.report.summarised > 0 && fitted.report.dropped_exchanges == 0, "{:?}", fitted.report);
    let texts: Vec<String> = fitted.messages.iter().map(text).collect();
    assert!(
        texts.contains(&"[read_file src/f0.py: 250 lines, dropped to fit the context]".to_string()),
        "{texts:#?}"
    );
    assert_eq!(texts[1], "TASK: fix greet.sh");
    assert!(texts.iter().any(|t| t.starts_with("tests FAILED") && t.ends_with("expected 'Hello'")));
    assert_eq!(texts.last().map(String::as_str), Some("echo hi\n"));
    assert!(fitted.prompt_tokens + fitted.max_tokens <= 4096, "{fitted:?}");
    assert_valid(&fitted.messages);
}

#[test]
fn a_window_too_small_for_summaries_drops_whole_exchanges_but_keeps_task_failure_and_latest() {
    let messages = conversation(60);
    let fitted = fit(&messages, 2000, limits(2048), 512);
    let report = fitted.report;
    assert!(report.dropped_exchanges > 0 && report.collapsed == 1, "{report:?}");
    let texts: Vec<String> = fitted.messages.iter().map(text).collect();
    assert!(
        texts[1].starts_with("TASK: fix greet.sh\n\n[") && texts[1].contains("earlier turns were left out")
    );
    assert!(texts.iter().any(|t| t.contains("expected 'Hello'")), "{texts:#?}");
    assert_eq!(texts.iter().filter(|t| t.contains("did not call any tool")).count(), 1);
    assert_eq!(texts.last().map(String::as_str), Some("echo hi\n"));
    assert!(fitted.prompt_tokens + fitted.max_tokens <= 2048, "{fitted:?}");
    assert!(total_chars(&fitted.messages) < total_chars(&messages) / 10);
    assert_valid(&fitted.messages);
}

#[test]
fn long_results_are_cut_to_a_share_of_the_window_tests_keeping_their_tail() {
    let mut messages = conversation(0);
    messages.push(answer(&[("big", "run_tests", json!({}))]));
    messages.push(turn::tool_result("big", format!("tests FAILED\n{}the verdict", "x\n".repeat(5000))));
    let fitted = fit(&messages, 0, limits(4096), 1024);
    let last = text(fitted.messages.last().unwrap());
    assert!(last.starts_with("[the start of this output was cut") && last.ends_with("the verdict"), "{last}");
    assert!(last.chars().count() < 2600, "{}", last.len());
    assert_eq!(fitted.report.cut, 1);
}

#[test]
fn old_write_arguments_shrink_and_stay_valid_json() {
    let content = "print('hello')\n".repeat(100);
    let mut messages = vec![turn::system("rules".into()), turn::user("TASK".into())];
    for i in 0..6 {
        let id = format!("w{i}");
        messages.push(answer(&[(
            &id,
            "write_file",
            json!({"path": format!("f{i}.py"), "content": content}),
        )]));
        messages.push(turn::tool_result(&id, format!("wrote f{i}.py")));
    }
    let fitted = fit(&messages, 0, limits(2048), 256);
    let Message::Assistant(first) = &fitted.messages[2] else { panic!("{:?}", fitted.messages[2]) };
    let Some(ChatCompletionMessageToolCalls::Function(call)) =
        first.tool_calls.as_ref().and_then(|c| c.first())
    else {
        panic!("{first:?}")
    };
    let args: Value = serde_json::from_str(&call.function.arguments).unwrap();
    assert_eq!(args, json!({"path": "f0.py", "content": "[100 lines, dropped to fit the context]"}));
    assert_valid(&fitted.messages);
}

#[test]
fn an_empty_answer_is_never_sent_empty() {
    let messages =
        vec![turn::system("s".into()), turn::user("t".into()), plain(""), turn::user("nudge".into())];
    let fitted = fit(&messages, 0, limits(8192), 512);
    assert_eq!(text(&fitted.messages[2]), "(empty answer)");
    assert_valid(&fitted.messages);
}

#[test]
fn the_repository_view_is_cut_last() {
    let tree = "src/file.py (10 bytes)\n".repeat(2000);
    let task = format!(
        "The task:\n<<<TASK t>>>\nfix it\n<<<END TASK t>>>\n<<<REPOSITORY t>>>\n{tree}<<<END REPOSITORY t>>>\nStart now."
    );
    let messages = vec![turn::system("s".into()), turn::user(task)];
    let fitted = fit(&messages, 0, limits(4096), 1024);
    let sent = text(&fitted.messages[1]);
    assert!(fitted.report.repository_cut);
    assert!(sent.contains("fix it") && sent.contains("<<<END REPOSITORY t>>>\nStart now."), "{sent}");
    assert!(sent.contains("the rest of the repository view was cut"));
    assert!(fitted.prompt_tokens + fitted.max_tokens <= 4096, "{fitted:?}");
}

#[test]
fn the_opening_view_and_the_repair_failure_scale_with_the_window() {
    use super::super::{EngineMode, failure_chars, repo_view_budget};
    let small = repo_view_budget(EngineMode::Tools, limits(4096));
    let large = repo_view_budget(EngineMode::Tools, limits(128_000));
    assert_eq!(
        (small.max_tree_entries, small.max_content_bytes, small.max_file_bytes),
        (20, 1024, 512),
        "{small:?}"
    );
    assert_eq!(
        (large.max_tree_entries, large.max_content_bytes, large.max_file_bytes),
        (400, 12 * 1024, 4 * 1024)
    );
    let blocks = repo_view_budget(EngineMode::EditBlocks, limits(32_768));
    assert!(blocks.max_content_bytes > repo_view_budget(EngineMode::Tools, limits(32_768)).max_content_bytes);
    assert_eq!(failure_chars(limits(4096)), 1842);
    // A correction learned from an overflow shrinks the view too.
    let corrected = repo_view_budget(EngineMode::Tools, ContextLimits { window: 32_768, scale: 2.0 });
    assert!(
        corrected.max_content_bytes < repo_view_budget(EngineMode::Tools, limits(32_768)).max_content_bytes
    );
}
