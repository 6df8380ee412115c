//! The prefix and token-host matching rules, edge by edge.

use super::*;

fn prefixes(entries: &[&str]) -> Vec<RemotePrefix> {
    entries.iter().map(|e| RemotePrefix::parse(e).unwrap()).collect()
}

fn admitted(entries: &[&str], url: &str) -> bool {
    check_allowed_remote(&prefixes(entries), url).is_ok()
}

#[test]
fn a_prefix_admits_itself_and_what_continues_it_at_a_slash() {
    let org = ["https://github.com/org"];
    assert!(admitted(&org, "https://github.com/org"));
    assert!(admitted(&org, "https://github.com/org/repo.git"));
    assert!(!admitted(&org, "https://github.com/org-evil/repo.git"));
    assert!(!admitted(&org, "https://github.com/organisation/repo.git"));
    let org_slash = ["https://github.com/org/"];
    assert!(admitted(&org_slash, "https://github.com/org/repo.git"));
    assert!(!admitted(&org_slash, "https://github.com/org-evil/repo.git"));
}

#[test]
fn a_lookalike_host_is_not_the_host() {
    let github = ["https://github.com"];
    assert!(admitted(&github, "https://github.com/any/repo.git"));
    assert!(!admitted(&github, "https://github.com.evil.example/org/repo.git"));
    assert!(!admitted(&github, "https://evil.example/github.com/org/repo.git"));
    assert!(!admitted(&github, "https://github.com:8443/org/repo.git"));
    assert!(!admitted(&github, "http://github.com/org/repo.git"));
}

#[test]
fn scheme_and_host_compare_without_case_and_default_ports_are_implied() {
    let org = ["HTTPS://GitHub.COM/org/"];
    assert!(admitted(&org, "https://github.com/org/r.git"));
    assert!(admitted(&org, "https://GITHUB.com:443/org/r.git"));
    // Paths are case-sensitive on the hosts that matter.
    assert!(!admitted(&org, "https://github.com/ORG/r.git"));
}

#[test]
fn userinfo_dot_segments_and_rewritten_paths_are_refused() {
    let all = ["https://", "file://"];
    for url in [
        "https://user@github.com/org/r.git",
        "https://x:token@github.com/org/r.git",
        "https://github.com/org/../evil/r.git",
        "https://github.com/org/%2e%2e/evil/r.git",
        "https://github.com/org/./r.git",
        "https://github.com/org\\..\\evil",
        "https://github.com/org/r.git?x=1",
        "https://github.com/org/r.git#frag",
        "https://github.com/org/r .git",
        "https://github.com/org/r\n.git",
        "file:///srv/git/../../home/victim",
        "/srv/git/../../home/victim",
        "https:///org/r.git",
        "file://host/srv/git/r.git",
        "git@github.com:org/r.git",
        "relative/path",
        "https://[broken/org",
    ] {
        assert!(!admitted(&all, url), "{url} was admitted");
    }
}

#[test]
fn the_default_admits_https_only() {
    let default = vec![RemotePrefix::any_https()];
    assert!(check_allowed_remote(&default, "https://gitlab.example/group/r.git").is_ok());
    for url in ["http://gitlab.example/r.git", "file:///srv/r.git", "/srv/r.git", "git://h/r.git"] {
        assert!(check_allowed_remote(&default, url).is_err(), "{url}");
    }
}

#[test]
fn a_local_path_matches_only_a_file_prefix_that_covers_it() {
    let srv = ["file:///srv/git/"];
    assert!(admitted(&srv, "/srv/git/r.git"));
    assert!(admitted(&srv, "file:///srv/git/r.git"));
    assert!(!admitted(&srv, "/srv/gitevil/r.git"));
    assert!(!admitted(&srv, "/home/victim/r.git"));
    assert!(!admitted(&["https://"], "/srv/git/r.git"));
    let dir = RemotePrefix::local_directory(std::path::Path::new("/srv/git")).unwrap();
    assert!(check_allowed_remote(std::slice::from_ref(&dir), "/srv/git/r.git").is_ok());
    assert!(check_allowed_remote(&[dir], "/srv/gitevil/r.git").is_err());
}

#[test]
fn bad_prefixes_are_refused_without_echoing_a_password() {
    for (entry, reason) in [
        (
            "ftp://files.example/",
            "`ftp://files.example/` has scheme ftp: expected one of https, http, git, file",
        ),
        ("ssh://", "`ssh://` has scheme ssh: expected one of https, http, git, file"),
        ("/srv/git", "`/srv/git` is a path: write it as file:///srv/git"),
        ("https://github.com/org/../x", "`https://github.com/org/../x` has a `.` or `..` path segment"),
    ] {
        assert_eq!(RemotePrefix::parse(entry).unwrap_err(), reason);
    }
    let refused = RemotePrefix::parse("https://me:hunter2@github.com/org").unwrap_err();
    assert!(refused.contains("userinfo") && !refused.contains("hunter2"), "{refused}");
}

#[test]
fn token_hosts_take_https_by_default_and_http_only_when_named() {
    let github = TokenHost::parse("github.com").unwrap();
    assert!(github.admits("https://github.com/org/r.git/info/refs?service=git-upload-pack"));
    assert!(github.admits("https://GitHub.com:443/org/r.git"));
    assert!(!github.admits("http://github.com/org/r.git"));
    assert!(!github.admits("https://github.com.evil.example/org/r.git"));
    assert!(!github.admits("https://github.com:8443/org/r.git"));
    let local = TokenHost::parse("http://127.0.0.1:8080").unwrap();
    assert!(local.admits("http://127.0.0.1:8080/org/r.git"));
    assert!(!local.admits("http://127.0.0.1:8081/org/r.git"));
    assert!(!local.admits("https://127.0.0.1:8080/org/r.git"));
    assert!(is_token_host(&[github, local], "http://127.0.0.1:8080/x"));
    assert!(!is_token_host(&[], "https://github.com/x"));
}

#[test]
fn bad_token_hosts_are_refused() {
    for (entry, reason) in [
        (
            "github.com/org",
            "`https://github.com/org` names a path: a token host is a host and optional port, e.g. github.com",
        ),
        (
            "ftp://github.com",
            "`ftp://github.com` has scheme ftp: the token goes over https, or http:// named explicitly",
        ),
        (
            "me:hunter2@github.com",
            "`https://github.com` carries userinfo; a token host is a host and optional port",
        ),
    ] {
        assert_eq!(TokenHost::parse(entry).unwrap_err(), reason);
    }
}
