//! What users would otherwise use, measured in the same run: AF_UNIX SOCK_SEQPACKET between
//! two processes, a single-core memcpy, an eventfd ping-pong and a shared-memory spin
//! ping-pong between two processes; and the bare copy ring (`bare_ring.rs`).

use std::io::{BufRead, BufReader, Read, Write};
use std::os::fd::{AsRawFd, OwnedFd};
use std::path::Path;
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::eventfd::{EfdFlags, EventFd};
use nix::sys::socket::{
    AddressFamily, Backlog, MsgFlags, SockFlag, SockType, UnixAddr, accept, bind, connect, listen,
    recv, send, socket,
};

use crate::Opts;
use crate::child::cpu_seconds;
use crate::report::{Latency, Results, Throughput};

fn seqpacket_socket() -> OwnedFd {
    socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .expect("socket")
}

pub fn seqpacket_listen(path: &Path) -> OwnedFd {
    let s = seqpacket_socket();
    bind(s.as_raw_fd(), &UnixAddr::new(path).expect("path")).expect("bind");
    listen(&s, Backlog::new(4).expect("backlog")).expect("listen");
    s
}

pub fn seqpacket_accept(listener: &OwnedFd) -> OwnedFd {
    let fd = accept(listener.as_raw_fd()).expect("accept");
    // SAFETY: `accept` returned a new descriptor that nothing else owns.
    unsafe { <OwnedFd as std::os::fd::FromRawFd>::from_raw_fd(fd) }
}

/// A child on the first CPU of the pair (this process runs on the second: see `run_all`).
fn child(role: &str, extra: &[String]) -> Command {
    let mut c = Command::new(std::env::current_exe().expect("own path"));
    c.args(["--role", role]);
    if let Some((cpu, _)) = crate::cpu_pair() {
        c.args(["--cpu".to_string(), cpu.to_string()]);
    }
    c.args(extra);
    c
}

/// A baseline's receiving child, started and ready: it printed `READY`.
pub struct ReadyChild {
    child: Child,
    out: BufReader<ChildStdout>,
}

impl ReadyChild {
    /// Starts the child role `role` with `extra` (on the pair's first CPU) and waits for its
    /// `READY`.
    pub fn spawn(role: &str, extra: &[String]) -> Self {
        let mut child = child(role, extra)
            .stdout(Stdio::piped())
            .spawn()
            .expect("spawn");
        let mut out = BufReader::new(child.stdout.take().expect("stdout"));
        let mut line = String::new();
        out.read_line(&mut line).expect("ready");
        assert_eq!(line.trim(), "READY", "{role} did not start");
        Self { child, out }
    }

    /// Fails the run if the child has exited (a receiver that failed would otherwise leave
    /// its sender waiting for ever).
    pub fn check_alive(&mut self) {
        if let Some(status) = self.child.try_wait().expect("try_wait") {
            panic!("the baseline's receiver exited early: {status}");
        }
    }

    /// Waits for the child to exit, successfully; returns the CPU seconds it reported (its
    /// `CPU` line).
    pub fn finish(mut self) -> f64 {
        let mut rest = String::new();
        self.out.read_to_string(&mut rest).expect("child output");
        assert!(
            self.child.wait().expect("wait").success(),
            "the baseline's receiver"
        );
        rest.lines()
            .find_map(|l| l.strip_prefix("CPU "))
            .and_then(|v| v.parse().ok())
            .expect("child CPU")
    }
}

/// Socket buffers of the tuned AF_UNIX baseline: what a user tuning it would ask for.
pub const TUNED_BUF: usize = 4 << 20;

/// Sets both socket buffers of `fd` to `bytes`: with the `*BUFFORCE` options when allowed
/// (root: past `net.core.[rw]mem_max`, as a tuned host would have raised them), else
/// plainly (the kernel caps them).
pub fn set_buffers(fd: &OwnedFd, bytes: usize) {
    use nix::sys::socket::{setsockopt, sockopt};
    if setsockopt(fd, sockopt::SndBufForce, &bytes).is_err() {
        let _ = setsockopt(fd, sockopt::SndBuf, &bytes);
    }
    if setsockopt(fd, sockopt::RcvBufForce, &bytes).is_err() {
        let _ = setsockopt(fd, sockopt::RcvBuf, &bytes);
    }
}

/// AF_UNIX SOCK_SEQPACKET: the parent sends `frames` messages, the child receives them all
/// and acknowledges; `tuned`: both sockets with [`TUNED_BUF`] buffers.
fn unix(opts: &Opts, size: usize, tuned: bool) -> Throughput {
    let frames = opts.frames(size);
    let path = opts.scratch.join("unix.sock");
    let mut extra = vec![
        "--socket".into(),
        path.display().to_string(),
        "--size".into(),
        size.to_string(),
        "--frames".into(),
        frames.to_string(),
    ];
    if tuned {
        extra.extend(["--buf".into(), TUNED_BUF.to_string()]);
    }
    let sink = ReadyChild::spawn("unix-sink", &extra);
    let s = seqpacket_socket();
    if tuned {
        set_buffers(&s, TUNED_BUF);
    }
    connect(s.as_raw_fd(), &UnixAddr::new(&path).expect("path")).expect("connect");
    let buf = crate::child::frame(size).0;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    for _ in 0..frames {
        send(s.as_raw_fd(), &buf, MsgFlags::empty()).expect("send");
    }
    let mut ack = [0u8; 1];
    recv(s.as_raw_fd(), &mut ack, MsgFlags::empty()).expect("ack");
    let secs = start.elapsed().as_secs_f64();
    let cpu_parent = cpu_seconds() - cpu0;
    let cpu_child = sink.finish();
    let _ = std::fs::remove_file(&path);
    Throughput {
        name: if tuned {
            "AF_UNIX 4 MiB".into()
        } else {
            "AF_UNIX seqpacket".into()
        },
        size,
        frames,
        secs,
        cpu: cpu_parent + cpu_child,
    }
}

/// One core copying `size`-byte frames between two 64 MiB buffers (beyond the caches, like a
/// stream of packets), for about 0.3 s. Returns bytes per second.
fn memcpy(size: usize) -> f64 {
    const BUF: usize = 64 << 20;
    let src = vec![0x5au8; BUF];
    let mut dst = vec![0u8; BUF];
    let per = BUF / size;
    let mut bytes = 0u64;
    let start = Instant::now();
    while start.elapsed() < Duration::from_millis(300) {
        for i in 0..per {
            let at = i * size;
            dst[at..at + size].copy_from_slice(&src[at..at + size]);
        }
        std::hint::black_box(&mut dst);
        bytes += (per * size) as u64;
    }
    bytes as f64 / start.elapsed().as_secs_f64()
}

pub fn inheritable(fd: &OwnedFd) {
    fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty())).expect("fcntl");
}

fn percentiles(mut times: Vec<Duration>) -> (u128, u128) {
    times.sort();
    let p = |q: usize| times[(times.len() - 1) * q / 100].as_nanos();
    (p(50), p(99))
}

/// A bare eventfd ping-pong between two processes: one write and one blocking read per side
/// per round trip.
fn eventfd_ping_pong(trips: u32) -> (u128, u128) {
    let ev =
        || OwnedFd::from(EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).expect("eventfd"));
    let (to_child, to_parent) = (ev(), ev());
    inheritable(&to_child);
    inheritable(&to_parent);
    let mut c = child(
        "eventfd-echo",
        &[
            "--fds".into(),
            format!("{},{}", to_child.as_raw_fd(), to_parent.as_raw_fd()),
            "--trips".into(),
            trips.to_string(),
        ],
    )
    .spawn()
    .expect("spawn");
    let (mut tx, mut rx) = (
        std::fs::File::from(to_child),
        std::fs::File::from(to_parent),
    );
    let mut buf = [0u8; 8];
    let mut times = Vec::with_capacity(trips as usize);
    for _ in 0..trips {
        let t = Instant::now();
        tx.write_all(&1u64.to_ne_bytes()).expect("write");
        rx.read_exact(&mut buf).expect("read");
        times.push(t.elapsed());
    }
    assert!(c.wait().expect("wait").success());
    percentiles(times.split_off(times.len() / 10))
}

/// A spin ping-pong over one shared word between two processes.
fn spin_ping_pong(trips: u32) -> (u128, u128) {
    use core::sync::atomic::Ordering;
    let fd = pvnet::process::create_memfd(c"spin-ping-pong", 4096).expect("memfd");
    let page = pvnet::process::map_shared(&fd, 4096).expect("map");
    inheritable(&fd);
    let mut c = child(
        "spin-echo",
        &[
            "--fds".into(),
            fd.as_raw_fd().to_string(),
            "--trips".into(),
            trips.to_string(),
        ],
    )
    .spawn()
    .expect("spawn");
    let mut times = Vec::with_capacity(trips as usize);
    for i in 0..trips {
        let t = Instant::now();
        page.store_u32(0, 2 * i + 1, Ordering::Release)
            .expect("store");
        while page.load_u32(0, Ordering::Acquire).expect("load") != 2 * i + 2 {
            std::hint::spin_loop();
        }
        times.push(t.elapsed());
    }
    assert!(c.wait().expect("wait").success());
    percentiles(times.split_off(times.len() / 10))
}

pub fn run_all(opts: &Opts, results: &mut Results) {
    // The parent is one side of every baseline: pin it to the pair's second CPU.
    if let Some((_, cpu)) = crate::cpu_pair() {
        crate::pin(cpu);
    }
    for &size in &opts.sizes {
        let bps = memcpy(size);
        results.memcpy.push((size, bps));
        let t = unix(opts, size, false);
        let tuned = unix(opts, size, true);
        let bare = crate::bare_ring::Traffic::ALL.map(|t| crate::bare_ring::run(opts, size, t));
        println!(
            "baseline {:>6} B: memcpy {:6.2} GB/s; AF_UNIX seqpacket {:7.3} Mpps {:6.2} Gbit/s, with 4 MiB buffers {:7.3} Mpps {:6.2} Gbit/s; bare copy ring {:7.3} Mpps, with Xen slots {:7.3} Mpps",
            size,
            bps / 1e9,
            t.fps() / 1e6,
            t.gbps(),
            tuned.fps() / 1e6,
            tuned.gbps(),
            bare[0].fps() / 1e6,
            bare[1].fps() / 1e6
        );
        results.throughput.push(t);
        results.throughput.push(tuned);
        results.throughput.extend(bare);
    }
    let trips = opts.trips(false) * 3;
    let (p50, p99) = eventfd_ping_pong(trips);
    results.latency.push(Latency {
        name: "eventfd ping-pong".into(),
        busy: false,
        size: 0,
        p50_ns: p50,
        p99_ns: p99,
    });
    let (p50s, p99s) = spin_ping_pong(opts.trips(true) * 5);
    results.latency.push(Latency {
        name: "shared-memory spin ping-pong".into(),
        busy: true,
        size: 0,
        p50_ns: p50s,
        p99_ns: p99s,
    });
    println!(
        "baseline round trips: eventfd p50 {:.1} us p99 {:.1} us; spin p50 {:.2} us p99 {:.2} us",
        p50 as f64 / 1e3,
        p99 as f64 / 1e3,
        p50s as f64 / 1e3,
        p99s as f64 / 1e3
    );
}
