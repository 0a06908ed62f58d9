//! The acceptor thread against frontends that connect and say nothing, and at the descriptor
//! limit. Before, accept and handshake were serial: one silent frontend kept every other out
//! for the handshake timeout (for ever if it reconnected), and at the descriptor limit the
//! acceptor retried `accept` at full speed.

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pvnet_process_host::{BackendConfig, Listener, MAX_HANDSHAKES, Offer, connect, spawn_acceptor};
use xenbus::{FrontendChoice, QueueResources, Resources, RxMode, XenbusError};

const CHILD: &str = "PVNET_ACCEPTOR_CHILD_SOCKET";

fn listener(path: &Path, timeout: Duration) -> Listener {
    let mut c = BackendConfig::default();
    c.timeout = timeout;
    Listener::bind(path, c).unwrap()
}

/// A frontend that completes its handshake (one queue, one event channel).
fn good(path: &Path) -> Result<(), XenbusError> {
    let pending = connect(path, Duration::from_secs(10))?;
    let mut offer = Offer::new();
    let (_frames, frames) = offer.memory(c"f", 4096).unwrap();
    let (_table, table) = offer.memory(c"t", 4096).unwrap();
    let (_port, tx_event) = offer.event_channel().unwrap();
    let res = Resources {
        frames,
        grant_table: table,
        flip_pool: None,
        queues: vec![QueueResources {
            tx_ring_ref: 8,
            rx_ring_ref: 9,
            tx_event,
            rx_event: None,
        }],
    };
    let mut choice = FrontendChoice::default();
    choice.rx_mode = RxMode::Copy;
    // The acceptor stops at the keys; answered by whoever takes the connection.
    let _ = offer.send(pending, &choice, &res);
    Ok(())
}

#[test]
fn silent_frontends_do_not_keep_others_out() {
    let path = common::sock_path("acceptor", "silent");
    let timeout = Duration::from_secs(3);
    let incoming = spawn_acceptor(listener(&path, timeout), || {}).unwrap();
    let silent: Vec<OwnedFd> = (0..10).map(|_| common::raw_client(&path)).collect();
    let start = Instant::now();
    let front = {
        let path = path.clone();
        std::thread::spawn(move || good(&path))
    };
    // The good frontend's keys arrive first, long before any silent one times out (served
    // one after another, it would have waited 10 x 3 s).
    let mut conn = incoming
        .recv_timeout(Duration::from_secs(10))
        .unwrap()
        .unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(2),
        "{:?}",
        start.elapsed()
    );
    xenbus::BackendControl::connected(&mut conn).unwrap();
    front.join().unwrap().unwrap();
    // Then each silent one times out, all together.
    for _ in 0..10 {
        let r = incoming.recv_timeout(Duration::from_secs(10)).unwrap();
        assert!(matches!(r, Err(XenbusError::Timeout(_))), "{r:?}");
    }
    assert!(start.elapsed() < timeout + Duration::from_secs(3));
    drop(silent);
    const { assert!(MAX_HANDSHAKES >= 10) };
}

#[test]
fn at_the_descriptor_limit_the_acceptor_backs_off() {
    let path = common::sock_path("acceptor", "emfile");
    let child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "emfile_child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, &path)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let ready = path.with_extension("ready");
    let deadline = Instant::now() + Duration::from_secs(20);
    while !ready.exists() {
        assert!(Instant::now() < deadline, "the child never got ready");
        std::thread::sleep(Duration::from_millis(10));
    }
    // Frontends knock while the backend has no descriptor left to accept them with.
    let _knocking: Vec<OwnedFd> = (0..3).map(|_| common::raw_client(&path)).collect();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    let out = String::from_utf8(out.stdout).unwrap();
    let cpu: f64 = out
        .lines()
        .find_map(|l| l.strip_prefix("ACCEPTOR-CPU "))
        .unwrap_or_else(|| panic!("no CPU figure in {out}"))
        .trim()
        .parse()
        .unwrap();
    eprintln!("acceptor at the descriptor limit: {cpu:.3} s of CPU in 1 s");
    // Retrying accept at full speed takes the whole second.
    assert!(cpu < 0.2, "{cpu} s of CPU in 1 s");
    let _ = std::fs::remove_dir_all(path.parent().unwrap());
}

/// The backend process of `at_the_descriptor_limit_the_acceptor_backs_off`: an acceptor,
/// then every descriptor taken, then one second of CPU time measured.
#[test]
#[ignore = "runs as the child of at_the_descriptor_limit_the_acceptor_backs_off"]
fn emfile_child_entry() {
    let Ok(path) = std::env::var(CHILD) else {
        return;
    };
    let path = PathBuf::from(path);
    let incoming = spawn_acceptor(listener(&path, Duration::from_secs(5)), || {}).unwrap();
    let (_, hard) =
        nix::sys::resource::getrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE).unwrap();
    nix::sys::resource::setrlimit(nix::sys::resource::Resource::RLIMIT_NOFILE, 256, hard).unwrap();
    let mut hog = Vec::new();
    while let Ok(f) = std::fs::File::open("/dev/null") {
        hog.push(f);
    }
    // One descriptor back for the file that tells the parent, then taken again.
    hog.pop();
    std::fs::write(path.with_extension("ready"), b"").unwrap();
    hog.push(std::fs::File::open("/dev/null").unwrap());
    let cpu = || {
        let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF).unwrap();
        let s = |t: nix::sys::time::TimeVal| t.tv_sec() as f64 + t.tv_usec() as f64 / 1e6;
        s(u.user_time()) + s(u.system_time())
    };
    // Let the knocks arrive, then measure.
    std::thread::sleep(Duration::from_millis(200));
    let before = cpu();
    std::thread::sleep(Duration::from_secs(1));
    let spent = cpu() - before;
    let errors = incoming.try_iter().filter(Result::is_err).count();
    assert!(errors > 0, "accept never failed: the limit was not reached");
    println!("\nACCEPTOR-CPU {spent}");
    drop(hog);
}
