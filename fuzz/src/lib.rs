//! Fuzzing harnesses: one function per target, taking arbitrary bytes, checking the
//! invariants that must hold whatever the bytes are (no panic is the first). The AFL++
//! binaries in `src/bin` call them (`cargo afl build --release -p pvnet-fuzz --features
//! afl`, see `fuzz/README.md`); the proptests in `tests/` feed them the same kind of input
//! on every CI run.
#![forbid(unsafe_code)]
#![deny(missing_docs)]

use io_ring::{BackRing, SharedRegion};
use netif::wire::{RxRequest, RxResponse, TxRequest, TxResponse};
use netif::{MAX_DATA_SLOTS, RxPacket, Severity, TxPacket};

/// Slots read from `bytes`, `size` bytes each (a trailing partial slot is dropped).
fn slots<T: bytemuck::Pod>(bytes: &[u8]) -> Vec<T> {
    bytes
        .chunks_exact(size_of::<T>())
        .map(bytemuck::pod_read_unaligned)
        .collect()
}

/// The transmit parser (netback's view of a guest's requests): the bytes are a run of tx
/// slots. An accepted packet's fragments add up to its length, each stays inside its page,
/// and it uses no more slots than it was given; an error says how many slots it consumed,
/// at least one and no more than there were.
pub fn tx_parser(bytes: &[u8]) {
    let reqs: Vec<TxRequest> = slots(bytes);
    let mut p = TxPacket::default();
    match netif::parse_tx_into(&reqs, &mut p) {
        Ok(()) => {
            let total: u32 = p.fragments().iter().map(|f| u32::from(f.len)).sum();
            assert_eq!(total, u32::from(p.len), "fragments add up");
            assert!(p.slots <= reqs.len(), "no more slots than given");
            for f in p.fragments() {
                assert!(
                    u32::from(f.offset) + u32::from(f.len) <= 4096,
                    "inside a page"
                );
            }
        }
        Err(e) => {
            assert!(
                e.slots <= reqs.len().max(1),
                "an error consumes what was there"
            );
            if e.severity != Severity::Fatal {
                assert!(e.slots >= 1, "a dropped packet is answered");
            }
        }
    }
}

/// The receive parser (netfront's view of a backend's responses): the bytes are an id per
/// posted buffer then rx response slots. An accepted frame's fragments add up, stay inside
/// their pages and name only posted ids.
pub fn rx_parser(bytes: &[u8]) {
    let n = bytes
        .first()
        .map_or(0, |b| usize::from(*b) % (MAX_DATA_SLOTS + 2));
    let rest = bytes.get(1..).unwrap_or_default();
    let ids_len = (2 * n).min(rest.len());
    let posted: Vec<u16> = rest[..ids_len]
        .chunks_exact(2)
        .map(|c| u16::from_le_bytes([c[0], c[1]]))
        .collect();
    let rsps: Vec<RxResponse> = slots(&rest[ids_len..]);
    let mut p = RxPacket::default();
    match netif::parse_rx_into(&rsps, &posted, &mut p) {
        Ok(()) => {
            let total: u32 = p.fragments().iter().map(|f| u32::from(f.len)).sum();
            assert_eq!(total, p.len, "fragments add up");
            for f in p.fragments() {
                assert!(
                    u32::from(f.offset) + u32::from(f.len) <= 4096,
                    "inside a page"
                );
                assert!(posted.contains(&f.id), "a posted id");
            }
        }
        Err(e) => assert!(e.slots <= rsps.len().min(posted.len()).max(1)),
    }
}

/// The control plane: a message decoded from the bytes, then its keys through the checks the
/// other side makes: for a frontend's message the negotiation and resource checks of a
/// backend, for a backend's the frontend's reading of its offer (what it may then send, at
/// any MTU). A decoded message encodes back to the same bytes' meaning
/// (decode(encode(m)) == m).
pub fn control(bytes: &[u8]) {
    let Ok(msg) = xenbus::Message::decode(bytes) else {
        return;
    };
    let again = msg.encode().expect("a decoded message encodes");
    assert_eq!(
        xenbus::Message::decode(&again).as_ref(),
        Ok(&msg),
        "round trip"
    );
    let keys = match &msg {
        xenbus::Message::Backend { keys, .. } => {
            if let Ok(offer) = xenbus::BackendFeatures::from_keys(keys) {
                // Any MTU in range, chosen by the input's last two bytes (a backend's
                // message that decodes has at least four: kind, state, a key count).
                let n = bytes.len();
                let pick = u32::from(u16::from_le_bytes([bytes[n - 2], bytes[n - 1]]));
                let mtu = xenbus::MIN_MTU + pick % (xenbus::MAX_MTU - xenbus::MIN_MTU + 1);
                for mtu in [
                    mtu,
                    xenbus::MIN_MTU,
                    xenbus::MAX_MTU_WITHOUT_SG,
                    xenbus::MAX_MTU,
                ] {
                    tx_features(&offer, mtu);
                }
            }
            return;
        }
        xenbus::Message::Frontend { keys, .. } => keys,
        xenbus::Message::Refused(_) => return,
    };
    let offered = xenbus::BackendFeatures::default();
    if let Ok(choice) = xenbus::FrontendChoice::from_keys(keys, &offered) {
        assert!(choice.queues >= 1 && choice.queues <= offered.max_queues);
        let fds = bytes.len() % 40;
        if let Ok(r) = xenbus::Resources::from_keys(
            keys,
            choice.queues as usize,
            choice.split_event_channels,
            choice.rx_mode == xenbus::RxMode::Flip,
            fds,
        ) {
            assert_eq!(r.queues.len(), choice.queues as usize);
            assert!(r.frames < fds && r.grant_table < fds);
        }
    }
}

/// What a frontend of MTU `mtu` may send after the backend offered `offer`: never more than
/// netif carries, several slots only with `feature-sg`, GSO only with several slots.
fn tx_features(offer: &xenbus::BackendFeatures, mtu: u32) {
    let t = xenbus::TxFeatures::new(offer, mtu);
    assert!(t.max_len <= 65535 && t.max_len_gso <= 65535, "{t:?}");
    assert!(t.max_len_gso >= t.max_len, "{t:?}");
    assert!(
        t.sg || !(t.gso_tcpv4 || t.gso_tcpv6),
        "GSO without sg: {t:?}"
    );
    assert!(
        t.sg || t.max_len <= xenbus::MAX_MTU_WITHOUT_SG as usize + 14,
        "a frame longer than a page without sg: {t:?}"
    );
    assert_eq!(t.sg, offer.sg);
}

/// Ring indices (a backend attached to a page a guest wrote): the first 16 bytes are the
/// shared indices, the rest the slots. Consuming requests and answering them never panics,
/// never yields more requests than the ring holds, and a broken ring stays broken.
pub fn ring(bytes: &[u8]) {
    let page = SharedRegion::new_zeroed(4096);
    let n = bytes.len().min(4096) & !3;
    if n > 0 {
        let _ = page.copy_in(0, &bytes[..n]);
    }
    let Ok(mut back) = BackRing::<TxRequest, TxResponse>::attach(page) else {
        return;
    };
    let size = back.size() as usize;
    for _ in 0..3 {
        let taken = match back.requests() {
            Ok(reqs) => reqs.count(),
            Err(_) => {
                assert!(back.requests().is_err(), "a broken ring stays broken");
                return;
            }
        };
        assert!(taken <= size, "{taken} requests from a ring of {size}");
        for id in 0..taken {
            let rsp = TxResponse {
                id: u16::try_from(id).unwrap_or(0),
                status: 0,
            };
            if back.push_response(&rsp).is_err() {
                break;
            }
        }
        let _ = back.publish_responses();
    }
    let _ = RxRequest::default();
}
