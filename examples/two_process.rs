//! The main demo: a netback process and netfront processes on this machine, joined only by
//! shared memory (memfd), eventfds and a Unix control socket, as a guest and its driver domain
//! are joined on Xen.
//!
//! ```text
//! cargo run --release --example two_process
//! cargo run --release --example two_process -- --frontends 2 --spin-us 0
//! ```
//!
//! The backend echoes every frame. For each receive mode (grant copy, page flip) and frame
//! size (64, 1500, 9000 with scatter-gather, 65535 with scatter-gather and TCP segmentation
//! offload metadata) each frontend streams frames, gets them back and checks every byte. The
//! table shows frames, millions of frames per second and Gbit/s (one direction, summed over
//! frontends), and lost or corrupted frames, which must be 0.

mod common;

use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitCode, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use clap::Parser;
use common::{BackendSetup, Pattern, Res, UplinkKind, run_backend, stream, wait_for_socket};
use pvnet::back::TxMode;
use pvnet::bus::{FrontendChoice, RxMode};
use pvnet::front::{Netfront, NetfrontConfig};

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum ModeArg {
    /// Received frames are grant-copied into posted buffers.
    Copy,
    /// Received frames are page-flipped (ownership moves) and read where they land.
    Flip,
    /// Flipped and mapped into a fixed receive slot (a flip's real cost).
    FlipRemap,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
enum Role {
    Backend,
    Frontend,
}

#[derive(Parser, Debug)]
#[command(about = "netfront and netback in separate processes, every byte checked")]
struct Args {
    /// Receive modes to run.
    #[arg(long, value_enum, value_delimiter = ',', default_values_t = [ModeArg::Copy, ModeArg::Flip])]
    modes: Vec<ModeArg>,
    /// Frame sizes to run.
    #[arg(long, value_delimiter = ',', default_values_t = [64usize, 1500, 9000, 65535])]
    sizes: Vec<usize>,
    /// Frontend processes streaming at once.
    #[arg(long, default_value_t = 1)]
    frontends: usize,
    /// Frames per run, in per cent of the default (10 for a quick look).
    #[arg(long, default_value_t = 100)]
    percent: u32,
    /// Microseconds each side polls its rings before sleeping (0: purely event-driven).
    #[arg(long, default_value_t = 50)]
    spin_us: u64,
    /// Map guest transmit pages instead of grant-copying them.
    #[arg(long)]
    tx_map: bool,
    #[arg(long, value_enum, hide = true)]
    role: Option<Role>,
    #[arg(long, hide = true)]
    socket: Option<PathBuf>,
    #[arg(long, value_enum, hide = true)]
    mode: Option<ModeArg>,
    #[arg(long, hide = true)]
    size: Option<usize>,
    #[arg(long, hide = true)]
    frames: Option<u64>,
    #[arg(long, hide = true, default_value_t = 1)]
    index: u8,
}

/// Frames per run at scale 1: about 100-400 MB per size, a fraction of a second each.
fn frames_for(size: usize) -> u64 {
    match size {
        0..=256 => 1_000_000,
        257..=2048 => 300_000,
        2049..=16384 => 60_000,
        _ => 15_000,
    }
}

fn backend_role(args: &Args) -> Res<()> {
    let socket = args.socket.clone().ok_or("--socket")?;
    let stop = Arc::new(AtomicBool::new(false));
    {
        // The parent closes our stdin when it is done (or dies).
        let stop = stop.clone();
        std::thread::spawn(move || {
            let _ = std::io::stdin().read_to_end(&mut Vec::new());
            stop.store(true, Ordering::Release);
        });
    }
    let setup = BackendSetup {
        socket,
        uplink: UplinkKind::Echo,
        tap: None,
        tap_queues: 1,
        tx_mode: if args.tx_map {
            TxMode::Map
        } else {
            TxMode::Copy
        },
        spin: Duration::from_micros(args.spin_us),
        rate_mbit: None,
        stats_every: None,
        exit_after: None,
        verbose: false,
    };
    let closed = run_backend(&setup, &stop)?;
    let faults = closed
        .iter()
        .filter(|v| v.fault.is_some() || v.pinned > 0)
        .count();
    if faults > 0 {
        return Err(format!("{faults} vifs disabled or left grants in use").into());
    }
    Ok(())
}

fn frontend_role(args: &Args) -> Res<()> {
    let socket = args.socket.clone().ok_or("--socket")?;
    let mode = args.mode.ok_or("--mode")?;
    let size = args.size.ok_or("--size")?;
    let frames = args.frames.ok_or("--frames")?;
    let mac = [0x02, 0, 0, 0, 0, args.index];
    let cfg = {
        let mut c = NetfrontConfig::default();
        c.choice = {
            let mut c = FrontendChoice::default();
            c.rx_mode = if mode == ModeArg::Copy {
                RxMode::Copy
            } else {
                RxMode::Flip
            };
            c.mtu = 9000;
            c.gso_tcpv4 = true;
            c.mac = mac;
            c
        };
        c.flip_remap = mode == ModeArg::FlipRemap;
        c.spin = Duration::from_micros(args.spin_us);
        c
    };
    let mut nic = Netfront::connect(&socket, cfg)?;
    let r = stream(&mut nic, &Pattern::new(size, mac, mac), frames)?;
    nic.close()?;
    println!("RESULT {} {} {} {}", r.frames, r.seconds, r.lost, r.corrupt);
    Ok(())
}

fn spawn(args: &[String]) -> Res<Child> {
    Ok(Command::new(std::env::current_exe()?)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?)
}

/// One row: every frontend's stream of one mode and size, at the same time.
fn run_row(args: &Args, socket: &Path, mode: ModeArg, size: usize) -> Res<(u64, f64, u64)> {
    let frames = (frames_for(size) * u64::from(args.percent) / 100).max(100);
    let mode_name = format!("{mode:?}")
        .to_lowercase()
        .replace("flipremap", "flip-remap");
    let children: Vec<Child> = (0..args.frontends)
        .map(|i| {
            spawn(&[
                "--role".into(),
                "frontend".into(),
                "--socket".into(),
                socket.display().to_string(),
                "--mode".into(),
                mode_name.clone(),
                "--size".into(),
                size.to_string(),
                "--frames".into(),
                frames.to_string(),
                "--index".into(),
                (i + 1).to_string(),
                "--spin-us".into(),
                args.spin_us.to_string(),
            ])
        })
        .collect::<Res<_>>()?;
    let (mut total, mut secs, mut bad) = (0u64, 0f64, 0u64);
    for mut child in children {
        let out = child.stdout.take().ok_or("stdout")?;
        let mut result = None;
        for line in BufReader::new(out).lines() {
            let line = line?;
            if let Some(rest) = line.strip_prefix("RESULT ") {
                let v: Vec<&str> = rest.split(' ').collect();
                result = Some((
                    v[0].parse::<u64>()?,
                    v[1].parse::<f64>()?,
                    v[2].parse::<u64>()? + v[3].parse::<u64>()?,
                ));
            }
        }
        let status = child.wait()?;
        let (f, s, b) = result.ok_or_else(|| format!("a frontend failed: {status}"))?;
        total += f;
        secs = secs.max(s);
        bad += b;
    }
    Ok((total, secs, bad))
}

fn main_role(args: &Args) -> Res<bool> {
    let dir = std::env::temp_dir().join(format!("pvnet-demo-{}", std::process::id()));
    std::fs::create_dir_all(&dir)?;
    let socket = dir.join("netback.sock");
    let mut backend_args = vec![
        "--role".to_string(),
        "backend".into(),
        "--socket".into(),
        socket.display().to_string(),
        "--spin-us".into(),
        args.spin_us.to_string(),
    ];
    if args.tx_map {
        backend_args.push("--tx-map".into());
    }
    let mut backend = spawn(&backend_args)?;
    wait_for_socket(&socket, Duration::from_secs(10))?;
    println!(
        "netback: pid {}, echo uplink, tx {}; {} netfront process(es) per run, spin {} us",
        backend.id(),
        if args.tx_map { "map" } else { "copy" },
        args.frontends,
        args.spin_us
    );
    println!(
        "{:<11} {:>16} {:>10} {:>8} {:>9} {:>5}",
        "mode", "size", "frames", "Mpps", "Gbit/s", "lost"
    );
    let mut ok = true;
    for &mode in &args.modes {
        for &size in &args.sizes {
            let label = match size {
                0..=1514 => format!("{size}"),
                1515..=9014 => format!("{size} sg"),
                _ => format!("{size} sg+gso"),
            };
            let mode_name = format!("{mode:?}")
                .to_lowercase()
                .replace("flipremap", "flip-remap");
            match run_row(args, &socket, mode, size) {
                Ok((frames, secs, bad)) => {
                    println!(
                        "{:<11} {:>16} {:>10} {:>8.3} {:>9.2} {:>5}",
                        mode_name,
                        label,
                        frames,
                        frames as f64 / secs / 1e6,
                        frames as f64 * size as f64 * 8.0 / secs / 1e9,
                        bad
                    );
                    ok &= bad == 0;
                }
                Err(e) => {
                    println!("{mode_name:<11} {label:>16} failed: {e}");
                    ok = false;
                }
            }
        }
    }
    // Closing its stdin stops the backend; it reports every vif it served.
    drop(backend.stdin.take());
    let mut out = String::new();
    if let Some(mut o) = backend.stdout.take() {
        o.read_to_string(&mut out)?;
    }
    let status = backend.wait()?;
    let vifs = out.lines().filter(|l| l.starts_with("vif")).count();
    println!("netback served {vifs} vifs and exited: {status}");
    ok &= status.success();
    let _ = std::fs::remove_dir_all(&dir);
    Ok(ok)
}

fn main() -> ExitCode {
    let args = Args::parse();
    let result = match args.role {
        Some(Role::Backend) => backend_role(&args).map(|()| true),
        Some(Role::Frontend) => frontend_role(&args).map(|()| true),
        None => main_role(&args),
    };
    match result {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => {
            eprintln!("two_process: frames were lost or corrupted");
            ExitCode::FAILURE
        }
        Err(e) => {
            eprintln!("two_process: {e}");
            ExitCode::FAILURE
        }
    }
}
