//! The checks for the keys that bound what a task message may point the worker at:
//! `git.allowed_remotes`, `git.token_hosts` and `pool.slot_roots`. The matching rules
//! themselves live in `git::remote_policy` and `git::slot_roots`, beside their use.

use std::path::{Component, PathBuf};

use crate::git::{RemotePrefix, TokenHost};

/// `git.allowed_remotes`: each entry a URL prefix or a bare `scheme://`. An empty list
/// is accepted: such a worker refuses every task that names a remote.
pub(crate) fn allowed_remotes(entries: Vec<String>) -> Result<Vec<RemotePrefix>, String> {
    entries.iter().map(|entry| RemotePrefix::parse(entry)).collect()
}

/// `git.token_hosts`: each entry a host, `host:port`, or an `https://`/`http://` origin.
pub(crate) fn token_hosts(entries: Vec<String>) -> Result<Vec<TokenHost>, String> {
    entries.iter().map(|entry| TokenHost::parse(entry)).collect()
}

/// `pool.slot_roots`: absolute directories other than `/` (which would make every
/// checkout on the host a slot, the very thing the key exists to prevent).
pub(crate) fn slot_roots(roots: Vec<PathBuf>) -> Result<Vec<PathBuf>, String> {
    for root in &roots {
        if !root.is_absolute() {
            return Err(format!("`{}` is not an absolute path", root.display()));
        }
        if root
            .components()
            .all(|c| matches!(c, Component::RootDir | Component::CurDir | Component::ParentDir))
        {
            return Err(format!(
                "`{}` is the root directory: name the directories slots live in",
                root.display()
            ));
        }
    }
    Ok(roots)
}

#[cfg(test)]
mod tests {
    use std::path::{Path, PathBuf};

    use crate::config::{ConfigOverrides, load};
    use crate::git::{RemotePrefix, TokenHost};

    fn load_yaml(yaml: &str) -> Result<crate::config::RunnerConfig, String> {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        std::fs::write(&path, yaml).unwrap();
        load(Some(&path), &|_| None, &ConfigOverrides::default())
            .map_err(|e| e.to_string().replace(&path.display().to_string(), "FILE"))
    }

    #[test]
    fn the_remote_keys_come_from_the_file() {
        let config = load_yaml(
            "pool_dir: /srv/slots\ngit:\n  allowed_remotes: [\"https://github.com/org/\", \"file:///srv/git/\"]\n  \
             token_hosts: [github.com, \"http://127.0.0.1:8080\"]\npool:\n  slot_roots: [/srv/slots, /mnt/pool]\n",
        )
        .unwrap();
        let prefixes =
            ["https://github.com/org/", "file:///srv/git/"].map(|p| RemotePrefix::parse(p).unwrap());
        assert_eq!(config.git.allowed_remotes, prefixes);
        let hosts = ["github.com", "http://127.0.0.1:8080"].map(|h| TokenHost::parse(h).unwrap());
        assert_eq!(config.git.token_hosts, hosts);
        assert_eq!(config.slot_roots(), [PathBuf::from("/srv/slots"), PathBuf::from("/mnt/pool")]);
    }

    #[test]
    fn slot_roots_default_to_the_pool_directory() {
        let config = load_yaml("pool_dir: /srv/slots\n").unwrap();
        assert_eq!(config.slot_roots(), [Path::new("/srv/slots")]);
    }

    #[test]
    fn bad_remote_values_name_the_key() {
        for (yaml, error) in [
            (
                "git:\n  token_hosts: [github.com/org]\n",
                "invalid git.token_hosts from FILE: `https://github.com/org` names a path: a token host is \
                 a host and optional port, e.g. github.com",
            ),
            (
                "git:\n  allowed_remotes: [\"ftp://files.example/\"]\n",
                "invalid git.allowed_remotes from FILE: `ftp://files.example/` has scheme ftp: expected one \
                 of https, http, git, file",
            ),
            (
                "pool:\n  slot_roots: [slots]\n",
                "invalid pool.slot_roots from FILE: `slots` is not an absolute path",
            ),
            (
                "pool:\n  slot_roots: [/]\n",
                "invalid pool.slot_roots from FILE: `/` is the root directory: name the directories slots live in",
            ),
        ] {
            assert_eq!(load_yaml(yaml).unwrap_err(), error);
        }
    }
}
