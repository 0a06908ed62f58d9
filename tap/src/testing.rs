//! Frames for tests (feature `test-utils`): Ethernet frames with correct headers and
//! checksums, built with etherparse.

use etherparse::{PacketBuilder, TcpOptionElement};

const SRC_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 1];
const DST_MAC: [u8; 6] = [0x02, 0, 0, 0, 0, 2];

/// The payload byte at position `i` of a test frame.
pub fn payload_byte(i: usize) -> u8 {
    u8::try_from(i % 251).unwrap_or(0)
}

fn payload(len: usize) -> Vec<u8> {
    (0..len).map(payload_byte).collect()
}

/// A TCP frame over IPv4 or IPv6 whose TCP header is 20 bytes, or 32 with timestamps (what
/// Linux sends), carrying `len` payload bytes (FIN, PSH and CWR set, to see where
/// segmentation leaves them); every checksum correct.
///
/// # Panics
/// If the packet cannot be built (`len` too large for the IP version).
pub fn tcp_frame(ipv6: bool, tcp_header_len: usize, len: usize) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let ip = if ipv6 {
        eth.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    };
    let mut tcp = ip
        .tcp(40000, 5201, 1_000_000, 65535)
        .ack(77)
        .psh()
        .fin()
        .cwr();
    if tcp_header_len == 32 {
        tcp = tcp
            .options(&[
                TcpOptionElement::Noop,
                TcpOptionElement::Noop,
                TcpOptionElement::Timestamp(1, 2),
            ])
            .expect("options fit");
    }
    let body = payload(len);
    let mut out = Vec::with_capacity(tcp.size(len));
    tcp.write(&mut out, &body).expect("a frame");
    out
}

/// A UDP frame over IPv4 or IPv6 carrying `len` payload bytes, checksum correct.
///
/// # Panics
/// If the packet cannot be built.
pub fn udp_frame(ipv6: bool, len: usize) -> Vec<u8> {
    let eth = PacketBuilder::ethernet2(SRC_MAC, DST_MAC);
    let ip = if ipv6 {
        eth.ipv6([0xfd; 16], [0xfe; 16], 64)
    } else {
        eth.ipv4([10, 0, 0, 1], [10, 0, 0, 2], 64)
    };
    let udp = ip.udp(40000, 5201);
    let body = payload(len);
    let mut out = Vec::with_capacity(udp.size(len));
    udp.write(&mut out, &body).expect("a frame");
    out
}
