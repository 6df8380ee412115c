//! Keeping the worker's own git work free of anything a test command planted.
//!
//! Once a playbook step has run, the workspace's `.git` is untrusted (in `local-process`
//! mode the step could write it; the sandbox mounts it read-only). libgit2 runs no hooks
//! and no external filter or credential programs, but it does read configuration:
//! `url.*.insteadOf` would redirect the push, `core.worktree` would make the commit pick
//! up files from elsewhere, `remote.*.pushurl` and `http.*` would change where and how
//! the push goes. So before committing and pushing, the repository's config is replaced
//! by a known minimal one, its hooks are removed (for whoever runs real git there later),
//! and libgit2 is told never to read the user's or the system's git config at all (a
//! step can write `~/.gitconfig` in `local-process` mode).

use std::path::Path;
use std::sync::Once;

use git2::{ConfigLevel, Repository};

use super::credentials::GitRemote;
use super::error::GitError;

/// The fetch refspec a clone gets; restored with the rest of the config.
const ORIGIN_FETCH_REFSPEC: &str = "+refs/heads/*:refs/remotes/origin/*";

/// Makes libgit2 ignore the global, XDG, system and program-data config (and their
/// attributes and ignore files) for the whole process, before its first use. The worker
/// passes everything it needs (author, remote, credentials) explicitly.
pub(crate) fn isolate_from_user_config() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        for (level, level_name) in [
            (ConfigLevel::Global, "global"),
            (ConfigLevel::XDG, "xdg"),
            (ConfigLevel::System, "system"),
            (ConfigLevel::ProgramData, "program_data"),
        ] {
            // SAFETY: libgit2's search paths are process-global; this runs once, through the
            // `Once`, before this module makes any other libgit2 call that reads them.
            if let Err(error) = unsafe { git2::opts::set_search_path(level, "") } {
                tracing::warn!(%error, level = level_name, "cannot clear a libgit2 config search path");
            }
        }
    });
}

/// Replaces `.git/config` with a minimal one naming only `origin` (the task's remote, when
/// given) and deletes every hook. Keeps the repository format and object format, without
/// which the repository would not open. Nothing is written when the config already is
/// that minimal one and there is no hook: every task commits and pushes, and each config
/// write creates a lock file and renames it.
pub fn harden_repository(path: &Path, remote: Option<&GitRemote>) -> Result<(), GitError> {
    isolate_from_user_config();
    let harden_error = |e: git2::Error| GitError::Harden { path: path.to_path_buf(), detail: e.into() };
    let repo = Repository::open(path).map_err(harden_error)?;
    let git_dir = repo.path().to_path_buf();
    let (format_version, object_format) = {
        let config = repo.config().and_then(|c| c.open_level(ConfigLevel::Local)).map_err(harden_error)?;
        (
            config.get_i32("core.repositoryformatversion").unwrap_or(0),
            config.get_string("extensions.objectformat").ok(),
        )
    };
    drop(repo);

    let wanted = minimal_config(format_version, object_format.as_deref(), remote.map(GitRemote::url));
    let config_path = git_dir.join("config");
    let io_error = |path: &Path| {
        let path = path.to_path_buf();
        move |source| GitError::SlotIo { path, source }
    };
    // A symlinked config is replaced as the link, never followed: read its metadata first.
    let is_plain_file = std::fs::symlink_metadata(&config_path).is_ok_and(|m| m.is_file());
    if !is_plain_file || std::fs::read(&config_path).ok().as_deref() != Some(wanted.as_bytes()) {
        // Written beside and renamed over, as git does: a reader never sees half a config.
        let lock = git_dir.join("config.lock");
        std::fs::write(&lock, wanted.as_bytes()).map_err(io_error(&lock))?;
        std::fs::rename(&lock, &config_path).map_err(io_error(&config_path))?;
    }
    remove_hooks(&git_dir.join("hooks"))
}

/// The whole config a worker's clone needs. Reflogs are off: a slot is scratch space, and
/// a reflog per task branch is a file created per task for nobody to read.
fn minimal_config(format_version: i32, object_format: Option<&str>, origin_url: Option<&str>) -> String {
    let mut text = format!(
        "[core]\n\trepositoryformatversion = {format_version}\n\tbare = false\n\tfilemode = true\n\
         \tlogallrefupdates = false\n"
    );
    if let Some(format) = object_format {
        text.push_str(&format!("[extensions]\n\tobjectformat = {}\n", quoted(format)));
    }
    if let Some(url) = origin_url {
        text.push_str(&format!(
            "[remote \"origin\"]\n\turl = {}\n\tfetch = {ORIGIN_FETCH_REFSPEC}\n",
            quoted(url)
        ));
    }
    text
}

/// A git config value in double quotes, with the escapes git's parser knows; nothing in
/// it can end the line or the value early.
fn quoted(value: &str) -> String {
    let mut out = String::with_capacity(value.len() + 2);
    out.push('"');
    for c in value.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '"' => out.push_str("\\\""),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\u{8}' => out.push_str("\\b"),
            // Other control characters have no escape and no place in a URL.
            c if c.is_control() => {}
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

/// Empties the hooks directory; its `*.sample` files go too (they are recreated by nothing
/// the worker does and harmless to lose). An empty hooks directory is left as it is.
fn remove_hooks(hooks: &Path) -> Result<(), GitError> {
    let io_error = |source| GitError::SlotIo { path: hooks.to_path_buf(), source };
    match std::fs::symlink_metadata(hooks) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e)),
        // A symlinked hooks directory is removed as the link, never followed.
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(hooks).map_err(io_error),
        Ok(_) => {}
    }
    if std::fs::read_dir(hooks).map_err(io_error)?.next().is_none() {
        return Ok(());
    }
    std::fs::remove_dir_all(hooks).map_err(io_error)?;
    std::fs::create_dir(hooks).map_err(io_error)
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::MetadataExt;

    use git2::Config;

    use super::*;

    #[test]
    fn user_and_system_config_are_never_read() {
        isolate_from_user_config();
        for level in [ConfigLevel::Global, ConfigLevel::XDG, ConfigLevel::System] {
            // SAFETY: reading the search path after the one-time isolation above.
            let path = unsafe { git2::opts::get_search_path(level) }.unwrap();
            assert_eq!(path.to_str().unwrap(), "", "{level:?}");
        }
    }

    #[test]
    fn the_minimal_config_reads_back_as_written_whatever_the_url_holds() {
        let dir = tempfile::tempdir().unwrap();
        let url = "https://example.com/a \"b\" \\c #;d\tx";
        let text = minimal_config(1, Some("sha256"), Some(url));
        let path = dir.path().join("config");
        std::fs::write(&path, &text).unwrap();
        let config = Config::open(&path).unwrap();
        assert_eq!(config.get_string("remote.origin.url").unwrap(), url);
        assert_eq!(config.get_string("remote.origin.fetch").unwrap(), ORIGIN_FETCH_REFSPEC);
        assert_eq!(config.get_i32("core.repositoryformatversion").unwrap(), 1);
        assert_eq!(config.get_string("extensions.objectformat").unwrap(), "sha256");
        assert!(!config.get_bool("core.logallrefupdates").unwrap());
        let injected = minimal_config(0, None, Some("https://h/x\n[core]\n\tworktree = /etc"));
        std::fs::write(&path, &injected).unwrap();
        let config = Config::open(&path).unwrap();
        assert!(config.get_string("core.worktree").is_err(), "a newline in the URL opened a section");
    }

    #[test]
    fn a_hardened_repository_is_left_untouched_the_second_time() {
        let dir = tempfile::tempdir().unwrap();
        Repository::init(dir.path()).unwrap();
        let remote = GitRemote::new("https://example.com/r.git", Default::default()).unwrap();
        harden_repository(dir.path(), Some(&remote)).unwrap();
        let config = dir.path().join(".git/config");
        // A rewrite renames a new file into place: the inode tells.
        let first = std::fs::metadata(&config).unwrap().ino();
        harden_repository(dir.path(), Some(&remote)).unwrap();
        assert_eq!(first, std::fs::metadata(&config).unwrap().ino(), "the config was rewritten");
        // A changed config is replaced again.
        std::fs::write(
            &config,
            "[core]\n\tbare = false\n[url \"https://evil/\"]\n\tinsteadOf = https://example.com/\n",
        )
        .unwrap();
        harden_repository(dir.path(), Some(&remote)).unwrap();
        let text = std::fs::read_to_string(&config).unwrap();
        assert!(!text.contains("evil"), "{text}");
    }
}
