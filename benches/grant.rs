//! Grant copy against memcpy, and page flips against copying, in one run.
//!
//! `cargo bench --bench grant`. A batch is 64 segments, one per granted frame, copied by the
//! grantee's `GrantOps::copy` (each: validate and claim the entry, copy, release) into its own
//! frames; the baseline is `copy_from_slice` of the same bytes between two plain buffers of the
//! same layout. A flip is one whole cycle in the process host: the owner offers a frame
//! (`grant_transfer`), the grantee transfers one of its pool frames into it, the owner collects
//! it (`end_transfer`) and takes ownership; "flip+remap" also maps the received frame into a
//! fixed slot of the owner (`mmap MAP_FIXED`), as a real flip updates a page table. After
//! criterion, interleaved rounds print the ratios.

#[path = "common/stats.rs"]
mod stats;

use std::hint::black_box;
use std::time::{Duration, Instant};

use criterion::{BenchmarkId, Criterion, Throughput};
use pvnet::grant::{
    CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, GrantOps, GrantStatus, GrantTable,
    TransferEnd, TransferOp,
};
use pvnet::grant::{FramePool, PeerGrants};
use pvnet::mem::SharedRegion;
use pvnet::process::{RemapWindow, create_memfd, map_shared};
use stats::median_of;

const SEGMENTS: usize = 64;
const SIZES: [usize; 3] = [64, 1500, 4096];
const BACKEND: DomId = DomId(0);

/// The owner's 64 granted frames, the grantee's 64 frames, and one batch of copy ops.
struct CopyBench {
    _table: GrantTable,
    peer: PeerGrants,
    ops: Vec<CopyOp>,
    src: Vec<u8>,
    dst: Vec<u8>,
}

impl CopyBench {
    fn new(size: usize) -> Self {
        let frames = SharedRegion::new_zeroed(SEGMENTS * FRAME_SIZE);
        frames.fill(0, SEGMENTS * FRAME_SIZE, 0x5a).unwrap();
        let mut table = GrantTable::new(SharedRegion::new_zeroed(FRAME_SIZE)).unwrap();
        let local = SharedRegion::new_zeroed(SEGMENTS * FRAME_SIZE);
        let len = u16::try_from(size).unwrap();
        let ops = (0..SEGMENTS)
            .map(|i| {
                let frame = FrameNumber(u32::try_from(i).unwrap());
                let gref = table.grant_access(BACKEND, frame, true).unwrap();
                CopyOp::new(
                    CopyPtr::Grant { gref, offset: 0 },
                    CopyPtr::Local { frame, offset: 0 },
                    len,
                )
            })
            .collect();
        let peer = PeerGrants::new(BACKEND, table.region().clone(), frames, local);
        let src = vec![0x5a; SEGMENTS * FRAME_SIZE];
        let dst = vec![0; SEGMENTS * FRAME_SIZE];
        Self {
            _table: table,
            peer,
            ops,
            src,
            dst,
        }
    }

    fn grant_copy(&mut self) {
        self.peer.copy(&mut self.ops);
        debug_assert!(self.ops.iter().all(|o| o.status == GrantStatus::Okay));
        black_box(&self.ops);
    }

    fn memcpy(&mut self, size: usize) {
        for i in 0..SEGMENTS {
            let at = i * FRAME_SIZE;
            self.dst[at..at + size].copy_from_slice(&self.src[at..at + size]);
        }
        black_box(&self.dst);
    }
}

/// Owner and grantee of one flip pool (memfd-backed, so frames can be remapped).
struct FlipBench {
    table: GrantTable,
    front: FramePool,
    peer: PeerGrants,
    pool_fd: std::os::fd::OwnedFd,
    window: RemapWindow,
    slot: usize,
}

impl FlipBench {
    fn new() -> Self {
        const POOL: u32 = 64;
        let bytes = POOL as usize * FRAME_SIZE;
        let pool_fd = create_memfd(c"bench-pool", bytes).unwrap();
        let front = FramePool::new(map_shared(&pool_fd, bytes).unwrap(), |f| f.0 < POOL / 2);
        let back = FramePool::new(map_shared(&pool_fd, bytes).unwrap(), |f| f.0 >= POOL / 2);
        let table = GrantTable::new(SharedRegion::new_zeroed(FRAME_SIZE)).unwrap();
        let peer = PeerGrants::new(
            BACKEND,
            table.region().clone(),
            SharedRegion::new_zeroed(FRAME_SIZE),
            SharedRegion::new_zeroed(FRAME_SIZE),
        )
        .with_flip_pool(back);
        let window = RemapWindow::new(16).unwrap();
        Self {
            table,
            front,
            peer,
            pool_fd,
            window,
            slot: 0,
        }
    }

    /// One full flip; returns the frame received.
    fn flip(&mut self, remap: bool) -> FrameNumber {
        let offered = self.front.owned_frames().next().unwrap();
        self.front.give(offered).unwrap();
        let gref = self.table.grant_transfer(BACKEND, offered).unwrap();
        let give = self.peer.pool().unwrap().owned_frames().next().unwrap();
        let mut op = [TransferOp::new(give, gref)];
        self.peer.transfer(&mut op);
        assert_eq!(op[0].status, GrantStatus::Okay);
        let TransferEnd::Completed { received, .. } = self.table.end_transfer(gref).unwrap() else {
            panic!("flip did not complete");
        };
        self.front.receive(received).unwrap();
        if remap {
            self.window
                .remap(self.slot, &self.pool_fd, received)
                .unwrap();
            self.slot = (self.slot + 1) % self.window.slots();
        }
        received
    }
}

fn time_per_op(mut f: impl FnMut(), ops_per_call: f64, min: Duration) -> f64 {
    for _ in 0..100 {
        f();
    }
    // The clock is read once per 64 calls: reading it costs about as much as one flip.
    let (mut calls, start) = (0u64, Instant::now());
    while start.elapsed() < min {
        for _ in 0..64 {
            f();
        }
        calls += 64;
    }
    #[allow(clippy::cast_precision_loss)]
    let calls = calls as f64;
    start.elapsed().as_secs_f64() / (calls * ops_per_call)
}

fn summary(rounds: usize) {
    let window = Duration::from_millis(200);
    println!("\ngrant: {rounds} interleaved rounds, medians");
    println!(
        "{:>6} {:>16} {:>16} {:>10}",
        "bytes", "grant copy GB/s", "memcpy GB/s", "ratio"
    );
    #[allow(clippy::cast_precision_loss)]
    for size in SIZES {
        let (mut g, mut m, mut r) = (Vec::new(), Vec::new(), Vec::new());
        let mut b = CopyBench::new(size);
        for _ in 0..rounds {
            let tg = time_per_op(|| b.grant_copy(), SEGMENTS as f64, window);
            let tm = time_per_op(|| b.memcpy(size), SEGMENTS as f64, window);
            g.push(size as f64 / tg / 1e9);
            m.push(size as f64 / tm / 1e9);
            r.push(tm / tg);
        }
        println!(
            "{size:>6} {:>16.2} {:>16.2} {:>9.2}x",
            median_of(g),
            median_of(m),
            median_of(r)
        );
    }
    let mut fb = FlipBench::new();
    let mut cb = CopyBench::new(FRAME_SIZE);
    let (mut flip, mut flip_remap, mut copy4k, mut gcopy4k) =
        (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    for _ in 0..rounds {
        flip.push(time_per_op(
            || {
                black_box(fb.flip(false));
            },
            1.0,
            window,
        ));
        flip_remap.push(time_per_op(
            || {
                black_box(fb.flip(true));
            },
            1.0,
            window,
        ));
        #[allow(clippy::cast_precision_loss)]
        copy4k.push(time_per_op(
            || cb.memcpy(FRAME_SIZE),
            SEGMENTS as f64,
            window,
        ));
        #[allow(clippy::cast_precision_loss)]
        gcopy4k.push(time_per_op(|| cb.grant_copy(), SEGMENTS as f64, window));
    }
    let (f, fr, c, gc) = (
        median_of(flip),
        median_of(flip_remap),
        median_of(copy4k),
        median_of(gcopy4k),
    );
    println!(
        "per 4 KiB frame: flip {:.0} ns, flip+remap {:.0} ns, grant copy {:.0} ns, memcpy {:.0} ns",
        f * 1e9,
        fr * 1e9,
        gc * 1e9,
        c * 1e9
    );
    println!(
        "flip / memcpy 4 KiB = {:.2}x, flip+remap / memcpy 4 KiB = {:.2}x",
        f / c,
        fr / c
    );
}

fn main() {
    let mut c = Criterion::default()
        .warm_up_time(Duration::from_millis(500))
        .measurement_time(Duration::from_secs(2))
        .configure_from_args();
    let mut group = c.benchmark_group("grant-copy");
    for size in SIZES {
        let mut b = CopyBench::new(size);
        group.throughput(Throughput::Bytes((size * SEGMENTS) as u64));
        group.bench_function(BenchmarkId::new("grant", size), |bench| {
            bench.iter(|| b.grant_copy())
        });
        group.bench_function(BenchmarkId::new("memcpy", size), |bench| {
            bench.iter(|| b.memcpy(size))
        });
    }
    group.finish();
    let mut group = c.benchmark_group("flip");
    let mut fb = FlipBench::new();
    group.throughput(Throughput::Elements(1));
    group.bench_function("flip", |bench| bench.iter(|| fb.flip(false)));
    group.bench_function("flip+remap", |bench| bench.iter(|| fb.flip(true)));
    group.finish();
    c.final_summary();
    let rounds = std::env::var("PVNET_BENCH_ROUNDS")
        .ok()
        .and_then(|r| r.parse().ok())
        .unwrap_or(5);
    if rounds > 0 {
        summary(rounds);
    }
}
