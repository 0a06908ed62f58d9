//! The kernel's own network stack over pvnet: netback's TAP uplink in one network
//! namespace, a netfront exposed as a TAP in another (two, for the mixed-offload case), and
//! real traffic between them: ping both ways over IPv4 and IPv6, TCP transfers with every
//! byte checked, UDP of mixed sizes, MTU 1500 and 9000, a frontend without GSO behind the
//! same switch as one with it, a segment size too small to be segmented refused. Needs root (namespaces, TAPs); elsewhere each test skips,
//! saying why. Namespaces are deleted however a test ends (their TAPs go with their
//! descriptors).

use std::io::{Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream, UdpSocket};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use netback::{Netback, NetbackConfig};
use netfront::{Netfront, NetfrontConfig};
use process_host::testing::TestDir;
use process_host::{BackendConfig, Listener};
use pvnet_tap::{Tap, TapBridge, TapOffloads, TapStats, TapUplink};
use xenbus::{BackendFeatures, FrontendChoice};

const CHILD: &str = "PVNET_TAP_CHILD";
const T: Duration = Duration::from_secs(20);

fn root() -> bool {
    nix::unistd::geteuid().is_root()
}

macro_rules! needs_root {
    ($name:literal) => {
        if !root() {
            eprintln!(
                "skipping {}: needs root for network namespaces and TAP devices (CI runs it as root)",
                $name
            );
            return;
        }
    };
}

/// One test at a time: each makes namespaces and moves a lot of data.
fn serial() -> std::sync::MutexGuard<'static, ()> {
    static S: std::sync::Mutex<()> = std::sync::Mutex::new(());
    S.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

fn run(cmd: &mut Command) {
    let out = cmd.output().unwrap();
    assert!(
        out.status.success(),
        "{cmd:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
}

fn ip(args: &[&str]) {
    run(Command::new("ip").args(args));
}

/// A network namespace, deleted on drop.
struct Netns(String);

impl Netns {
    fn new(name: String) -> Self {
        let _ = Command::new("ip").args(["netns", "del", &name]).output();
        ip(&["netns", "add", &name]);
        ip(&["-n", &name, "link", "set", "lo", "up"]);
        Self(name)
    }

    /// Moves interface `dev` here and gives it addresses, a MAC, an MTU, and brings it up.
    fn adopt(&self, dev: &str, mac: [u8; 6], v4: &str, v6: &str, mtu: u32) {
        let n = &self.0;
        ip(&["link", "set", "dev", dev, "netns", n]);
        let mac = mac
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<Vec<_>>()
            .join(":");
        ip(&["-n", n, "link", "set", "dev", dev, "address", &mac]);
        ip(&["-n", n, "link", "set", "dev", dev, "mtu", &mtu.to_string()]);
        ip(&["-n", n, "addr", "add", v4, "dev", dev]);
        ip(&["-n", n, "addr", "add", v6, "dev", dev, "nodad"]);
        ip(&["-n", n, "link", "set", "dev", dev, "up"]);
    }

    fn exec(&self, args: &[&str]) -> Command {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.0]).args(args);
        c
    }

    /// This test binary, re-run inside the namespace as child `role` with `args`.
    fn child(&self, role: &str, args: &[String]) -> std::process::Child {
        let exe = std::env::current_exe().unwrap();
        let mut c = self.exec(&[exe.to_str().unwrap()]);
        c.args([
            "--exact",
            "child_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD, format!("{role}|{}", args.join("|")))
        .stdout(Stdio::piped());
        c.spawn().unwrap()
    }

    fn ping(&self, to: &str, size: usize) {
        let out = self
            .exec(&[
                "ping",
                "-c",
                "3",
                "-i",
                "0.2",
                "-W",
                "5",
                "-s",
                &size.to_string(),
                "-M",
                "do",
                to,
            ])
            .output()
            .unwrap();
        assert!(
            out.status.success(),
            "ping {to} from {}: {}",
            self.0,
            String::from_utf8_lossy(&out.stdout)
        );
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).output();
    }
}

/// A netback with a TAP uplink on a thread of its own, listening at `path`.
struct Backend {
    stop: Arc<AtomicBool>,
    waker: netback::Waker,
    handle: Option<JoinHandle<TapStats>>,
    /// Removed after the backend's thread has ended (fields drop after `drop`).
    _dir: TestDir,
    path: PathBuf,
}

impl Backend {
    fn start(name: &str, tap: Tap) -> Self {
        let dir = TestDir::new(&format!("tap-{name}"));
        let path = dir.join("b.sock");
        let mut config = BackendConfig::default();
        config.features = BackendFeatures::default();
        let listener = Listener::bind(&path, config).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let (tx, rx) = std::sync::mpsc::channel();
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            let uplink = TapUplink::new(tap).unwrap();
            let mut backend = Netback::new(NetbackConfig::default(), uplink).unwrap();
            tx.send(backend.waker()).unwrap();
            let incoming = netback::spawn_acceptor(listener, backend.waker()).unwrap();
            while !stop2.load(Ordering::Acquire) {
                backend.wait(Some(Duration::from_millis(100))).unwrap();
                while let Ok(conn) = incoming.try_recv() {
                    if let Ok(conn) = conn {
                        backend.attach(conn).unwrap();
                    }
                }
                backend.poll().unwrap();
                let _ = backend.take_closed();
            }
            backend.uplink().stats()
        });
        let waker = rx.recv().unwrap();
        Self {
            stop,
            waker,
            handle: Some(handle),
            _dir: dir,
            path,
        }
    }

    fn stop(mut self) -> TapStats {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Backend {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        let _ = self.waker.wake();
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

/// A netfront bridged to a TAP, pumped on a thread of its own.
struct Front {
    stop: Arc<AtomicBool>,
    handle: Option<JoinHandle<pvnet_tap::BridgeStats>>,
}

impl Front {
    /// Connects to `backend` with `choice` and exposes the netfront as TAP `dev` (in the root
    /// namespace: the caller moves it).
    fn start(backend: &Path, dev: &str, choice: FrontendChoice) -> Self {
        let mut cfg = NetfrontConfig::default();
        cfg.choice = choice;
        let mut nic = Netfront::connect(backend, cfg).unwrap();
        // A TAP queue per netfront queue: the kernel keeps each flow on one.
        let tap = Tap::open(dev, nic.queues()).unwrap();
        // A frontend that receives without GSO sends without it too (as `ethtool -K tso
        // off` would have it), so both directions of its traffic need software work.
        let wanted = TapOffloads {
            csum: nic.choice().ipv4_csum_offload,
            tso4: nic.choice().gso_tcpv4,
            tso6: nic.choice().gso_tcpv6,
        };
        let mut bridge = TapBridge::with_offloads(tap, &nic, wanted).unwrap();
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = stop.clone();
        let handle = std::thread::spawn(move || {
            bridge
                .run(&mut nic, &stop2, Duration::from_millis(50))
                .unwrap();
            let stats = bridge.stats();
            drop(bridge);
            let _ = nic.close();
            stats
        });
        Self {
            stop,
            handle: Some(handle),
        }
    }

    fn stop(mut self) -> pvnet_tap::BridgeStats {
        self.stop.store(true, Ordering::Release);
        self.handle.take().unwrap().join().unwrap()
    }
}

impl Drop for Front {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(h) = self.handle.take() {
            let _ = h.join();
        }
    }
}

fn choice(mac_last: u8, mtu: u32, gso: bool) -> FrontendChoice {
    let mut c = FrontendChoice::default();
    c.mac = [0x00, 0x16, 0x3e, 0x77, 0, mac_last];
    c.mtu = mtu;
    c.gso_tcpv4 = gso;
    c.gso_tcpv6 = gso;
    c.ipv6_csum_offload = true;
    c
}

/// The byte at position `i` of a test stream (not periodic in any power of two).
fn stream_byte(i: u64) -> u8 {
    u8::try_from((i * 7 + i / 4093) % 251).unwrap()
}

/// Sends `bytes` of the test stream over TCP from a child in `from` to a child in `to`
/// listening on `addr`, which checks every byte; returns the rate in Gbit/s.
fn tcp(from: &Netns, to: &Netns, addr: &str, bytes: u64) -> f64 {
    let mut server = to.child("tcp-server", &[addr.to_owned(), bytes.to_string()]);
    let mut out = server.stdout.take().unwrap();
    wait_for_line(&mut out, "LISTENING");
    let start = Instant::now();
    let client = from
        .child("tcp-client", &[addr.to_owned(), bytes.to_string()])
        .wait_with_output()
        .unwrap();
    assert!(client.status.success(), "the TCP client failed");
    let status = server.wait().unwrap();
    assert!(status.success(), "the TCP server found the stream wrong");
    bytes as f64 * 8.0 / start.elapsed().as_secs_f64() / 1e9
}

/// UDP datagrams of mixed sizes from a child in `from` to a child in `to`: every one
/// received intact, most of them received.
fn udp(from: &Netns, to: &Netns, addr: &str) {
    let mut server = to.child("udp-server", &[addr.to_owned()]);
    let mut out = server.stdout.take().unwrap();
    wait_for_line(&mut out, "LISTENING");
    let client = from
        .child("udp-client", &[addr.to_owned()])
        .wait_with_output()
        .unwrap();
    assert!(client.status.success());
    let status = server.wait().unwrap();
    assert!(
        status.success(),
        "the UDP server found datagrams missing or wrong"
    );
}

fn wait_for_line(out: &mut impl Read, want: &str) {
    let mut seen = Vec::new();
    let mut byte = [0u8; 1];
    let deadline = Instant::now() + T;
    while Instant::now() < deadline {
        if out.read(&mut byte).unwrap() == 0 {
            break;
        }
        seen.push(byte[0]);
        if String::from_utf8_lossy(&seen).contains(want) {
            return;
        }
    }
    panic!(
        "the child never said {want}: {}",
        String::from_utf8_lossy(&seen)
    );
}

const UDP_SIZES: [usize; 7] = [1, 64, 512, 1400, 1472, 3000, 8000];
const UDP_EACH: usize = 20;

/// The children run inside the namespaces.
#[test]
#[ignore = "run inside a network namespace by the tests of this file"]
fn child_entry() {
    let Ok(spec) = std::env::var(CHILD) else {
        return;
    };
    let parts: Vec<&str> = spec.split('|').collect();
    let addr: SocketAddr = parts[1].parse().unwrap();
    match parts[0] {
        "tcp-server" => {
            let bytes: u64 = parts[2].parse().unwrap();
            let l = TcpListener::bind(addr).unwrap();
            println!("LISTENING");
            std::io::stdout().flush().unwrap();
            let (mut s, _) = l.accept().unwrap();
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0u64;
            loop {
                let n = s.read(&mut buf).unwrap();
                if n == 0 {
                    break;
                }
                for (i, &b) in buf[..n].iter().enumerate() {
                    assert_eq!(b, stream_byte(at + i as u64), "byte {}", at + i as u64);
                }
                at += n as u64;
            }
            assert_eq!(at, bytes, "stream length");
        }
        "tcp-client" => {
            let bytes: u64 = parts[2].parse().unwrap();
            let deadline = Instant::now() + T;
            let mut s = loop {
                match TcpStream::connect_timeout(&addr, T) {
                    Ok(s) => break s,
                    Err(e) if Instant::now() < deadline => {
                        eprintln!("connect: {e}; again");
                        std::thread::sleep(Duration::from_millis(100));
                    }
                    Err(e) => panic!("connect {addr}: {e}"),
                }
            };
            let mut buf = vec![0u8; 1 << 16];
            let mut at = 0u64;
            while at < bytes {
                let n = usize::try_from((bytes - at).min(buf.len() as u64)).unwrap();
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = stream_byte(at + i as u64);
                }
                s.write_all(&buf[..n]).unwrap();
                at += n as u64;
            }
            s.shutdown(std::net::Shutdown::Write).unwrap();
            let mut rest = Vec::new();
            s.read_to_end(&mut rest).unwrap();
        }
        "udp-server" => {
            let sock = UdpSocket::bind(addr).unwrap();
            sock.set_read_timeout(Some(Duration::from_secs(3))).unwrap();
            println!("LISTENING");
            std::io::stdout().flush().unwrap();
            let mut buf = vec![0u8; 9000];
            let mut got = std::collections::HashMap::<usize, usize>::new();
            while let Ok(n) = sock.recv(&mut buf) {
                // Every datagram: its size's pattern, intact.
                let ok = (0..n).all(|i| buf[i] == stream_byte((n + i) as u64));
                assert!(ok, "a {n}-byte datagram arrived corrupted");
                *got.entry(n).or_default() += 1;
                if got.values().sum::<usize>() == UDP_SIZES.len() * UDP_EACH {
                    break;
                }
            }
            for size in UDP_SIZES {
                let n = got.get(&size).copied().unwrap_or(0);
                assert!(
                    n * 10 >= UDP_EACH * 9,
                    "{n} of {UDP_EACH} datagrams of {size} bytes"
                );
            }
        }
        "udp-client" => {
            let any: SocketAddr = if addr.is_ipv6() {
                "[::]:0"
            } else {
                "0.0.0.0:0"
            }
            .parse()
            .unwrap();
            let sock = UdpSocket::bind(any).unwrap();
            for _ in 0..UDP_EACH {
                for size in UDP_SIZES {
                    let d: Vec<u8> = (0..size).map(|i| stream_byte((size + i) as u64)).collect();
                    sock.send_to(&d, addr).unwrap();
                    std::thread::sleep(Duration::from_millis(2));
                }
            }
        }
        other => panic!("unknown child role {other}"),
    }
}

fn names(tag: &str) -> (String, String, String) {
    let id = std::process::id() % 10000;
    (
        format!("pvb{tag}{id}"),
        format!("pvf{tag}{id}"),
        format!("pvg{tag}{id}"),
    )
}

#[test]
fn the_kernel_stack_runs_over_pvnet_ipv4_ipv6_tcp_udp() {
    needs_root!("the_kernel_stack_runs_over_pvnet_ipv4_ipv6_tcp_udp");
    let _one = serial();
    let (b, f, _) = names("a");
    let back_ns = Netns::new(format!("{b}ns"));
    let front_ns = Netns::new(format!("{f}ns"));
    let tap = Tap::open(&b, 1).unwrap();
    let backend = Backend::start("a", tap);
    back_ns.adopt(
        &b,
        [0x02, 0, 0, 0x77, 0, 1],
        "10.77.0.1/24",
        "fd77::1/64",
        1500,
    );
    let front = Front::start(&backend.path, &f, choice(2, 1500, true));
    front_ns.adopt(
        &f,
        choice(2, 1500, true).mac,
        "10.77.0.2/24",
        "fd77::2/64",
        1500,
    );

    front_ns.ping("10.77.0.1", 56);
    back_ns.ping("10.77.0.2", 56);
    front_ns.ping("fd77::1", 56);
    back_ns.ping("fd77::2", 56);
    // Full-size frames, and an ICMP datagram the kernel fragments.
    front_ns.ping("10.77.0.1", 1472);

    let up = tcp(&front_ns, &back_ns, "10.77.0.1:5201", 256 << 20);
    let down = tcp(&back_ns, &front_ns, "[fd77::2]:5202", 64 << 20);
    eprintln!(
        "TCP over pvnet: {up:.2} Gbit/s guest to host (IPv4), {down:.2} host to guest (IPv6)"
    );
    udp(&front_ns, &back_ns, "10.77.0.1:5301");
    udp(&back_ns, &front_ns, "[fd77::2]:5302");

    let bridge = front.stop();
    let stats = backend.stop();
    eprintln!("backend {stats:?}\nfrontend {bridge:?}");
    assert_eq!(stats.bad_offload + stats.refused, 0, "{stats:?}");
    assert!(stats.to_host > 0 && stats.from_host > 0);
}

#[test]
fn several_queues_carry_checked_tcp_both_ways() {
    needs_root!("several_queues_carry_checked_tcp_both_ways");
    let _one = serial();
    let (b, f, _) = names("q");
    let back_ns = Netns::new(format!("{b}ns"));
    let front_ns = Netns::new(format!("{f}ns"));
    let backend = Backend::start("q", Tap::open(&b, 2).unwrap());
    back_ns.adopt(
        &b,
        [0x02, 0, 0, 0x77, 2, 1],
        "10.76.0.1/24",
        "fd76::1/64",
        1500,
    );
    let mut c = choice(4, 1500, true);
    c.queues = 2;
    let front = Front::start(&backend.path, &f, c.clone());
    front_ns.adopt(&f, c.mac, "10.76.0.2/24", "fd76::2/64", 1500);
    front_ns.ping("10.76.0.1", 56);
    back_ns.ping("fd76::2", 56);
    // Several connections: the kernel spreads them over the TAP's queues by flow.
    for port in 5211..5214 {
        tcp(&front_ns, &back_ns, &format!("10.76.0.1:{port}"), 64 << 20);
        tcp(
            &back_ns,
            &front_ns,
            &format!("[fd76::2]:{}", port + 10),
            16 << 20,
        );
    }
    let bridge = front.stop();
    let stats = backend.stop();
    eprintln!("backend {stats:?}\nfrontend {bridge:?}");
    assert_eq!(stats.bad_offload + stats.refused, 0, "{stats:?}");
}

#[test]
fn jumbo_frames_cross_with_mtu_9000() {
    needs_root!("jumbo_frames_cross_with_mtu_9000");
    let _one = serial();
    let (b, f, _) = names("j");
    let back_ns = Netns::new(format!("{b}ns"));
    let front_ns = Netns::new(format!("{f}ns"));
    let backend = Backend::start("j", Tap::open(&b, 1).unwrap());
    back_ns.adopt(
        &b,
        [0x02, 0, 0, 0x77, 1, 1],
        "10.78.0.1/24",
        "fd78::1/64",
        9000,
    );
    // Without GSO: every frame up to 9000 bytes crosses as it is.
    let c = choice(3, 9000, false);
    let front = Front::start(&backend.path, &f, c.clone());
    front_ns.adopt(&f, c.mac, "10.78.0.2/24", "fd78::2/64", 9000);
    front_ns.ping("10.78.0.1", 8972);
    back_ns.ping("fd78::2", 8952);
    let up = tcp(&front_ns, &back_ns, "10.78.0.1:5203", 256 << 20);
    let down = tcp(&back_ns, &front_ns, "10.78.0.2:5204", 64 << 20);
    eprintln!("TCP over pvnet at MTU 9000: {up:.2} Gbit/s up, {down:.2} down");
    udp(&front_ns, &back_ns, "10.78.0.1:5303");
    drop(front);
    let stats = backend.stop();
    assert_eq!(stats.bad_offload + stats.refused, 0, "{stats:?}");
}

#[test]
fn a_frontend_without_gso_beside_one_with_it_gets_correct_traffic() {
    needs_root!("a_frontend_without_gso_beside_one_with_it_gets_correct_traffic");
    let _one = serial();
    let (b, f, g) = names("m");
    let back_ns = Netns::new(format!("{b}ns"));
    let gso_ns = Netns::new(format!("{f}ns"));
    let plain_ns = Netns::new(format!("{g}ns"));
    let backend = Backend::start("m", Tap::open(&b, 1).unwrap());
    back_ns.adopt(
        &b,
        [0x02, 0, 0, 0x77, 2, 1],
        "10.79.0.1/24",
        "fd79::1/64",
        1500,
    );
    let with = choice(4, 1500, true);
    let mut without = choice(5, 1500, false);
    // Neither GSO nor checksum offload: everything done in software for it.
    without.ipv4_csum_offload = false;
    without.ipv6_csum_offload = false;
    let f1 = Front::start(&backend.path, &f, with.clone());
    gso_ns.adopt(&f, with.mac, "10.79.0.2/24", "fd79::2/64", 1500);
    let f2 = Front::start(&backend.path, &g, without.clone());
    plain_ns.adopt(&g, without.mac, "10.79.0.3/24", "fd79::3/64", 1500);

    // The host's TAP now hands the backend GSO packets (one vif takes them): the plain one
    // gets them segmented, the other whole.
    tcp(&back_ns, &plain_ns, "10.79.0.3:5205", 64 << 20);
    tcp(&back_ns, &gso_ns, "10.79.0.2:5206", 64 << 20);
    // Guest to guest through the switch: GSO packets from one, segmented for the other.
    tcp(&gso_ns, &plain_ns, "[fd79::3]:5207", 64 << 20);
    tcp(&plain_ns, &gso_ns, "10.79.0.2:5208", 16 << 20);
    plain_ns.ping("10.79.0.2", 1000);
    udp(&back_ns, &plain_ns, "10.79.0.3:5304");
    drop((f1, f2));
    let stats = backend.stop();
    eprintln!("backend {stats:?}");
    assert!(stats.segmented > 0, "nothing needed segmenting: {stats:?}");
    assert!(
        stats.checksummed > 0,
        "nothing needed a checksum: {stats:?}"
    );
    assert_eq!(stats.bad_offload + stats.refused, 0, "{stats:?}");
}

/// The `smoltcp_client` example of this crate (built by `cargo test` beside this binary).
fn example(name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap();
    let dir = exe.parent().unwrap().parent().unwrap().join("examples");
    dir.join(name)
}

#[test]
fn smoltcp_sends_checked_tcp_to_a_linux_server() {
    needs_root!("smoltcp_sends_checked_tcp_to_a_linux_server");
    let _one = serial();
    let (b, _, _) = names("s");
    let back_ns = Netns::new(format!("{b}ns"));
    let backend = Backend::start("s", Tap::open(&b, 1).unwrap());
    back_ns.adopt(
        &b,
        [0x02, 0, 0, 0x77, 3, 1],
        "10.80.0.1/24",
        "fd80::1/64",
        1500,
    );
    let bytes: u64 = 64 << 20;
    let mut server = back_ns.child("tcp-server", &["10.80.0.1:5209".into(), bytes.to_string()]);
    let mut out = server.stdout.take().unwrap();
    wait_for_line(&mut out, "LISTENING");
    let client = Command::new(example("smoltcp_client"))
        .args(["--socket", backend.path.to_str().unwrap()])
        .args(["--ip", "10.80.0.2/24", "--server", "10.80.0.1:5209"])
        .args(["--bytes", &bytes.to_string()])
        .output()
        .unwrap();
    eprintln!("{}", String::from_utf8_lossy(&client.stdout).trim());
    assert!(
        client.status.success(),
        "the smoltcp client failed: {}",
        String::from_utf8_lossy(&client.stderr)
    );
    assert!(
        server.wait().unwrap().success(),
        "the Linux server found the stream wrong"
    );
    let stats = backend.stop();
    assert_eq!(stats.bad_offload + stats.refused, 0, "{stats:?}");
}

/// An Ethernet + IPv4 + TCP frame of `payload` bytes from `src` to `dst`, its TCP checksum
/// left blank (a GSO packet as a guest's stack hands it down).
fn tcp4_frame(src: [u8; 6], dst: [u8; 6], payload: usize) -> Vec<u8> {
    let mut f = Vec::with_capacity(54 + payload);
    f.extend_from_slice(&dst);
    f.extend_from_slice(&src);
    f.extend_from_slice(&[0x08, 0x00]);
    let total = u16::try_from(40 + payload).unwrap();
    let mut ip = [
        0x45, 0, 0, 0, 0, 1, 0x40, 0, 64, 6, 0, 0, 10, 81, 0, 2, 10, 81, 0, 3,
    ];
    ip[2..4].copy_from_slice(&total.to_be_bytes());
    let sum = ip
        .chunks(2)
        .map(|w| u32::from(u16::from_be_bytes([w[0], w[1]])))
        .sum::<u32>();
    let sum = (sum & 0xffff) + (sum >> 16);
    let sum = !u16::try_from((sum & 0xffff) + (sum >> 16)).unwrap();
    ip[10..12].copy_from_slice(&sum.to_be_bytes());
    f.extend_from_slice(&ip);
    // Ports 5300 -> 5301, sequence 1, ack 0, data offset 5, ACK|PSH, window 65535.
    f.extend_from_slice(&[
        0x14, 0xb4, 0x14, 0xb5, 0, 0, 0, 1, 0, 0, 0, 0, 0x50, 0x18, 0xff, 0xff, 0, 0, 0, 0,
    ]);
    f.extend((0..payload).map(|i| stream_byte(i as u64)));
    f
}

/// Frames `nic` receives within `for_how_long`, with their lengths.
fn drain(nic: &mut Netfront, for_how_long: Duration) -> Vec<usize> {
    let mut got = Vec::new();
    let end = Instant::now() + for_how_long;
    while Instant::now() < end {
        if nic.receive(256, |rx| got.push(rx.data.len())).unwrap() == 0 {
            nic.wait(Some(Duration::from_millis(10))).unwrap();
        }
    }
    got
}

#[test]
fn a_tiny_segment_size_is_refused_not_segmented() {
    needs_root!("a_tiny_segment_size_is_refused_not_segmented");
    let _one = serial();
    // Two netfronts of this process behind the TAP uplink's switch: one with GSO, one
    // without. The switch segments the first one's GSO packets for the second, up to 256
    // segments a packet: a guest choosing a tiny segment size cannot make the backend cut
    // and checksum thousands of frames for one packet.
    let (b, _, _) = names("c");
    let backend = Backend::start("c", Tap::open(&b, 1).unwrap());
    let with = choice(8, 1500, true);
    let without = choice(9, 1500, false);
    let connect = |choice: &FrontendChoice| {
        let mut cfg = NetfrontConfig::default();
        cfg.choice = choice.clone();
        Netfront::connect(&backend.path, cfg).unwrap()
    };
    let mut sender = connect(&with);
    let mut plain = connect(&without);
    let frame = tcp4_frame(with.mac, without.mac, 60_000);
    let gso = |size| netif::Offload {
        csum_blank: true,
        gso: Some(netif::Gso {
            kind: netif::GsoKind::TcpV4,
            size,
        }),
        ..netif::Offload::default()
    };
    // 60,000 bytes at 100 a segment: 600 segments, refused.
    sender.send(&frame, gso(100)).unwrap();
    let refused = drain(&mut plain, Duration::from_millis(300));
    // At 1000 a segment: 60 segments of 1054 bytes, delivered.
    sender.send(&frame, gso(1000)).unwrap();
    let segmented = drain(&mut plain, Duration::from_millis(300));
    drop((sender, plain));
    let stats = backend.stop();
    eprintln!("backend {stats:?}");
    assert!(
        refused.is_empty(),
        "{} frames of the refused packet",
        refused.len()
    );
    assert_eq!(segmented, vec![14 + 40 + 1000; 60]);
    assert_eq!(stats.bad_offload, 1, "{stats:?}");
    assert_eq!(stats.segmented, 1, "{stats:?}");
}
