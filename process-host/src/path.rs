//! Where a backend listens by default: a directory only this user can have made, never a
//! fixed name in a directory everyone can write (a squatter that took `/tmp/pvnet.sock`
//! first would receive every frontend's memory).

use std::io;
use std::os::unix::fs::{DirBuilderExt, MetadataExt};
use std::path::{Path, PathBuf};

/// The socket path to use when none is given: `$XDG_RUNTIME_DIR/pvnet/backend.sock` (the
/// user's private runtime directory), or else `<temp dir>/pvnet-<uid>/backend.sock`. The
/// directory is made (mode 0700) if missing, and refused if it is not this user's own,
/// private directory: another user could have made it to take the socket.
///
/// # Errors
/// The directory cannot be made, or is not private to this user (the reason is in the
/// error).
pub fn default_socket_path() -> io::Result<PathBuf> {
    let uid = nix::unistd::getuid().as_raw();
    let dir = match std::env::var_os("XDG_RUNTIME_DIR") {
        Some(d) if !d.is_empty() => PathBuf::from(d).join("pvnet"),
        _ => std::env::temp_dir().join(format!("pvnet-{uid}")),
    };
    private_dir(&dir, uid)?;
    Ok(dir.join("backend.sock"))
}

/// Makes `dir` (mode 0700) or checks that it is a directory owned by `uid` that no one else
/// can write or enter.
fn private_dir(dir: &Path, uid: u32) -> io::Result<()> {
    match std::fs::DirBuilder::new().mode(0o700).create(dir) {
        Ok(()) => return Ok(()),
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    // Not following a symbolic link: the name itself must be the directory.
    let meta = std::fs::symlink_metadata(dir)?;
    let refuse = |why: String| {
        Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            format!("{}: {why}", dir.display()),
        ))
    };
    if !meta.is_dir() {
        return refuse("not a directory".into());
    }
    if meta.uid() != uid {
        return refuse(format!("owned by uid {}, not {uid}", meta.uid()));
    }
    if meta.mode() & 0o077 != 0 {
        return refuse(format!("mode {:o}: others may use it", meta.mode() & 0o777));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    #[test]
    fn only_a_private_directory_of_ours_is_used() {
        let uid = nix::unistd::getuid().as_raw();
        let base = crate::testing::TestDir::new("path-test");
        let dir = base.join("made");
        private_dir(&dir, uid).unwrap();
        let mode = std::fs::metadata(&dir).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        // Again: it exists and is ours.
        private_dir(&dir, uid).unwrap();
        // Opened up to others: refused.
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o777)).unwrap();
        let e = private_dir(&dir, uid).unwrap_err();
        assert!(e.to_string().contains("others may use it"), "{e}");
        // Someone else's (as far as this check knows).
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        let e = private_dir(&dir, uid.wrapping_add(1)).unwrap_err();
        assert!(e.to_string().contains("owned by uid"), "{e}");
        // A link to a directory, or a file, in its place.
        let link = base.join("link");
        std::os::unix::fs::symlink(&dir, &link).unwrap();
        assert!(
            private_dir(&link, uid)
                .unwrap_err()
                .to_string()
                .contains("not a directory")
        );
    }
}
