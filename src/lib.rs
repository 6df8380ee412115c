//! agent-runner: the stateless NecroCode worker.
//!
//! Reading order: `error` (the failure vocabulary), `task` (the message model, pure),
//! `config`, `process` and `playbook` (running commands), `git` (slots, workspaces,
//! commit and push), `llm` (the implementation step), `artifacts`, `events`, `amqp`
//! (the only module that speaks to RabbitMQ), `pipeline` (one task, end to end),
//! `worker` (the delivery loop), `cli`.

pub mod error;
pub mod llm;
