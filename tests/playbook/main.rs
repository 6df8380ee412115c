//! Playbook parsing, conditions, execution and resolution against real files and `sh`.

mod condition;
mod exec;
mod parse;
mod resolve;
mod shipped;
