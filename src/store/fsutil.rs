//! Files and directories that hold secrets: created private (0700
//! directories, 0600 files), and checked at start for group or other
//! access, which depd warns about.

use std::fs::{File, OpenOptions};
use std::io;
use std::os::unix::fs::{OpenOptionsExt as _, PermissionsExt as _};
use std::path::Path;

/// Makes every file and directory this process creates private to its
/// user from now on (umask 077), whatever the caller's umask: sled's files
/// hold the inventory and sealed secrets.
pub fn private_umask() {
    // SAFETY: umask only sets the process's file mode mask; it cannot fail.
    #[allow(unsafe_code)] // reviewed: a libc call with no pointers kept
    unsafe {
        libc::umask(0o077);
    }
}

/// Creates (or truncates) a file readable and writable by its owner only.
pub fn create_private(path: &Path) -> io::Result<File> {
    OpenOptions::new()
        .write(true)
        .create(true)
        .truncate(true)
        .mode(0o600)
        .open(path)
}

/// Creates the directory (and its parents) if missing, mode 0700.
/// An existing directory keeps its mode (see [`exposed`]).
pub fn ensure_private_dir(path: &Path) -> io::Result<()> {
    if path.is_dir() {
        return Ok(());
    }
    std::fs::create_dir_all(path)?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o700))
}

/// Flushes the directory holding `path`, so a rename into it survives a
/// crash.
pub fn sync_dir(path: &Path) -> io::Result<()> {
    let dir = path.parent().filter(|p| !p.as_os_str().is_empty());
    File::open(dir.unwrap_or(Path::new(".")))?.sync_all()
}

/// The permission bits group or others hold on `path` (0 when private or
/// when it cannot be read).
pub fn exposed(path: &Path) -> u32 {
    std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o077)
}

/// Logs a warning when `path` is open to group or others.
pub fn warn_if_exposed(path: &Path, what: &str) {
    let bits = exposed(path);
    if bits != 0 {
        tracing::warn!(
            path = %path.display(),
            mode = format!("{:o}", std::fs::metadata(path).map_or(0, |m| m.permissions().mode() & 0o777)),
            "{what} is readable or writable by group or others; chmod go= it"
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn private_files_and_directories() {
        let dir = tempfile::tempdir().expect("dir");
        let sub = dir.path().join("a/b");
        ensure_private_dir(&sub).expect("mkdir");
        assert_eq!(exposed(&sub), 0);
        let file = sub.join("f");
        create_private(&file).expect("create");
        assert_eq!(
            std::fs::metadata(&file).expect("meta").permissions().mode() & 0o777,
            0o600
        );
        std::fs::set_permissions(&file, std::fs::Permissions::from_mode(0o644)).expect("chmod");
        assert_eq!(exposed(&file), 0o044);
    }
}
