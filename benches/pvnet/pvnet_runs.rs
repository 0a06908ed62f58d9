//! pvnet's own runs: a netback process and a netfront process per measurement.

use std::io::Read;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use crate::report::{Latency, Results, Throughput, Timed};
use crate::{BUSY_SPIN, Opts, THROUGHPUT_SPIN};

/// A throughput mode: which way frames go and how each side moves them.
#[derive(Clone, Copy, Debug)]
pub struct Mode {
    pub name: &'static str,
    /// `sink` (guest transmit) or `source` (guest receive).
    uplink: &'static str,
    tx_mode: &'static str,
    rx_mode: &'static str,
    /// A mode with goals (copy): run `--repeats` times a round, each run a timed sample.
    repeated: bool,
    /// The frontend's receive buffers (`PVNET_RX_BUFFERS`), if not netfront's default.
    rx_buffers: Option<u32>,
    /// Whether the backend keeps the grants claimed between copies (`PVNET_PERSISTENT`; its
    /// default, on).
    persistent: bool,
}

pub const MODES: [Mode; 7] = [
    Mode {
        name: "tx copy",
        uplink: "sink",
        tx_mode: "copy",
        rx_mode: "copy",
        repeated: true,
        rx_buffers: None,
        persistent: true,
    },
    Mode {
        name: "tx map",
        uplink: "sink",
        tx_mode: "map",
        rx_mode: "copy",
        repeated: false,
        rx_buffers: None,
        persistent: true,
    },
    Mode {
        name: "rx copy",
        uplink: "source",
        tx_mode: "copy",
        rx_mode: "copy",
        repeated: true,
        rx_buffers: None,
        persistent: true,
    },
    Mode {
        name: "rx flip",
        uplink: "source",
        tx_mode: "copy",
        rx_mode: "flip",
        repeated: false,
        rx_buffers: None,
        persistent: true,
    },
    Mode {
        name: "rx flip+remap",
        uplink: "source",
        tx_mode: "copy",
        rx_mode: "flip-remap",
        repeated: false,
        rx_buffers: None,
        persistent: true,
    },
    // A frontend that posts each buffer again as soon as it has read it: 256 buffers, one
    // per ring slot, as Linux netfront keeps them. netback's heuristics are tuned on
    // netfront's default; this row shows what they do to such a guest (a read-ahead that
    // cost it 2x went unseen for a session, BENCHMARKS.md).
    Mode {
        name: "rx recycled",
        uplink: "source",
        tx_mode: "copy",
        rx_mode: "copy",
        repeated: false,
        rx_buffers: Some(256),
        persistent: true,
    },
    // The same frontend served as a guest that grants per packet must be (Linux netfront
    // revokes each buffer's grant once it is answered): no claims kept between copies, so
    // every copy claims and releases the grant. What a VMM serving Linux guests gets; no
    // goal, since the claims it does without are worth 1.1-1.4x (BENCHMARKS.md).
    Mode {
        name: "rx unheld",
        uplink: "source",
        tx_mode: "copy",
        rx_mode: "copy",
        repeated: false,
        rx_buffers: Some(256),
        persistent: false,
    },
];

/// Spawns a child role; the backend runs on the first CPU of the pair, the frontend on the
/// second. Its standard output and input are pipes.
pub fn spawn(role: &str, args: &[String]) -> Child {
    spawn_with(role, args, &[])
}

/// [`spawn`] with environment variables set for the child.
fn spawn_with(role: &str, args: &[String], env: &[(&str, String)]) -> Child {
    let cpu = crate::cpu_pair().map(|(b, f)| if role == "backend" { b } else { f });
    Command::new(std::env::current_exe().expect("own path"))
        .envs(env.iter().map(|(k, v)| (k, v)))
        .args(["--role", role])
        .args(
            cpu.map(|c| vec!["--cpu".to_string(), c.to_string()])
                .unwrap_or_default(),
        )
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("spawn")
}

/// Everything `c` prints, once it has exited successfully.
pub fn output(mut c: Child) -> String {
    let mut s = String::new();
    c.stdout
        .take()
        .expect("stdout")
        .read_to_string(&mut s)
        .expect("read");
    let status = c.wait().expect("wait");
    assert!(status.success(), "child failed: {status}\n{s}");
    s
}

fn field<'a>(out: &'a str, tag: &str) -> Vec<&'a str> {
    out.lines()
        .find_map(|l| l.strip_prefix(tag))
        .unwrap_or_else(|| panic!("no {tag} in {out:?}"))
        .split(' ')
        .collect()
}

fn socket_path(opts: &Opts, what: &str) -> PathBuf {
    let p = opts.scratch.join(format!("{what}.sock"));
    let _ = std::fs::remove_file(&p);
    p
}

/// A backend and a frontend for one mode and size; both report their CPU time. Also returns
/// when the run started and ended (the two processes' whole lives: a run's set-up takes
/// milliseconds, its frames a tenth of a second or more).
fn throughput(opts: &Opts, mode: Mode, size: usize) -> (Throughput, Instant, Instant) {
    let from = Instant::now();
    let frames = opts.frames(size);
    let sock = socket_path(opts, "tp");
    let common = |extra: &[String]| -> Vec<String> {
        let mut v = vec![
            "--socket".into(),
            sock.display().to_string(),
            "--size".into(),
            size.to_string(),
            "--spin-us".into(),
            THROUGHPUT_SPIN.as_micros().to_string(),
        ];
        v.extend_from_slice(extra);
        v
    };
    let back = spawn_with(
        "backend",
        &common(&[
            "--uplink".into(),
            mode.uplink.into(),
            "--tx-mode".into(),
            mode.tx_mode.into(),
        ]),
        &[(
            "PVNET_PERSISTENT",
            if mode.persistent { "1" } else { "0" }.into(),
        )],
    );
    let role = if mode.uplink == "sink" {
        "front-tx"
    } else {
        "front-rx"
    };
    let env: Vec<(&str, String)> = mode
        .rx_buffers
        .map(|n| ("PVNET_RX_BUFFERS", n.to_string()))
        .into_iter()
        .collect();
    let front = spawn_with(
        role,
        &common(&[
            "--frames".into(),
            frames.to_string(),
            "--rx-mode".into(),
            mode.rx_mode.into(),
        ]),
        &env,
    );
    let f = output(front);
    let to = Instant::now();
    let b = output(back);
    let r = field(&f, "RESULT ");
    let cpu_back: f64 = field(&b, "CPU ")[0].parse().expect("cpu");
    let t = Throughput {
        name: format!("pvnet {}", mode.name),
        size,
        frames: r[0].parse().expect("frames"),
        secs: r[1].parse().expect("secs"),
        cpu: r[2].parse::<f64>().expect("cpu") + cpu_back,
    };
    (t, from, to)
}

/// A mode and size measured: the repeated modes (copy, the ones with goals) `opts.repeats`
/// times, each run kept as a timed sample, and summed into one measurement for the round;
/// others once.
fn measure(opts: &Opts, mode: Mode, size: usize, results: &mut Results) -> Throughput {
    let runs = if mode.repeated {
        opts.repeats.max(1)
    } else {
        1
    };
    let mut sum: Option<Throughput> = None;
    for _ in 0..runs {
        let (t, from, to) = throughput(opts, mode, size);
        if mode.repeated {
            results.timed.push(Timed {
                name: t.name.clone(),
                size,
                fps: t.fps(),
                from,
                to,
            });
        }
        sum = Some(match sum {
            None => t,
            Some(s) => Throughput {
                frames: s.frames + t.frames,
                secs: s.secs + t.secs,
                cpu: s.cpu + t.cpu,
                ..s
            },
        });
    }
    sum.expect("at least one run")
}

/// An echo backend (copy mode) for `size`-byte frames spinning `spin_us`, at a socket named
/// `tag`; returns it and the arguments its frontend shares with it.
pub fn echo_backend(opts: &Opts, tag: &str, size: usize, spin_us: u64) -> (Child, Vec<String>) {
    let sock = socket_path(opts, tag);
    let common = vec![
        "--socket".to_string(),
        sock.display().to_string(),
        "--size".into(),
        size.to_string(),
        "--spin-us".into(),
        spin_us.to_string(),
    ];
    let mut b_args = common.clone();
    b_args.extend([
        "--uplink".into(),
        "echo".into(),
        "--tx-mode".into(),
        "copy".into(),
    ]);
    (spawn("backend", &b_args), common)
}

/// Echo round trips for one receive mode and size, event-driven or busy-polling.
fn latency(opts: &Opts, rx_mode: &str, size: usize, busy: bool) -> Latency {
    let spin = if busy { BUSY_SPIN } else { Duration::ZERO };
    let spin_us = u64::try_from(spin.as_micros()).expect("a spin of under 584,000 years");
    let (back, common) = echo_backend(opts, "lat", size, spin_us);
    let mut f_args = common;
    f_args.extend([
        "--trips".into(),
        opts.trips(busy).to_string(),
        "--rx-mode".into(),
        rx_mode.into(),
    ]);
    let front = spawn("front-ping", &f_args);
    let f = output(front);
    output(back);
    let v = field(&f, "LAT ");
    Latency {
        name: format!("pvnet {rx_mode}"),
        busy,
        size,
        p50_ns: v[0].parse().expect("p50"),
        p99_ns: v[1].parse().expect("p99"),
    }
}

pub fn run_all(opts: &Opts, results: &mut Results) {
    for mode in MODES {
        for &size in &opts.sizes {
            let t = measure(opts, mode, size, results);
            println!(
                "{:<20} {:>6} B: {:7.3} Mpps {:6.2} Gbit/s {:6.3} CPU s/GB",
                t.name,
                size,
                t.fps() / 1e6,
                t.gbps(),
                t.cpu_per_gb()
            );
            results.throughput.push(t);
        }
    }
    for rx_mode in ["copy", "flip", "flip-remap"] {
        for &size in &opts.sizes {
            for busy in [false, true] {
                let l = latency(opts, rx_mode, size, busy);
                println!(
                    "{:<20} {:>6} B {:<12}: p50 {:8.2} us p99 {:8.2} us",
                    l.name,
                    size,
                    if busy { "busy-poll" } else { "event-driven" },
                    l.p50_ns as f64 / 1e3,
                    l.p99_ns as f64 / 1e3
                );
                results.latency.push(l);
            }
        }
    }
}
