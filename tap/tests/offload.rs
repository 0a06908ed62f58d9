//! Offload translation against the headers Linux writes (measured on this machine kind: see
//! issue 12), both ways, and the software fallbacks checked with etherparse's own checksum
//! code.

use etherparse::{NetSlice, SlicedPacket, TransportSlice};
use netif::{Gso, GsoKind, Offload};
use proptest::prelude::*;
use pvnet_tap::testing::{payload_byte, tcp_frame, udp_frame};
use pvnet_tap::{OffloadError, VnetHdr, fill_checksum, flags, gso, segment};

fn hdr(f: u8, g: u8, hdr_len: u16, gso_size: u16, start: u16, offset: u16) -> VnetHdr {
    VnetHdr {
        flags: f,
        gso_type: g,
        hdr_len,
        gso_size,
        csum_start: start,
        csum_offset: offset,
        num_buffers: 0,
    }
}

fn partial() -> Offload {
    Offload {
        csum_blank: true,
        data_validated: true,
        gso: None,
    }
}

fn with_gso(kind: GsoKind, size: u16) -> Offload {
    Offload {
        gso: Some(Gso { kind, size }),
        ..partial()
    }
}

/// Whether the L4 checksum (and IPv4's header checksum) of `frame` is correct, by
/// etherparse's own arithmetic.
fn checksums_ok(frame: &[u8]) -> bool {
    let p = SlicedPacket::from_ethernet(frame).unwrap();
    let (ip4, ip6) = match &p.net {
        Some(NetSlice::Ipv4(ip)) => (Some(ip.header().to_header()), None),
        Some(NetSlice::Ipv6(ip)) => (None, Some(ip.header().to_header())),
        _ => panic!("not IP"),
    };
    if ip4
        .as_ref()
        .is_some_and(|h| h.calc_header_checksum() != h.header_checksum)
    {
        return false;
    }
    match &p.transport {
        Some(TransportSlice::Tcp(t)) => {
            let th = t.to_header();
            let want = match (&ip4, &ip6) {
                (Some(h), _) => th.calc_checksum_ipv4(h, t.payload()).unwrap(),
                (_, Some(h)) => th.calc_checksum_ipv6(h, t.payload()).unwrap(),
                _ => unreachable!(),
            };
            want == th.checksum
        }
        Some(TransportSlice::Udp(u)) => {
            let uh = u.to_header();
            let want = match (&ip4, &ip6) {
                (Some(h), _) => uh.calc_checksum_ipv4(h, u.payload()).unwrap(),
                (_, Some(h)) => uh.calc_checksum_ipv6(h, u.payload()).unwrap(),
                _ => unreachable!(),
            };
            want == uh.checksum
        }
        _ => panic!("not TCP or UDP"),
    }
}

/// What the kernel does with a partial checksum: sums from `start` to the end of the IP
/// packet with the field as it is (the pseudo-header seed), and stores the complement.
fn complete_partial(frame: &mut [u8], start: usize, offset: usize) {
    let mut sum = 0u32;
    for c in frame[start..].chunks(2) {
        sum += u32::from(u16::from_be_bytes([c[0], *c.get(1).unwrap_or(&0)]));
    }
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    let csum = !u16::try_from(sum).unwrap();
    frame[start + offset..start + offset + 2].copy_from_slice(&csum.to_be_bytes());
}

#[test]
fn the_headers_linux_writes_translate_to_netif() {
    let v4 = tcp_frame(false, 32, 3000);
    let v6 = tcp_frame(true, 32, 3000);
    let udp = udp_frame(false, 3000);
    // TCPv4 GSO: 1, 1, 66, 1448, 34, 16.
    assert_eq!(
        hdr(1, 1, 66, 1448, 34, 16).to_offload(&v4),
        Ok(with_gso(GsoKind::TcpV4, 1448))
    );
    // TCPv6 GSO: 1, 4, 86, 1428, 54, 16.
    assert_eq!(
        hdr(1, 4, 86, 1428, 54, 16).to_offload(&v6),
        Ok(with_gso(GsoKind::TcpV6, 1428))
    );
    // The ECN bit rides along (netif has no flag of its own for it).
    assert_eq!(
        hdr(1, 1 | gso::ECN, 66, 1448, 34, 16).to_offload(&v4),
        Ok(with_gso(GsoKind::TcpV4, 1448))
    );
    // UDP with UDP_SEGMENT: 1, 5, 42, 1400, 34, 6: no netif form.
    assert!(matches!(
        hdr(1, 5, 42, 1400, 34, 6).to_offload(&udp),
        Err(OffloadError::Unsupported(_))
    ));
    // Plain UDP: 1, 0, -, -, 34, 6.
    assert_eq!(hdr(1, 0, 0, 0, 34, 6).to_offload(&udp), Ok(partial()));
    // No offloads negotiated: whole, checksummed, flags 0.
    assert_eq!(
        hdr(0, 0, 0, 0, 0, 0).to_offload(&v4),
        Ok(Offload::default())
    );
    assert_eq!(
        hdr(flags::DATA_VALID, 0, 0, 0, 0, 0).to_offload(&v4),
        Ok(Offload {
            data_validated: true,
            ..Offload::default()
        })
    );
    // A header that disagrees with the frame.
    for bad in [
        hdr(1, 1, 66, 1448, 35, 16),
        hdr(1, 1, 66, 1448, 34, 6),
        hdr(1, 4, 86, 1428, 54, 16), // TCPv6 GSO of an IPv4 packet
        hdr(1, 1, 66, 0, 34, 16),
        hdr(0, 1, 66, 1448, 34, 16), // GSO without a partial checksum
    ] {
        assert!(
            matches!(bad.to_offload(&v4), Err(OffloadError::BadFrame(_))),
            "{bad:?}"
        );
    }
}

#[test]
fn the_first_bytes_are_enough_and_a_cut_header_is_refused() {
    // What the TAP bridge does: the frame stays in shared memory, its head is copied out.
    let v4 = tcp_frame(false, 32, 3000);
    let v6 = tcp_frame(true, 32, 3000);
    let gso4 = hdr(1, 1, 66, 1448, 34, 16);
    let gso6 = hdr(1, 4, 86, 1428, 54, 16);
    assert_eq!(gso4.to_offload(&v4[..256]), gso4.to_offload(&v4));
    assert_eq!(gso6.to_offload(&v6[..128]), gso6.to_offload(&v6));
    assert_eq!(
        gso4.to_offload(&v4[..66]),
        Ok(with_gso(GsoKind::TcpV4, 1448))
    );
    // The TCP header itself cut short.
    for cut in [14, 30, 40, 60] {
        assert!(
            matches!(gso4.to_offload(&v4[..cut]), Err(OffloadError::BadFrame(_))),
            "cut at {cut}"
        );
    }
}

#[test]
fn netif_offloads_translate_to_the_headers_linux_expects() {
    let mut v4 = tcp_frame(false, 32, 3000);
    let mut v6 = tcp_frame(true, 32, 3000);
    let mut udp4 = udp_frame(false, 100);
    let mut udp6 = udp_frame(true, 100);
    assert_eq!(
        VnetHdr::from_offload(&mut v4, with_gso(GsoKind::TcpV4, 1448)),
        Ok(hdr(1, 1, 66, 1448, 34, 16))
    );
    assert_eq!(
        VnetHdr::from_offload(&mut v6, with_gso(GsoKind::TcpV6, 1428)),
        Ok(hdr(1, 4, 86, 1428, 54, 16))
    );
    assert_eq!(
        VnetHdr::from_offload(&mut udp4, partial()),
        Ok(hdr(1, 0, 0, 0, 34, 6))
    );
    assert_eq!(
        VnetHdr::from_offload(&mut udp6, partial()),
        Ok(hdr(1, 0, 0, 0, 54, 6))
    );
    let validated = Offload {
        data_validated: true,
        ..Offload::default()
    };
    assert_eq!(
        VnetHdr::from_offload(&mut v4, validated),
        Ok(hdr(flags::DATA_VALID, 0, 0, 0, 0, 0))
    );
    assert_eq!(
        VnetHdr::from_offload(&mut v4, Offload::default()),
        Ok(VnetHdr::default())
    );
    // GSO of the wrong IP version, or of UDP, cannot be described.
    assert!(VnetHdr::from_offload(&mut v4, with_gso(GsoKind::TcpV6, 1448)).is_err());
    assert!(VnetHdr::from_offload(&mut udp4, with_gso(GsoKind::TcpV4, 1448)).is_err());
}

#[test]
fn a_gso_packet_without_csum_blank_is_made_partial_as_netback_does() {
    for ipv6 in [false, true] {
        let whole = tcp_frame(ipv6, 32, 5000);
        let mut frame = whole.clone();
        let kind = if ipv6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
        let off = Offload {
            csum_blank: false,
            data_validated: true,
            gso: Some(Gso { kind, size: 1400 }),
        };
        let h = VnetHdr::from_offload(&mut frame, off).unwrap();
        assert_eq!(h.flags, flags::NEEDS_CSUM);
        // The field now holds the pseudo-header seed: completed as the kernel completes a
        // partial checksum, it is the frame's correct checksum again.
        assert_ne!(frame, whole);
        complete_partial(
            &mut frame,
            usize::from(h.csum_start),
            usize::from(h.csum_offset),
        );
        assert_eq!(frame, whole, "ipv6 {ipv6}");
    }
}

/// `frame` with 4 bytes of IPv4 options (three NOPs and an end of list) after its header.
fn with_ipv4_options(frame: &[u8]) -> Vec<u8> {
    let mut f = frame[..34].to_vec();
    f.extend_from_slice(&[1, 1, 1, 0]);
    f.extend_from_slice(&frame[34..]);
    f[14] = 0x46;
    let total = u16::from_be_bytes([f[16], f[17]]) + 4;
    f[16..18].copy_from_slice(&total.to_be_bytes());
    f
}

/// `frame` (IPv6) with an 8-byte hop-by-hop options header before its L4 header.
fn with_hop_by_hop(frame: &[u8]) -> Vec<u8> {
    let next = frame[14 + 6];
    let mut f = frame[..54].to_vec();
    f.extend_from_slice(&[next, 0, 1, 4, 0, 0, 0, 0]);
    f.extend_from_slice(&frame[54..]);
    f[14 + 6] = 0;
    let len = u16::from_be_bytes([f[18], f[19]]) + 8;
    f[18..20].copy_from_slice(&len.to_be_bytes());
    f
}

#[test]
fn ipv4_options_and_ipv6_extension_headers_move_the_l4_header() {
    let mut v4 = with_ipv4_options(&tcp_frame(false, 20, 100));
    assert_eq!(
        VnetHdr::from_offload(&mut v4, partial()),
        Ok(hdr(1, 0, 0, 0, 38, 16))
    );
    let mut v6 = with_hop_by_hop(&tcp_frame(true, 20, 100));
    assert_eq!(
        VnetHdr::from_offload(&mut v6, with_gso(GsoKind::TcpV6, 60)),
        Ok(hdr(1, 4, 82, 60, 62, 16))
    );
    // And the software fallbacks find them too: the checksums come out right by
    // etherparse's own arithmetic (the IPv4 header's is recomputed first: the options
    // changed it; etherparse sums in host order, so its result is written in host order).
    let ihl = 24;
    v4[24..26].copy_from_slice(&[0, 0]);
    let hsum = etherparse::checksum::Sum16BitWords::new()
        .add_slice(&v4[14..14 + ihl])
        .ones_complement();
    v4[24..26].copy_from_slice(&hsum.to_ne_bytes());
    v4[38 + 16] ^= 0xff;
    assert!(!checksums_ok(&v4));
    fill_checksum(&mut v4).unwrap();
    assert!(checksums_ok(&v4));
    v6[62 + 16] ^= 0xff;
    fill_checksum(&mut v6).unwrap();
    assert!(checksums_ok(&v6));
}

#[test]
fn fragments_and_other_protocols_are_refused() {
    let mut frag = tcp_frame(false, 20, 100);
    frag[20] |= 0x20; // more fragments
    assert!(matches!(
        VnetHdr::from_offload(&mut frag, partial()),
        Err(OffloadError::BadFrame(_))
    ));
    let mut arp = vec![0u8; 60];
    arp[12..14].copy_from_slice(&[0x08, 0x06]);
    assert!(VnetHdr::from_offload(&mut arp, partial()).is_err());
    // Cut short inside the TCP header.
    let mut short = tcp_frame(false, 32, 0);
    short.truncate(14 + 20 + 10);
    assert!(VnetHdr::from_offload(&mut short, partial()).is_err());
    assert!(fill_checksum(&mut short).is_err());
}

#[test]
fn checksums_are_filled_in_from_scratch() {
    for frame in [
        tcp_frame(false, 32, 1000),
        tcp_frame(true, 20, 999),
        udp_frame(false, 1001),
        udp_frame(true, 7),
    ] {
        assert!(checksums_ok(&frame));
        let mut f = frame.clone();
        let at = 14 + if frame[12] == 0x86 { 40 } else { 20 };
        let field = at
            + if frame[23] == 17 || frame[20] == 17 {
                6
            } else {
                16
            };
        f[field] ^= 0x5a;
        assert!(!checksums_ok(&f));
        fill_checksum(&mut f).unwrap();
        assert_eq!(f, frame);
    }
}

#[test]
fn tcp_segmentation_splits_and_fixes_every_header() {
    for ipv6 in [false, true] {
        let big = tcp_frame(ipv6, 32, 3000);
        let mut segs = Vec::new();
        let n = segment(&big, 1448, |s| segs.push(s.to_vec())).unwrap();
        assert_eq!(n, 3);
        let l4 = 14 + if ipv6 { 40 } else { 20 };
        let mut data = Vec::new();
        for (i, s) in segs.iter().enumerate() {
            assert!(checksums_ok(s), "segment {i}: checksums");
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(TransportSlice::Tcp(t)) = &p.transport else {
                panic!("segment {i} is not TCP")
            };
            let expect_len = if i < 2 { 1448 } else { 104 };
            assert_eq!(t.payload().len(), expect_len);
            assert_eq!(
                t.sequence_number(),
                1_000_000 + 1448 * u32::try_from(i).unwrap()
            );
            assert_eq!(t.fin(), i == 2, "FIN only on the last");
            assert_eq!(t.psh(), i == 2, "PSH only on the last");
            assert_eq!(t.cwr(), i == 0, "CWR only on the first");
            assert!(t.ack());
            if !ipv6 {
                let Some(NetSlice::Ipv4(ip)) = &p.net else {
                    panic!()
                };
                assert_eq!(
                    ip.header().identification(),
                    u16::from_be_bytes([big[18], big[19]]).wrapping_add(u16::try_from(i).unwrap())
                );
            }
            // Addresses, ports and the acknowledgment are the super-packet's.
            assert_eq!(&s[..14], &big[..14], "Ethernet header");
            assert_eq!(&s[l4..l4 + 4], &big[l4..l4 + 4], "ports");
            assert_eq!(&s[l4 + 8..l4 + 12], &big[l4 + 8..l4 + 12], "acknowledgment");
            data.extend_from_slice(t.payload());
        }
        assert_eq!(data, (0..3000).map(payload_byte).collect::<Vec<_>>());
    }
    // A segment size of 0, or a packet that is not TCP, is refused and emits nothing.
    let mut emitted = 0;
    assert!(segment(&tcp_frame(false, 20, 10), 0, |_| emitted += 1).is_err());
    assert!(segment(&udp_frame(false, 3000), 1400, |_| emitted += 1).is_err());
    assert_eq!(emitted, 0);
}

proptest! {
    /// Whatever netif offload a TCP or UDP frame carries, the header made from it translates
    /// back to the same offload.
    #[test]
    fn netif_to_vnet_and_back_is_the_identity(
        ipv6 in any::<bool>(),
        tcp in any::<bool>(),
        opts in any::<bool>(),
        len in 0usize..9000,
        blank in any::<bool>(),
        validated in any::<bool>(),
        gso_size in prop::option::of(1u16..9000),
    ) {
        let mut frame = if tcp {
            tcp_frame(ipv6, if opts { 32 } else { 20 }, len)
        } else {
            udp_frame(ipv6, len)
        };
        let kind = if ipv6 { GsoKind::TcpV6 } else { GsoKind::TcpV4 };
        let gso = gso_size.filter(|_| tcp).map(|size| Gso { kind, size });
        let off = Offload { csum_blank: blank, data_validated: validated, gso };
        let h = VnetHdr::from_offload(&mut frame, off).unwrap();
        // netif's view of a partial checksum always has data_validated; GSO is made partial.
        let partial = blank || gso.is_some();
        let expect = Offload {
            csum_blank: partial,
            data_validated: validated || partial,
            gso,
        };
        prop_assert_eq!(h.to_offload(&frame), Ok(expect));
    }

    /// Segmenting at any size gives back the payload in order, every segment within the size
    /// and correctly checksummed.
    #[test]
    fn segments_carry_the_payload_in_order(
        ipv6 in any::<bool>(),
        len in 0usize..20000,
        mss in 1u16..9000,
    ) {
        let big = tcp_frame(ipv6, 32, len);
        let mut data = Vec::new();
        let mut count = 0;
        segment(&big, mss, |s| {
            let p = SlicedPacket::from_ethernet(s).unwrap();
            let Some(TransportSlice::Tcp(t)) = &p.transport else { panic!() };
            assert!(t.payload().len() <= usize::from(mss));
            assert!(checksums_ok(s));
            data.extend_from_slice(t.payload());
            count += 1;
        }).unwrap();
        prop_assert_eq!(count, len.div_ceil(usize::from(mss)).max(1));
        prop_assert_eq!(data, (0..len).map(payload_byte).collect::<Vec<_>>());
    }
}
