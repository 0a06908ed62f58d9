//! Event-channel round trip between two processes against a bare eventfd ping-pong, in one run.
//!
//! `cargo bench --bench event`. The parent notifies, the child (this binary, re-run) waits and
//! notifies back, the parent waits: one round trip. "bare eventfd" is the floor: two blocking
//! eventfds, one `write` and one blocking `read` per side per trip. "EventFdPort" is pvnet's
//! event channel over eventfds (what a VMM owns), waiting without a timeout (a blocking read)
//! and with one (`poll`, then read); "Doorbell" is the process host's event channel (a
//! datagram socket pair per direction, never blocking: `poll`, then `recv` with
//! `MSG_DONTWAIT`), the price of a peer that cannot hang it.
//! Rounds alternate the two; the medians and their ratio are printed.

#[path = "common/stats.rs"]
mod stats;

use std::fs::File;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Child, Command};
use std::time::Instant;

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::eventfd::{EfdFlags, EventFd};
use pvnet::event::{EventChannel, EventFdPort};
use pvnet::process::Doorbell;
use stats::median_of;

const TRIPS: u32 = 20_000;
const CHILD: &str = "PVNET_EVENT_BENCH_CHILD";

fn inheritable(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).unwrap();
}

fn spawn(mode: &str, rx: &OwnedFd, tx: &OwnedFd) -> Child {
    inheritable(rx);
    inheritable(tx);
    Command::new(std::env::current_exe().unwrap())
        .env(
            CHILD,
            format!("{mode},{},{}", rx.as_raw_fd(), tx.as_raw_fd()),
        )
        .spawn()
        .unwrap()
}

fn child(spec: &str) {
    let parts: Vec<&str> = spec.split(',').collect();
    let fd = |i: usize| -> OwnedFd {
        let raw: RawFd = parts[i].parse().unwrap();
        std::fs::read_link(format!("/proc/self/fd/{raw}")).expect("inherited fd is open");
        // SAFETY: the parent passed this descriptor to us by number (checked open above).
        unsafe { OwnedFd::from_raw_fd(raw) }
    };
    let (rx, tx) = (fd(1), fd(2));
    match parts[0] {
        "bare" => {
            let (mut rx, mut tx) = (File::from(rx), File::from(tx));
            let mut buf = [0u8; 8];
            for _ in 0..TRIPS {
                rx.read_exact(&mut buf).unwrap();
                tx.write_all(&1u64.to_ne_bytes()).unwrap();
            }
        }
        "doorbell" => {
            let mut port = Doorbell::from_fds(rx, tx).unwrap();
            for _ in 0..TRIPS {
                assert!(port.wait(None).unwrap());
                port.notify().unwrap();
            }
        }
        _ => {
            let mut port = EventFdPort::from_fds(rx, tx).unwrap();
            for _ in 0..TRIPS {
                assert!(port.wait(None).unwrap());
                port.notify().unwrap();
            }
        }
    }
}

/// Nanoseconds per round trip.
fn bare() -> f64 {
    let ev = || OwnedFd::from(EventFd::from_value_and_flags(0, EfdFlags::empty()).unwrap());
    let (to_child, to_parent) = (ev(), ev());
    let mut child = spawn("bare", &to_child, &to_parent);
    let (mut tx, mut rx) = (File::from(to_child), File::from(to_parent));
    let mut buf = [0u8; 8];
    let start = Instant::now();
    for _ in 0..TRIPS {
        tx.write_all(&1u64.to_ne_bytes()).unwrap();
        rx.read_exact(&mut buf).unwrap();
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(TRIPS);
    assert!(child.wait().unwrap().success());
    ns
}

fn port() -> f64 {
    port_with(None)
}

fn port_timed() -> f64 {
    port_with(Some(std::time::Duration::from_secs(10)))
}

fn port_with(timeout: Option<std::time::Duration>) -> f64 {
    let (ours, theirs) = EventFdPort::pair().unwrap();
    let (rx, tx) = theirs.clone_fds().unwrap();
    drop(theirs);
    ping_pong(ours, "port", rx, tx, timeout)
}

fn doorbell() -> f64 {
    let (ours, theirs) = Doorbell::pair().unwrap();
    let (rx, tx) = theirs.into_fds();
    let tx = tx.expect("a pair's ends ring each other");
    ping_pong(ours, "doorbell", rx, tx, None)
}

/// Nanoseconds per round trip between `ours` and a child using `rx` / `tx` as `mode`.
fn ping_pong(
    mut ours: impl EventChannel,
    mode: &str,
    rx: OwnedFd,
    tx: OwnedFd,
    timeout: Option<std::time::Duration>,
) -> f64 {
    let mut child = spawn(mode, &rx, &tx);
    drop((rx, tx));
    let start = Instant::now();
    for _ in 0..TRIPS {
        ours.notify().unwrap();
        assert!(ours.wait(timeout).unwrap());
    }
    let ns = start.elapsed().as_secs_f64() * 1e9 / f64::from(TRIPS);
    assert!(child.wait().unwrap().success());
    ns
}

fn main() {
    if let Ok(spec) = std::env::var(CHILD) {
        return child(&spec);
    }
    // `cargo bench` passes `--bench`; nothing else is parsed.
    let rounds = std::env::var("PVNET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(7);
    let (mut b, mut p, mut pt, mut r, mut rt) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let (mut d, mut rd) = (Vec::new(), Vec::new());
    for _ in 0..rounds.max(1) {
        let (nb, np, npt, nd) = (bare(), port(), port_timed(), doorbell());
        b.push(nb);
        p.push(np);
        pt.push(npt);
        d.push(nd);
        r.push(np / nb);
        rt.push(npt / nb);
        rd.push(nd / nb);
    }
    println!("event: {rounds} interleaved rounds of {TRIPS} round trips between two processes");
    println!("{:<28} {:>12}", "channel", "median RTT");
    println!(
        "{:<28} {:>9.2} us",
        "bare eventfd (blocking)",
        median_of(b) / 1e3
    );
    println!(
        "{:<28} {:>9.2} us",
        "EventFdPort wait(None)",
        median_of(p) / 1e3
    );
    println!(
        "{:<28} {:>9.2} us",
        "EventFdPort wait(timeout)",
        median_of(pt) / 1e3
    );
    println!(
        "{:<28} {:>9.2} us",
        "Doorbell wait(None)",
        median_of(d) / 1e3
    );
    println!(
        "EventFdPort wait(None) / bare eventfd    = {:.2}x (goal <= 1.2)",
        median_of(r)
    );
    println!(
        "EventFdPort wait(timeout) / bare eventfd = {:.2}x",
        median_of(rt)
    );
    println!(
        "Doorbell wait(None) / bare eventfd       = {:.2}x (per round, median)",
        median_of(rd)
    );
}
