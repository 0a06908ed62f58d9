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

/// Descriptors of this process that are frontend memfds, and sockets (doorbells and
/// control channels among them).
fn frontend_fds() -> (usize, usize) {
    let (mut memfds, mut sockets) = (0, 0);
    for e in std::fs::read_dir("/proc/self/fd").unwrap().flatten() {
        if let Ok(target) = std::fs::read_link(e.path()) {
            let t = target.to_string_lossy();
            memfds += usize::from(t.contains("memfd:netfront-"));
            sockets += usize::from(t.starts_with("socket:"));
        }
    }
    (memfds, sockets)
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
    // One at a time with the other test here: both count this process's sockets.
    let _leaks = process_host::testing::LeakCheck::new();
    assert_eq!(frontend_mappings(), 0);
    let backend = start(
        "process",
        BackendFeatures::default(),
        NetbackConfig::default(),
        Echo,
    );
    // The backend's own sockets (its listener) are there before any frontend comes.
    let (_, sockets_before) = frontend_fds();

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
        let (memfds, sockets) = frontend_fds();
        memfds == 0 && sockets == sockets_before
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
    // `close` is Ok only if no grant is left in use (rings, transmit pages and their small
    // halves, receive buffers); in flip mode up to a refill batch (32) of received frames
    // are ours again and need no grant.
    if mode == "flip" {
        assert!(
            report.revoked >= 2 + 2 * 256 + 256 - 32,
            "every grant revoked: {report:?}"
        );
    } else {
        assert_eq!(
            report.revoked,
            2 + 2 * 256 + netfront::DEFAULT_RX_BUFFERS as usize,
            "every grant revoked: {report:?}"
        );
    }
}

const BACKEND_SOCKET: &str = "PVNET_NETBACK_BACKEND_SOCKET";

/// A backend in a child process, killed when dropped (also when the test fails).
struct BackendChild(Child);

impl BackendChild {
    fn start(path: &std::path::Path) -> Self {
        let _ = std::fs::remove_file(path);
        let child = Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "backend_child",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(BACKEND_SOCKET, path)
            .stdout(Stdio::null())
            .spawn()
            .unwrap();
        wait_until("the backend's socket", || path.exists());
        Self(child)
    }

    fn kill(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for BackendChild {
    fn drop(&mut self) {
        self.kill();
    }
}

/// Echoes `n` frames through `nic`, each checked.
fn echo(nic: &mut Netfront, n: u32) {
    for i in 0..n {
        let f = common::frame(1, 1, i, 60 + (i as usize % 1400));
        nic.send(&f, Offload::default()).unwrap();
        let mut got = None;
        while got.is_none() {
            nic.receive(1, |rx| got = Some(rx.data.to_vec())).unwrap();
            if got.is_none() {
                assert!(nic.wait(Some(T)).unwrap(), "frame {i} came back");
            }
        }
        assert_eq!(got.unwrap(), f, "frame {i} intact");
    }
}

/// The backend process is killed (SIGKILL) mid-connection: netfront notices at once (its
/// control socket reports the loss), `close` reports no grant in use that no one holds (the
/// dead backend's marks are reclaimed), and a new netfront gets fresh rings from a restarted
/// backend and traffic resumes.
#[test]
fn a_killed_backend_is_noticed_and_a_restarted_one_serves() {
    let _leaks = process_host::testing::LeakCheck::new();
    let dir = process_host::testing::TestDir::new("netback-kill");
    let path = dir.join("backend.sock");
    let mut backend = BackendChild::start(&path);
    let mut nic = Netfront::connect(&path, NetfrontConfig::default()).unwrap();
    echo(&mut nic, 200);
    backend.kill();
    let killed = Instant::now();
    // The application's loop: reclaim, receive, wait; the loss is an error from one of them.
    let lost = loop {
        let step = nic
            .poll()
            .and_then(|_| nic.receive(64, |_| {}))
            .and_then(|_| nic.wait(Some(T)));
        match step {
            Err(e) => break e,
            Ok(_) => assert!(killed.elapsed() < T, "the loss was never reported"),
        }
    };
    assert!(
        matches!(
            lost,
            netfront::NetfrontError::Broken(netfront::BackendFault::Closed)
        ),
        "{lost:?}"
    );
    eprintln!(
        "the killed backend was noticed after {:?}",
        killed.elapsed()
    );
    assert!(
        killed.elapsed() < Duration::from_secs(1),
        "{:?}",
        killed.elapsed()
    );
    let report = nic.close().unwrap();
    assert!(
        report.reclaimed >= 2,
        "the ring mappings' marks: {report:?}"
    );
    // A restarted backend serves a new netfront.
    let _backend = BackendChild::start(&path);
    let mut nic = Netfront::connect(&path, NetfrontConfig::default()).unwrap();
    echo(&mut nic, 200);
    let report = nic.close().unwrap();
    assert_eq!(
        report.reclaimed, 0,
        "a backend that answers leaves nothing to reclaim"
    );
}

/// The backend process of `a_killed_backend_is_noticed_and_a_restarted_one_serves`: serves
/// an echo until it is killed.
#[test]
#[ignore = "run by a_killed_backend_is_noticed_and_a_restarted_one_serves as its child"]
fn backend_child() {
    let Ok(path) = std::env::var(BACKEND_SOCKET) else {
        eprintln!("backend_child: only runs as the child of the backend-kill test");
        return;
    };
    let listener = process_host::Listener::bind(
        std::path::Path::new(&path),
        process_host::BackendConfig::default(),
    )
    .unwrap();
    let mut backend = pvnet_netback::Netback::new(NetbackConfig::default(), Echo).unwrap();
    let incoming = pvnet_netback::spawn_acceptor(listener, backend.waker()).unwrap();
    loop {
        backend.wait(None).unwrap();
        while let Ok(conn) = incoming.try_recv() {
            if let Ok(conn) = conn {
                let _ = backend.attach(conn);
            }
        }
        backend.poll().unwrap();
        let _ = backend.take_closed();
    }
}
