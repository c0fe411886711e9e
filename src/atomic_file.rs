//! Files replaced atomically: a reader (or a crash) sees the old contents or
//! the new, never a part. [`Mlp::save`](crate::mlp::Mlp::save) writes models
//! this way, and `train_mnist` its metrics and plot.
//!
//! The bytes go to a temporary file beside the target, `.NAME.tmp-PID`,
//! which is then renamed over it. Temporary files that an interrupted write
//! to the same target left behind are removed by the next write.

use std::io::Write;
use std::path::{Path, PathBuf};

/// Writes `bytes` to `path` atomically (see the module docs); `sync` also
/// flushes them to the disk before the rename, so that a power loss cannot
/// leave an empty file either.
///
/// A target that exists but is not a regular file (`/dev/null`, a FIFO, a
/// terminal) is written directly, as a stream: replacing a device node by a
/// file would be wrong. A symbolic link keeps pointing at the file it names,
/// which is the one replaced.
///
/// ```
/// use densekit::atomic_file::write_atomically;
/// let path = std::env::temp_dir().join(format!("densekit-doc-atomic-{}", std::process::id()));
/// write_atomically(&path, b"first", false).unwrap();
/// write_atomically(&path, b"second", false).unwrap();
/// assert_eq!(std::fs::read(&path).unwrap(), b"second");
/// std::fs::remove_file(&path).unwrap();
/// ```
///
/// # Errors
/// Any I/O error; the target is then as it was (or, for a stream, as far as
/// it was written), and the temporary file is removed.
pub fn write_atomically(path: impl AsRef<Path>, bytes: &[u8], sync: bool) -> std::io::Result<()> {
    let path = path.as_ref();
    let target = resolve_links(path);
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
        let mut stream = std::fs::OpenOptions::new().write(true).open(&target)?;
        stream.write_all(bytes)?;
        return stream.flush();
    }
    let tmp = temporary(&target)?;
    remove_stale_temporaries(&target);
    let write = || -> std::io::Result<()> {
        let mut file = std::fs::File::create(&tmp)?;
        file.write_all(bytes)?;
        if sync {
            file.sync_all()?;
        }
        std::fs::rename(&tmp, &target)
    };
    write().inspect_err(|_| {
        let _ = std::fs::remove_file(&tmp);
    })
}

/// Checks, before any long work, that [`write_atomically`] could write
/// `path` later: creates and removes the temporary file it would use (or,
/// for an existing non-regular target, opens it for writing). Nothing at
/// `path` changes.
///
/// ```
/// use densekit::atomic_file::check_writable;
/// assert!(check_writable(&std::env::temp_dir().join("densekit-doc-check")).is_ok());
/// assert!(check_writable(std::path::Path::new("/nonexistent-dir/model.safetensors")).is_err());
/// ```
///
/// # Errors
/// The I/O error that writing would meet (a missing folder, no permission).
pub fn check_writable(path: impl AsRef<Path>) -> std::io::Result<()> {
    let path = path.as_ref();
    let target = resolve_links(path);
    if std::fs::metadata(&target).is_ok_and(|m| !m.is_file()) {
        return std::fs::OpenOptions::new()
            .write(true)
            .open(&target)
            .map(drop);
    }
    let tmp = temporary(&target)?;
    std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(&tmp)?;
    std::fs::remove_file(&tmp)
}

/// The file a chain of symbolic links at `path` ends at (`path` itself if
/// it is none, or if the chain is broken).
fn resolve_links(path: &Path) -> PathBuf {
    let is_link = std::fs::symlink_metadata(path).is_ok_and(|m| m.file_type().is_symlink());
    match is_link {
        true => std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf()),
        false => path.to_path_buf(),
    }
}

/// The prefix of `path`'s temporary files, `.NAME.tmp-`.
fn temporary_prefix(path: &Path) -> std::io::Result<String> {
    let name = path
        .file_name()
        .ok_or_else(|| std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path"))?;
    Ok(format!(".{}.tmp-", name.to_string_lossy()))
}

/// This process's temporary file for `path`.
fn temporary(path: &Path) -> std::io::Result<PathBuf> {
    let prefix = temporary_prefix(path)?;
    Ok(path.with_file_name(format!("{prefix}{}", std::process::id())))
}

/// Removes the temporary files beside `path` that interrupted writes left
/// behind: those of processes no longer running (Linux's `/proc` tells),
/// or, where there is no `/proc`, those untouched for an hour. Best effort:
/// a file that cannot be removed stays.
fn remove_stale_temporaries(path: &Path) {
    let Ok(prefix) = temporary_prefix(path) else {
        return;
    };
    let dir = match path.parent() {
        Some(d) if !d.as_os_str().is_empty() => d,
        _ => Path::new("."),
    };
    let Ok(entries) = std::fs::read_dir(dir) else {
        return;
    };
    let proc_fs = Path::new("/proc/self").exists();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .and_then(|n| n.strip_prefix(&prefix))
            .and_then(|pid| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let stale = if proc_fs {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        } else {
            entry
                .metadata()
                .and_then(|m| m.modified())
                .ok()
                .and_then(|t| t.elapsed().ok())
                .is_some_and(|age| age.as_secs() > 3600)
        };
        if stale {
            let _ = std::fs::remove_file(entry.path());
        }
    }
}
