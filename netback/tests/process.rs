//! Real processes: frontends in child processes (this test binary re-run) stream through a
//! backend in this process. After each frontend goes, by closing or by being killed
//! mid-stream, the backend holds nothing of it: no mapping of its memory, no descriptor, no
//! grant in use.

mod common;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::{T, start};
use netfront::{Netfront, NetfrontConfig};
use netif::Offload;
use pvnet_netback::{Echo, NetbackConfig};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

const CHILD_SOCKET: &str = "PVNET_NETBACK_CHILD_SOCKET";
const CHILD_MODE: &str = "PVNET_NETBACK_CHILD_MODE";

/// Mappings of frontend memory in this process (the memfds are named by netfront).
fn frontend_mappings() -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains("memfd:netfront-"))
        .count()
}

/// Descriptors of this process that are frontend memfds or eventfds.
fn frontend_fds() -> (usize, usize) {
    let (mut memfds, mut eventfds) = (0, 0);
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy();
            memfds += usize::from(t.contains("memfd:netfront-"));
            eventfds += usize::from(t.contains("[eventfd]"));
        }
    }
    (memfds, eventfds)
}

fn spawn(path: &std::path::Path, mode: &str) -> Child {
    Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "frontend_child",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_SOCKET, path)
        .env(CHILD_MODE, mode)
        .stdout(Stdio::piped())
        .spawn()
        .unwrap()
}

fn wait_until(what: &str, mut f: impl FnMut() -> bool) {
    let deadline = Instant::now() + T;
    while !f() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(10));
    }
}

#[test]
fn frontend_processes_leave_nothing_behind() {
    assert_eq!(frontend_mappings(), 0);
    let backend = start(
        "process",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    // The backend's own descriptors (its waker) are there before any frontend comes.
    let (_, eventfds_before) = frontend_fds();

    // Copy and flip frontends that stream, check and close; then one killed mid-stream.
    for mode in ["copy", "flip"] {
        let status = spawn(&backend.path, mode).wait().unwrap();
        assert!(status.success(), "{mode} frontend: {status}");
    }
    let mut victim = spawn(&backend.path, "endless");
    // It is attached and streaming once its memory is mapped here.
    wait_until("the endless frontend's mappings", || {
        frontend_mappings() > 0
    });
    std::thread::sleep(Duration::from_millis(100));
    victim.kill().unwrap();
    victim.wait().unwrap();
    wait_until("the killed frontend's release", || frontend_mappings() == 0);
    wait_until("the killed frontend's descriptors", || {
        let (memfds, eventfds) = frontend_fds();
        memfds == 0 && eventfds == eventfds_before
    });

    let stopped = backend.stop();
    assert_eq!(stopped.closed.len(), 3, "three vifs came and went");
    for v in &stopped.closed {
        assert_eq!(v.pinned, 0, "vif {:?}: no grant in use", v.id);
        assert!(v.fault.is_none(), "vif {:?}: {:?}", v.id, v.fault);
    }
    assert!(
        stopped.closed[..2]
            .iter()
            .all(|v| v.stats.rx_packets == 2000)
    );
    assert!(
        stopped.closed[2].stats.tx_packets > 0,
        "the victim was streaming"
    );
    assert_eq!(stopped.backend.memory().packets(), 0);
}

/// The frontend process of `frontend_processes_leave_nothing_behind`.
#[test]
#[ignore = "run by frontend_processes_leave_nothing_behind as its child"]
fn frontend_child() {
    let (Ok(path), Ok(mode)) = (std::env::var(CHILD_SOCKET), std::env::var(CHILD_MODE)) else {
        eprintln!("frontend_child: only runs as the child of the process test");
        return;
    };
    let choice = {
        let mut c = FrontendChoice::default();
        c.rx_mode = if mode == "flip" {
            RxMode::Flip
        } else {
            RxMode::Copy
        };
        c
    };
    let mut nic = Netfront::connect(std::path::Path::new(&path), {
        let mut c = NetfrontConfig::default();
        c.choice = choice;
        c
    })
    .unwrap();
    let frames: Vec<Vec<u8>> = (0..2000u32)
        .map(|i| common::frame(1, 1, i, 60 + (i as usize % 1400)))
        .collect();
    let mut round = 0u32;
    loop {
        let (mut sent, mut got) = (0, 0);
        while got < frames.len() {
            if sent < frames.len() && sent - got < 128 {
                sent += nic
                    .send_batch(
                        frames[sent..(sent + 32).min(frames.len())]
                            .iter()
                            .map(Vec::as_slice),
                        Offload::default(),
                    )
                    .unwrap_or(0);
            }
            let n = nic
                .receive(64, |rx| {
                    assert!(rx.data == frames[got].as_slice(), "frame {got} intact");
                    got += 1;
                })
                .unwrap();
            if n == 0 {
                nic.poll().unwrap();
                assert!(nic.wait(Some(T)).unwrap(), "frames came back");
            }
        }
        round += 1;
        if mode != "endless" {
            break;
        }
        let _ = round;
    }
    let report = nic.close().unwrap();
    // `close` is Ok only if no grant is left in use; in flip mode up to a refill batch (32)
    // of received frames are ours again and need no grant.
    assert!(
        report.revoked >= 2 + 256 + 256 - 32,
        "every grant revoked: {report:?}"
    );
}
