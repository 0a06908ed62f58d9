//! What a backend accepts as a frontend's descriptors: shared memory only as a memfd sealed
//! against resizing, of bounded size, checked before anything is mapped. Each case hands the
//! descriptors over a real control socket, as a hostile frontend process would.

mod common;

use pvnet_process_host::testing::LeakCheck;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::sys::memfd::{MFdFlags, memfd_create};
use pvnet_process_host::{
    BackendConfig, BackendConnection, FrontendConnection, Listener, SEALS, connect, create_memfd,
    map_owned, map_shared,
};
use xenbus::{EventFds, FrontendChoice, QueueResources, Resources, RxMode, XenbusError};

const T: Duration = Duration::from_secs(5);
const PAGE: usize = 4096;

/// Hands `fds` over as frames (0), grant table (1) and one queue's event channel (2);
/// returns the backend's connection and the frontend's (kept open for the test).
fn hand_over(name: &str, fds: Vec<OwnedFd>) -> (BackendConnection, FrontendConnection) {
    assert_eq!(fds.len(), 3);
    let (_dir, path) = common::sock_path("fds", name);
    let listener = Listener::bind(&path, BackendConfig::default()).unwrap();
    let front = std::thread::spawn(move || {
        let pending = connect(&path, T).unwrap();
        let res = Resources {
            frames: 0,
            grant_table: 1,
            flip_pool: None,
            queues: vec![QueueResources {
                tx_ring_ref: 8,
                rx_ring_ref: 9,
                tx_event: EventFds {
                    backend_notifies: 2,
                },
                rx_event: None,
            }],
        };
        let mut choice = FrontendChoice::default();
        choice.rx_mode = RxMode::Copy;
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        pending.finish(&choice, &res, &borrowed).unwrap()
    });
    let back = listener.accept_and_handshake().unwrap();
    (back, front.join().unwrap())
}

fn unsealed_memfd(bytes: usize) -> OwnedFd {
    let fd = memfd_create(
        c"unsealed",
        MFdFlags::MFD_CLOEXEC | MFdFlags::MFD_ALLOW_SEALING,
    )
    .unwrap();
    nix::unistd::ftruncate(&fd, i64::try_from(bytes).unwrap()).unwrap();
    fd
}

fn sealed(bytes: usize) -> OwnedFd {
    create_memfd(c"sealed", bytes).unwrap()
}

fn refusal(r: Result<impl std::fmt::Debug, XenbusError>) -> String {
    match r {
        Err(e @ XenbusError::BadFds(_)) => {
            assert!(e.is_peer_fault());
            e.to_string()
        }
        other => panic!("expected the frontend's fault, got {other:?}"),
    }
}

#[test]
fn an_unsealed_memfd_is_refused_before_it_is_mapped() {
    let _leaks = LeakCheck::new();
    // A frontend that could shrink its frames after attach would kill the backend with
    // SIGBUS on its next copy (and every vif with it).
    let (mut conn, _front) = hand_over(
        "unsealed",
        vec![unsealed_memfd(4 * PAGE), sealed(PAGE), sealed(PAGE)],
    );
    let why = refusal(conn.map_memory(0, "frames", 1 << 20));
    assert!(why.contains("seals"), "{why}");
    // The sealed one next to it is fine.
    assert_eq!(
        conn.map_memory(1, "grant table", 1 << 20).unwrap().len(),
        PAGE
    );
}

#[test]
fn a_partly_sealed_memfd_is_refused() {
    let _leaks = LeakCheck::new();
    // Sealed against shrinking only: it could still grow, and have seals added later.
    let fd = unsealed_memfd(PAGE);
    nix::fcntl::fcntl(
        &fd,
        nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_SHRINK),
    )
    .unwrap();
    let (mut conn, _front) = hand_over("partly", vec![fd, sealed(PAGE), sealed(PAGE)]);
    let why = refusal(conn.map_memory(0, "frames", 1 << 20));
    assert!(why.contains("seals"), "{why}");
}

#[test]
fn a_file_that_is_not_a_memfd_is_refused() {
    let _leaks = LeakCheck::new();
    // A regular file (it could be truncated, or live on FUSE or NFS), and a device.
    let path = std::env::temp_dir().join(format!("pvnet-fds-file-{}", std::process::id()));
    let file = std::fs::File::create(&path).unwrap();
    file.set_len(4 * PAGE as u64).unwrap();
    std::fs::remove_file(&path).unwrap();
    let zero = std::fs::File::open("/dev/zero").unwrap();
    let (mut conn, _front) = hand_over("file", vec![file.into(), zero.into(), sealed(PAGE)]);
    let why = refusal(conn.map_memory(0, "frames", 1 << 20));
    assert!(why.contains("not a memfd"), "{why}");
    let why = refusal(conn.map_memory(1, "grant table", 1 << 20));
    assert!(why.contains("not a memfd"), "{why}");
}

#[test]
fn sizes_are_bounded_before_mapping() {
    let _leaks = LeakCheck::new();
    let (mut conn, _front) = hand_over("sizes", vec![sealed(8 * PAGE), sealed(PAGE), sealed(PAGE)]);
    let why = refusal(conn.map_memory(0, "frames", 4 * PAGE));
    assert!(why.contains("up to 16384"), "{why}");
    // Taken once: a second look finds nothing.
    let why = refusal(conn.map_memory(0, "frames", 1 << 20));
    assert!(why.contains("missing"), "{why}");
    assert!(conn.map_memory(1, "grant table", PAGE).is_ok());
}

#[test]
fn sealed_memory_cannot_be_resized_by_either_side() {
    let _leaks = LeakCheck::new();
    // What the frontend offers (create_memfd) carries the seals; the backend's duplicate of
    // the descriptor cannot shrink or grow it, so neither side can SIGBUS the other.
    let fd = sealed(4 * PAGE);
    let theirs = fd.try_clone().unwrap();
    let ours = map_shared(&fd, 4 * PAGE).unwrap();
    let seals = nix::fcntl::fcntl(&theirs, nix::fcntl::FcntlArg::F_GET_SEALS).unwrap();
    assert!(nix::fcntl::SealFlag::from_bits_truncate(seals).contains(SEALS));
    assert_eq!(
        nix::unistd::ftruncate(&theirs, 0),
        Err(nix::errno::Errno::EPERM)
    );
    assert_eq!(
        nix::unistd::ftruncate(&theirs, 8 * PAGE as i64),
        Err(nix::errno::Errno::EPERM)
    );
    // Removing the seals is impossible too (F_SEAL_SEAL): any F_ADD_SEALS fails.
    assert_eq!(
        nix::fcntl::fcntl(
            &theirs,
            nix::fcntl::FcntlArg::F_ADD_SEALS(nix::fcntl::SealFlag::F_SEAL_WRITE)
        ),
        Err(nix::errno::Errno::EPERM)
    );
    ours.copy_in(4 * PAGE - 4, b"last").unwrap();
}

#[test]
fn memory_a_process_offers_is_allocated_when_made() {
    let _leaks = LeakCheck::new();
    let blocks = |fd: &OwnedFd| nix::sys::stat::fstat(fd.as_fd()).unwrap().st_blocks * 512;
    // Mapped as a peer's memory: nothing allocated until it is touched.
    let lazy = sealed(64 * PAGE);
    let region = map_shared(&lazy, 64 * PAGE).unwrap();
    assert_eq!(blocks(&lazy), 0, "a peer's memory is not populated");
    region.copy_in(0, b"one page").unwrap();
    assert_eq!(blocks(&lazy), PAGE as i64, "a touched page is allocated");
    // Mapped by the process that made it: every page allocated at once.
    let owned = sealed(64 * PAGE);
    let region = map_owned(&owned, 64 * PAGE).unwrap();
    assert_eq!(
        blocks(&owned),
        64 * PAGE as i64,
        "the owner's pages are allocated"
    );
    region.copy_in(64 * PAGE - 4, b"last").unwrap();
    assert_eq!(
        map_owned(&sealed(PAGE), 2 * PAGE).unwrap_err().kind(),
        std::io::ErrorKind::InvalidInput,
        "more than the file holds"
    );
}
