//! The listener against well-behaved and hostile frontends over real sockets. After every bad
//! peer the same listener serves a good one.

mod common;

use pvnet_process_host::testing::{LeakCheck, TestDir};
use std::fs::File;
use std::io::IoSlice;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::PermissionsExt;
use std::path::PathBuf;
use std::time::{Duration, Instant};

use nix::sys::socket::{MsgFlags, sendmsg};
use pvnet_process_host::{BackendConfig, Listener, connect, connect_to};
use xenbus::{
    EventFds, FrontendChoice, Message, QueueResources, Resources, RxMode, State, XenbusError,
};

const T: Duration = Duration::from_secs(5);

/// A listener for test `name`, and its directory's guard (keep it for the test's length).
fn listener(name: &str, allowed: Vec<u32>, timeout: Duration) -> (TestDir, Listener) {
    let config = {
        let mut c = BackendConfig::default();
        c.allowed_uids = allowed;
        c.timeout = timeout;
        c
    };
    let (dir, path) = common::sock_path("xenbus", name);
    (dir, Listener::bind(&path, config).unwrap())
}

fn me() -> u32 {
    nix::unistd::getuid().as_raw()
}

fn files(n: usize) -> Vec<File> {
    (0..n).map(|_| File::open("/dev/null").unwrap()).collect()
}

/// Resources for `queues` queues, split or not, flip or not, over consecutive descriptors.
fn resources(queues: usize, split: bool, flip: bool) -> (Resources, usize) {
    let mut next = 0;
    let mut take = || {
        next += 1;
        next - 1
    };
    let frames = take();
    let grant_table = take();
    let flip_pool = flip.then(&mut take);
    let mut qs = Vec::new();
    for q in 0..queues {
        let ev = |take: &mut dyn FnMut() -> usize| EventFds {
            backend_notifies: take(),
        };
        let tx_event = ev(&mut take);
        let rx_event = split.then(|| ev(&mut take));
        let q = u32::try_from(q).unwrap();
        qs.push(QueueResources {
            tx_ring_ref: 8 + 2 * q,
            rx_ring_ref: 9 + 2 * q,
            tx_event,
            rx_event,
        });
    }
    (
        Resources {
            frames,
            grant_table,
            flip_pool,
            queues: qs,
        },
        next,
    )
}

/// A well-behaved frontend: connects with `choice`, then closes.
fn good_frontend(
    path: PathBuf,
    choice: FrontendChoice,
) -> std::thread::JoinHandle<Result<(), XenbusError>> {
    std::thread::spawn(move || {
        let pending = connect(&path, T)?;
        let queues = usize::try_from(choice.queues).unwrap();
        let (res, n) = resources(
            queues,
            choice.split_event_channels,
            choice.rx_mode == RxMode::Flip,
        );
        let f = files(n);
        let fds: Vec<BorrowedFd<'_>> = f.iter().map(AsFd::as_fd).collect();
        pending.finish(&choice, &res, &fds)?.close()
    })
}

fn serve_one(l: &Listener) -> Result<xenbus::FrontendChoice, XenbusError> {
    let mut conn = l.accept_and_handshake()?;
    // Every descriptor the keys describe arrived and can be taken.
    let n = 2
        + usize::from(conn.resources.flip_pool.is_some())
        + conn
            .resources
            .queues
            .iter()
            .map(|q| 1 + usize::from(q.rx_event.is_some()))
            .sum::<usize>();
    for i in 0..n {
        assert!(conn.take_fd(i).is_some(), "descriptor {i}");
    }
    assert!(conn.take_fd(n).is_none());
    assert_eq!(conn.peer.uid, me());
    assert!(conn.frontend_closing(T)?);
    let choice = conn.choice.clone();
    conn.acknowledge_closed()?;
    Ok(choice)
}

/// Sends `bytes` as one datagram, bypassing the codec (a hostile frontend).
fn raw_send(s: &OwnedFd, bytes: &[u8]) {
    sendmsg::<()>(
        s.as_raw_fd(),
        &[IoSlice::new(bytes)],
        &[],
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

fn raw_client(l: &Listener) -> OwnedFd {
    common::raw_client(l.path())
}

#[test]
fn the_socket_is_private() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("mode", vec![me()], T);
    let mode = std::fs::metadata(l.path()).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

#[test]
fn every_mode_negotiates_and_reconnects() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("modes", vec![me()], T);
    let modes = [
        FrontendChoice::default(),
        {
            let mut c = FrontendChoice::default();
            c.rx_mode = RxMode::Flip;
            c
        },
        {
            let mut c = FrontendChoice::default();
            c.split_event_channels = true;
            c
        },
        {
            let mut c = FrontendChoice::default();
            c.queues = 4;
            c.gso_tcpv4 = true;
            c.gso_tcpv6 = true;
            c.ipv6_csum_offload = true;
            c.mtu = 9000;
            c
        },
        {
            let mut c = FrontendChoice::default();
            c.sg = false;
            c.ipv4_csum_offload = false;
            c
        },
        // The same frontend again: a reconnect is a fresh connection.
        FrontendChoice::default(),
    ];
    for choice in modes {
        let client = good_frontend(l.path().to_owned(), choice.clone());
        assert_eq!(serve_one(&l).unwrap(), choice);
        client.join().unwrap().unwrap();
    }
}

#[test]
fn a_uid_outside_the_allow_list_is_refused() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("uid", vec![me().wrapping_add(1)], T);
    let client = std::thread::spawn({
        let path = l.path().to_owned();
        move || connect(&path, T)
    });
    assert!(matches!(l.accept(), Err(XenbusError::NotAllowed { uid }) if uid == me()));
    match client.join().unwrap() {
        Err(XenbusError::Refused(reason)) => assert!(reason.contains("not allowed"), "{reason}"),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn hostile_frontends_get_typed_errors_and_the_listener_serves_on() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("hostile", vec![me()], Duration::from_millis(300));
    let good = |l: &Listener| {
        let c = good_frontend(l.path().to_owned(), FrontendChoice::default());
        serve_one(l).unwrap();
        c.join().unwrap().unwrap();
    };

    // Garbage bytes.
    let s = raw_client(&l);
    raw_send(&s, b"\x02\x04\xff\xffgarbage");
    assert!(matches!(
        l.accept_and_handshake(),
        Err(XenbusError::Decode(_))
    ));
    drop(s);
    good(&l);

    // A peer that stalls mid-handshake.
    let s = raw_client(&l);
    let start = Instant::now();
    assert!(matches!(
        l.accept_and_handshake(),
        Err(XenbusError::Timeout(_))
    ));
    assert!(start.elapsed() < Duration::from_secs(3));
    drop(s);
    good(&l);

    // A peer that disconnects mid-handshake.
    let s = raw_client(&l);
    drop(s);
    assert!(matches!(
        l.accept_and_handshake(),
        Err(XenbusError::PeerClosed)
    ));
    good(&l);

    // Out of order: a backend message from the frontend.
    let s = raw_client(&l);
    let bytes = Message::Backend {
        state: State::Connected,
        keys: Default::default(),
    }
    .encode()
    .unwrap();
    raw_send(&s, &bytes);
    assert!(matches!(
        l.accept_and_handshake(),
        Err(XenbusError::Unexpected { .. })
    ));
    drop(s);
    good(&l);

    // Keys that describe 3 descriptors, with only 2 attached.
    let client = std::thread::spawn({
        let path = l.path().to_owned();
        move || {
            let pending = connect(&path, T)?;
            let (res, n) = resources(1, false, false);
            assert_eq!(n, 3);
            let f = files(2);
            let fds: Vec<BorrowedFd<'_>> = f.iter().map(AsFd::as_fd).collect();
            pending
                .finish(&FrontendChoice::default(), &res, &fds)
                .map(|_| ())
        }
    });
    assert!(matches!(
        l.accept_and_handshake(),
        Err(XenbusError::Negotiation(_))
    ));
    assert!(matches!(
        client.join().unwrap(),
        Err(XenbusError::Refused(_))
    ));
    good(&l);
}

#[test]
fn a_stalled_frontend_does_not_hold_up_the_next_one() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("stall-many", vec![me()], Duration::from_secs(2));
    let staller = raw_client(&l);
    let stalled = l.accept().unwrap();
    let pending = std::thread::spawn(move || stalled.handshake());
    // Meanwhile a good frontend is served at once.
    let start = Instant::now();
    let client = good_frontend(l.path().to_owned(), FrontendChoice::default());
    serve_one(&l).unwrap();
    client.join().unwrap().unwrap();
    assert!(
        start.elapsed() < Duration::from_secs(1),
        "served while the other stalled"
    );
    assert!(matches!(
        pending.join().unwrap(),
        Err(XenbusError::Timeout(_))
    ));
    drop(staller);
}

#[test]
fn a_frontend_reconnects_to_a_restarted_backend() {
    let _leaks = LeakCheck::new();
    let name = "restart";
    let (_dir, l) = listener(name, vec![me()], T);
    let path = l.path().to_owned();
    let c = good_frontend(path.clone(), FrontendChoice::default());
    serve_one(&l).unwrap();
    c.join().unwrap().unwrap();
    // The backend goes away (its socket file with it) and comes back on the same path.
    drop(l);
    assert!(connect(&path, T).is_err(), "nobody listening");
    let l = Listener::bind(&path, {
        let mut c = BackendConfig::default();
        c.allowed_uids = vec![me()];
        c.timeout = T;
        c
    })
    .unwrap();
    let c = good_frontend(path, {
        let mut c = FrontendChoice::default();
        c.rx_mode = RxMode::Flip;
        c
    });
    assert_eq!(serve_one(&l).unwrap().rx_mode, RxMode::Flip);
    c.join().unwrap().unwrap();
}

const NOBODY_ENV: &str = "PVNET_XENBUS_NOBODY_SOCKET";
const NOBODY: u32 = 65534;

/// A client running as another user (`nobody`): needs root to switch uid. Two layers keep it
/// out: the socket's 0600 mode (it cannot even connect), and with the mode opened up, the
/// SO_PEERCRED allow-list (it is told it is refused).
#[test]
fn another_user_is_kept_out_by_mode_and_by_credentials() {
    let _leaks = LeakCheck::new();
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipping another_user_is_kept_out_by_mode_and_by_credentials: needs root to run a client as uid {NOBODY} (CI runs it as root)"
        );
        return;
    }
    let (_dir, l) = listener("nobody", vec![0], T);
    // The directory must let `nobody` reach the socket; only the socket's own mode may stop it.
    std::fs::set_permissions(
        l.path().parent().unwrap(),
        std::fs::Permissions::from_mode(0o755),
    )
    .unwrap();
    let path = l.path().to_owned();
    let run_as_nobody = move |expect: &str| {
        std::process::Command::new(std::env::current_exe().unwrap())
            .args([
                "--exact",
                "nobody_client_entry",
                "--ignored",
                "--nocapture",
                "--test-threads",
                "1",
            ])
            .env(NOBODY_ENV, &path)
            .env("PVNET_XENBUS_NOBODY_EXPECT", expect)
            .uid(NOBODY)
            .gid(NOBODY)
            .status()
            .unwrap()
    };
    // 0600: connecting is refused by the file system.
    assert!(
        run_as_nobody("denied").success(),
        "nobody could connect to a 0600 socket"
    );
    // Opened up: it connects, and SO_PEERCRED keeps it out.
    std::fs::set_permissions(l.path(), std::fs::Permissions::from_mode(0o666)).unwrap();
    let child = std::thread::spawn(move || run_as_nobody("refused"));
    assert!(matches!(
        l.accept(),
        Err(XenbusError::NotAllowed { uid: NOBODY })
    ));
    assert!(
        child.join().unwrap().success(),
        "nobody was not told it is refused"
    );
}

/// The `nobody` client of `another_user_is_kept_out_by_mode_and_by_credentials`.
#[test]
#[ignore = "run as uid 65534 by another_user_is_kept_out_by_mode_and_by_credentials"]
fn nobody_client_entry() {
    let Ok(path) = std::env::var(NOBODY_ENV) else {
        eprintln!(
            "nobody_client_entry: only runs as the child of another_user_is_kept_out_by_mode_and_by_credentials"
        );
        return;
    };
    assert_eq!(nix::unistd::getuid().as_raw(), NOBODY);
    let result = connect(std::path::Path::new(&path), T);
    match std::env::var("PVNET_XENBUS_NOBODY_EXPECT").as_deref() {
        Ok("denied") => assert!(
            matches!(&result, Err(XenbusError::Io(e)) if e.kind() == std::io::ErrorKind::PermissionDenied),
            "{result:?}"
        ),
        _ => assert!(
            matches!(&result, Err(XenbusError::Refused(r)) if r.contains("not allowed")),
            "{result:?}"
        ),
    }
}

/// A frontend hands its memory to whoever listens: it checks the listener's uid
/// (SO_PEERCRED) before a byte is exchanged, and leaves when it is not one it trusts.
#[test]
fn a_frontend_checks_who_is_listening() {
    let _leaks = LeakCheck::new();
    let (_dir, l) = listener("who-listens", vec![me()], T);
    let path = l.path().to_owned();
    let stranger = me().wrapping_add(4242);
    let front = std::thread::spawn(move || connect_to(&path, T, &[stranger]));
    // The listener sees a frontend that goes away without a word.
    let served = l.accept().and_then(|i| i.handshake());
    assert!(served.is_err(), "{served:?}");
    assert!(matches!(
        front.join().unwrap(),
        Err(XenbusError::NotAllowed { uid }) if uid == me()
    ));
    // The default trusts this process's own uid (and root's).
    assert!(pvnet_process_host::default_backend_uids().contains(&me()));
    let c = good_frontend(l.path().to_owned(), FrontendChoice::default());
    serve_one(&l).unwrap();
    c.join().unwrap().unwrap();
}

const SQUATTER_ENV: &str = "PVNET_SQUATTER_SOCKET";

/// A squatter running as another user (`nobody`) listens where a frontend expects its
/// backend: the frontend refuses it before handing anything over. Needs root to run the
/// squatter as another uid.
#[test]
fn a_squatter_of_another_user_receives_nothing() {
    let _leaks = LeakCheck::new();
    use std::os::unix::process::CommandExt;
    if !nix::unistd::geteuid().is_root() {
        eprintln!(
            "skipping a_squatter_of_another_user_receives_nothing: needs root to run a listener as uid {NOBODY} (CI runs it as root)"
        );
        return;
    }
    let dir = TestDir::new("squat");
    // A directory anyone can write, as /tmp is.
    std::fs::set_permissions(dir.path(), std::fs::Permissions::from_mode(0o777)).unwrap();
    let path = dir.join("b.sock");
    let child = std::process::Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "squatter_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(SQUATTER_ENV, &path)
        .uid(NOBODY)
        .gid(NOBODY)
        .spawn()
        .unwrap();
    let deadline = Instant::now() + T;
    while !path.exists() {
        assert!(Instant::now() < deadline, "the squatter never listened");
        std::thread::sleep(Duration::from_millis(10));
    }
    let r = connect(&path, T);
    assert!(
        matches!(r, Err(XenbusError::NotAllowed { uid: NOBODY })),
        "{r:?}"
    );
    let status = child.wait_with_output().unwrap().status;
    assert!(status.success(), "the squatter got something: {status}");
}

/// The squatter of `a_squatter_of_another_user_receives_nothing`: listens, and checks that
/// the one frontend that comes hands over nothing.
#[test]
#[ignore = "run as uid 65534 by a_squatter_of_another_user_receives_nothing"]
fn squatter_entry() {
    let Ok(path) = std::env::var(SQUATTER_ENV) else {
        return;
    };
    let mut c = BackendConfig::default();
    c.allowed_uids = vec![0];
    c.timeout = T;
    let l = Listener::bind(std::path::Path::new(&path), c).unwrap();
    let got = l.accept().and_then(|i| i.handshake());
    assert!(got.is_err(), "the frontend handed over its keys: {got:?}");
}
