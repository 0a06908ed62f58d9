//! Guests that stop posting receive buffers against the backend's shared packet memory.
//! The cap on waiting frames is per vif and the memory is shared by all of them: before,
//! enough stalled guests pinned every page and every other vif's transmit stopped for good.
//! Now a transmit that finds memory short drops waiting frames, oldest first from the vif
//! holding the most, and a vif that delivers nothing for `rx_stall_timeout` has its waiting
//! frames dropped. In-process host, stepped on one thread.

mod common;

use std::time::{Duration, Instant};

use common::frame;
use netfront::NetfrontConfig;
use pvnet_netback::testing::{connect, local_backend, raw_frontend};
use pvnet_netback::{Echo, NetbackConfig};
use xenbus::{BackendFeatures, FrontendChoice, RxMode};

fn config(pages: u32, backlog_pages: usize) -> NetbackConfig {
    let mut c = NetbackConfig::default();
    c.memory_pages = pages;
    c.rx_backlog_bytes = backlog_pages * 4096;
    c
}

#[test]
fn xsa392_guests_that_post_no_buffers_cannot_starve_the_others() {
    let mut backend = local_backend(config(256, 64), Echo).unwrap();
    // Five guests that never post a receive buffer; frames for them fill every page (the
    // backlog cap, 64 pages each, is no help: five caps are more than the memory).
    let mut stalled = Vec::new();
    for _ in 0..5 {
        stalled.push(raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap());
    }
    let big = frame(9, 9, 0, 1500);
    let mut queued = 0;
    for (vif, _) in &stalled {
        while backend.inject(*vif, &big, netif::Offload::default()) {
            queued += 1;
        }
    }
    assert!(queued >= 250, "{queued} frames queued");
    assert!(backend.memory().free_pages() < 8);
    // An honest guest still gets its frames through, both ways.
    let mut cfg = NetfrontConfig::default();
    cfg.choice = FrontendChoice::default();
    cfg.choice.rx_mode = RxMode::Copy;
    let (_, mut nic) = connect(&mut backend, &BackendFeatures::default(), cfg).unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    for i in 0..100 {
        let f = frame(1, 1, i, 1500);
        nic.send(&f, netif::Offload::default()).unwrap();
        let mut got = None;
        while got.is_none() {
            assert!(
                Instant::now() < deadline,
                "frame {i}: the honest guest is starved"
            );
            backend.poll().unwrap();
            nic.poll().unwrap();
            nic.receive(1, |rx| got = Some(rx.data.to_vec())).unwrap();
            if got.is_none() {
                // A transmit that found memory short retries after a millisecond.
                std::thread::sleep(Duration::from_micros(200));
            }
        }
        assert_eq!(got.unwrap(), f);
    }
    // What made room: the stalled guests' oldest frames.
    let dropped: u64 = backend
        .vifs()
        .iter()
        .filter(|v| stalled.iter().any(|(id, _)| *id == v.id))
        .map(|v| v.stats.rx_dropped)
        .sum();
    assert!(dropped > 0);
    nic.start_close().unwrap();
    backend.poll().unwrap();
    assert!(nic.finish_close(Duration::ZERO).unwrap().is_some());
}

#[test]
fn xsa392_a_stalled_guests_frames_are_dropped_after_the_timeout() {
    let mut cfg = config(256, 64);
    cfg.rx_stall_timeout = Duration::from_millis(50);
    let mut backend = local_backend(cfg, Echo).unwrap();
    let (vif, _raw) = raw_frontend(&mut backend, &BackendFeatures::default(), 4).unwrap();
    let free = backend.memory().free_pages();
    for i in 0..10 {
        assert!(backend.inject(vif, &frame(9, 9, i, 1500), netif::Offload::default()));
    }
    backend.poll().unwrap();
    assert_eq!(backend.rx_backlog(vif), Some(10));
    assert_eq!(backend.memory().free_pages(), free - 10);
    // The drop is a deadline: a backend that sleeps wakes up for it.
    let sleep = backend.prepare_to_sleep().unwrap();
    let due = sleep.deadline.expect("a deadline for the stalled frames");
    assert!(due <= Instant::now() + Duration::from_millis(50));
    while Instant::now() < due {
        std::thread::sleep(Duration::from_millis(5));
    }
    backend.poll().unwrap();
    assert_eq!(backend.rx_backlog(vif), Some(0));
    assert_eq!(backend.memory().free_pages(), free);
    let stats = backend.vifs()[0].stats;
    assert_eq!(stats.rx_dropped, 10);
    assert!(backend.prepare_to_sleep().unwrap().deadline.is_none());
}
