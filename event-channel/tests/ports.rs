//! The event-channel contract, checked on both implementations through the trait.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet_event_channel::{EventChannel, EventError, EventFdPort, LocalPort, SpinThenWait};

const SHORT: Duration = Duration::from_millis(30);
const LONG: Duration = Duration::from_secs(5);

fn contract<P: EventChannel + 'static>(mut a: P, mut b: P) {
    // Nothing pending at first.
    assert!(!b.try_wait().unwrap());
    let t = Instant::now();
    assert!(
        !b.wait(Some(SHORT)).unwrap(),
        "times out with nothing pending"
    );
    assert!(t.elapsed() >= SHORT);

    // Coalescing: many notifies, one event.
    for _ in 0..5 {
        a.notify().unwrap();
    }
    assert!(b.wait(Some(LONG)).unwrap());
    assert!(!b.try_wait().unwrap());

    // Each direction is separate.
    b.notify().unwrap();
    assert!(
        !b.try_wait().unwrap(),
        "notify does not raise one's own bit"
    );
    assert!(a.try_wait().unwrap());

    // Mask holds events back; unmask reports and re-delivers them.
    b.mask();
    assert!(b.is_masked());
    a.notify().unwrap();
    assert!(!b.try_wait().unwrap(), "masked port delivers nothing");
    assert!(matches!(b.wait(Some(SHORT)), Err(EventError::Masked)));
    assert!(b.unmask().unwrap(), "unmask reports the pending event");
    assert!(!b.is_masked());
    assert!(b.wait(Some(SHORT)).unwrap(), "and delivers it");
    assert!(!b.unmask().unwrap(), "nothing pending any more");
}

fn wakes_a_sleeping_thread<P: EventChannel + 'static>(a: P, mut b: P) {
    let notifier = std::thread::spawn(move || {
        std::thread::sleep(SHORT);
        a.notify().unwrap();
        a
    });
    let t = Instant::now();
    assert!(b.wait(None).unwrap());
    assert!(t.elapsed() < LONG);
    drop(notifier.join().unwrap());
}

fn spin_then_wait<P: EventChannel + 'static>(a: P, mut b: P) {
    // Work shows up during the spin: no event needed.
    let ready = AtomicBool::new(true);
    let waiter = SpinThenWait::new(Duration::from_millis(5));
    assert!(
        waiter
            .wait(&mut b, |_| ready.load(Ordering::Relaxed), Some(SHORT))
            .unwrap()
    );

    // No work, no event: times out and says so.
    ready.store(false, Ordering::Relaxed);
    assert!(
        !waiter
            .wait(&mut b, |_| ready.load(Ordering::Relaxed), Some(SHORT))
            .unwrap()
    );

    // Work arrives later with an event: the blocked waiter wakes and sees it.
    let flag = Arc::new(AtomicBool::new(false));
    let producer = {
        let flag = flag.clone();
        std::thread::spawn(move || {
            std::thread::sleep(SHORT);
            flag.store(true, Ordering::Release);
            a.notify().unwrap();
            a
        })
    };
    let blocking = SpinThenWait::default();
    assert!(
        blocking
            .wait(&mut b, |_| flag.load(Ordering::Acquire), Some(LONG))
            .unwrap()
    );
    drop(producer.join().unwrap());
}

#[test]
fn eventfd_contract() {
    let (a, b) = EventFdPort::pair().unwrap();
    contract(a, b);
}

#[test]
fn local_contract() {
    let (a, b) = LocalPort::pair();
    contract(a, b);
}

#[test]
fn eventfd_wakes_a_sleeping_thread() {
    let (a, b) = EventFdPort::pair().unwrap();
    wakes_a_sleeping_thread(a, b);
}

#[test]
fn local_wakes_a_sleeping_thread() {
    let (a, b) = LocalPort::pair();
    wakes_a_sleeping_thread(a, b);
}

#[test]
fn eventfd_spin_then_wait() {
    let (a, b) = EventFdPort::pair().unwrap();
    spin_then_wait(a, b);
}

#[test]
fn local_spin_then_wait() {
    let (a, b) = LocalPort::pair();
    spin_then_wait(a, b);
}

#[test]
fn eventfd_port_is_pollable_and_its_fds_rebuild_the_peer() {
    use std::os::fd::AsFd;
    let (a, b) = EventFdPort::pair().unwrap();
    // What a peer process would receive: b's fds, rebuilt into a port.
    let (rx, tx) = b.clone_fds().unwrap();
    let mut remote = EventFdPort::from_fds(rx, tx).unwrap();
    a.notify().unwrap();
    let mut fds = [nix::poll::PollFd::new(
        remote.as_fd(),
        nix::poll::PollFlags::POLLIN,
    )];
    assert_eq!(
        nix::poll::poll(&mut fds, nix::poll::PollTimeout::from(1000u16)).unwrap(),
        1
    );
    assert!(remote.is_pending().unwrap());
    assert!(remote.try_wait().unwrap());
    remote.notify().unwrap();
    let mut a = a;
    assert!(a.try_wait().unwrap());
    drop(b);
}

#[test]
fn local_port_reports_a_dropped_peer() {
    let (a, b) = LocalPort::pair();
    drop(b);
    assert!(matches!(a.notify(), Err(EventError::PeerClosed)));
}

#[test]
fn spinning_only_looks_and_the_final_check_comes_last_before_sleeping() {
    use pvnet_event_channel::Check;
    let (_a, mut b) = LocalPort::pair();
    let mut phases = Vec::new();
    let waiter = SpinThenWait::new(Duration::from_millis(2));
    assert!(
        !waiter
            .wait(
                &mut b,
                |p| {
                    phases.push(p);
                    false
                },
                Some(SHORT)
            )
            .unwrap()
    );
    assert!(phases.len() > 2);
    let first_final = phases.iter().position(|p| *p == Check::Final).unwrap();
    assert!(
        phases[..first_final].iter().all(|p| *p == Check::Spin),
        "spin first, with cheap looks only"
    );
    assert!(
        phases[first_final..].iter().all(|p| *p == Check::Final),
        "then only final checks"
    );

    // Without a spin the first check is the final one.
    let mut first = None;
    let _ = SpinThenWait::default().wait(
        &mut b,
        |p| {
            first.get_or_insert(p);
            true
        },
        Some(SHORT),
    );
    assert_eq!(first, Some(Check::Final));
}

/// `QueuePorts`: notifications land on the right channel, `wait_any` sees them, and the late
/// EOI clears exactly the events the sleep saw.
#[test]
fn queue_ports_route_and_clear_events() {
    use pvnet_event_channel::{QueuePorts, wait_any};
    use std::os::fd::BorrowedFd;

    let (tx_a, tx_b) = EventFdPort::pair().unwrap();
    let (rx_a, rx_b) = EventFdPort::pair().unwrap();
    let front = QueuePorts::new(tx_a, Some(rx_a));
    let mut back = QueuePorts::new(tx_b, Some(rx_b));
    assert!(back.split());
    front.notify_rx().unwrap();
    let mut ready = [false; 2];
    {
        let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
        back.fds(&mut fds);
        assert_eq!(
            wait_any(&fds, Some(Duration::from_secs(1)), &mut ready).unwrap(),
            1
        );
    }
    assert_eq!(ready, [false, true], "the receive ring's channel fired");
    back.mark_ready(&mut ready.into_iter());
    back.end_of_interrupt().unwrap();
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    back.fds(&mut fds);
    assert_eq!(
        wait_any(&fds, Some(Duration::from_millis(10)), &mut ready).unwrap(),
        0,
        "cleared"
    );
    drop(fds);
    // Unsplit: both rings notify the one channel.
    let (a, b) = EventFdPort::pair().unwrap();
    let (front, mut back) = (QueuePorts::new(a, None), QueuePorts::new(b, None));
    front.notify_tx().unwrap();
    front.notify_rx().unwrap();
    let mut fds: Vec<BorrowedFd<'_>> = Vec::new();
    back.fds(&mut fds);
    assert_eq!(fds.len(), 1);
    let mut one = [false];
    assert_eq!(
        wait_any(&fds, Some(Duration::from_secs(1)), &mut one).unwrap(),
        1
    );
    drop(fds);
    back.mark_ready(&mut one.into_iter());
    back.end_of_interrupt().unwrap();
}
