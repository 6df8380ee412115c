//! Resolution order, one level at a time, with real directories.

use std::path::Path;

use agent_runner::playbook::{PlaybookError, PlaybookSpec, ResolvedPlaybook, resolve_playbook};
use serde_json::json;

struct Dirs {
    playbooks: tempfile::TempDir,
    workspace: tempfile::TempDir,
}

fn playbook_yaml(name: &str) -> String {
    format!("name: {name}\nsteps:\n  - name: s\n    command: 'true'\n")
}

fn write(path: &Path, text: &str) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, text).unwrap();
}

/// Every level populated, so each test shows which one wins.
fn dirs() -> Dirs {
    let d = Dirs { playbooks: tempfile::tempdir().unwrap(), workspace: tempfile::tempdir().unwrap() };
    for name in ["custom", "rust", "generic"] {
        write(&d.playbooks.path().join(format!("{name}.yaml")), &playbook_yaml(&format!("dir {name}")));
    }
    write(&d.workspace.path().join(".necrocode/playbook.yaml"), &playbook_yaml("repository own"));
    write(&d.workspace.path().join("ci/check.yaml"), &playbook_yaml("repository path"));
    d
}

fn resolve(
    d: &Dirs,
    spec: Option<PlaybookSpec>,
    skill: Option<&str>,
) -> Result<ResolvedPlaybook, PlaybookError> {
    resolve_playbook(spec.as_ref(), skill, d.playbooks.path(), d.workspace.path())
}

fn named(name: &str) -> Option<PlaybookSpec> {
    Some(PlaybookSpec::Named(name.into()))
}

fn picked(r: Result<ResolvedPlaybook, PlaybookError>) -> (String, String) {
    let r = r.unwrap();
    (r.playbook.name, r.source)
}

#[test]
fn level_1_an_inline_playbook_wins() {
    let d = dirs();
    let inline = json!({"name": "inline one", "steps": [{"name": "s", "command": "true"}]});
    let got = picked(resolve(&d, Some(PlaybookSpec::Inline(inline)), Some("rust")));
    assert_eq!(got, ("inline one".into(), "inline playbook in the task message".into()));
}

#[test]
fn level_2_a_plain_name_is_looked_up_in_the_playbooks_directory() {
    let d = dirs();
    let path = d.playbooks.path().join("custom.yaml").display().to_string();
    let got = picked(resolve(&d, named("custom"), Some("rust")));
    assert_eq!(got, ("dir custom".into(), format!("{path} (named in the task)")));
}

#[test]
fn level_2_a_yaml_path_is_read_from_the_repository() {
    let d = dirs();
    let got = picked(resolve(&d, named("ci/check.yaml"), Some("rust")));
    assert_eq!(got, ("repository path".into(), "ci/check.yaml in the repository".into()));
}

#[test]
fn level_3_the_repositorys_own_playbook() {
    let d = dirs();
    let got = picked(resolve(&d, None, Some("rust")));
    assert_eq!(got, ("repository own".into(), ".necrocode/playbook.yaml in the repository".into()));
}

#[test]
fn level_4_the_skill_default() {
    let d = dirs();
    std::fs::remove_dir_all(d.workspace.path().join(".necrocode")).unwrap();
    let path = d.playbooks.path().join("rust.yaml").display().to_string();
    let got = picked(resolve(&d, None, Some("rust")));
    assert_eq!(got, ("dir rust".into(), format!("{path} (default for skill 'rust')")));
}

#[test]
fn level_5_generic_when_the_skill_has_no_playbook_or_is_not_a_file_name() {
    let d = dirs();
    std::fs::remove_dir_all(d.workspace.path().join(".necrocode")).unwrap();
    let path = d.playbooks.path().join("generic.yaml").display().to_string();
    for skill in [Some("cobol"), Some("../rust"), None] {
        assert_eq!(picked(resolve(&d, None, skill)), ("dir generic".into(), path.clone()), "skill {skill:?}");
    }
}

#[test]
fn level_6_the_built_in_default() {
    let d = dirs();
    std::fs::remove_dir_all(d.workspace.path().join(".necrocode")).unwrap();
    std::fs::remove_file(d.playbooks.path().join("generic.yaml")).unwrap();
    let r = resolve(&d, None, Some("cobol")).unwrap();
    assert_eq!(r.source, "built-in default");
    assert_eq!(r.playbook.name, "built-in default");
    assert_eq!(r.playbook.steps[0].command, "git status --porcelain >/dev/null");
}

#[test]
fn an_explicit_request_that_cannot_be_honoured_fails() {
    let d = dirs();
    let missing = d.playbooks.path().join("nope.yaml").display().to_string();
    let cases = [
        ("nope", format!("playbook {missing} does not exist")),
        ("gone.yaml", "playbook gone.yaml does not exist".to_string()),
        (
            "a/b",
            "playbook name 'a/b' is not a plain name: only letters, digits, '-', '_' and '.' are allowed"
                .into(),
        ),
        (".hidden", "playbook name '.hidden' is not a plain name: it starts with '.'".into()),
        ("..", "playbook name '..' is not a plain name: it starts with '.'".into()),
        ("../outside.yaml", "playbook path '../outside.yaml' is outside the repository workspace".into()),
        ("/etc/x.yaml", "playbook path '/etc/x.yaml' is outside the repository workspace".into()),
    ];
    for (name, message) in cases {
        assert_eq!(resolve(&d, named(name), None).unwrap_err().to_string(), message, "name {name:?}");
    }
}

#[test]
fn a_symlink_out_of_the_workspace_is_refused() {
    let d = dirs();
    let outside = tempfile::tempdir().unwrap();
    write(&outside.path().join("evil.yaml"), &playbook_yaml("evil"));
    std::os::unix::fs::symlink(outside.path().join("evil.yaml"), d.workspace.path().join("link.yaml"))
        .unwrap();
    let err = resolve(&d, named("link.yaml"), None).unwrap_err();
    assert_eq!(err.to_string(), "playbook path 'link.yaml' is outside the repository workspace");

    let own = d.workspace.path().join(".necrocode/playbook.yaml");
    std::fs::remove_file(&own).unwrap();
    std::os::unix::fs::symlink(outside.path().join("evil.yaml"), &own).unwrap();
    let err = resolve(&d, None, None).unwrap_err();
    assert_eq!(
        err.to_string(),
        "playbook path '.necrocode/playbook.yaml' is outside the repository workspace"
    );
}

#[test]
fn a_broken_repository_playbook_is_reported_with_its_repository_path() {
    let d = dirs();
    write(
        &d.workspace.path().join(".necrocode/playbook.yaml"),
        "name: x\nsteps:\n  - name: a\n    command: make\n    condition: a &\n",
    );
    let err = resolve(&d, None, Some("rust")).unwrap_err();
    assert_eq!(
        err.to_string(),
        ".necrocode/playbook.yaml:5:18: steps[0].condition: unexpected token '&', expected '&&'"
    );
}

#[test]
fn an_oversized_file_is_refused_before_parsing() {
    let d = dirs();
    let path = d.playbooks.path().join("custom.yaml");
    std::fs::write(&path, "#".repeat(300 * 1024)).unwrap();
    let err = resolve(&d, named("custom"), None).unwrap_err();
    assert_eq!(
        err.to_string(),
        format!("{}: 307200 bytes exceed the playbook limit of 262144 bytes", path.display())
    );
}
