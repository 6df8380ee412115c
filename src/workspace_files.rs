//! Opening files of a workspace, which the repository, the model and the test steps all
//! write: only regular files and directories are read, sizes are checked before reading.
//!
//! A test step can leave a FIFO (opening it blocks until a writer appears, which is never),
//! a socket or a device node, or a sparse file of gigabytes that costs nothing on disk.
//! Every read of workspace content in the worker goes through [`read_capped`]: the path's
//! metadata is checked first (not followed through a symlink), the file is opened with
//! `O_NONBLOCK | O_NOFOLLOW` so a swap to a FIFO or a link between the check and the open
//! cannot block or escape, the opened descriptor is checked again with `fstat`, and at
//! most the cap is read. [`remove_special_files`] is the slot's clean for what git does
//! not see: libgit2 neither reports nor removes FIFOs, sockets or devices, but blocks on
//! one planted in `.git` where it expects a file.

use std::fs::{File, Metadata};
use std::io::Read;
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// Largest file the worker reads for the model or lets a task commit, unless
/// `limits.max_file_bytes` says otherwise: source files, lock files and test fixtures sit
/// well below 5 MiB, while generated bundles, datasets and binaries above it do not belong
/// in a source repository (and every later clone of the remote would pay for them).
pub const DEFAULT_MAX_FILE_BYTES: u64 = 5 * 1024 * 1024;

/// Why a workspace file was not read, in words for the model and for failure messages.
#[derive(Debug, thiserror::Error)]
pub enum ReadRefusal {
    /// A FIFO, socket or device: opening or reading it can block forever or never end.
    #[error("is {kind}, not a regular file; special files are not read")]
    Special { kind: &'static str },
    /// A directory where a file was expected.
    #[error("is a directory, not a file")]
    Directory,
    /// Larger than the cap: read whole it would grow the worker by its size.
    #[error("is {size} bytes, more than the {max}-byte limit for files the worker reads")]
    TooLarge { size: u64, max: u64 },
    #[error("cannot be read: {0}")]
    Io(#[from] std::io::Error),
}

/// What `meta` is when it is neither a regular file, a directory nor a symlink.
pub fn special_kind(meta: &Metadata) -> Option<&'static str> {
    special_file_type(meta.file_type())
}

/// [`special_kind`] from a file type alone (a directory entry's, no `lstat`).
fn special_file_type(kind: std::fs::FileType) -> Option<&'static str> {
    if kind.is_fifo() {
        Some("a FIFO")
    } else if kind.is_socket() {
        Some("a socket")
    } else if kind.is_block_device() || kind.is_char_device() {
        Some("a device node")
    } else if kind.is_file() || kind.is_dir() || kind.is_symlink() {
        None
    } else {
        Some("a special file")
    }
}

/// Refuses what is not a regular file within `max` bytes.
fn check_regular(meta: &Metadata, max: u64) -> Result<(), ReadRefusal> {
    if let Some(kind) = special_kind(meta) {
        return Err(ReadRefusal::Special { kind });
    }
    if meta.is_dir() {
        return Err(ReadRefusal::Directory);
    }
    if meta.len() > max {
        return Err(ReadRefusal::TooLarge { size: meta.len(), max });
    }
    Ok(())
}

/// Reads the regular file at `path` if it holds at most `max` bytes. The final path
/// component must not be a symlink (callers resolve links first, inside the workspace);
/// a file that grows past `max` while being read is refused, never read on.
pub fn read_capped(path: &Path, max: u64) -> Result<Vec<u8>, ReadRefusal> {
    check_regular(&std::fs::symlink_metadata(path)?, max)?;
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NONBLOCK | libc::O_NOFOLLOW | libc::O_NOCTTY)
        .open(path)?;
    // The path may have been swapped since the check: what counts is what was opened.
    let opened = file.metadata()?;
    check_regular(&opened, max)?;
    read_at_most(file, opened.len(), max)
}

fn read_at_most(file: File, expected: u64, max: u64) -> Result<Vec<u8>, ReadRefusal> {
    // `expected` is at most `max` here, so the allocation is bounded by the cap.
    let mut bytes = Vec::with_capacity(usize::try_from(expected).unwrap_or(0));
    file.take(max.saturating_add(1)).read_to_end(&mut bytes)?;
    let read = bytes.len() as u64;
    if read > max {
        return Err(ReadRefusal::TooLarge { size: read, max });
    }
    Ok(bytes)
}

/// Deletes every FIFO, socket and device node under `root`, `.git` included (git never
/// makes one there; a planted one would block libgit2 in `open`), never following
/// symlinks; returns what it removed. A directory that cannot be listed is skipped: what
/// is left in it is never read (every reader checks metadata first), only not cleaned.
pub fn remove_special_files(root: &Path) -> std::io::Result<Vec<PathBuf>> {
    crate::metrics::record_worktree_scan();
    let mut removed = Vec::new();
    // An explicit stack: a step can nest directories deeper than a recursion should go.
    let mut pending = vec![root.to_path_buf()];
    while let Some(dir) = pending.pop() {
        let Ok(entries) = std::fs::read_dir(&dir) else { continue };
        for entry in entries.flatten() {
            let path = entry.path();
            // The entry's own type (`d_type`): no `lstat` per file, and a link is a link.
            let Ok(kind) = entry.file_type() else { continue };
            if kind.is_dir() {
                pending.push(path);
            } else if special_file_type(kind).is_some() {
                std::fs::remove_file(&path)?;
                removed.push(path);
            }
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mkfifo(path: &Path) {
        assert!(std::process::Command::new("mkfifo").arg(path).status().unwrap().success());
    }

    #[test]
    fn a_fifo_is_refused_without_blocking_and_removed_by_the_clean() {
        let dir = tempfile::tempdir().unwrap();
        let fifo = dir.path().join("sub/fifo.txt");
        std::fs::create_dir_all(fifo.parent().unwrap()).unwrap();
        mkfifo(&fifo);
        assert!(matches!(read_capped(&fifo, 100), Err(ReadRefusal::Special { .. })));
        std::fs::write(dir.path().join("kept.txt"), b"x").unwrap();
        assert_eq!(remove_special_files(dir.path()).unwrap(), std::slice::from_ref(&fifo));
        assert!(fifo.symlink_metadata().is_err() && dir.path().join("kept.txt").is_file());
    }

    #[test]
    fn sizes_are_checked_before_and_while_reading() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("a.txt");
        std::fs::write(&file, b"12345").unwrap();
        assert_eq!(read_capped(&file, 5).unwrap(), b"12345");
        assert!(matches!(read_capped(&file, 4), Err(ReadRefusal::TooLarge { size: 5, max: 4 })));
        let link = dir.path().join("link");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(matches!(read_capped(&link, 1000), Err(ReadRefusal::Io(_))), "links are not followed");
    }
}
