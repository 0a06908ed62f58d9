//! A netfront process: connects to a netback (see the `netback` example) and sends frames:
//! a stream (throughput), a ping-pong (round-trip latency), or a verified echo stream (every
//! byte of every frame checked; needs the backend's `echo` uplink).
//!
//! ```text
//! cargo run --release --example netback -- --uplink echo &
//! cargo run --release --example netfront -- --mode verify --size 1500 --frames 100000
//! cargo run --release --example netfront -- --mode ping-pong --size 64
//! ```

mod common;

use std::path::PathBuf;
use std::process::ExitCode;
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Pattern, Res, percentile, ping_pong, stream};
use pvnet::bus::{FrontendChoice, RxMode};
use pvnet::front::{Netfront, NetfrontConfig, SendError};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Mode {
    /// Send frames as fast as possible (any uplink); receive whatever comes.
    Stream,
    /// One frame at a time, waiting for its echo.
    PingPong,
    /// Stream through an echo uplink and check every returned frame byte for byte.
    Verify,
    /// Be a Linux interface: expose the netfront as the TAP `--tap` (made if needed; needs
    /// CAP_NET_ADMIN), so the kernel's stack uses it as its NIC, until killed or `--secs`.
    /// Give the TAP the netfront's MAC address (printed), then address it and bring it up.
    Tap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum RxModeArg {
    Copy,
    Flip,
}

#[derive(Parser, Debug)]
#[command(about = "A netfront sending frames through a netback")]
struct Args {
    /// The backend's control socket (default: the backend's default, a directory private to
    /// this user).
    #[arg(long)]
    socket: Option<PathBuf>,
    #[arg(long, value_enum, default_value_t = Mode::Verify)]
    mode: Mode,
    /// Frame size in bytes (14..=65535; above 9014 frames carry TCPv4 GSO metadata).
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// Frames to send (round trips for ping-pong).
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// How the backend delivers received frames.
    #[arg(long, value_enum, default_value_t = RxModeArg::Copy)]
    rx_mode: RxModeArg,
    /// Flip mode: map each received frame into a fixed slot (what a flip costs on hardware).
    #[arg(long)]
    remap: bool,
    /// Queue pairs.
    #[arg(long, default_value_t = 1)]
    queues: u32,
    /// Copy mode: receive buffers per queue, a page each (256 to 16384; fewer save memory,
    /// 1024 received fastest where measured).
    #[arg(long, default_value_t = pvnet::front::DEFAULT_RX_BUFFERS)]
    rx_buffers: u32,
    /// Microseconds to poll the rings before sleeping.
    #[arg(long, default_value_t = 0)]
    spin_us: u64,
    /// The last byte of our MAC address (02:00:00:00:00:NN).
    #[arg(long, default_value_t = 1)]
    mac: u8,
    /// The last byte of the destination MAC address (default: our own, for an echo).
    #[arg(long)]
    dst: Option<u8>,
    /// Tap mode: the TAP's name.
    #[arg(long, default_value = "pvnet0")]
    tap: String,
    /// Tap mode: the MTU to negotiate (the TAP's must match).
    #[arg(long, default_value_t = 1500)]
    mtu: u32,
    /// Tap mode: no checksum offload, GSO or scatter-gather either way: negotiate receiving
    /// none, and take none from the kernel (it then sends every frame whole and
    /// checksummed).
    #[arg(long)]
    no_offloads: bool,
    /// Tap mode: stop after this many seconds (default: run until killed).
    #[arg(long)]
    secs: Option<u64>,
}

/// Tap mode: moves frames between the netfront and the TAP until stopped.
fn tap(args: &Args, mut nic: Netfront) -> Res<()> {
    use std::sync::atomic::{AtomicBool, Ordering};
    // A TAP queue per netfront queue (`--queues`): the kernel keeps each flow on one.
    let tap = pvnet::tap::Tap::open(&args.tap, nic.queues())?;
    let wanted = if args.no_offloads {
        pvnet::tap::TapOffloads::default()
    } else {
        pvnet::tap::TapOffloads {
            csum: true,
            tso4: true,
            tso6: true,
        }
    };
    let mut bridge = pvnet::tap::TapBridge::with_offloads(tap, &nic, wanted)?;
    let m = nic.choice().mac;
    println!(
        "netfront: TAP {} ready; give it the address {:02x}:{:02x}:{:02x}:{:02x}:{:02x}:{:02x}",
        args.tap, m[0], m[1], m[2], m[3], m[4], m[5]
    );
    let stop = std::sync::Arc::new(AtomicBool::new(false));
    if let Some(secs) = args.secs {
        let stop = stop.clone();
        std::thread::spawn(move || {
            std::thread::sleep(Duration::from_secs(secs));
            stop.store(true, Ordering::Release);
        });
    }
    bridge.run(&mut nic, &stop, Duration::from_millis(100))?;
    println!("netfront: {:?}", bridge.stats());
    drop(bridge);
    nic.close()?;
    Ok(())
}

fn mac(last: u8) -> [u8; 6] {
    [0x02, 0, 0, 0, 0, last]
}

fn run(args: &Args) -> Res<()> {
    let cfg = {
        let mut c = NetfrontConfig::default();
        c.choice = {
            let mut c = FrontendChoice::default();
            c.rx_mode = match args.rx_mode {
                RxModeArg::Copy => RxMode::Copy,
                RxModeArg::Flip => RxMode::Flip,
            };
            c.mtu = 9000;
            c.gso_tcpv4 = true;
            c.queues = args.queues;
            c.mac = mac(args.mac);
            if args.mode == Mode::Tap {
                c.mtu = args.mtu;
                let on = !args.no_offloads;
                (c.sg, c.gso_tcpv4, c.gso_tcpv6) = (on, on, on);
                (c.ipv4_csum_offload, c.ipv6_csum_offload) = (on, on);
            }
            c
        };
        c.flip_remap = args.remap;
        c.spin = Duration::from_micros(args.spin_us);
        c.rx_buffers = args.rx_buffers;
        c
    };
    let socket = match &args.socket {
        Some(s) => s.clone(),
        None => pvnet::process::default_socket_path()?,
    };
    let mut nic = Netfront::connect(&socket, cfg)?;
    let pattern = Pattern::new(args.size, mac(args.mac), mac(args.dst.unwrap_or(args.mac)));
    match args.mode {
        Mode::Tap => return tap(args, nic),
        Mode::Verify => {
            let r = stream(&mut nic, &pattern, args.frames)?;
            println!(
                "verify: {} frames of {} B in {:.3} s: {:.3} Mpps, {:.2} Gbit/s, lost {}, corrupt {}",
                r.frames,
                args.size,
                r.seconds,
                r.frames as f64 / r.seconds / 1e6,
                r.frames as f64 * args.size as f64 * 8.0 / r.seconds / 1e9,
                r.lost,
                r.corrupt
            );
            if r.lost > 0 || r.corrupt > 0 {
                return Err("frames lost or corrupted".into());
            }
        }
        Mode::PingPong => {
            let times = ping_pong(
                &mut nic,
                &pattern,
                u32::try_from(args.frames).unwrap_or(u32::MAX),
            )?;
            println!(
                "ping-pong: {} round trips of {} B: p50 {:?}, p99 {:?}",
                times.len(),
                args.size,
                percentile(&times, 50),
                percentile(&times, 99)
            );
        }
        Mode::Stream => {
            let start = Instant::now();
            let (mut sent, mut received) = (0u64, 0u64);
            while sent < args.frames {
                let want = (args.frames - sent).min(64);
                let n = nic.batch(|b| {
                    let mut n = 0;
                    while n < want {
                        match pattern.send(b, common::seq32(sent + n)) {
                            Ok(()) => n += 1,
                            Err(SendError::Full) => break,
                            Err(e) => return Err(e),
                        }
                    }
                    Ok(n)
                })??;
                sent += n;
                received += nic.receive(256, |_| {})? as u64;
                if n == 0 {
                    nic.poll()?;
                    nic.wait(Some(Duration::from_millis(100)))?;
                }
            }
            let secs = start.elapsed().as_secs_f64();
            println!(
                "stream: {sent} frames of {} B in {secs:.3} s: {:.3} Mpps, {:.2} Gbit/s (received {received})",
                args.size,
                sent as f64 / secs / 1e6,
                sent as f64 * args.size as f64 * 8.0 / secs / 1e9
            );
        }
    }
    let s = nic.stats();
    println!(
        "netfront: tx {} frames {} B (dropped {}, errors {}), rx {} frames {} B (dropped {}, errors {})",
        s.tx_packets,
        s.tx_bytes,
        s.tx_dropped,
        s.tx_errors,
        s.rx_packets,
        s.rx_bytes,
        s.rx_dropped,
        s.rx_errors
    );
    let report = nic.close()?;
    println!("closed: {} grants revoked", report.revoked);
    Ok(())
}

fn main() -> ExitCode {
    let args = Args::parse();
    match run(&args) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("netfront: {e}");
            ExitCode::FAILURE
        }
    }
}
