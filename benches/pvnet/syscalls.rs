//! System calls per frame while both sides are busy: both processes of a streaming run counted
//! with `perf stat -e raw_syscalls:sys_enter` (in-kernel counting, no slowdown), at two stream
//! lengths, so the set-up calls (connect, mmap, ...) cancel out of the slope.

use std::process::{Command, Stdio};

use crate::report::{Results, Syscalls};
use crate::{Opts, THROUGHPUT_SPIN};

/// The count `perf stat -x,` wrote.
fn parse(out: &str) -> Option<u64> {
    out.lines()
        .filter(|l| l.contains("raw_syscalls:sys_enter"))
        .find_map(|l| l.split(',').next()?.trim().parse().ok())
}

/// System calls of backend + frontend for one stream of `frames` 64-byte frames.
fn counted(opts: &Opts, uplink: &str, role: &str, frames: u64) -> Option<u64> {
    let exe = std::env::current_exe().ok()?;
    let sock = opts.scratch.join("syscalls.sock");
    let _ = std::fs::remove_file(&sock);
    let (back_cpu, front_cpu) = crate::cpu_pair().unwrap_or((0, 0));
    let common = [
        "--socket".to_string(),
        sock.display().to_string(),
        "--size".into(),
        "64".into(),
        "--spin-us".into(),
        THROUGHPUT_SPIN.as_micros().to_string(),
    ];
    let back_out = opts.scratch.join("syscalls-backend.txt");
    let front_out = opts.scratch.join("syscalls-frontend.txt");
    let perf = |out: &std::path::Path| {
        let mut c = Command::new("perf");
        c.args(["stat", "-x,", "-e", "raw_syscalls:sys_enter", "-o"])
            .arg(out)
            .arg("--")
            .arg(&exe);
        c
    };
    let mut back = perf(&back_out)
        .args(["--role", "backend", "--uplink", uplink, "--tx-mode", "copy"])
        .args(["--cpu", &back_cpu.to_string()])
        .args(&common)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let front = perf(&front_out)
        .args([
            "--role",
            role,
            "--frames",
            &frames.to_string(),
            "--rx-mode",
            "copy",
        ])
        .args(["--cpu", &front_cpu.to_string()])
        .args(&common)
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let back_status = back.wait().ok()?;
    if !front.success() || !back_status.success() {
        return None;
    }
    let b = parse(&std::fs::read_to_string(&back_out).ok()?)?;
    let f = parse(&std::fs::read_to_string(&front_out).ok()?)?;
    Some(b + f)
}

pub fn run(opts: &Opts, results: &mut Results) {
    let usable = Command::new("perf")
        .args(["stat", "-e", "raw_syscalls:sys_enter", "--", "true"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|s| s.success());
    if !usable {
        println!(
            "syscalls: skipped, `perf stat -e raw_syscalls:sys_enter` is not usable here (perf not installed, or no access to tracepoints)"
        );
        return;
    }
    let (short, long) = if opts.quick {
        (100_000, 1_000_000)
    } else {
        (1_000_000, 10_000_000)
    };
    for (uplink, role) in [("sink", "front-tx"), ("source", "front-rx")] {
        match (
            counted(opts, uplink, role, short),
            counted(opts, uplink, role, long),
        ) {
            (Some(a), Some(b)) => {
                let s = Syscalls {
                    what: format!("{role} 64 B, both sides spinning 50 us"),
                    frames: long - short,
                    calls: b.saturating_sub(a),
                    top: format!("{a} calls for {short} frames, {b} for {long}"),
                };
                println!(
                    "syscalls {}: {:.1} per million frames beyond set-up ({})",
                    s.what,
                    s.calls as f64 * 1e6 / s.frames as f64,
                    s.top
                );
                results.syscalls.push(s);
            }
            _ => println!("syscalls {role}: a counted run failed"),
        }
    }
}
