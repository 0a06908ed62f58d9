//! The acceptor thread against frontends that connect and say nothing, and at the descriptor
//! limit. Before, accept and handshake were serial: one silent frontend kept every other out
//! for the handshake timeout (for ever if it reconnected), and at the descriptor limit the
//! acceptor retried `accept` at full speed.

mod common;

use pvnet_process_host::testing::LeakCheck;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use pvnet_process_host::{
    BackendConfig, Listener, MAX_HANDSHAKES, MAX_HANDSHAKES_PER_UID, Offer, connect, spawn_acceptor,
};
use xenbus::{FrontendChoice, QueueResources, Resources, RxMode, XenbusError};

const CHILD: &str = "PVNET_ACCEPTOR_CHILD_SOCKET";
const NOBODY_ENV: &str = "PVNET_ACCEPTOR_NOBODY_SOCKET";
const NOBODY: u32 = 65534;

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
    let _leaks = LeakCheck::new();
    let (_dir, path) = common::sock_path("acceptor", "silent");
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

/// Whether a raw client was told it is refused (and why), waiting at most `wait`.
fn told_refused(s: &OwnedFd, wait: Duration) -> Option<String> {
    use std::os::fd::AsRawFd;
    let mut pfd = [nix::poll::PollFd::new(
        std::os::fd::AsFd::as_fd(s),
        nix::poll::PollFlags::POLLIN,
    )];
    let ms = u16::try_from(wait.as_millis()).unwrap_or(u16::MAX);
    if nix::poll::poll(&mut pfd, ms).ok()? == 0 {
        return None;
    }
    let mut buf = vec![0u8; xenbus::MAX_MESSAGE];
    let n = nix::sys::socket::recv(s.as_raw_fd(), &mut buf, nix::sys::socket::MsgFlags::empty())
        .ok()?;
    match xenbus::Message::decode(&buf[..n]).ok()? {
        xenbus::Message::Refused(r) => Some(r),
        _ => None,
    }
}

#[test]
fn one_uid_holds_at_most_its_share_of_the_handshakes() {
    let _leaks = LeakCheck::new();
    let (_dir, path) = common::sock_path("acceptor", "per-uid");
    let incoming = spawn_acceptor(listener(&path, Duration::from_secs(3)), || {}).unwrap();
    let n = MAX_HANDSHAKES_PER_UID + 4;
    let silent: Vec<OwnedFd> = (0..n).map(|_| common::raw_client(&path)).collect();
    // The ones over the cap are turned away at once (told why), not left to time out.
    let mut busy = 0;
    while busy < 4 {
        match incoming.recv_timeout(Duration::from_secs(2)) {
            Ok(Err(XenbusError::Busy { uid })) => {
                assert_eq!(uid, nix::unistd::getuid().as_raw());
                busy += 1;
            }
            other => panic!("expected 4 busy refusals, got {other:?} after {busy}"),
        }
    }
    let told = silent
        .iter()
        .filter_map(|s| told_refused(s, Duration::from_millis(200)))
        .collect::<Vec<_>>();
    assert_eq!(told.len(), 4, "{told:?}");
    assert!(told.iter().all(|r| r.contains("retry")), "{told:?}");
    const { assert!(MAX_HANDSHAKES_PER_UID < MAX_HANDSHAKES) };
}

/// Before, one user's silent connections could take every one of the [`MAX_HANDSHAKES`]
/// slots and keep every other user's frontends in the listen backlog until they timed out.
/// Needs root, to run the silent frontends as another uid.
#[test]
fn another_users_silent_frontends_do_not_keep_ours_out() {
    let _leaks = LeakCheck::new();
    use std::io::BufRead as _;
    use std::os::unix::fs::PermissionsExt;
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipping another_users_silent_frontends_do_not_keep_ours_out: needs root to run frontends as uid {NOBODY} (CI runs it as root)"
        );
        return;
    }
    let (_dir, path) = common::sock_path("acceptor", "other-uid");
    let timeout = Duration::from_secs(4);
    let mut config = BackendConfig::default();
    config.timeout = timeout;
    config.allowed_uids = vec![0, NOBODY];
    let l = Listener::bind(&path, config).unwrap();
    // `nobody` must reach the socket.
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o666)).unwrap();
    std::fs::set_permissions(
        path.parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let incoming = spawn_acceptor(l, || {}).unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "silent_nobody_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(NOBODY_ENV, &path)
        .uid(NOBODY)
        .gid(NOBODY)
        .stdout(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Killed however the test ends.
    struct Reap(std::process::Child);
    impl Drop for Reap {
        fn drop(&mut self) {
            let _ = self.0.kill();
            let _ = self.0.wait();
        }
    }
    let out = child.stdout.take().unwrap();
    let _reap = Reap(child);
    // The child's output stays open (read to the end by the reaper) until it is killed.
    let mut lines = std::io::BufReader::new(out).lines();
    assert!(
        lines.any(|l| l.is_ok_and(|l| l.ends_with("CONNECTED"))),
        "the silent frontends did not connect"
    );
    let start = Instant::now();
    let front = {
        let path = path.clone();
        std::thread::spawn(move || good(&path))
    };
    // Every report until ours: the other uid's over its cap are refused as busy.
    let mut busy = 0;
    let mut conn = loop {
        match incoming.recv_timeout(Duration::from_secs(10)).unwrap() {
            Ok(c) => break c,
            Err(XenbusError::Busy { uid: NOBODY }) => busy += 1,
            // Without the per-uid cap: the other uid's handshakes time out first.
            Err(XenbusError::Timeout(_)) => {}
            Err(e) => panic!("unexpected {e}"),
        }
    };
    let waited = start.elapsed();
    eprintln!("our frontend's keys after {waited:?}, {busy} of the other uid's turned away");
    assert_eq!(conn.peer.uid, 0);
    assert!(waited < Duration::from_secs(2), "{waited:?}: kept out");
    xenbus::BackendControl::connected(&mut conn).unwrap();
    front.join().unwrap().unwrap();
}

/// The silent frontends of `another_users_silent_frontends_do_not_keep_ours_out`, as uid
/// 65534: as many connections as the backend has handshake slots, then nothing.
#[test]
#[ignore = "run as uid 65534 by another_users_silent_frontends_do_not_keep_ours_out"]
fn silent_nobody_entry() {
    let Ok(path) = std::env::var(NOBODY_ENV) else {
        return;
    };
    let silent: Vec<OwnedFd> = (0..MAX_HANDSHAKES)
        .map(|_| common::raw_client(Path::new(&path)))
        .collect();
    println!("CONNECTED");
    std::thread::sleep(Duration::from_secs(30));
    drop(silent);
}

#[test]
fn at_the_descriptor_limit_the_acceptor_backs_off() {
    let _leaks = LeakCheck::new();
    let (_dir, path) = common::sock_path("acceptor", "emfile");
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

/// A backend started again at the same path right after the last one stopped (a VMM
/// restarting its backend) keeps its socket. The old acceptor thread ended after the drop of
/// its `Accepted` had returned, and its listener's drop then removed the path, which by then
/// was the new listener's: the new backend's frontends found no socket (`ENOENT`, seen once
/// in CI as a failed `connect` in netback's switch test).
#[test]
fn a_backend_started_again_at_the_same_path_keeps_its_socket() {
    let _leaks = LeakCheck::new();
    let (_dir, path) = common::sock_path("acceptor", "again");
    for _ in 0..20 {
        let incoming = spawn_acceptor(listener(&path, Duration::from_secs(3)), || {}).unwrap();
        drop(incoming);
        // The drop waited for the thread, so the listener and its file are gone.
        assert!(
            !path.exists(),
            "the stopped listener's socket file is still there"
        );
        let again = spawn_acceptor(listener(&path, Duration::from_secs(3)), || {}).unwrap();
        // A frontend reaches the new backend (connecting panics if the socket is gone).
        let client = common::raw_client(&path);
        drop(again);
        drop(client);
    }
}

/// A listener removes its socket file when dropped, but only its own: a file bound at the
/// same path since (after the old one was removed by someone else) stays.
#[test]
fn a_listener_removes_only_its_own_socket_file() {
    let (_dir, path) = common::sock_path("acceptor", "own");
    let old = listener(&path, Duration::from_secs(3));
    std::fs::remove_file(&path).unwrap();
    let new = listener(&path, Duration::from_secs(3));
    drop(old);
    assert!(
        path.exists(),
        "the old listener removed the new one's socket"
    );
    drop(new);
    assert!(
        !path.exists(),
        "a listener leaves its own socket file behind"
    );
}

/// An `Accepted` dropped inside its own `wake` (on the acceptor thread) does not wait for that
/// thread, which cannot end while it waits: the thread ends, and removes its socket file,
/// once `wake` returns.
#[test]
fn an_acceptor_dropped_from_its_own_wake_ends() {
    use std::sync::{Arc, Mutex};
    let (_dir, path) = common::sock_path("acceptor", "self");
    let slot: Arc<Mutex<Option<pvnet_process_host::Accepted>>> = Arc::default();
    let in_wake = slot.clone();
    let incoming = spawn_acceptor(listener(&path, Duration::from_secs(3)), move || {
        drop(in_wake.lock().unwrap().take());
    })
    .unwrap();
    *slot.lock().unwrap() = Some(incoming);
    // Its connection reaches the channel, and `wake` drops the acceptor; the frontend then
    // finds the connection closed.
    let _ = good(&path);
    let deadline = Instant::now() + Duration::from_secs(10);
    while path.exists() {
        assert!(Instant::now() < deadline, "the acceptor thread never ended");
        std::thread::sleep(Duration::from_millis(10));
    }
    assert!(slot.lock().unwrap().is_none());
}
