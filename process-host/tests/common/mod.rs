//! Helpers the process-host tests share.

#![allow(dead_code, unreachable_pub)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

/// A fresh socket path for test `name` of file `file` (its directory made, no socket there).
pub fn sock_path(file: &str, name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("pvnet-{file}-{}-{name}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("b.sock");
    let _ = std::fs::remove_file(&path);
    path
}

/// A client connected to the listener at `path` that has said nothing (yet).
pub fn raw_client(path: &Path) -> OwnedFd {
    let s = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    connect(s.as_raw_fd(), &UnixAddr::new(path).unwrap()).unwrap();
    s
}
