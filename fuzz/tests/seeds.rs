//! Writes the seed corpora of the AFL++ targets into `fuzz/corpus/<target>/` (run by hand:
//! `cargo test -p pvnet-fuzz --test seeds -- --ignored`). Each seed is a small valid input;
//! the test also checks that each passes its harness.

use std::path::PathBuf;

use netif::wire::{RxResponse, TxRequest, tx_flags};
use xenbus::{
    BackendFeatures, EventFds, FrontendChoice, Message, QueueResources, Resources, RxMode, State,
};

fn slot_bytes<T: bytemuck::Pod>(slots: &[T]) -> Vec<u8> {
    slots
        .iter()
        .flat_map(|s| bytemuck::bytes_of(s).to_vec())
        .collect()
}

fn tx(gref: u32, offset: u16, flags: u16, id: u16, size: u16) -> TxRequest {
    TxRequest {
        gref,
        offset,
        flags,
        id,
        size,
    }
}

fn seeds() -> Vec<(&'static str, &'static str, Vec<u8>)> {
    let mut out = Vec::new();
    // Transmit: one slot; three slots (sg); a zero-length fragment; a GSO extra.
    out.push(("tx-parser", "one-slot", slot_bytes(&[tx(8, 0, 0, 1, 60)])));
    out.push((
        "tx-parser",
        "three-slots",
        slot_bytes(&[
            tx(8, 0, tx_flags::MORE_DATA, 1, 3000),
            tx(9, 0, tx_flags::MORE_DATA, 2, 1000),
            tx(10, 100, 0, 3, 500),
        ]),
    ));
    out.push((
        "tx-parser",
        "zero-fragment",
        slot_bytes(&[tx(8, 0, tx_flags::MORE_DATA, 1, 100), tx(9, 0, 0, 2, 0)]),
    ));
    let mut gso = slot_bytes(&[tx(
        8,
        0,
        tx_flags::EXTRA_INFO | tx_flags::CSUM_BLANK,
        1,
        1514,
    )]);
    // The GSO extra: type 1 (GSO), flags 0, size 1448, gso type 1 (TCPv4), pad, features.
    gso.extend_from_slice(&[1, 0, 0xa8, 0x05, 1, 0, 0, 0, 0, 0, 0, 0]);
    out.push(("tx-parser", "gso-extra", gso));
    // Receive: two posted ids, then a two-slot frame.
    let mut rx = vec![2u8];
    rx.extend_from_slice(&7u16.to_le_bytes());
    rx.extend_from_slice(&8u16.to_le_bytes());
    rx.extend(slot_bytes(&[
        RxResponse {
            id: 7,
            offset: 0,
            flags: 4,
            status: 4096,
        },
        RxResponse {
            id: 8,
            offset: 0,
            flags: 0,
            status: 100,
        },
    ]));
    out.push(("rx-parser", "two-slots", rx));
    // Control: the backend's features, a frontend's full answer, a refusal.
    out.push((
        "control",
        "backend-initwait",
        Message::Backend {
            state: State::InitWait,
            keys: BackendFeatures::default().to_keys(),
        }
        .encode()
        .unwrap(),
    ));
    let mut choice = FrontendChoice::default();
    choice.rx_mode = RxMode::Flip;
    let res = Resources {
        frames: 0,
        grant_table: 1,
        flip_pool: Some(2),
        queues: vec![QueueResources {
            tx_ring_ref: 8,
            rx_ring_ref: 9,
            tx_event: EventFds {
                backend_notifies: 3,
            },
            rx_event: None,
        }],
    };
    let mut keys = choice.to_keys();
    keys.extend(res.to_keys());
    out.push((
        "control",
        "frontend-connected",
        Message::Frontend {
            state: State::Connected,
            keys,
        }
        .encode()
        .unwrap(),
    ));
    out.push((
        "control",
        "refused",
        Message::Refused("flip mode without a flip pool".into())
            .encode()
            .unwrap(),
    ));
    // Ring: a header with three requests published, then the slots.
    let mut page = Vec::new();
    for w in [3u32, 1, 0, 1] {
        page.extend_from_slice(&w.to_le_bytes());
    }
    page.resize(64, 0);
    page.extend(slot_bytes(&[
        tx(8, 0, 0, 1, 60),
        tx(9, 0, 0, 2, 60),
        tx(10, 0, 0, 3, 60),
    ]));
    out.push(("ring", "three-requests", page));
    out
}

#[test]
fn every_seed_passes_its_harness() {
    for (target, _, bytes) in seeds() {
        match target {
            "tx-parser" => pvnet_fuzz::tx_parser(&bytes),
            "rx-parser" => pvnet_fuzz::rx_parser(&bytes),
            "control" => pvnet_fuzz::control(&bytes),
            "ring" => pvnet_fuzz::ring(&bytes),
            other => panic!("unknown target {other}"),
        }
    }
}

#[test]
#[ignore = "writes fuzz/corpus; run by hand when an input format changes"]
fn write_seed_corpora() {
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("corpus");
    for (target, name, bytes) in seeds() {
        let dir = root.join(target);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::write(dir.join(name), bytes).unwrap();
    }
}
