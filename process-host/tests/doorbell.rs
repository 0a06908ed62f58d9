//! Doorbells against a peer that does anything with its descriptors. Handed over as the
//! process host does it (each side makes the socket it receives on), the peer holds the
//! sending end towards us and the socket we send on: it floods, never reads, flips
//! `O_NONBLOCK` on the file descriptions we share, shuts down and closes everything it holds.
//! None of it can make our end block (every call here is bounded by the test's timeouts) or
//! readable without a datagram. A peer that made both ends ([`Doorbell::from_fds`], for a
//! trusted parent) may also keep our receiving socket: it can take our events first or
//! shut it down, and still cannot make us block. A descriptor that is not a doorbell is
//! refused. With an eventfd, the same peer hung a notify for ever (writing 2^64-2), hung a
//! blocking wait (reading first), or turned it into a local error (`EAGAIN`).

use pvnet_process_host::testing::LeakCheck;
use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::time::{Duration, Instant};

use event_channel::{EventChannel, EventError};
use nix::fcntl::{FcntlArg, OFlag, fcntl};
use nix::sys::socket::{
    AddressFamily, MsgFlags, Shutdown, SockFlag, SockType, recv, send, shutdown, socket, socketpair,
};
use pvnet_process_host::Doorbell;

const SHORT: Duration = Duration::from_millis(50);

/// Our end and the peer's, handed over as the process host does: each made the socket it
/// receives on. Also what else the peer may hold: duplicates of the socket we send on (it
/// made it) and of its sending end towards us.
fn handed_over() -> (Doorbell, Doorbell, (OwnedFd, OwnedFd)) {
    let (mut ours, to_us) = Doorbell::receiving().unwrap();
    let (mut theirs, to_them) = Doorbell::receiving().unwrap();
    let dups = (to_them.try_clone().unwrap(), to_us.try_clone().unwrap());
    ours.connect_peer(to_them).unwrap();
    theirs.connect_peer(to_us).unwrap();
    (ours, theirs, dups)
}

/// Our end over a pair the peer made, and duplicates it kept of both our descriptors
/// (our receiving socket too).
fn made_by_peer() -> (Doorbell, Doorbell, (OwnedFd, OwnedFd)) {
    let (ours, theirs) = Doorbell::pair().unwrap();
    let (rx, tx) = ours.into_fds();
    let tx = tx.unwrap();
    let dups = (rx.try_clone().unwrap(), tx.try_clone().unwrap());
    (Doorbell::from_fds(rx, tx).unwrap(), theirs, dups)
}

/// Whether `bell`'s receiving socket is readable now.
fn readable(bell: &Doorbell) -> bool {
    let mut polled = [nix::poll::PollFd::new(
        bell.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    nix::poll::poll(&mut polled, 0u16).unwrap() > 0
}

fn refused(r: Result<Doorbell, EventError>) -> String {
    refused_unit(r.map(drop))
}

fn refused_unit(r: Result<(), EventError>) -> String {
    match r {
        Err(EventError::Io(e)) if e.kind() == std::io::ErrorKind::InvalidInput => e.to_string(),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn notify_wait_mask_and_readiness() {
    let _leaks = LeakCheck::new();
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
fn an_end_rings_nobody_until_it_has_its_peer() {
    let _leaks = LeakCheck::new();
    let (mut a, to_a) = Doorbell::receiving().unwrap();
    let (mut b, to_b) = Doorbell::receiving().unwrap();
    // Before the hand-over, a notify goes nowhere and fails nothing.
    a.notify().unwrap();
    assert!(!b.try_wait().unwrap());
    a.connect_peer(to_b).unwrap();
    b.connect_peer(to_a).unwrap();
    a.notify().unwrap();
    assert!(b.wait(Some(Duration::from_secs(5))).unwrap());
    b.notify().unwrap();
    assert!(a.wait(Some(Duration::from_secs(5))).unwrap());
    // One peer per end.
    let (_, another) = Doorbell::receiving().unwrap();
    assert!(refused_unit(a.connect_peer(another)).contains("already"));
}

#[test]
fn a_peer_that_never_reads_cannot_block_a_notify() {
    let _leaks = LeakCheck::new();
    for (ours, _theirs, _dups) in [handed_over(), made_by_peer()] {
        let start = Instant::now();
        // Far more than any socket queue holds: once it is full, a notify is "already pending".
        for _ in 0..100_000 {
            ours.notify().unwrap();
        }
        assert!(start.elapsed() < Duration::from_secs(30));
    }
}

#[test]
fn flags_the_peer_sets_on_shared_descriptions_change_nothing() {
    let _leaks = LeakCheck::new();
    for (mut ours, theirs, (a_dup, b_dup)) in [handed_over(), made_by_peer()] {
        for flags in [OFlag::O_NONBLOCK, OFlag::empty()] {
            // The peer sets, then clears, O_NONBLOCK on the file descriptions it shares
            // with us.
            for fd in [&a_dup, &b_dup] {
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
}

#[test]
fn a_peer_that_shuts_down_and_closes_all_it_holds_leaves_our_end_quiet() {
    let _leaks = LeakCheck::new();
    let (mut ours, theirs, (to_them_dup, to_us_dup)) = handed_over();
    let (their_rx, to_us) = theirs.into_fds();
    let to_us = to_us.unwrap();
    // Everything the peer holds that touches this channel: shut down, then closed.
    for fd in [&their_rx, &to_us, &to_them_dup, &to_us_dup] {
        shutdown(fd.as_raw_fd(), Shutdown::Both).unwrap();
    }
    drop((their_rx, to_us, to_them_dup, to_us_dup));
    // A datagram socket's shutdown or close does not touch its peer: our receiving socket
    // is not readable (no storm), a wait times out, a notify is nobody's news.
    assert!(!readable(&ours));
    let start = Instant::now();
    assert!(!ours.wait(Some(SHORT)).unwrap());
    assert!(start.elapsed() < Duration::from_secs(5));
    assert!(!ours.try_wait().unwrap());
    for _ in 0..1000 {
        ours.notify().unwrap();
    }
    assert!(!readable(&ours));
}

#[test]
fn a_peer_that_takes_our_events_first_costs_only_its_own() {
    let _leaks = LeakCheck::new();
    // Only a peer that made our receiving socket can do this.
    let (mut ours, theirs, (rx_dup, _tx_dup)) = made_by_peer();
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
fn a_peer_that_shuts_our_receiving_socket_down_cannot_block_us() {
    let _leaks = LeakCheck::new();
    // Only a peer that made our receiving socket can do this.
    let (mut ours, theirs, (rx_dup, tx_dup)) = made_by_peer();
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
    let _leaks = LeakCheck::new();
    let good = || Doorbell::receiving().unwrap().1;
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
    // The same check where the process host takes the peer's end.
    let (mut ours, _) = Doorbell::receiving().unwrap();
    let (pipe_r, _pipe_w) = nix::unistd::pipe().unwrap();
    assert!(refused_unit(ours.connect_peer(pipe_r)).contains("not a socket"));
    // A datagram the peer sends that is not one byte is still just an event.
    let (mut ours, _theirs, (_, to_us)) = handed_over();
    let their_tx = to_us;
    send(
        their_tx.as_fd().as_raw_fd(),
        &[0u8; 4000],
        MsgFlags::empty(),
    )
    .unwrap();
    assert!(ours.try_wait().unwrap());
    assert!(!ours.try_wait().unwrap());
}
