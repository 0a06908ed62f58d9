//! Doorbells against a peer that does anything with its descriptors. A peer that made the
//! pair may keep duplicates of our ends: it floods, never reads, takes our events first, flips
//! `O_NONBLOCK` on the file descriptions we share, shuts sockets down. None of it can make our
//! end block (every call here is bounded by the test's timeouts), and a descriptor that is
//! not a doorbell is refused. With an eventfd, the same peer hung a notify for ever (writing
//! 2^64-2), hung a blocking wait (reading first), or turned it into a local error (`EAGAIN`).

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use event_channel::{EventChannel, EventError};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, recv, send, shutdown, socket, socketpair,
};
use pvnet_process_host::Doorbell;

const SHORT: Duration = Duration::from_millis(50);

/// Our end, and the peer's descriptors: its own end plus duplicates of ours.
fn ends() -> (Doorbell, Doorbell, (OwnedFd, OwnedFd)) {
    let (ours, theirs) = Doorbell::pair().unwrap();
    let (rx, tx) = ours.into_fds();
    let dups = (rx.try_clone().unwrap(), tx.try_clone().unwrap());
    (Doorbell::from_fds(rx, tx).unwrap(), theirs, dups)
}

fn refused(r: Result<Doorbell, EventError>) -> String {
    match r {
        Err(EventError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn notify_wait_mask_and_readiness() {
    let (mut a, mut b) = Doorbell::pair().unwrap();
    assert!(!b.try_wait().unwrap());
    a.notify().unwrap();
    a.notify().unwrap();
    assert!(b.wait(Some(Duration::from_secs(5))).unwrap());
    // Two notifies before a wait are one event (the queue is drained).
    assert!(!b.try_wait().unwrap());
    assert!(!b.wait(Some(SHORT)).unwrap());
    b.mask();
    a.notify().unwrap();
    assert!(!b.try_wait().unwrap(), "masked: held, not delivered");
    assert!(matches!(b.wait(None), Err(EventError::Masked)));
    assert!(b.unmask().unwrap());
    assert!(b.try_wait().unwrap());
    // The other way, and the readiness descriptor is the receiving socket.
    b.notify().unwrap();
    let fd = a.readiness_fd().unwrap();
    let mut polled = [nix::poll::PollFd::new(fd, nix::poll::PollFlags::POLLIN)];
    assert_eq!(nix::poll::poll(&mut polled, 5000u16).unwrap(), 1);
    a.clear_ready().unwrap();
    assert!(!a.try_wait().unwrap());
}

#[test]
fn a_peer_that_never_reads_cannot_block_a_notify() {
    let (ours, _theirs, _dups) = ends();
    let start = Instant::now();
    // Far more than any socket queue holds: once it is full, a notify is "already pending".
    for _ in 0..100_000 {
        ours.notify().unwrap();
    }
    assert!(start.elapsed() < Duration::from_secs(30));
}

#[test]
fn flags_the_peer_sets_on_shared_descriptions_change_nothing() {
    let (mut ours, theirs, (rx_dup, tx_dup)) = ends();
    for flags in [OFlag::O_NONBLOCK, OFlag::empty()] {
        // The peer sets, then clears, O_NONBLOCK on the file descriptions it shares with us.
        for fd in [&rx_dup, &tx_dup] {
            fcntl(fd, FcntlArg::F_SETFL(flags)).unwrap();
        }
        // A wait with nothing pending times out (no EAGAIN error, no hang) ...
        assert!(!ours.wait(Some(SHORT)).unwrap());
        assert!(!ours.try_wait().unwrap());
        // ... and a notify into a full queue returns.
        for _ in 0..10_000 {
            ours.notify().unwrap();
        }
        theirs.notify().unwrap();
        assert!(ours.wait(Some(Duration::from_secs(5))).unwrap());
    }
}

#[test]
fn a_peer_that_takes_our_events_first_costs_only_its_own() {
    let (mut ours, theirs, (rx_dup, _tx_dup)) = ends();
    theirs.notify().unwrap();
    // The peer reads our receiving socket before we do.
    let mut buf = [0u8; 8];
    recv(rx_dup.as_raw_fd(), &mut buf, MsgFlags::MSG_DONTWAIT).unwrap();
    let start = Instant::now();
    assert!(!ours.wait(Some(SHORT)).unwrap(), "nothing left: a timeout");
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!ours.try_wait().unwrap());
}

#[test]
fn a_peer_that_shuts_sockets_down_cannot_block_us() {
    let (mut ours, theirs, (rx_dup, tx_dup)) = ends();
    shutdown(tx_dup.as_raw_fd(), Shutdown::Both).unwrap();
    shutdown(rx_dup.as_raw_fd(), Shutdown::Both).unwrap();
    // Our notify fails silently (the peer stopped listening), our wait returns at once: a
    // shut-down socket is always readable, an event storm the backend bounds by backing off.
    for _ in 0..1000 {
        ours.notify().unwrap();
    }
    let start = Instant::now();
    let _ = ours.wait(Some(SHORT)).unwrap();
    let _ = ours.try_wait().unwrap();
    assert!(start.elapsed() < Duration::from_secs(5));
    drop(theirs);
    ours.notify().unwrap();
}

#[test]
fn what_is_not_a_doorbell_is_refused() {
    let good = || Doorbell::pair().unwrap().0.into_fds().1;
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    let why = refused(Doorbell::from_fds(pipe_r, good()));
    assert!(why.contains("not a socket"), "{why}");
    let efd: OwnedFd = nix::sys::eventfd::EventFd::new().unwrap().into();
    let why = refused(Doorbell::from_fds(good(), efd));
    assert!(why.contains("not a socket"), "{why}");
    let zero: OwnedFd = std::fs::File::open("/dev/zero").unwrap().into();
    assert!(refused(Doorbell::from_fds(zero, good())).contains("not a socket"));
    let (stream, _other) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .unwrap();
    assert!(refused(Doorbell::from_fds(stream, good())).contains("Stream"));
    let udp = socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .unwrap();
    let why = refused(Doorbell::from_fds(good(), udp));
    assert!(why.contains("not AF_UNIX"), "{why}");
    // A datagram the peer sends that is not one byte is still just an event.
    let (mut ours, theirs, _dups) = ends();
    let (_, their_tx) = theirs.into_fds();
    send(
        their_tx.as_fd().as_raw_fd(),
        &[0u8; 4000],
        MsgFlags::empty(),
    )
    .unwrap();
    assert!(ours.try_wait().unwrap());
    assert!(!ours.try_wait().unwrap());
}
