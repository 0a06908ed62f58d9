//! DPDK's shared-memory NICs as baselines, run when `dpdk-testpmd` is installed (Debian's
//! `dpdk-dev`): what a user who needs a fast two-process packet path would pick instead of
//! pvnet.
//!
//! Each measurement is two `dpdk-testpmd` processes without hugepages (`--no-huge -m 1024
//! --no-pci`, 16384 mbufs), one forwarding core each and pinned like pvnet's runs: the
//! receiver (`rxonly`) forwards on the pair's first CPU, the sender (`txonly`) on the second;
//! each one's main core is the other's CPU and only prints statistics.
//! - memif: the receiver is the memif server, the sender its client; default 2048-byte
//!   buffers, so a frame above 2048 bytes is sent as a chain of 2048-byte mbuf segments and
//!   memif chains its buffers (`--txpkts=2048,...`, multi-segment transmit).
//! - vhost-user: the sender is `virtio_user`, the receiver `net_vhost` (the vhost-user
//!   server); frames above 2048 bytes as for memif.
//!
//! Frames per second are the receiver's own `Rx-pps` readings (asked for once a second; each
//! is the rate since the one before, one to two seconds, as testpmd's statistics thread shares
//! its CPU with the other's polling core) from the first that carried frames (the link comes
//! up seconds after start), the first (ramp-up) and last (partial) left out, their median
//! kept; each is also kept with its time, for the placement probe. CPU is both processes' run
//! time over the same seconds (`/proc/PID/task/*/schedstat`; both forwarding cores poll all
//! the time, as DPDK does).

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;

use crate::Opts;
use crate::report::{Results, Throughput, Timed};

/// A DPDK peer.
#[derive(Clone, Copy, Debug)]
enum Peer {
    Memif,
    Vhost,
}

impl Peer {
    fn name(self) -> &'static str {
        match self {
            Peer::Memif => "DPDK memif",
            Peer::Vhost => "DPDK vhost-user",
        }
    }

    /// The receiver's and the sender's `--vdev`.
    fn vdevs(self, sock: &Path) -> (String, String) {
        let s = sock.display();
        match self {
            Peer::Memif => (
                format!("net_memif0,role=server,socket={s}"),
                format!("net_memif0,role=client,socket={s}"),
            ),
            Peer::Vhost => (
                format!("net_vhost0,iface={s},queues=1"),
                format!("net_virtio_user0,path={s},queues=1"),
            ),
        }
    }
}

/// Where `dpdk-testpmd` is, if installed.
fn testpmd() -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join("dpdk-testpmd"))
        .find(|p| p.is_file())
}

/// `--txpkts` for a frame of `size` bytes: 2048-byte segments and the rest.
fn txpkts(size: usize) -> String {
    let mut segs = vec![2048; size / 2048];
    if !size.is_multiple_of(2048) {
        segs.push(size % 2048);
    }
    segs.iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join(",")
}

/// One `dpdk-testpmd` writing to `log`.
fn spawn(
    bin: &Path,
    lcores: (usize, usize),
    prefix: &str,
    vdev: &str,
    app: &[String],
    log: &Path,
) -> std::io::Result<Child> {
    let out = std::fs::File::create(log)?;
    Command::new(bin)
        .args([
            "-l".to_string(),
            format!("{},{}", lcores.0, lcores.1),
            "--main-lcore".to_string(),
            lcores.1.to_string(),
            "--no-huge".to_string(),
            "-m".to_string(),
            "1024".to_string(),
            "--no-pci".to_string(),
            "--file-prefix".to_string(),
            prefix.to_string(),
            format!("--vdev={vdev}"),
            "--".to_string(),
            "--total-num-mbufs=16384".to_string(),
            "--stats-period=1".to_string(),
        ])
        .args(app)
        .stdin(Stdio::null())
        .stdout(out.try_clone()?)
        .stderr(out)
        .spawn()
}

/// Stops a testpmd (SIGTERM: it stops its cores and exits) and reaps it, killing it if it
/// does not go within 5 s.
fn stop(mut c: Child) {
    if let Ok(pid) = i32::try_from(c.id()) {
        let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
    }
    let until = Instant::now() + Duration::from_secs(5);
    while Instant::now() < until {
        if matches!(c.try_wait(), Ok(Some(_))) {
            return;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
    let _ = c.kill();
    let _ = c.wait();
}

/// The `Rx-pps` readings of a receiver's log.
fn rx_pps(log: &Path) -> Vec<f64> {
    std::fs::read_to_string(log)
        .unwrap_or_default()
        .lines()
        .filter_map(|l| l.trim().strip_prefix("Rx-pps:"))
        .filter_map(|r| r.split_whitespace().next()?.parse().ok())
        .collect()
}

/// Waits up to 10 s for a log to say the port runs.
fn wait_started(log: &Path) -> bool {
    let until = Instant::now() + Duration::from_secs(10);
    while Instant::now() < until {
        let text = std::fs::read_to_string(log).unwrap_or_default();
        if text.contains("Port statistics") || text.contains("Press enter to exit") {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}

/// One run of `peer` at `size`: `None` (with the reason printed) if it did not carry frames.
/// Also returns each reading with the time it covers.
fn pair(opts: &Opts, bin: &Path, peer: Peer, size: usize) -> Option<(Throughput, Vec<Timed>)> {
    let (rx_cpu, tx_cpu) = crate::cpu_pair()?;
    let tag = format!("{}{}", std::process::id(), size);
    let sock = opts.scratch.join(format!("dpdk-{tag}.sock"));
    let _ = std::fs::remove_file(&sock);
    let (rx_vdev, tx_vdev) = peer.vdevs(&sock);
    // The logs stay with the results, to see what each testpmd said.
    let logs = opts.out.join("dpdk-logs");
    let _ = std::fs::create_dir_all(&logs);
    let kind = peer.name().rsplit(' ').next().unwrap_or("peer");
    let rx_log = logs.join(format!("{kind}-{size}-rx.log"));
    let tx_log = logs.join(format!("{kind}-{size}-tx.log"));
    let secs = if opts.quick { 4 } else { 8 };
    let rx = spawn(
        bin,
        (rx_cpu, tx_cpu),
        &format!("pvrx{tag}"),
        &rx_vdev,
        &["--forward-mode=rxonly".to_string()],
        &rx_log,
    )
    .ok()?;
    if !wait_started(&rx_log) {
        stop(rx);
        println!(
            "baseline {size:>6} B: {}: the receiver did not start (see {})",
            peer.name(),
            rx_log.display()
        );
        return None;
    }
    let mut tx_args = vec!["--forward-mode=txonly".to_string()];
    if size > 2048 {
        // RTE_ETH_TX_OFFLOAD_MULTI_SEGS, before --txpkts (checked against the mbuf size).
        tx_args.push("--tx-offloads=0x8000".to_string());
    }
    tx_args.push(format!("--txpkts={}", txpkts(size)));
    let Ok(tx) = spawn(
        bin,
        (tx_cpu, rx_cpu),
        &format!("pvtx{tag}"),
        &tx_vdev,
        &tx_args,
        &tx_log,
    ) else {
        stop(rx);
        return None;
    };
    // The link comes up a few seconds after both run (memif's client connects on a timer):
    // measure from the first second that carried frames.
    let until = Instant::now() + Duration::from_secs(15);
    while Instant::now() < until && !rx_pps(&rx_log).iter().any(|&p| p > 0.0) {
        std::thread::sleep(Duration::from_millis(100));
    }
    let cpu_of = |c: &Child| crate::cpu_ns(c.id()) as f64 / 1e9;
    let cpu0 = cpu_of(&rx) + cpu_of(&tx);
    let start = Instant::now();
    // Each reading the receiver prints is the rate since its previous one (testpmd divides
    // by the time between them, which its statistics thread, sharing a CPU with a polling
    // core, stretches to one or two seconds): note when each appears (to within the 50 ms
    // between looks), so that a reading covers the time from the one before, for the
    // placement probe.
    let seen = rx_pps(&rx_log).len();
    let mut arrived = Vec::new();
    while start.elapsed() < Duration::from_secs(secs + 1) {
        std::thread::sleep(Duration::from_millis(50));
        let n = rx_pps(&rx_log).len().saturating_sub(seen);
        while arrived.len() < n {
            arrived.push(Instant::now());
        }
    }
    let cpu = cpu_of(&rx) + cpu_of(&tx) - cpu0;
    let elapsed = start.elapsed().as_secs_f64();
    stop(tx);
    stop(rx);
    // The first reading after `start` covers time before it: left out. Reading `seen + k`
    // covers `arrived[k - 1]..arrived[k]`.
    let timed: Vec<Timed> = rx_pps(&rx_log)
        .into_iter()
        .skip(seen + 1)
        .zip(arrived.windows(2))
        .filter(|&(fps, _)| fps > 0.0)
        .map(|(fps, w)| Timed {
            name: peer.name().into(),
            size,
            fps,
            from: w[0],
            to: w[1],
        })
        .collect();
    let readings: Vec<f64> = rx_pps(&rx_log)
        .into_iter()
        .skip_while(|&p| p == 0.0)
        .collect();
    // Leave out the first (ramp-up) and last (partial) second.
    let mut steady: Vec<f64> = readings
        .get(1..readings.len().saturating_sub(1))
        .unwrap_or_default()
        .to_vec();
    steady.sort_by(f64::total_cmp);
    let Some(&fps) = steady.get(steady.len() / 2).filter(|&&f| f > 0.0) else {
        println!(
            "baseline {size:>6} B: {}: no frames received (see {} and {})",
            peer.name(),
            rx_log.display(),
            tx_log.display()
        );
        return None;
    };
    // Frames in the measured time (CPU was read over the same): a median rate of at most
    // some 10^8 a second, so whole and far inside a u64.
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let frames = (fps * elapsed).round() as u64;
    let t = Throughput {
        name: peer.name().into(),
        size,
        frames,
        secs: elapsed,
        cpu,
    };
    Some((t, timed))
}

/// memif and vhost-user at every size, if `dpdk-testpmd` is installed.
pub fn run_all(opts: &Opts, results: &mut Results) {
    let Some(bin) = testpmd() else {
        println!(
            "baseline DPDK: skipped (dpdk-testpmd not found; Debian: apt-get install dpdk-dev)"
        );
        return;
    };
    if crate::cpu_pair().is_none() {
        println!("baseline DPDK: skipped (needs two CPUs)");
        return;
    }
    for &size in &opts.sizes {
        for peer in [Peer::Memif, Peer::Vhost] {
            if let Some((t, timed)) = pair(opts, &bin, peer, size) {
                println!(
                    "baseline {:>6} B: {} {:7.3} Mpps {:6.2} Gbit/s, {:.3} CPU s/GB",
                    size,
                    peer.name(),
                    t.fps() / 1e6,
                    t.gbps(),
                    t.cpu_per_gb()
                );
                results.throughput.push(t);
                results.timed.extend(timed);
            }
        }
    }
}
