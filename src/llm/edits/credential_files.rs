//! File names that hold credentials by convention, which the model may never create,
//! change or delete: `.env`, `.env.*` and `.envrc`, private keys, `.netrc`, `.git-credentials`,
//! `.pgpass`.
//!
//! This is part of the path confinement, not of `engine.protected_paths`: an operator
//! replacing the protected globs (they are about tests) must not re-open credential
//! files by accident. Well-known templates (`.env.example`, `.env.sample`,
//! `.env.template`, `.env.dist`) stay writable: projects commit them on purpose, they
//! hold placeholders, and a task adding a setting has to document it there. A real value
//! written into one is still caught by the push guard's secret scan.

/// The `.env.<suffix>` names that are templates rather than credentials.
const ENV_TEMPLATE_SUFFIXES: &[&str] = &["example", "sample", "template", "dist"];

/// Exact file names (case-insensitive) that hold credentials.
const CREDENTIAL_FILE_NAMES: &[&str] = &[
    ".env",
    ".envrc",
    ".netrc",
    "_netrc",
    ".git-credentials",
    ".pgpass",
    "id_rsa",
    "id_dsa",
    "id_ecdsa",
    "id_ed25519",
];

/// Extensions (case-insensitive) of private-key and keystore files.
const CREDENTIAL_EXTENSIONS: &[&str] = &["pem", "key", "p12", "pfx"];

/// Why a file name is refused, when it looks like a credential file.
pub(crate) fn credential_file(name: &str) -> Option<&'static str> {
    let lower = name.to_ascii_lowercase();
    let env_suffix = lower.strip_prefix(".env.");
    if lower == ".env" || env_suffix.is_some_and(|suffix| !ENV_TEMPLATE_SUFFIXES.contains(&suffix)) {
        return Some("a .env file holds credentials; only templates such as .env.example may be written");
    }
    if CREDENTIAL_FILE_NAMES.contains(&lower.as_str()) {
        return Some("the file holds credentials by convention; writing it is not allowed");
    }
    let extension = lower.rsplit_once('.').map(|(_, ext)| ext);
    if extension.is_some_and(|ext| CREDENTIAL_EXTENSIONS.contains(&ext)) {
        return Some("the file looks like a private key; writing it is not allowed");
    }
    None
}

#[cfg(test)]
mod tests {
    use super::credential_file;

    #[test]
    fn env_files_and_keys_are_refused_and_templates_are_not() {
        for name in
            [".env", ".ENV", ".env.local", ".env.production", "id_ed25519", "server.pem", "tls.key", ".netrc"]
        {
            assert!(credential_file(name).is_some(), "{name}");
        }
        for name in
            [".env.example", ".env.sample", ".env.template", ".env.dist", "env.rs", ".envrc.md", "keys.rs"]
        {
            assert_eq!(credential_file(name), None, "{name}");
        }
    }
}
