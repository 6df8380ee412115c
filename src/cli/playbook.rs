//! `agent-runner playbook validate FILE`: errors name the line and the field.

use std::path::PathBuf;
use std::process::ExitCode;

#[derive(Debug, clap::Subcommand)]
pub enum PlaybookCommand {
    /// Check a playbook file; prints its steps when valid.
    Validate {
        /// The playbook (YAML).
        file: PathBuf,
    },
}

pub fn run(command: PlaybookCommand) -> anyhow::Result<ExitCode> {
    match command {
        PlaybookCommand::Validate { file } => {
            let text = std::fs::read_to_string(&file)
                .map_err(|e| super::exit::UsageError(format!("cannot read {}: {e}", file.display())))?;
            match crate::playbook::parse_playbook(&text, &file.display().to_string()) {
                Ok(playbook) => {
                    println!(
                        "{}: valid playbook '{}' with {} step(s)",
                        file.display(),
                        playbook.name,
                        playbook.steps.len()
                    );
                    for step in &playbook.steps {
                        let line = format!("  - {}: {}", step.name, step.command);
                        println!("{}", crate::telemetry::mask_output(&line));
                    }
                    Ok(ExitCode::SUCCESS)
                }
                Err(error) => {
                    eprintln!("{}", crate::telemetry::mask_output(&error.to_string()));
                    Ok(ExitCode::FAILURE)
                }
            }
        }
    }
}
