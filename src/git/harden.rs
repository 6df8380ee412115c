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

use git2::{Config, ConfigLevel, Repository};

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
        for level in [ConfigLevel::Global, ConfigLevel::XDG, ConfigLevel::System, ConfigLevel::ProgramData] {
            // SAFETY: libgit2's search paths are process-global; this runs once, through the
            // `Once`, before this module makes any other libgit2 call that reads them.
            if let Err(error) = unsafe { git2::opts::set_search_path(level, "") } {
                tracing::warn!(%error, ?level, "cannot clear a libgit2 config search path");
            }
        }
    });
}

/// Replaces `.git/config` with a minimal one naming only `origin` (the task's remote, when
/// given) and deletes every hook. Keeps the repository format and object format, without
/// which the repository would not open.
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

    let config_path = git_dir.join("config");
    std::fs::write(&config_path, b"")
        .map_err(|source| GitError::SlotIo { path: config_path.clone(), source })?;
    let mut config = Config::open(&config_path).map_err(harden_error)?;
    config.set_i32("core.repositoryformatversion", format_version).map_err(harden_error)?;
    if let Some(format) = object_format {
        config.set_str("extensions.objectformat", &format).map_err(harden_error)?;
    }
    config.set_bool("core.bare", false).map_err(harden_error)?;
    config.set_bool("core.filemode", true).map_err(harden_error)?;
    if let Some(remote) = remote {
        config.set_str("remote.origin.url", remote.url()).map_err(harden_error)?;
        config.set_str("remote.origin.fetch", ORIGIN_FETCH_REFSPEC).map_err(harden_error)?;
    }
    remove_hooks(&git_dir.join("hooks"))
}

/// Empties the hooks directory; its `*.sample` files go too (they are recreated by nothing
/// the worker does and harmless to lose).
fn remove_hooks(hooks: &Path) -> Result<(), GitError> {
    let io_error = |source| GitError::SlotIo { path: hooks.to_path_buf(), source };
    match std::fs::symlink_metadata(hooks) {
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(io_error(e)),
        // A symlinked hooks directory is removed as the link, never followed.
        Ok(meta) if !meta.is_dir() => return std::fs::remove_file(hooks).map_err(io_error),
        Ok(_) => {}
    }
    std::fs::remove_dir_all(hooks).map_err(io_error)?;
    std::fs::create_dir(hooks).map_err(io_error)
}

#[cfg(test)]
mod tests {
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
}
