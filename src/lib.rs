//! agent-runner: the stateless NecroCode worker.
//!
//! Reading order: `error` (the failure vocabulary), `task` (the message model, pure),
//! `config`, `secrets`, `process` and `playbook` (running commands), `git` (slots,
//! workspaces, commit and push), `llm` (the implementation step), `artifacts`,
//! `events`, `amqp` (the only module that speaks to RabbitMQ), `pipeline` (one task,
//! end to end), `worker` (the delivery loop), `cli` and `demo`. Operations: `clients`
//! (REST clients for the NecroCode services), `mirror` (events into the Task Registry),
//! `metrics` and `http` (health and Prometheus endpoints). `workspace_files` is how every
//! read of workspace content opens a file (metadata first, capped); `tls` the one TLS
//! configuration every HTTP client is built on.

pub mod amqp;
pub mod artifacts;
pub mod cli;
pub mod clients;
pub mod config;
pub mod demo;
pub mod error;
pub mod events;
pub mod git;
pub mod http;
pub mod kubernetes;
pub mod llm;
pub mod metrics;
pub mod mirror;
pub mod pipeline;
pub mod playbook;
pub mod process;
pub mod secrets;
pub mod task;
pub mod telemetry;
pub mod tls;
pub mod worker;
pub mod workspace_files;
