//! System calls per frame while both sides are busy, counted with `strace -c` on both
//! processes of a streaming run.

use std::process::{Command, Stdio};

use crate::report::{Results, Syscalls};
use crate::{Opts, THROUGHPUT_SPIN};

/// Sums `strace -c` output: the total calls, and the three busiest syscalls.
fn parse(summary: &str) -> Option<(u64, String)> {
    let mut rows: Vec<(u64, String)> = Vec::new();
    let mut total = None;
    for line in summary.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.len() >= 5 && cols[0].parse::<f64>().is_ok() {
            let calls: u64 = cols[3].parse().ok()?;
            let name = cols.last()?.to_string();
            if name == "total" {
                total = Some(calls);
            } else {
                rows.push((calls, name));
            }
        }
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    let top = rows
        .iter()
        .take(3)
        .map(|(c, n)| format!("{n} {c}"))
        .collect::<Vec<_>>()
        .join(", ");
    Some((total?, top))
}

/// Runs one mode's backend and frontend under `strace -f -c`.
fn traced(opts: &Opts, uplink: &str, role: &str, frames: u64, size: usize) -> Option<Syscalls> {
    let exe = std::env::current_exe().ok()?;
    let sock = opts.out.join(format!("{}-strace.sock", std::process::id()));
    let _ = std::fs::remove_file(&sock);
    let spin = THROUGHPUT_SPIN.as_micros().to_string();
    let common = [
        "--socket".to_string(),
        sock.display().to_string(),
        "--size".into(),
        size.to_string(),
        "--spin-us".into(),
        spin,
    ];
    let back_out = opts.out.join("strace-backend.txt");
    let front_out = opts.out.join("strace-frontend.txt");
    let mut back = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&back_out)
        .arg(&exe)
        .args(["--role", "backend", "--uplink", uplink, "--tx-mode", "copy"])
        .args(&common)
        .stdout(Stdio::null())
        .spawn()
        .ok()?;
    let front = Command::new("strace")
        .args(["-f", "-c", "-o"])
        .arg(&front_out)
        .arg(&exe)
        .args([
            "--role",
            role,
            "--frames",
            &frames.to_string(),
            "--rx-mode",
            "copy",
        ])
        .args(&common)
        .stdout(Stdio::null())
        .status()
        .ok()?;
    let back_status = back.wait().ok()?;
    if !front.success() || !back_status.success() {
        return None;
    }
    let (b, btop) = parse(&std::fs::read_to_string(&back_out).ok()?)?;
    let (f, ftop) = parse(&std::fs::read_to_string(&front_out).ok()?)?;
    Some(Syscalls {
        what: format!("{role} {size} B, both sides spinning 50 us"),
        frames,
        calls: b + f,
        top: format!("backend: {btop}; frontend: {ftop}"),
    })
}

pub fn run(opts: &Opts, results: &mut Results) {
    if Command::new("strace").arg("-V").output().is_err() {
        println!("syscalls: skipped, strace is not installed (apt-get install strace)");
        return;
    }
    let frames = if opts.quick { 100_000 } else { 1_000_000 };
    for (uplink, role) in [("sink", "front-tx"), ("source", "front-rx")] {
        match traced(opts, uplink, role, frames, 64) {
            Some(s) => {
                println!(
                    "syscalls {}: {:.1} per million frames ({})",
                    s.what,
                    s.calls as f64 * 1e6 / s.frames as f64,
                    s.top
                );
                results.syscalls.push(s);
            }
            None => println!("syscalls {role}: the traced run failed"),
        }
    }
}
