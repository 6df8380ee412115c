//! Playbook parsing, conditions, execution and resolution against real files and `sh`.

#[path = "../common/mod.rs"]
mod common;
mod condition;
mod exec;
mod parse;
mod resolve;
mod shipped;
