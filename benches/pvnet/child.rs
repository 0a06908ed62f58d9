//! The child processes: this binary re-run with `--role`. Each prints one result line on
//! standard output for the parent to parse.

use std::io::{Read, Write};
use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use pvnet::back::{Echo, Netback, NetbackConfig, Sink, TxMode, Uplink};
use pvnet::bus::{FrontendChoice, RxMode};
use pvnet::front::{Netfront, NetfrontConfig, SendError};
use pvnet::netif::{Gso, GsoKind, Offload};
use pvnet::process::{BackendConfig, Listener};

use crate::arg_value;

const T: Duration = Duration::from_secs(20);

/// CPU seconds (user + system) this process has used.
pub fn cpu_seconds() -> f64 {
    let u = nix::sys::resource::getrusage(nix::sys::resource::UsageWho::RUSAGE_SELF)
        .expect("getrusage");
    let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 + tv.tv_usec() as f64 / 1e6;
    t(u.user_time()) + t(u.system_time())
}

fn req<T: std::str::FromStr>(args: &[String], name: &str) -> T {
    arg_value(args, name)
        .and_then(|v| v.parse().ok())
        .unwrap_or_else(|| panic!("child: {name} missing or malformed"))
}

/// The frame every run sends: an Ethernet header to a fixed unicast MAC, then a pattern.
/// Beyond a jumbo frame it carries TCP segmentation offload metadata.
pub fn frame(size: usize) -> (Vec<u8>, Offload) {
    let mut f = vec![0u8; size];
    f[..6].copy_from_slice(&MAC);
    f[6..12].copy_from_slice(&MAC);
    f[12..14].copy_from_slice(&[0x88, 0xb5]);
    for (i, b) in f.iter_mut().enumerate().skip(14) {
        *b = u8::try_from(i % 251).expect("below 251");
    }
    let gso = (size > 9014).then_some(Gso {
        kind: GsoKind::TcpV4,
        size: 1448,
    });
    (
        f,
        Offload {
            gso,
            ..Offload::default()
        },
    )
}

const MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];

pub fn run(role: &str, args: &[String]) {
    match role {
        "backend" => backend(args),
        "front-tx" => front_tx(args),
        "front-rx" => front_rx(args),
        "front-ping" => front_ping(args),
        "unix-sink" => unix_sink(args),
        "eventfd-echo" => eventfd_echo(args),
        "spin-echo" => spin_echo(args),
        "bare-ring-sink" => bare_ring_sink(args),
        other => panic!("unknown role {other}"),
    }
}

fn backend(args: &[String]) {
    let socket: PathBuf = req(args, "--socket");
    let uplink: String = req(args, "--uplink");
    let spin = Duration::from_micros(req(args, "--spin-us"));
    let tx_mode = if req::<String>(args, "--tx-mode") == "map" {
        TxMode::Map
    } else {
        TxMode::Copy
    };
    let size: usize = req(args, "--size");
    let listener = Listener::bind(&socket, {
        let mut c = BackendConfig::default();
        c.timeout = T;
        c
    })
    .expect("bind");
    let source = uplink == "source";
    let up = if uplink == "echo" {
        Box::new(Echo) as Box<dyn Uplink>
    } else {
        Box::new(Sink::default())
    };
    let mut nb = Netback::new(
        {
            let mut c = NetbackConfig::default();
            c.tx_mode = tx_mode;
            c.spin = spin;
            c.persistent_grants = persistent_from_env();
            c
        },
        up,
    )
    .expect("netback");
    let incoming = pvnet::back::spawn_acceptor(listener, nb.waker()).expect("acceptor");
    let (bytes, meta) = frame(size);
    // The source's frame sits in backend memory once, as a frame a NIC put there would; each
    // delivery is then one grant copy (or flip) into the guest, like one send on a socket.
    let held = source.then(|| nb.packet(&bytes, meta).expect("packet memory"));
    let mut vif = None;
    let mut done = false;
    while !done {
        // A source keeps a ring's worth waiting for the frontend; it never sleeps while
        // the frontend can take more.
        let mut injected = false;
        if let (Some(p), Some(v)) = (held, vif) {
            while nb.rx_backlog(v).is_some_and(|n| n < 64) {
                if !nb.deliver(v, p) {
                    break;
                }
                injected = true;
            }
        }
        if !injected {
            nb.wait(Some(T)).expect("wait");
        }
        while let Ok(conn) = incoming.try_recv() {
            vif = Some(nb.attach(conn.expect("handshake")).expect("attach"));
        }
        nb.poll().expect("poll");
        done = !nb.take_closed().is_empty();
    }
    println!("CPU {}", cpu_seconds());
}

fn connect(args: &[String], rx_mode: RxMode, remap: bool) -> Netfront {
    let socket: PathBuf = req(args, "--socket");
    let deadline = Instant::now() + T;
    while !socket.exists() {
        assert!(Instant::now() < deadline, "no backend");
        std::thread::sleep(Duration::from_millis(2));
    }
    // The socket file exists from the backend's bind, a moment before its listen: a connect
    // in between is refused. Try again until the deadline.
    loop {
        match try_connect(&socket, args, rx_mode, remap) {
            Err(pvnet::front::NetfrontError::Xenbus(pvnet::bus::XenbusError::Io(e)))
                if e.kind() == std::io::ErrorKind::ConnectionRefused
                    && Instant::now() < deadline =>
            {
                std::thread::sleep(Duration::from_millis(2));
            }
            r => return r.expect("connect"),
        }
    }
}

fn try_connect(
    socket: &std::path::Path,
    args: &[String],
    rx_mode: RxMode,
    remap: bool,
) -> Result<Netfront, pvnet::front::NetfrontError> {
    Netfront::connect(socket, {
        let mut c = NetfrontConfig::default();
        c.choice = {
            let mut c = FrontendChoice::default();
            c.rx_mode = rx_mode;
            c.mtu = 9000;
            c.gso_tcpv4 = true;
            c.mac = MAC;
            c
        };
        c.flip_remap = remap;
        c.spin = Duration::from_micros(req(args, "--spin-us"));
        if let Some(n) = rx_buffers_from_env() {
            c.rx_buffers = n;
        }
        c
    })
}

/// `PVNET_PERSISTENT` (`0`: off; otherwise or unset, netback's default, on): whether the
/// backend keeps the frontend's grants claimed between copies
/// (`NetbackConfig::persistent_grants`). Off, netback serves netfront as it must serve a
/// guest that grants per packet (Linux netfront).
fn persistent_from_env() -> bool {
    std::env::var("PVNET_PERSISTENT").as_deref() != Ok("0")
}

/// `PVNET_RX_BUFFERS` (a count; unset, netfront's default): the frontend's receive buffers,
/// to run a frontend that posts each buffer again at once (256, one per slot, as Linux
/// netfront does) with `ab.sh` (a wrapper script per setting). A count netfront refuses
/// fails the connect.
fn rx_buffers_from_env() -> Option<u32> {
    let v = std::env::var("PVNET_RX_BUFFERS").ok()?;
    Some(
        v.parse()
            .expect("PVNET_RX_BUFFERS: a count of receive buffers"),
    )
}

fn rx_mode(args: &[String]) -> (RxMode, bool) {
    match req::<String>(args, "--rx-mode").as_str() {
        "flip" => (RxMode::Flip, false),
        "flip-remap" => (RxMode::Flip, true),
        _ => (RxMode::Copy, false),
    }
}

/// Streams frames to a sink backend until all are consumed.
fn front_tx(args: &[String]) {
    let size: usize = req(args, "--size");
    let frames: u64 = req(args, "--frames");
    let mut nic = connect(args, RxMode::Copy, false);
    let (bytes, meta) = frame(size);
    let start = Instant::now();
    let mut sent = 0u64;
    while sent < frames {
        let want = (frames - sent).min(64);
        let n = nic
            .batch(|b| {
                let mut n = 0;
                while n < want {
                    match b.send(&bytes, meta) {
                        Ok(()) => n += 1,
                        Err(SendError::Full) => break,
                        Err(e) => panic!("send: {e}"),
                    }
                }
                n
            })
            .expect("publish");
        sent += n;
        if n < want {
            nic.poll().expect("poll");
            if nic.tx_in_flight() > 0 && nic.poll().expect("poll") == 0 {
                nic.wait(Some(T)).expect("wait");
            }
        }
    }
    while nic.tx_in_flight() > 0 {
        if nic.poll().expect("poll") == 0 {
            nic.wait(Some(T)).expect("wait");
        }
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu = cpu_seconds();
    nic.close().expect("close");
    println!("RESULT {sent} {secs} {cpu}");
}

/// Receives frames from a source backend.
fn front_rx(args: &[String]) {
    let size: usize = req(args, "--size");
    let frames: u64 = req(args, "--frames");
    let (mode, remap) = rx_mode(args);
    let mut nic = connect(args, mode, remap);
    let mut got = 0u64;
    let mut bad = 0u64;
    let mut start = None;
    while got < frames {
        let n = nic
            .receive(256, |rx| {
                bad += u64::from(rx.data.len() != size);
                got += 1;
            })
            .expect("receive");
        if got > 0 && start.is_none() {
            start = Some(Instant::now());
        }
        if n == 0 {
            nic.wait(Some(T)).expect("wait");
        }
    }
    assert_eq!(bad, 0, "frames of the wrong length");
    let secs = start.map_or(0.0, |s| s.elapsed().as_secs_f64());
    let cpu = cpu_seconds();
    nic.close().expect("close");
    // The first batch starts the clock, so count one batch less.
    println!("RESULT {} {secs} {cpu}", got.saturating_sub(1));
}

/// One frame at a time through an echo backend: `--trips` round trips back to back, or
/// (`--run-ms`, for the polling curve) as many as fit in that time with `--gap-us` of sleep
/// between a reply and the next request, bracketed by `START` and `END trips` lines, then
/// held until the parent (which reads both processes' CPU time there) writes a line.
fn front_ping(args: &[String]) {
    let size: usize = req(args, "--size");
    let run = arg_value(args, "--run-ms")
        .map(|v| Duration::from_millis(v.parse().expect("--run-ms: a number")));
    let trips: u32 = if run.is_some() {
        u32::MAX
    } else {
        req(args, "--trips")
    };
    let gap = Duration::from_micros(
        arg_value(args, "--gap-us").map_or(0, |v| v.parse().expect("--gap-us: a number")),
    );
    if !gap.is_zero() {
        // The default 50 us timer slack would stretch every short gap.
        nix::sys::prctl::set_timerslack(1000).expect("timer slack");
    }
    let (mode, remap) = rx_mode(args);
    let mut nic = connect(args, mode, remap);
    let (bytes, meta) = frame(size);
    let mut times = Vec::with_capacity(if run.is_some() {
        1 << 16
    } else {
        trips as usize
    });
    let trip = |nic: &mut Netfront| {
        let t = Instant::now();
        nic.send(&bytes, meta).expect("send");
        let mut back = false;
        while !back {
            nic.receive(1, |rx| {
                assert_eq!(rx.data.len(), size);
                back = true;
            })
            .expect("receive");
            if !back {
                nic.wait(Some(T)).expect("wait");
            }
        }
        let took = t.elapsed();
        nic.poll().expect("poll");
        took
    };
    // The first trips warm up (page faults, caches).
    for _ in 0..10 {
        trip(&mut nic);
    }
    if run.is_some() {
        println!("START");
        std::io::stdout().flush().expect("flush");
    }
    let start = Instant::now();
    while times.len() < trips as usize && run.is_none_or(|r| start.elapsed() < r) {
        if !gap.is_zero() {
            std::thread::sleep(gap);
        }
        times.push(trip(&mut nic));
    }
    if run.is_some() {
        println!("END {}", times.len());
        std::io::stdout().flush().expect("flush");
        let mut line = String::new();
        std::io::stdin().read_line(&mut line).expect("parent's go");
    }
    times.sort();
    let p = |q: usize| times[(times.len() - 1) * q / 100].as_nanos();
    nic.close().expect("close");
    println!("LAT {} {}", p(50), p(99));
}

/// AF_UNIX SOCK_SEQPACKET receiver: counts messages, acknowledges the last.
fn unix_sink(args: &[String]) {
    let socket: PathBuf = req(args, "--socket");
    let size: usize = req(args, "--size");
    let frames: u64 = req(args, "--frames");
    let _ = std::fs::remove_file(&socket);
    let sock = crate::baselines::seqpacket_listen(&socket);
    // Tell the parent we listen.
    println!("READY");
    std::io::stdout().flush().unwrap();
    let conn = crate::baselines::seqpacket_accept(&sock);
    if let Some(bytes) = arg_value(args, "--buf").and_then(|v| v.parse().ok()) {
        crate::baselines::set_buffers(&conn, bytes);
    }
    let mut buf = vec![0u8; size.max(1)];
    for _ in 0..frames {
        let n = nix::sys::socket::recv(
            std::os::fd::AsRawFd::as_raw_fd(&conn),
            &mut buf,
            nix::sys::socket::MsgFlags::empty(),
        )
        .expect("recv");
        assert_eq!(n, size);
    }
    nix::sys::socket::send(
        std::os::fd::AsRawFd::as_raw_fd(&conn),
        &[1],
        nix::sys::socket::MsgFlags::empty(),
    )
    .expect("ack");
    println!("CPU {}", cpu_seconds());
}

/// Adopts descriptors the parent passed by number.
fn inherited(args: &[String]) -> Vec<OwnedFd> {
    let spec: String = req(args, "--fds");
    spec.split(',')
        .map(|v| {
            let raw: RawFd = v.parse().expect("fd number");
            std::fs::read_link(format!("/proc/self/fd/{raw}")).expect("inherited fd is open");
            // SAFETY: the parent created this descriptor without CLOEXEC for this process and
            // passed its number (checked open above); nothing else here owns it.
            unsafe { OwnedFd::from_raw_fd(raw) }
        })
        .collect()
}

/// Bare eventfd echo: one blocking read, one write per trip.
fn eventfd_echo(args: &[String]) {
    let trips: u32 = req(args, "--trips");
    let mut fds = inherited(args).into_iter();
    let (rx, tx) = (fds.next().unwrap(), fds.next().unwrap());
    let (mut rx, mut tx) = (std::fs::File::from(rx), std::fs::File::from(tx));
    let mut buf = [0u8; 8];
    for _ in 0..trips {
        rx.read_exact(&mut buf).unwrap();
        tx.write_all(&1u64.to_ne_bytes()).unwrap();
    }
}

/// Shared-memory spin echo: waits for an odd value, answers with the next even one.
fn spin_echo(args: &[String]) {
    use core::sync::atomic::Ordering;
    let trips: u32 = req(args, "--trips");
    let fd = inherited(args).into_iter().next().unwrap();
    let page = pvnet::process::map_shared(&fd, 4096).expect("map");
    for i in 0..trips {
        let want = 2 * i + 1;
        while page.load_u32(0, Ordering::Acquire).unwrap() != want {
            std::hint::spin_loop();
        }
        page.store_u32(0, want + 1, Ordering::Release).unwrap();
    }
}

/// The bare copy ring's receiver (`bare_ring.rs`) over the memfd the parent passed.
fn bare_ring_sink(args: &[String]) {
    let size: usize = req(args, "--size");
    let frames: u32 = req(args, "--frames");
    let fd = inherited(args)
        .into_iter()
        .next()
        .expect("the ring's memfd");
    let len = usize::try_from(nix::sys::stat::fstat(&fd).expect("fstat").st_size)
        .expect("a memfd's size");
    let region = pvnet::process::map_shared(&fd, len).expect("map");
    let traffic = crate::bare_ring::Traffic::parse(&req::<String>(args, "--traffic"));
    crate::bare_ring::sink(&region, size, frames, traffic);
}
