//! Secrets (the git token, the LLM key): read from the environment or from a mounted
//! secret file, straight into a [`SecretString`], and never part of [`super::RunnerConfig`].
//!
//! `NAME` holds the value itself; `NAME_FILE` holds the path of a file with the value,
//! the Docker/Kubernetes secret-mount convention. Setting both is refused: which one
//! wins would be a guess, and a stale value in the other is a classic outage. With
//! neither set, a file named `NAME` in the directory `AGENT_RUNNER_SECRETS_DIR` names is
//! read when it exists: how a Kubernetes task pod gets its `k8s_secrets`, all projected
//! into one directory.

use std::path::PathBuf;

use secrecy::SecretString;

use super::ConfigError;

/// Suffix naming the file variant of a secret variable.
const FILE_SUFFIX: &str = "_FILE";

/// Reads secret `env_var` from `NAME` or `NAME_FILE`. `Ok(None)` when neither is set
/// (an empty value counts as unset). Trailing newlines of a file are dropped, since
/// `echo` and most editors add one. No error or log ever includes the value.
pub fn read_secret(
    env_var: &str,
    env: &dyn Fn(&str) -> Option<String>,
) -> Result<Option<SecretString>, ConfigError> {
    let file_var = format!("{env_var}{FILE_SUFFIX}");
    let direct = env(env_var).filter(|value| !value.is_empty());
    let file = env(&file_var).filter(|path| !path.trim().is_empty());
    match (direct, file) {
        (None, None) => match env(crate::kubernetes::SECRETS_DIR_ENV).filter(|dir| !dir.trim().is_empty()) {
            Some(dir) if PathBuf::from(dir.trim()).join(env_var).is_file() => {
                read_secret_file(crate::kubernetes::SECRETS_DIR_ENV, PathBuf::from(dir.trim()).join(env_var))
                    .map(Some)
            }
            _ => Ok(None),
        },
        (Some(value), None) => Ok(Some(SecretString::from(value))),
        (Some(_), Some(_)) => Err(ConfigError::Secret {
            var: env_var.to_string(),
            reason: format!("both {env_var} and {file_var} are set; set only one"),
        }),
        (None, Some(path)) => read_secret_file(&file_var, PathBuf::from(path.trim())).map(Some),
    }
}

fn read_secret_file(file_var: &str, path: PathBuf) -> Result<SecretString, ConfigError> {
    let mut text = std::fs::read_to_string(&path).map_err(|source| ConfigError::SecretFile {
        var: file_var.to_string(),
        path: path.clone(),
        source,
    })?;
    let kept = text.trim_end_matches(['\n', '\r']).len();
    text.truncate(kept);
    if text.is_empty() {
        return Err(ConfigError::Secret {
            var: file_var.to_string(),
            reason: format!("the file {} is empty", path.display()),
        });
    }
    Ok(SecretString::from(text))
}

#[cfg(test)]
mod tests {
    use super::*;
    use secrecy::ExposeSecret;
    use std::collections::HashMap;

    fn lookup(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> + use<> {
        let map: HashMap<String, String> =
            pairs.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        move |name| map.get(name).cloned()
    }

    fn exposed(secret: Option<SecretString>) -> Option<String> {
        secret.map(|s| s.expose_secret().to_string())
    }

    #[test]
    fn reads_the_value_from_the_variable() {
        let env = lookup(&[("GIT_TOKEN", "ghp_direct")]);
        assert_eq!(exposed(read_secret("GIT_TOKEN", &env).unwrap()), Some("ghp_direct".into()));
    }

    #[test]
    fn unset_and_empty_are_none() {
        assert_eq!(exposed(read_secret("GIT_TOKEN", &lookup(&[])).unwrap()), None);
        let env = lookup(&[("GIT_TOKEN", ""), ("GIT_TOKEN_FILE", "")]);
        assert_eq!(exposed(read_secret("GIT_TOKEN", &env).unwrap()), None);
    }

    #[test]
    fn reads_the_value_from_the_file_without_trailing_newline() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "sk-from-file\r\n\n").unwrap();
        let env = lookup(&[("OPENAI_API_KEY_FILE", path.to_str().unwrap())]);
        let secret = read_secret("OPENAI_API_KEY", &env).unwrap();
        assert_eq!(exposed(secret), Some("sk-from-file".into()));
    }

    #[test]
    fn both_set_is_refused_without_the_value() {
        let env = lookup(&[("GIT_TOKEN", "ghp_secret"), ("GIT_TOKEN_FILE", "/run/secrets/t")]);
        let err = read_secret("GIT_TOKEN", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            "invalid secret from env GIT_TOKEN: both GIT_TOKEN and GIT_TOKEN_FILE are set; set only one"
        );
    }

    #[test]
    fn missing_file_names_the_variable_and_path() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("absent");
        let env = lookup(&[("GIT_TOKEN_FILE", path.to_str().unwrap())]);
        let err = read_secret("GIT_TOKEN", &env).unwrap_err();
        let expected = format!("cannot read secret file {} named by env GIT_TOKEN_FILE: ", path.display());
        assert!(err.to_string().starts_with(&expected), "{err}");
    }

    #[test]
    fn empty_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("token");
        std::fs::write(&path, "\n").unwrap();
        let env = lookup(&[("GIT_TOKEN_FILE", path.to_str().unwrap())]);
        let err = read_secret("GIT_TOKEN", &env).unwrap_err();
        assert_eq!(
            err.to_string(),
            format!("invalid secret from env GIT_TOKEN_FILE: the file {} is empty", path.display())
        );
    }

    #[test]
    fn a_secret_neither_variable_sets_is_read_from_the_secrets_directory() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("GIT_TOKEN"), "ghp_projected\n").unwrap();
        let env = lookup(&[("AGENT_RUNNER_SECRETS_DIR", dir.path().to_str().unwrap())]);
        assert_eq!(exposed(read_secret("GIT_TOKEN", &env).unwrap()), Some("ghp_projected".into()));
        assert_eq!(exposed(read_secret("OPENAI_API_KEY", &env).unwrap()), None, "absent there: unset");
        let both =
            lookup(&[("AGENT_RUNNER_SECRETS_DIR", dir.path().to_str().unwrap()), ("GIT_TOKEN", "ghp_env")]);
        assert_eq!(
            exposed(read_secret("GIT_TOKEN", &both).unwrap()),
            Some("ghp_env".into()),
            "the variable wins"
        );
    }
}
