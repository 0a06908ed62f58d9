//! A backend on a thread of this process serving frontends over a real socket, shared
//! memory and eventfds, for the data-path tests.

#![allow(dead_code, unreachable_pub)]

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::thread::JoinHandle;
use std::time::Duration;

use process_host::testing::TestDir;
use process_host::{BackendConfig, Listener};
use pvnet_netback::{
    ClosedVif, Netback, NetbackConfig, ProcessHost, ProcessHosts, Uplink, VifInfo,
};
use xenbus::BackendFeatures;

pub const T: Duration = Duration::from_secs(10);

/// A running backend: stop it to get its closed vifs and final view.
pub struct Running<U, H: ProcessHosts = ProcessHost> {
    pub path: PathBuf,
    stop: Arc<AtomicBool>,
    attached: Arc<AtomicUsize>,
    waker: pvnet_netback::Waker,
    handle: JoinHandle<(Netback<U, H>, Vec<ClosedVif>, Duration)>,
    /// Removed when the backend stops, or when a failing test drops it.
    _dir: TestDir,
}

pub struct Stopped<U, H: ProcessHosts = ProcessHost> {
    pub backend: Netback<U, H>,
    pub closed: Vec<ClosedVif>,
    /// CPU time the backend's thread used, user and system.
    pub cpu: Duration,
}

/// CPU time the calling thread has used, user and system.
pub fn thread_cpu() -> Duration {
    use nix::sys::resource::{UsageWho, getrusage};
    let u = getrusage(UsageWho::RUSAGE_THREAD).unwrap();
    let d = |t: nix::sys::time::TimeVal| {
        Duration::new(
            u64::try_from(t.tv_sec()).unwrap(),
            u32::try_from(t.tv_usec()).unwrap() * 1000,
        )
    };
    d(u.user_time()) + d(u.system_time())
}

impl<U, H: ProcessHosts> Stopped<U, H> {
    pub fn vifs(&self) -> Vec<VifInfo>
    where
        U: Uplink,
    {
        self.backend.vifs()
    }
}

pub fn start<U: Uplink + Send + 'static>(
    name: &str,
    features: BackendFeatures,
    cfg: NetbackConfig,
    uplink: U,
) -> Running<U> {
    start_on(name, features, cfg, uplink, Netback::new)
}

/// As [`start`], with the backend `make` makes (on the strict process host, say).
pub fn start_on<U: Uplink + Send + 'static, H: ProcessHosts + Send + 'static>(
    name: &str,
    features: BackendFeatures,
    cfg: NetbackConfig,
    uplink: U,
    make: fn(NetbackConfig, U) -> Result<Netback<U, H>, pvnet_netback::NetbackError>,
) -> Running<U, H> {
    let dir = TestDir::new(&format!("netback-{name}"));
    let path = dir.join("backend.sock");
    let _ = std::fs::remove_file(&path);
    let listener = Listener::bind(&path, {
        let mut c = BackendConfig::default();
        c.features = features;
        c.timeout = T;
        c
    })
    .unwrap();
    let stop = Arc::new(AtomicBool::new(false));
    let (tx, rx) = std::sync::mpsc::channel();
    let stop2 = stop.clone();
    let attached = Arc::new(AtomicUsize::new(0));
    let attached2 = attached.clone();
    let handle = std::thread::spawn(move || {
        let mut backend = make(cfg, uplink).unwrap();
        tx.send(backend.waker()).unwrap();
        let incoming = pvnet_netback::spawn_acceptor(listener, backend.waker()).unwrap();
        let mut closed = Vec::new();
        while !stop2.load(Ordering::Acquire) {
            // Untimed: a lost wakeup hangs the test instead of hiding behind a timeout.
            backend.wait(None).unwrap();
            while let Ok(conn) = incoming.try_recv() {
                if let Ok(conn) = conn {
                    // A frontend whose resources do not work is refused; that is not ours.
                    match backend.attach(conn) {
                        Ok(_) => {
                            attached2.fetch_add(1, Ordering::Release);
                        }
                        Err(e) => eprintln!("attach refused: {e}"),
                    }
                }
            }
            backend.poll().unwrap();
            closed.extend(backend.take_closed());
        }
        (backend, closed, thread_cpu())
    });
    let waker = rx.recv().unwrap();
    Running {
        path,
        stop,
        attached,
        waker,
        handle,
        _dir: dir,
    }
}

impl<U, H: ProcessHosts> Running<U, H> {
    /// Waits until `n` frontends have been attached in all (a frontend's `connect` returns
    /// when its handshake is done, a moment before the backend thread attaches it).
    pub fn wait_attached(&self, n: usize) {
        let deadline = std::time::Instant::now() + T;
        while self.attached.load(Ordering::Acquire) < n {
            assert!(
                std::time::Instant::now() < deadline,
                "{n} frontends never attached"
            );
            std::thread::sleep(Duration::from_millis(1));
        }
    }

    pub fn stop(self) -> Stopped<U, H> {
        self.stop.store(true, Ordering::Release);
        self.waker.wake().unwrap();
        let (backend, closed, cpu) = self.handle.join().unwrap();
        Stopped {
            backend,
            closed,
            cpu,
        }
    }
}

/// One frame through an honest in-process netfront and back (the backend's uplink sends it
/// back), the backend stepped in between: it must still be served.
pub fn round_trip<U: Uplink>(
    backend: &mut Netback<U, pvnet_netback::testing::LocalBackendHost>,
    nic: &mut pvnet_netback::testing::LocalNetfront,
    seq: u32,
) {
    let f = frame(9, 9, seq, 300);
    nic.send(&f, netif::Offload::default()).unwrap();
    backend.poll().unwrap();
    let mut back = Vec::new();
    nic.receive(64, |rx| back.push(rx.data.to_vec())).unwrap();
    nic.poll().unwrap();
    assert_eq!(back, [f], "the honest vif stopped");
}

/// A transmit request (the fields as netif orders them, `gref` as the grant).
pub fn req(
    gref: grant_table::GrantRef,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
) -> netif::wire::TxRequest {
    netif::wire::TxRequest {
        gref: gref.0,
        offset,
        flags,
        id,
        size,
    }
}

/// A frame of `len` bytes: broadcast-free unicast header from `src` to `dst`, then a pattern
/// keyed by `seq`.
pub fn frame(src: u8, dst: u8, seq: u32, len: usize) -> Vec<u8> {
    let mut f = vec![0u8; len];
    if len >= 14 {
        f[..6].copy_from_slice(&[0x02, 0, 0, 0, 0, dst]);
        f[6..12].copy_from_slice(&[0x02, 0, 0, 0, 0, src]);
        f[12..14].copy_from_slice(&[0x88, 0xb5]);
    }
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = seq
            .wrapping_mul(31)
            .wrapping_add(u32::try_from(i * 7).unwrap())
            .to_le_bytes()[0];
    }
    if len >= 18 {
        f[14..18].copy_from_slice(&seq.to_le_bytes());
    }
    f
}
