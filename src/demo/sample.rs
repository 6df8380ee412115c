//! The demo's sample material: an origin repository (a bare git repository with a tiny
//! shell project and its own playbook), a task for it, and the answer a scripted model
//! gives for that task. Tests build their remotes with [`create_origin`] too.

use std::path::Path;

use git2::{FileMode, Oid, Repository, Signature};

/// The sample project's files: a README, a failing-until-implemented test, a playbook.
pub const SAMPLE_FILES: &[(&str, &str)] = &[
    ("README.md", "# greeter\n\nA tiny shell tool: `sh greet.sh NAME` prints a greeting.\n"),
    (
        "tests/test_greet.sh",
        "#!/bin/sh\nset -e\nout=$(sh ./greet.sh World)\n[ \"$out\" = \"Hello, World!\" ] || { echo \"expected 'Hello, World!', got '$out'\"; exit 1; }\necho \"greet: ok\"\n",
    ),
    (
        ".necrocode/playbook.yaml",
        "name: greeter checks\nsteps:\n  - name: unit tests\n    command: sh tests/test_greet.sh\n    timeout_seconds: 60\n",
    ),
];

/// The file the sample task asks for, and what the scripted model writes into it.
pub const GREET_PATH: &str = "greet.sh";
pub const GREET_CONTENT: &str =
    "#!/bin/sh\n# Prints a greeting for its first argument.\necho \"Hello, ${1:-world}!\"\n";

/// The sample task message for a repository at `repo_url`.
pub fn sample_task(repo_url: &str, task_id: &str) -> serde_json::Value {
    serde_json::json!({
        "schema_version": 1,
        "task_id": task_id,
        "spec_name": "greeter",
        "title": "Add the greet command",
        "description": "Create greet.sh, a POSIX shell script that prints 'Hello, NAME!' for its first argument.",
        "acceptance_criteria": ["`sh greet.sh World` prints `Hello, World!`", "tests/test_greet.sh passes"],
        "required_skill": "backend",
        "repo_url": repo_url,
        "base_branch": "main",
        "metadata": { "source": "agent-runner demo" }
    })
}

/// The answer (the original single-shot JSON format) a model gives for the sample task.
pub fn scripted_answer() -> String {
    serde_json::json!({
        "code_changes": [{ "file_path": GREET_PATH, "operation": "create", "content": GREET_CONTENT }],
        "explanation": "Added greet.sh, which echoes a greeting for its first argument."
    })
    .to_string()
}

/// Creates a bare repository at `path` whose `branch` holds one commit with `files`.
pub fn create_origin(path: &Path, branch: &str, files: &[(&str, &str)]) -> Result<String, git2::Error> {
    let repo = Repository::init_bare(path)?;
    let tree = build_tree(&repo, files, "")?;
    let tree = repo.find_tree(tree)?;
    let signature = Signature::now("NecroCode Dispatcher", "dispatcher@necrocode.local")?;
    let reference = format!("refs/heads/{branch}");
    let commit = repo.commit(Some(&reference), &signature, &signature, "Initial commit", &tree, &[])?;
    repo.set_head(&reference)?;
    Ok(commit.to_string())
}

/// Builds the tree for the files under `prefix`, recursing into subdirectories.
fn build_tree(repo: &Repository, files: &[(&str, &str)], prefix: &str) -> Result<Oid, git2::Error> {
    let mut builder = repo.treebuilder(None)?;
    let mut subdirectories: Vec<&str> = Vec::new();
    for (path, content) in files {
        let Some(rest) = path.strip_prefix(prefix) else { continue };
        match rest.split_once('/') {
            None => {
                let blob = repo.blob(content.as_bytes())?;
                builder.insert(rest, blob, FileMode::Blob.into())?;
            }
            Some((directory, _)) if !subdirectories.contains(&directory) => subdirectories.push(directory),
            Some(_) => {}
        }
    }
    for directory in subdirectories {
        let subtree = build_tree(repo, files, &format!("{prefix}{directory}/"))?;
        builder.insert(directory, subtree, FileMode::Tree.into())?;
    }
    builder.write()
}

/// The commit `branch` points at in the repository at `path`, with its message.
pub fn branch_head(path: &Path, branch: &str) -> Result<Option<(String, String)>, git2::Error> {
    let repo = Repository::open(path)?;
    let reference = match repo.find_reference(&format!("refs/heads/{branch}")) {
        Ok(reference) => reference,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let commit = reference.peel_to_commit()?;
    Ok(Some((commit.id().to_string(), commit.message().unwrap_or("").to_string())))
}

/// The content of `file` in the tree of `commit`, if present.
pub fn file_at(path: &Path, commit: &str, file: &str) -> Result<Option<String>, git2::Error> {
    let repo = Repository::open(path)?;
    let tree = repo.find_commit(Oid::from_str(commit)?)?.tree()?;
    let entry = match tree.get_path(Path::new(file)) {
        Ok(entry) => entry,
        Err(e) if e.code() == git2::ErrorCode::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let blob = repo.find_blob(entry.id())?;
    Ok(Some(String::from_utf8_lossy(blob.content()).into_owned()))
}
