//! Byte-code and tool caches a test run writes into the workspace, kept out of every
//! commit (and so out of the diff and the push) whatever the repository's `.gitignore`
//! says: they are the worker's side effects, not the task's output, and they would land
//! under protected paths like `tests/` too. Steps are also run with
//! `PYTHONDONTWRITEBYTECODE=1` (`playbook::executor`), so Python writes none to begin with.

use std::path::{Component, Path};

/// Directories that hold only caches, wherever they are.
pub const BUILD_CACHE_DIRS: &[&str] = &["__pycache__", ".pytest_cache", ".mypy_cache", ".ruff_cache"];
/// File suffixes of Python byte-code, wherever the files are.
pub const BUILD_CACHE_SUFFIXES: &[&str] = &[".pyc", ".pyo"];
/// A cache directory that only counts inside its parent: bundlers write `node_modules/.cache`.
const NESTED_CACHE_DIRS: &[(&str, &str)] = &[("node_modules", ".cache")];

/// Whether `path` (relative to the workspace) is, or lies in, a build cache.
pub fn is_build_cache(path: &Path) -> bool {
    let names: Vec<&str> = path
        .components()
        .filter_map(|c| match c {
            Component::Normal(name) => name.to_str(),
            _ => None,
        })
        .collect();
    let in_cache_dir = names.iter().any(|name| BUILD_CACHE_DIRS.contains(name));
    let in_nested = names.windows(2).any(|pair| NESTED_CACHE_DIRS.contains(&(pair[0], pair[1])));
    let byte_code = names.last().is_some_and(|name| BUILD_CACHE_SUFFIXES.iter().any(|s| name.ends_with(s)));
    in_cache_dir || in_nested || byte_code
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn caches_are_recognised_anywhere_and_sources_are_not() {
        for cache in [
            "tests/__pycache__/test_x.cpython-312.pyc",
            "__pycache__",
            "src/pkg/mod.pyc",
            ".pytest_cache/v/cache/lastfailed",
            "web/node_modules/.cache/babel/x.json",
            "a/.mypy_cache/3.12/x.json",
            ".ruff_cache/CACHEDIR.TAG",
        ] {
            assert!(is_build_cache(Path::new(cache)), "{cache}");
        }
        for source in ["tests/test_x.py", "src/pycache.py", "node_modules/.bin/x", ".cache/keep", "x.pyc.txt"]
        {
            assert!(!is_build_cache(Path::new(source)), "{source}");
        }
    }
}
