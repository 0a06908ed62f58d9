//! Netback driven by an event loop of its own (mio), serving several netfront processes from
//! one thread: no thread per vif, none for handshakes, no periodic tick. The loop registers
//! the listener, each handshake in progress and whatever [`Netback::descriptors`] lists,
//! hands readiness to [`Netback::ready`], and sleeps only after
//! [`Netback::prepare_to_sleep`] armed the rings, until a descriptor is readable or the next
//! deadline. While every frontend is connected and quiet, the loop does not wake at all: the
//! example counts those wakeups and fails unless there are none.
//!
//! ```text
//! cargo run --release --example event_loop -- --frontends 3 --frames 20000
//! ```

mod common;

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Pattern, Res, stream};
use mio::unix::SourceFd;
use mio::{Events, Interest, Poll, Token};
use pvnet::back::{Echo, Netback, NetbackConfig, Token as NbToken};
use pvnet::front::{Netfront, NetfrontConfig};
use pvnet::process::{BackendConfig, Handshake, Listener, Step};

#[derive(Parser, Debug)]
#[command(about = "netback in a mio event loop serving netfront processes")]
struct Args {
    /// Frontend processes, all connected at once.
    #[arg(long, default_value_t = 3)]
    frontends: usize,
    /// Frames each frontend streams through the echo uplink (every byte checked).
    #[arg(long, default_value_t = 20000)]
    frames: u64,
    /// Frame size in bytes.
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// How long each frontend stays connected and quiet after its stream.
    #[arg(long, default_value_t = 500)]
    idle_ms: u64,
    /// Internal: run as one frontend process on this socket.
    #[arg(long, hide = true)]
    frontend: Option<PathBuf>,
    /// Internal: this frontend's index (its MAC).
    #[arg(long, hide = true, default_value_t = 0)]
    index: u8,
}

const LISTENER: Token = Token(0);
/// Netback's descriptors are registered from here on; handshakes far above.
const NETBACK: usize = 1;
const HANDSHAKES: usize = 1 << 20;

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match &args.frontend {
        Some(path) => frontend(path, &args),
        None => backend(&args),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("event_loop: {e}");
            ExitCode::FAILURE
        }
    }
}

/// One frontend process: connect, stream verified frames, stay quiet, close.
fn frontend(path: &Path, args: &Args) -> Res<()> {
    let mut cfg = NetfrontConfig::default();
    cfg.choice.mac = cfg_mac(args.index);
    // Jumbo frames, and 64 KiB ones as TCP segmentation offload.
    cfg.choice.mtu = 9000;
    cfg.choice.gso_tcpv4 = true;
    let mut nic = Netfront::connect(path, cfg)?;
    let pattern = Pattern::new(args.size, cfg_mac(args.index), cfg_mac(args.index));
    let r = stream(&mut nic, &pattern, args.frames)?;
    nic.poll()?;
    std::thread::sleep(Duration::from_millis(args.idle_ms));
    let report = nic.close()?;
    if r.lost > 0 || r.corrupt > 0 || r.frames != args.frames {
        return Err(format!("frontend {}: {r:?}", args.index).into());
    }
    println!(
        "frontend {}: {} frames of {} B back intact in {:.2} s, {} grants revoked",
        args.index, r.frames, args.size, r.seconds, report.revoked
    );
    Ok(())
}

fn cfg_mac(i: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, i]
}

/// What the loop has registered, so it can deregister exactly that.
#[derive(Default)]
struct Registered {
    netback: Vec<(NbToken, RawFd)>,
}

fn backend(args: &Args) -> Res<()> {
    let dir = std::env::temp_dir().join(format!("pvnet-event-loop-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let path = dir.join("backend.sock");
    let listener = Listener::bind(&path, BackendConfig::default())?;
    listener.set_nonblocking(true)?;
    let mut nb = Netback::new(NetbackConfig::default(), Echo)?;
    let mut poll = Poll::new()?;
    let mut events = Events::with_capacity(256);
    let listener_fd = listener.as_fd().as_raw_fd();
    poll.registry()
        .register(&mut SourceFd(&listener_fd), LISTENER, Interest::READABLE)?;

    let exe = std::env::current_exe()?;
    let mut children: Vec<Child> = (0..args.frontends)
        .map(|i| {
            Command::new(&exe)
                .arg("--frontend")
                .arg(&path)
                .args(["--index", &(i + 1).to_string()])
                .args(["--frames", &args.frames.to_string()])
                .args(["--size", &args.size.to_string()])
                .args(["--idle-ms", &args.idle_ms.to_string()])
                .spawn()
        })
        .collect::<Result<_, _>>()?;

    let mut handshakes: HashMap<usize, Handshake> = HashMap::new();
    let mut next_handshake = HANDSHAKES;
    let mut reg = Registered::default();
    let mut closed = Vec::new();
    let mut attached = 0;
    let (mut wakeups, mut quiet_wakeups) = (0u64, 0u64);
    let mut quiet_since: Option<Instant> = None;
    let start = Instant::now();

    loop {
        if start.elapsed() > Duration::from_secs(120) {
            return Err("the frontends did not finish within 120 s".into());
        }
        nb.poll()?;
        closed.extend(nb.take_closed());
        if closed.len() == args.frontends {
            break;
        }
        if nb.descriptors_changed() {
            // Deregister the previous set while its descriptors are still open, then register
            // the new one.
            for (_, fd) in reg.netback.drain(..) {
                let _ = poll.registry().deregister(&mut SourceFd(&fd));
            }
            for (i, (token, fd)) in nb.descriptors().into_iter().enumerate() {
                let raw = fd.as_raw_fd();
                poll.registry().register(
                    &mut SourceFd(&raw),
                    Token(NETBACK + i),
                    Interest::READABLE,
                )?;
                reg.netback.push((token, raw));
            }
        }
        let sleep = nb.prepare_to_sleep()?;
        if sleep.work {
            continue;
        }
        // Quiet from here once every frontend has all of its frames back: no wakeup is due
        // until one of them closes.
        let all_back = attached == args.frontends
            && nb.vifs().iter().all(|v| v.stats.rx_packets >= args.frames);
        if all_back && quiet_since.is_none() {
            quiet_since = Some(Instant::now());
        }
        let now = Instant::now();
        let deadline = handshakes
            .values()
            .map(Handshake::deadline)
            .chain(sleep.deadline)
            .min();
        poll.poll(
            &mut events,
            deadline.map(|d| d.saturating_duration_since(now)),
        )?;
        wakeups += 1;
        // A grace of 50 ms after the last frame: a notification sent for it may still land.
        let quiet = quiet_since.is_some_and(|t| t.elapsed() > Duration::from_millis(50));
        let mut closing = false;

        for ev in &events {
            match ev.token() {
                LISTENER => {
                    while let Some(incoming) = listener.try_accept()? {
                        match incoming.start() {
                            Ok(hs) => {
                                let raw = hs.as_fd().as_raw_fd();
                                let t = next_handshake;
                                next_handshake += 1;
                                poll.registry().register(
                                    &mut SourceFd(&raw),
                                    Token(t),
                                    Interest::READABLE,
                                )?;
                                handshakes.insert(t, hs);
                            }
                            Err(e) => eprintln!("handshake refused: {e}"),
                        }
                    }
                }
                Token(t) if t >= HANDSHAKES => {
                    if let Some(hs) = handshakes.remove(&t) {
                        attached += step(&poll, &mut nb, hs, t, &mut handshakes)?;
                    }
                }
                Token(t) => {
                    if let Some(&(token, _)) = reg.netback.get(t - NETBACK) {
                        closing |= matches!(token, NbToken::Control(_));
                        nb.ready(token)?;
                    }
                }
            }
        }
        // Handshakes whose frontend stayed silent past the deadline are dropped.
        let expired: Vec<usize> = handshakes
            .iter()
            .filter(|(_, h)| h.deadline() <= Instant::now())
            .map(|(t, _)| *t)
            .collect();
        for t in expired {
            if let Some(hs) = handshakes.remove(&t) {
                attached += step(&poll, &mut nb, hs, t, &mut handshakes)?;
            }
        }
        if quiet && !closing {
            quiet_wakeups += 1;
        }
        if closing {
            quiet_since = None;
        }
    }
    let mut failed = false;
    for mut c in children.drain(..) {
        failed |= !c.wait()?.success();
    }
    for v in &closed {
        common::print_vif(v);
        failed |= v.pinned != 0 || v.fault.is_some();
    }
    let _ = std::fs::remove_dir_all(&dir);
    println!(
        "event loop: {} frontends served from one thread, {wakeups} wakeups in {:.2} s, {quiet_wakeups} while every frontend was connected and quiet",
        args.frontends,
        start.elapsed().as_secs_f64()
    );
    if failed {
        return Err("a frontend failed or left something behind".into());
    }
    if quiet_wakeups > 0 {
        return Err(format!("{quiet_wakeups} wakeups with nothing to do").into());
    }
    Ok(())
}

/// Steps a handshake whose socket was readable (or whose deadline passed); attaches the
/// frontend once its keys came. Returns 1 if it attached.
fn step(
    poll: &Poll,
    nb: &mut Netback<Echo>,
    hs: Handshake,
    token: usize,
    handshakes: &mut HashMap<usize, Handshake>,
) -> Res<usize> {
    let raw = hs.as_fd().as_raw_fd();
    match hs.step() {
        Ok(Step::Waiting(hs)) => {
            handshakes.insert(token, hs);
            Ok(0)
        }
        Ok(Step::Keys(conn)) => {
            // The socket becomes the vif's control channel, which netback lists itself.
            poll.registry().deregister(&mut SourceFd(&raw))?;
            match nb.attach(conn) {
                Ok(_) => Ok(1),
                Err(e) => {
                    eprintln!("frontend refused: {e}");
                    Ok(0)
                }
            }
        }
        Err(e) => {
            let _ = poll.registry().deregister(&mut SourceFd(&raw));
            eprintln!("handshake failed: {e}");
            Ok(0)
        }
    }
}
