//! Shared by the `netback`, `netfront` and `two_process` examples: running a backend, and
//! streaming or ping-ponging frames through a netfront with every byte checked.

#![allow(dead_code, unreachable_pub)]

use std::error::Error;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use pvnet::back::{
    ClosedVif, Echo, Netback, NetbackConfig, RateLimit, Sink, Switch, TxMode, Uplink,
};
use pvnet::front::{FrontendHost, Netfront, SendError};
use pvnet::netif::{Gso, GsoKind, Offload};
use pvnet::process::{BackendConfig, Listener};

pub type Res<T> = Result<T, Box<dyn Error>>;

/// The uplinks the examples offer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum UplinkKind {
    /// A learning switch joining every frontend.
    Switch,
    /// Every frame back to its sender.
    Echo,
    /// Count and drop.
    Sink,
}

impl UplinkKind {
    /// The uplink of this kind.
    pub fn build(self) -> Box<dyn Uplink> {
        match self {
            UplinkKind::Switch => Box::new(Switch::default()),
            UplinkKind::Echo => Box::new(Echo),
            UplinkKind::Sink => Box::new(Sink::default()),
        }
    }
}

/// What a backend process runs with.
#[derive(Clone, Debug)]
pub struct BackendSetup {
    pub socket: PathBuf,
    pub uplink: UplinkKind,
    /// A TAP to use as the uplink instead (the host joins the frontends' segment), and its
    /// queues (a vif's frames go to queue `vif % queues`; all are read).
    pub tap: Option<String>,
    pub tap_queues: usize,
    pub tx_mode: TxMode,
    pub spin: Duration,
    pub rate_mbit: Option<u64>,
    pub stats_every: Option<Duration>,
    /// Exit after this many frontends have come and gone.
    pub exit_after: Option<usize>,
    /// Report attachments on stderr.
    pub verbose: bool,
}

pub fn print_vif(v: &ClosedVif) {
    let s = v.stats;
    println!(
        "vif {:>3} closed: tx {} frames {} B (dropped {}, errors {}, throttled {}), rx {} frames {} B (dropped {}, errors {}){}",
        v.id.0,
        s.tx_packets,
        s.tx_bytes,
        s.tx_dropped,
        s.tx_errors,
        s.tx_throttled,
        s.rx_packets,
        s.rx_bytes,
        s.rx_dropped,
        s.rx_errors,
        v.fault
            .map(|f| format!(", disabled: {f}"))
            .unwrap_or_default()
    );
}

/// Serves frontends on `setup.socket` until `stop` is set (or `exit_after` frontends closed).
pub fn run_backend(setup: &BackendSetup, stop: &Arc<AtomicBool>) -> Res<Vec<ClosedVif>> {
    let _ = std::fs::remove_file(&setup.socket);
    let listener = Listener::bind(&setup.socket, {
        let mut c = BackendConfig::default();
        c.timeout = Duration::from_secs(10);
        c
    })?;
    let cfg = {
        let mut c = NetbackConfig::default();
        c.tx_mode = setup.tx_mode;
        c.spin = setup.spin;
        c.rate_limit = setup.rate_mbit.map(|m| RateLimit {
            bytes: m * 1_000_000 / 8 / 100,
            period: Duration::from_millis(10),
        });
        c
    };
    let uplink: Box<dyn Uplink> = match &setup.tap {
        Some(name) => Box::new(pvnet::tap::TapUplink::new(pvnet::tap::Tap::open(
            name,
            setup.tap_queues,
        )?)?),
        None => setup.uplink.build(),
    };
    let mut backend = Netback::new(cfg, uplink)?;
    let waker = backend.waker();
    let incoming = pvnet::back::spawn_acceptor(listener, waker.clone())?;
    {
        // Lets `stop` end a sleeping backend promptly.
        let stop = stop.clone();
        std::thread::spawn(move || {
            while !stop.load(Ordering::Acquire) {
                std::thread::sleep(Duration::from_millis(50));
            }
            let _ = waker.wake();
        });
    }
    let mut closed = Vec::new();
    let mut last_stats = Instant::now();
    while !stop.load(Ordering::Acquire) {
        backend.wait(Some(Duration::from_millis(500)))?;
        while let Ok(conn) = incoming.try_recv() {
            match conn {
                Ok(conn) => {
                    let peer = conn.peer;
                    match backend.attach(conn) {
                        Ok(id) if setup.verbose => {
                            eprintln!("vif {} attached: pid {}", id.0, peer.pid);
                        }
                        Ok(_) => {}
                        Err(e) => eprintln!("frontend pid {} refused: {e}", peer.pid),
                    }
                }
                Err(e) => eprintln!("handshake failed: {e}"),
            }
        }
        backend.poll()?;
        for v in backend.take_closed() {
            print_vif(&v);
            closed.push(v);
        }
        if setup.exit_after.is_some_and(|n| closed.len() >= n) {
            break;
        }
        if let Some(every) = setup.stats_every
            && last_stats.elapsed() >= every
        {
            last_stats = Instant::now();
            for v in backend.vifs() {
                let s = v.stats;
                println!(
                    "vif {:>3}: tx {} frames {} B, rx {} frames {} B, drops {}/{}, errors {}/{}",
                    v.id.0,
                    s.tx_packets,
                    s.tx_bytes,
                    s.rx_packets,
                    s.rx_bytes,
                    s.tx_dropped,
                    s.rx_dropped,
                    s.tx_errors,
                    s.rx_errors
                );
            }
        }
    }
    Ok(closed)
}

/// Waits until a backend listens at `path`.
pub fn wait_for_socket(path: &Path, timeout: Duration) -> Res<()> {
    let deadline = Instant::now() + timeout;
    while !path.exists() {
        if Instant::now() > deadline {
            return Err(format!("no backend at {} after {timeout:?}", path.display()).into());
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    Ok(())
}

/// Frames of one size: a fixed template whose bytes 14..18 carry the sequence number.
pub struct Pattern {
    template: Vec<u8>,
    pub gso: Option<Gso>,
}

pub const ETHERTYPE_EXPERIMENTAL: [u8; 2] = [0x88, 0xb5];

impl Pattern {
    pub fn new(size: usize, src: [u8; 6], dst: [u8; 6]) -> Self {
        let mut t = vec![0u8; size.max(18)];
        t[..6].copy_from_slice(&dst);
        t[6..12].copy_from_slice(&src);
        t[12..14].copy_from_slice(&ETHERTYPE_EXPERIMENTAL);
        for (i, b) in t.iter_mut().enumerate().skip(18) {
            *b = (i.wrapping_mul(131) ^ (i >> 8)).to_le_bytes()[0] ^ size.to_le_bytes()[0];
        }
        t.truncate(size);
        // Frames beyond a jumbo frame travel as TCP segmentation offload.
        let gso = (size > 9014).then_some(Gso {
            kind: GsoKind::TcpV4,
            size: 1448,
        });
        Self { template: t, gso }
    }

    pub fn offload(&self) -> Offload {
        Offload {
            gso: self.gso,
            ..Offload::default()
        }
    }

    pub fn len(&self) -> usize {
        self.template.len()
    }

    fn header(&self, seq: u32) -> [u8; 18] {
        let mut h = [0u8; 18];
        h[..14].copy_from_slice(&self.template[..14]);
        h[14..18].copy_from_slice(&seq.to_le_bytes());
        h
    }

    /// Whether `data` is exactly frame `seq` (every byte).
    pub fn matches(&self, data: &[u8], seq: u32) -> bool {
        data.len() == self.template.len()
            && data[..14] == self.template[..14]
            && data[14..18] == seq.to_le_bytes()
            && data[18..] == self.template[18..]
    }

    /// Queues frame `seq` (header and body as two slices: scatter-gather, one copy).
    pub fn send<H: FrontendHost>(
        &self,
        b: &mut pvnet::front::TxBatch<'_, H>,
        seq: u32,
    ) -> Result<(), SendError> {
        let h = self.header(seq);
        b.send_sg(&[&h, &self.template[18..]], self.offload())
    }
}

/// How a stream went.
#[derive(Clone, Copy, Debug, Default)]
pub struct StreamResult {
    pub frames: u64,
    pub seconds: f64,
    pub lost: u64,
    pub corrupt: u64,
}

/// Frames in flight at most: what the receive ring holds, so echoed frames never wait long
/// in the backend's backlog.
fn window(size: usize, gso: bool) -> u64 {
    let slots = size.div_ceil(4096).max(1) + usize::from(gso);
    (256 / slots).max(1) as u64
}

/// Streams `frames` frames of `pattern` through an echoing backend, checking each one that
/// comes back (in order, every byte). Frames not back after 5 s of silence are lost.
pub fn stream<H: FrontendHost>(
    nic: &mut Netfront<H>,
    pattern: &Pattern,
    frames: u64,
) -> Res<StreamResult> {
    let w = window(pattern.len(), pattern.gso.is_some());
    let (mut sent, mut received, mut corrupt) = (0u64, 0u64, 0u64);
    let mut idle = 0;
    let start = Instant::now();
    while received < frames {
        let mut progressed = false;
        if sent < frames && sent - received < w {
            let want = (frames - sent).min(w - (sent - received)).min(64);
            let queued = nic.batch(|b| {
                let mut n = 0;
                while n < want {
                    match pattern.send(b, seq32(sent + n)) {
                        Ok(()) => n += 1,
                        Err(SendError::Full) => break,
                        Err(e) => return Err(e),
                    }
                }
                Ok(n)
            })??;
            sent += queued;
            progressed |= queued > 0;
        }
        let got = nic.receive(256, |rx| {
            if !pattern.matches(rx.data, seq32(received)) {
                corrupt += 1;
            }
            received += 1;
        })?;
        progressed |= got > 0;
        if sent == received || !progressed {
            nic.poll()?;
        }
        if !progressed {
            if nic.wait(Some(Duration::from_secs(1)))? {
                idle = 0;
            } else {
                idle += 1;
                if idle >= 5 {
                    break;
                }
            }
        }
    }
    Ok(StreamResult {
        frames: received,
        seconds: start.elapsed().as_secs_f64(),
        lost: sent.max(frames) - received,
        corrupt,
    })
}

/// A frame's sequence number: the low 32 bits of its index (they wrap, by design).
#[allow(clippy::cast_possible_truncation)]
pub fn seq32(n: u64) -> u32 {
    n as u32
}

/// Round trips of one frame at a time; returns each round trip's time, sorted.
pub fn ping_pong(nic: &mut Netfront, pattern: &Pattern, count: u32) -> Res<Vec<Duration>> {
    let mut times = Vec::with_capacity(count as usize);
    for seq in 0..count {
        let t = Instant::now();
        nic.batch(|b| pattern.send(b, seq))??;
        let mut back = false;
        let mut bad = false;
        while !back {
            nic.receive(1, |rx| {
                bad |= !pattern.matches(rx.data, seq);
                back = true;
            })?;
            if !back && !nic.wait(Some(Duration::from_secs(5)))? {
                return Err(format!("frame {seq} did not come back").into());
            }
        }
        times.push(t.elapsed());
        if bad {
            return Err(format!("frame {seq} came back corrupted").into());
        }
        nic.poll()?;
    }
    times.sort();
    Ok(times)
}

/// The `p`th percentile of sorted times.
pub fn percentile(sorted: &[Duration], p: usize) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    // Nearest rank: (len - 1) * p / 100, in integers (p in whole per cent).
    let i = (sorted.len() - 1) * p.min(100) / 100;
    sorted[i.min(sorted.len() - 1)]
}
