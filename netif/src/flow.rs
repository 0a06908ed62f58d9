//! Flow hashing for queue steering: every frame of one flow lands on the same queue, so a
//! flow's frames are never reordered across queues.

use crate::wire::ETH_HLEN;

const ETH_P_IPV4: u16 = 0x0800;
const ETH_P_IPV6: u16 = 0x86dd;
const ETH_P_VLAN: u16 = 0x8100;
const IPPROTO_TCP: u8 = 6;
const IPPROTO_UDP: u8 = 17;

/// FNV-1a, 32 bits: tiny, no tables, good enough to spread flows over a handful of queues.
#[derive(Clone, Copy)]
struct Fnv(u32);

impl Fnv {
    fn new() -> Self {
        Self(0x811c_9dc5)
    }

    fn bytes(mut self, b: &[u8]) -> Self {
        for &x in b {
            self.0 = (self.0 ^ u32::from(x)).wrapping_mul(0x0100_0193);
        }
        self
    }
}

fn be16(b: &[u8], at: usize) -> Option<u16> {
    Some(u16::from_be_bytes([*b.get(at)?, *b.get(at + 1)?]))
}

/// The flow hash of an Ethernet frame (or its first bytes: headers are all it reads).
///
/// IPv4 and IPv6 frames hash their addresses and protocol, plus the TCP or UDP ports when the
/// frame is not a fragment; anything else (or a truncated header) hashes the MAC addresses
/// and EtherType. One 802.1Q tag is skipped. Pure and total: any byte string gives a hash.
pub fn flow_hash(frame: &[u8]) -> u32 {
    let l2 = Fnv::new().bytes(frame.get(..ETH_HLEN as usize).unwrap_or(frame));
    let mut at = 12;
    let Some(mut ethertype) = be16(frame, at) else {
        return l2.0;
    };
    if ethertype == ETH_P_VLAN {
        at += 4;
        let Some(inner) = be16(frame, at) else {
            return l2.0;
        };
        ethertype = inner;
    }
    let ip = at + 2;
    let l3 = match ethertype {
        ETH_P_IPV4 => ipv4(frame, ip),
        ETH_P_IPV6 => ipv6(frame, ip),
        _ => None,
    };
    l3.map_or(l2.0, |h| h.0)
}

fn ipv4(frame: &[u8], ip: usize) -> Option<Fnv> {
    let ihl = usize::from(frame.get(ip)? & 0x0f) * 4;
    let proto = *frame.get(ip + 9)?;
    let addrs = frame.get(ip + 12..ip + 20)?;
    let h = Fnv::new().bytes(addrs).bytes(&[proto]);
    // More-fragments flag or a fragment offset: only the first fragment has ports.
    let fragment = be16(frame, ip + 6)? & 0x3fff != 0;
    Some(ports(frame, ip + ihl, proto, h, fragment))
}

fn ipv6(frame: &[u8], ip: usize) -> Option<Fnv> {
    let next = *frame.get(ip + 6)?;
    let addrs = frame.get(ip + 8..ip + 40)?;
    let h = Fnv::new().bytes(addrs).bytes(&[next]);
    Some(ports(frame, ip + 40, next, h, false))
}

fn ports(frame: &[u8], l4: usize, proto: u8, h: Fnv, fragment: bool) -> Fnv {
    match (proto, fragment, frame.get(l4..l4 + 4)) {
        (IPPROTO_TCP | IPPROTO_UDP, false, Some(p)) => h.bytes(p),
        _ => h,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn udp4(src_port: u16, payload: u8) -> [u8; 64] {
        let mut f = [0u8; 64];
        f[..6].copy_from_slice(&[2, 0, 0, 0, 0, 1]);
        f[6..12].copy_from_slice(&[2, 0, 0, 0, 0, 2]);
        f[12..14].copy_from_slice(&ETH_P_IPV4.to_be_bytes());
        f[14] = 0x45;
        f[23] = IPPROTO_UDP;
        f[26..30].copy_from_slice(&[10, 0, 0, 1]);
        f[30..34].copy_from_slice(&[10, 0, 0, 2]);
        f[34..36].copy_from_slice(&src_port.to_be_bytes());
        f[36..38].copy_from_slice(&53u16.to_be_bytes());
        f[42..].fill(payload);
        f
    }

    #[test]
    fn same_flow_same_hash_whatever_the_payload() {
        assert_eq!(flow_hash(&udp4(1000, 1)), flow_hash(&udp4(1000, 2)));
    }

    #[test]
    fn ports_separate_flows() {
        let hashes: std::collections::BTreeSet<u32> =
            (1000..1064).map(|p| flow_hash(&udp4(p, 0))).collect();
        assert!(hashes.len() > 60, "ports spread: {} distinct", hashes.len());
    }

    #[test]
    fn fragments_ignore_ports() {
        let (mut a, mut b) = (udp4(1000, 0), udp4(2000, 0));
        for f in [&mut a, &mut b] {
            f[20] = 0x20; // more fragments
        }
        assert_eq!(flow_hash(&a), flow_hash(&b));
    }

    #[test]
    fn any_prefix_hashes_without_panicking() {
        let f = udp4(1000, 7);
        for n in 0..=f.len() {
            let _ = flow_hash(&f[..n]);
        }
    }
}
