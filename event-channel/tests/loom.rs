//! `RUSTFLAGS="--cfg loom" cargo test -p event-channel --test loom --release`
//!
//! A notify racing a waiter that is about to sleep: in every interleaving the waiter either
//! sees the event before sleeping or is woken by it (a lost wakeup is a loom deadlock), events
//! coalesce, and an event sent to a masked port is re-delivered by unmask.
#![cfg(loom)]

use loom::thread;
use pvnet_event_channel::{EventChannel, LocalPort};

#[test]
fn notify_racing_a_sleeping_waiter_is_never_lost() {
    loom::model(|| {
        let (a, mut b) = LocalPort::pair();
        let notifier = thread::spawn(move || {
            a.notify().unwrap();
            a
        });
        assert!(b.wait(None).unwrap());
        let a = notifier.join().unwrap();
        drop(a);
    });
}

#[test]
fn two_notifies_coalesce_into_at_most_two_deliveries() {
    loom::model(|| {
        let (a, mut b) = LocalPort::pair();
        let notifier = thread::spawn(move || {
            a.notify().unwrap();
            a.notify().unwrap();
            a
        });
        assert!(b.wait(None).unwrap());
        let a = notifier.join().unwrap();
        // Both notifies may have landed before the first wait (one event) or around it (two).
        let _ = b.try_wait().unwrap();
        assert!(!b.try_wait().unwrap());
        drop(a);
    });
}

#[test]
fn masked_event_is_redelivered_on_unmask() {
    loom::model(|| {
        let (a, mut b) = LocalPort::pair();
        b.mask();
        let notifier = thread::spawn(move || {
            a.notify().unwrap();
            a
        });
        let a = notifier.join().unwrap();
        assert!(!b.try_wait().unwrap());
        assert!(b.unmask().unwrap());
        assert!(b.wait(None).unwrap());
        drop(a);
    });
}
