//! The execution modes' own settings: the docker image and the volumes its containers
//! get, and the Kubernetes keys (`k8s_namespace`, `k8s_image`, `k8s_secrets`).
//!
//! Both spellings load: the seed's flat keys (`docker_image`, `docker_volumes` as a
//! `host: container` map) and the project's own (`docker.image`, `docker.volumes` as a
//! list of `host:container[:rw]`). Setting one thing both ways is refused, naming both
//! keys, because which one wins would be a guess.
//!
//! A volume is operator config, so it is trusted; what runs next to it is not: playbook
//! commands come from the repository a task names. So a volume is read-only unless its
//! entry says `rw`, and its paths are plain absolute paths (no `.`, `..` or `/` itself),
//! and the engine's own socket is refused (SECURITY.md "Docker volumes").

use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};

use super::file::RawConfig;
use super::layer::Layered;
use super::values as v;
use super::{ConfigError, ConfigSource};

/// Each volume is one `--volume` argument per step; past this many the list is a
/// deployment description, which belongs in the deployment, not in the worker config.
pub const MAX_DOCKER_VOLUMES: usize = 32;

/// Host paths whose mount would hand a step the container engine itself: a container that
/// can talk to the engine can start a privileged one and own the host.
const ENGINE_SOCKETS: &[&str] = &["/var/run/docker.sock", "/run/docker.sock", "/run/containerd", "/var/run"];

/// Container paths the runtime itself sets up for every step (the private `/tmp`, the
/// kernel's views): a volume there would replace them.
const CONTAINER_RESERVED: &[&str] = &["/tmp", "/proc", "/sys", "/dev"];

/// One bind mount into every step container (`docker_volumes` / `docker.volumes`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DockerVolume {
    /// The directory or file on the worker's host.
    pub host: PathBuf,
    /// Where the container sees it.
    pub container: PathBuf,
    /// False only when the entry said `rw`.
    pub read_only: bool,
}

impl DockerVolume {
    /// The `--volume` argument: `host:container:ro` (or `:rw`).
    pub fn volume_argument(&self) -> String {
        let mode = if self.read_only { "ro" } else { "rw" };
        format!("{}:{}:{mode}", self.host.display(), self.container.display())
    }
}

/// The Kubernetes execution mode's settings (`k8s_*`; the mode: `crate::kubernetes`).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct KubernetesConfig {
    /// `k8s_namespace`: where task Jobs run; unset, the client configuration's namespace.
    pub namespace: Option<String>,
    /// `k8s_image`: the image task pods run (it must hold `agent-runner`).
    pub image: Option<String>,
    /// `k8s_secrets`: Secrets every task pod mounts, each key a file named after the
    /// variable it provides (`GIT_TOKEN`, `OPENAI_API_KEY`, ...).
    pub secrets: Vec<String>,
    /// The configuration file task pods run with: the worker's own, without what only
    /// the worker uses (the broker, the mode, the HTTP listener). Not a key: set by
    /// `config::load` from the file it read.
    pub pod_config: Option<String>,
}

/// Lays the file's docker and Kubernetes keys over `l`.
pub(crate) fn apply(raw: &mut RawConfig, src: &ConfigSource, l: &mut Layered) -> Result<(), ConfigError> {
    let (nested_image, nested_volumes) = match raw.docker.take() {
        Some(docker) => (docker.image, docker.volumes),
        None => (None, None),
    };
    let image = one_spelling(src, ("docker_image", raw.docker_image.take()), ("docker.image", nested_image))?;
    l.set(src, image.0, image.1, |s| v::text_line(&s).map(Some), |c| &mut c.docker_image)?;
    let seed_volumes = raw.docker_volumes.take();
    let (key, volumes) =
        one_spelling(src, ("docker_volumes", seed_volumes), ("docker.volumes", nested_volumes))?;
    l.set(src, key, volumes, checked_volumes, |c| &mut c.docker_volumes)?;
    l.set(
        src,
        "k8s_namespace",
        raw.k8s_namespace.take(),
        |s| dns_label(&s).map(Some),
        |c| &mut c.kubernetes.namespace,
    )?;
    l.set(
        src,
        "k8s_image",
        raw.k8s_image.take(),
        |s| v::text_line(&s).map(Some),
        |c| &mut c.kubernetes.image,
    )?;
    l.set(src, "k8s_secrets", raw.k8s_secrets.take(), secret_names, |c| &mut c.kubernetes.secrets)
}

/// `docker_volumes` and `docker.volumes` take a map (the seed's) or a list (docker's own
/// `-v` form); either key accepts either shape.
#[derive(serde::Deserialize)]
#[serde(untagged)]
pub enum Volumes {
    /// `host: container` or `host: container:rw`.
    Map(BTreeMap<PathBuf, String>),
    /// `host:container` or `host:container:rw`.
    List(Vec<String>),
}

/// The one of two spellings that is set, with its key; both set is refused.
fn one_spelling<T>(
    src: &ConfigSource,
    seed: (&'static str, Option<T>),
    own: (&'static str, Option<T>),
) -> Result<(&'static str, Option<T>), ConfigError> {
    match (seed, own) {
        ((seed_key, Some(_)), (own_key, Some(_))) => Err(ConfigError::invalid(
            src,
            seed_key,
            format!("{seed_key} and {own_key} are the same setting: set one of them"),
        )),
        ((key, Some(value)), _) | (_, (key, Some(value))) => Ok((key, Some(value))),
        ((key, None), _) => Ok((key, None)),
    }
}

fn checked_volumes(raw: Volumes) -> Result<Vec<DockerVolume>, String> {
    match raw {
        Volumes::Map(map) => volumes_from_map(map),
        Volumes::List(list) => volumes_from_list(list),
    }
}

fn volumes_from_map(map: BTreeMap<PathBuf, String>) -> Result<Vec<DockerVolume>, String> {
    volumes(map.into_iter().collect())
}

fn volumes_from_list(list: Vec<String>) -> Result<Vec<DockerVolume>, String> {
    let mut entries = Vec::with_capacity(list.len());
    for entry in list {
        let Some((host, target)) = entry.split_once(':') else {
            return Err(format!("`{entry}` must be host:container or host:container:rw"));
        };
        entries.push((PathBuf::from(host), target.to_string()));
    }
    volumes(entries)
}

/// Checks `(host, container[:mode])` pairs into volumes.
fn volumes(entries: Vec<(PathBuf, String)>) -> Result<Vec<DockerVolume>, String> {
    if entries.len() > MAX_DOCKER_VOLUMES {
        return Err(format!("at most {MAX_DOCKER_VOLUMES} volumes, got {}", entries.len()));
    }
    let mut checked = Vec::with_capacity(entries.len());
    for (host, target) in entries {
        let (container, read_only) = match target.rsplit_once(':') {
            Some((path, "rw")) => (path, false),
            Some((path, "ro")) => (path, true),
            Some((_, mode)) => return Err(format!("volume mode must be ro or rw, got `{mode}`")),
            None => (target.as_str(), true),
        };
        let host = plain_absolute(&host, "host")?;
        if ENGINE_SOCKETS
            .iter()
            .any(|socket| host.starts_with(socket) || Path::new(socket).starts_with(&host))
        {
            return Err(format!(
                "{} would hand playbook commands the container engine (and so the host)",
                host.display()
            ));
        }
        let container = plain_absolute(Path::new(container), "container")?;
        if CONTAINER_RESERVED.iter().any(|reserved| container.starts_with(reserved)) {
            return Err(format!("{} is managed by the container runtime", container.display()));
        }
        checked.push(DockerVolume { host, container, read_only });
    }
    Ok(checked)
}

/// An absolute path with only normal components, not `/` itself, and nothing docker's
/// `-v` syntax would read differently (`:`, `,`) or a log line would split (control
/// characters).
fn plain_absolute(path: &Path, side: &str) -> Result<PathBuf, String> {
    let plain = path.components().all(|c| matches!(c, Component::RootDir | Component::Normal(_)));
    if !path.is_absolute() || !plain {
        return Err(format!("{side} path {} must be absolute, without `.` or `..`", path.display()));
    }
    if path.parent().is_none() {
        return Err(format!("{side} path `/` would mount the whole filesystem"));
    }
    let text = path.to_string_lossy();
    if text.chars().any(|c| c == ':' || c == ',' || c.is_control()) {
        return Err(format!(
            "{side} path {} must not contain `:`, `,` or control characters",
            path.display()
        ));
    }
    Ok(path.to_path_buf())
}

/// Longest Kubernetes namespace or Secret name segment (RFC 1123 label).
const MAX_DNS_LABEL_CHARS: usize = 63;
/// Secrets a task pod could mount; more than this is a deployment of its own.
const MAX_K8S_SECRETS: usize = 32;

/// A Kubernetes namespace: an RFC 1123 label (lowercase letters, digits, `-`).
fn dns_label(text: &str) -> Result<String, String> {
    let name = text.trim();
    let valid = !name.is_empty()
        && name.len() <= MAX_DNS_LABEL_CHARS
        && name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-')
        && !name.starts_with('-')
        && !name.ends_with('-');
    if !valid {
        return Err(format!(
            "must be a Kubernetes name (1 to {MAX_DNS_LABEL_CHARS} lowercase letters, digits and `-`), got `{name}`"
        ));
    }
    Ok(name.to_string())
}

/// Kubernetes Secret names: RFC 1123 subdomains (labels joined by `.`).
fn secret_names(names: Vec<String>) -> Result<Vec<String>, String> {
    if names.len() > MAX_K8S_SECRETS {
        return Err(format!("at most {MAX_K8S_SECRETS} secrets, got {}", names.len()));
    }
    names
        .iter()
        .map(|name| {
            name.trim()
                .split('.')
                .map(dns_label)
                .collect::<Result<Vec<_>, _>>()
                .map(|labels| labels.join("."))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn volume(host: &str, container: &str, read_only: bool) -> DockerVolume {
        DockerVolume { host: host.into(), container: container.into(), read_only }
    }

    #[test]
    fn volumes_are_read_only_unless_the_entry_says_rw() {
        let map = BTreeMap::from([
            (PathBuf::from("/var/necrocode/workspaces"), "/workspaces".to_string()),
            (PathBuf::from("/srv/cache"), "/cache:rw".to_string()),
        ]);
        assert_eq!(
            volumes_from_map(map),
            Ok(vec![
                volume("/srv/cache", "/cache", false),
                volume("/var/necrocode/workspaces", "/workspaces", true)
            ])
        );
        let list = vec!["/opt/tools:/opt/tools".to_string(), "/srv/cache:/cache:ro".to_string()];
        assert_eq!(
            volumes_from_list(list),
            Ok(vec![volume("/opt/tools", "/opt/tools", true), volume("/srv/cache", "/cache", true)])
        );
        assert_eq!(volume("/a", "/b", true).volume_argument(), "/a:/b:ro");
    }

    #[test]
    fn volume_paths_that_escape_or_reach_the_engine_are_refused() {
        let refused = |host: &str, target: &str| {
            volumes_from_map(BTreeMap::from([(PathBuf::from(host), target.to_string())])).unwrap_err()
        };
        assert_eq!(refused("relative", "/x"), "host path relative must be absolute, without `.` or `..`");
        assert_eq!(
            refused("/srv/../etc", "/x"),
            "host path /srv/../etc must be absolute, without `.` or `..`"
        );
        assert_eq!(refused("/", "/x"), "host path `/` would mount the whole filesystem");
        assert_eq!(
            refused("/var/run/docker.sock", "/sock"),
            "/var/run/docker.sock would hand playbook commands the container engine (and so the host)"
        );
        assert_eq!(
            refused("/var", "/v"),
            "/var would hand playbook commands the container engine (and so the host)"
        );
        assert_eq!(refused("/srv", "/x:rwx"), "volume mode must be ro or rw, got `rwx`");
        assert_eq!(refused("/srv", "/tmp/x"), "/tmp/x is managed by the container runtime");
        assert_eq!(
            refused("/srv,ro", "/x"),
            "host path /srv,ro must not contain `:`, `,` or control characters"
        );
    }

    #[test]
    fn kubernetes_names_are_rfc_1123() {
        assert_eq!(dns_label("necrocode"), Ok("necrocode".to_string()));
        assert!(dns_label("Necro_Code").is_err());
        assert!(dns_label("-x").is_err());
        assert_eq!(
            secret_names(vec!["git-token".into(), "a.b".into()]),
            Ok(vec!["git-token".into(), "a.b".into()])
        );
        assert!(secret_names(vec!["a..b".into()]).is_err());
    }
}
