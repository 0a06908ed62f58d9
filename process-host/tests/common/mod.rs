//! Helpers the process-host tests share.

#![allow(dead_code, unreachable_pub)]

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};

use pvnet_process_host::testing::TestDir;

use nix::sys::socket::{AddressFamily, SockFlag, SockType, UnixAddr, connect, socket};

/// A directory of its own for test `name` of file `file`, removed when the guard is dropped
/// (keep it for the test's length), and a socket path in it (nothing there yet).
pub fn sock_path(file: &str, name: &str) -> (TestDir, PathBuf) {
    let dir = TestDir::new(&format!("{file}-{name}"));
    let path = dir.join("b.sock");
    (dir, path)
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
