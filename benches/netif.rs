//! The tx parser per packet: `cargo bench --bench netif`. Packets of 1, 3 and 19 data slots
//! (the most netback accepts), and one with a GSO extra, parsed from already-copied slots,
//! the backend's per-packet validation cost.

use std::hint::black_box;
use std::time::Duration;

use criterion::{BenchmarkId, Criterion, Throughput};
use pvnet::netif::parse_tx;
use pvnet::netif::wire::{ExtraInfo, TxRequest, gso_type, tx_flags};

fn packet(slots: usize, gso: bool) -> Vec<TxRequest> {
    let following = u16::try_from(slots - 1).unwrap();
    let mut reqs = vec![TxRequest {
        gref: 8,
        offset: 0,
        flags: 0,
        id: 0,
        size: 1400 + 100 * following,
    }];
    if slots > 1 {
        reqs[0].flags |= tx_flags::MORE_DATA;
    }
    if gso {
        reqs[0].flags |= tx_flags::EXTRA_INFO;
        reqs.push(ExtraInfo::gso(1448, gso_type::TCPV4, false).to_tx_slot());
    }
    for i in 1..=following {
        let flags = if i < following {
            tx_flags::MORE_DATA
        } else {
            0
        };
        reqs.push(TxRequest {
            gref: 8 + u32::from(i),
            offset: 0,
            flags,
            id: i,
            size: 100,
        });
    }
    reqs
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("parse_tx");
    group.throughput(Throughput::Elements(1));
    for (name, slots, gso) in [
        ("1-slot", 1, false),
        ("3-slot", 3, false),
        ("19-slot", 19, false),
        ("3-slot+gso", 3, true),
    ] {
        let reqs = packet(slots, gso);
        assert!(parse_tx(&reqs).is_ok());
        group.bench_function(BenchmarkId::from_parameter(name), |b| {
            b.iter(|| parse_tx(black_box(&reqs)))
        });
    }
    group.finish();
    c.final_summary();
}
