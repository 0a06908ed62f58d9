//! TCP over pvnet entirely in user space: a netfront as a smoltcp device, no kernel stack
//! on the guest side. Connects to the backend at `--socket`, takes `--ip`, opens a TCP
//! connection to `--server` and sends `--bytes` bytes of the test stream (byte i is
//! `(7i + i / 4093) % 251`), then closes it and waits for the peer to acknowledge
//! everything. Exits non-zero on any failure; prints the rate.
//!
//! Against a backend with a TAP uplink and a Linux server in the backend's namespace (the
//! `tap` crate's tests run it so, as root):
//!
//! ```text
//! cargo run -p pvnet-tap --example smoltcp_client -- --socket /run/pvnet/b.sock \
//!     --ip 10.77.0.2/24 --server 10.77.0.1:5201 --bytes 67108864
//! ```

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::{Duration, Instant as StdInstant};

use clap::Parser;
use netfront::{Netfront, NetfrontConfig, SmoltcpDevice};
use smoltcp::iface::{Config, Interface, SocketSet};
use smoltcp::socket::tcp;
use smoltcp::time::Instant;
use smoltcp::wire::{EthernetAddress, IpAddress, IpCidr};

#[derive(Parser)]
struct Args {
    /// The backend's socket.
    #[arg(long)]
    socket: PathBuf,
    /// This end's address and prefix, e.g. 10.77.0.2/24.
    #[arg(long)]
    ip: String,
    /// The server to send to.
    #[arg(long)]
    server: SocketAddr,
    /// Bytes to send.
    #[arg(long, default_value_t = 64 << 20)]
    bytes: u64,
    /// The last byte of this netfront's MAC address (00:16:3e:77:01:xx).
    #[arg(long, default_value_t = 9)]
    mac: u8,
}

fn stream_byte(i: u64) -> u8 {
    u8::try_from((i * 7 + i / 4093) % 251).expect("below 251")
}

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args = Args::parse();
    let mut cfg = NetfrontConfig::default();
    cfg.choice.mac = [0x00, 0x16, 0x3e, 0x77, 0x01, args.mac];
    // smoltcp takes no frame larger than the MTU: no receive GSO.
    cfg.choice.gso_tcpv4 = false;
    cfg.choice.gso_tcpv6 = false;
    let mac = cfg.choice.mac;
    let nic = Netfront::connect(&args.socket, cfg)?;
    let mut device = SmoltcpDevice::new(nic);

    let (addr, prefix) = args.ip.split_once('/').ok_or("--ip is ADDRESS/PREFIX")?;
    let addr: IpAddress = addr.parse::<std::net::IpAddr>()?.into();
    let mut config = Config::new(EthernetAddress(mac).into());
    config.random_seed = u64::from(std::process::id());
    let start = StdInstant::now();
    let now =
        || Instant::from_micros(i64::try_from(start.elapsed().as_micros()).unwrap_or(i64::MAX));
    let mut iface = Interface::new(config, &mut device, now());
    iface.update_ip_addrs(|a| {
        a.push(IpCidr::new(addr, prefix.parse().expect("a prefix length")))
            .expect("room for one address");
    });

    let socket = tcp::Socket::new(
        tcp::SocketBuffer::new(vec![0; 256 << 10]),
        tcp::SocketBuffer::new(vec![0; 1 << 20]),
    );
    let mut sockets = SocketSet::new(vec![]);
    let handle = sockets.add(socket);
    let server: IpAddress = args.server.ip().into();
    sockets.get_mut::<tcp::Socket>(handle).connect(
        iface.context(),
        (server, args.server.port()),
        49152,
    )?;

    let mut sent = 0u64;
    let mut closing = false;
    let deadline = StdInstant::now() + Duration::from_secs(300);
    loop {
        iface.poll(now(), &mut device, &mut sockets);
        if let Some(e) = device.take_error() {
            return Err(e.into());
        }
        let s = sockets.get_mut::<tcp::Socket>(handle);
        if s.may_send() && sent < args.bytes {
            let total = args.bytes;
            sent += s.send(|buf| {
                let n = usize::try_from((total - sent).min(buf.len() as u64)).unwrap_or(0);
                for (i, b) in buf[..n].iter_mut().enumerate() {
                    *b = stream_byte(sent + i as u64);
                }
                (n, n as u64)
            })?;
        }
        if sent == args.bytes && !closing {
            s.close();
            closing = true;
        }
        // Everything sent and acknowledged, the connection shut: done.
        if closing && !s.is_active() {
            break;
        }
        if closing && s.send_queue() == 0 && s.state() == tcp::State::FinWait2 {
            break;
        }
        if StdInstant::now() > deadline {
            return Err(format!("timed out in {} after {sent} bytes", s.state()).into());
        }
        let delay = iface
            .poll_delay(now(), &sockets)
            .map_or(Duration::from_millis(10), |d| {
                Duration::from_micros(d.total_micros())
            })
            .min(Duration::from_millis(10));
        if !delay.is_zero() {
            device.nic().wait(Some(delay))?;
        }
    }
    let secs = start.elapsed().as_secs_f64();
    println!(
        "smoltcp over pvnet: {} bytes in {secs:.2} s, {:.2} Gbit/s, {} frames dropped at the device",
        args.bytes,
        args.bytes as f64 * 8.0 / secs / 1e9,
        device.dropped()
    );
    device.into_inner().close()?;
    Ok(())
}
