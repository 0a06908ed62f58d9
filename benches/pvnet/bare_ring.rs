//! The bare copy ring: two processes that copy frames through shared buffers and do nothing
//! else, the yardstick for how near pvnet and the DPDK peers come to what the two copies
//! alone cost on this CPU pair.
//!
//! This process (the pair's second CPU) copies `size`-byte frames into a ring of buffers in
//! a memfd ([`Layout`]), [`BATCH`] at a time, and publishes each batch with one count. A child
//! on the first CPU copies every published frame out into the next of [`DSTS`] buffers of its
//! own (as a receiver that hands frames on keeps a batch), checks its last byte, and
//! publishes how far it got, once per look. No descriptors, no grants, no checks of a peer:
//! per frame only the two copies, so a frame's lines cross to the receiver and back to the
//! sender (when it writes that buffer again) as they do in memif and in pvnet, and the two
//! counts cross once a batch. The layout is memif's defaults (1024 buffers of 2048 bytes, a
//! frame in one buffer or, above 2048 bytes, in a run of them; head and tail on lines of
//! their own), and each side asks for the lines of a batch ahead of its copies ([`ahead`]),
//! as pvnet's netback does. A second variant ([`Traffic::XenSlots`]) adds the slot traffic
//! of a netif transmit ring. Yardsticks, not bounds: BENCHMARKS.md ("The bare copy ring")
//! measures how the layout, the hints and the destinations move them.

use std::io::Write;
use std::os::fd::AsRawFd;
use std::sync::atomic::Ordering;
use std::time::Instant;

use crate::Opts;
use crate::baselines::ReadyChild;
use crate::child::cpu_seconds;
use crate::report::Throughput;
use pvnet::mem::SharedRegion;

/// What the ring carries besides the frames.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Traffic {
    /// Two counts, each on lines of its own (memif's head and tail): the row "bare copy
    /// ring".
    Counts,
    /// What a netif transmit ring adds (the row "bare ring, Xen slots"): a 12-byte request
    /// per frame in 256 shared slots, read by the receiver, which writes the 4-byte response
    /// into the same slot for the sender to read; both counts on one line, as `req_prod` and
    /// `rsp_prod` share Xen's ring header; at most 256 frames in flight. No grants and no
    /// checks, so pvnet's share of this row is what its software costs beyond the ABI.
    XenSlots,
}

impl Traffic {
    /// Both, in the order the harness runs them.
    pub const ALL: [Traffic; 2] = [Traffic::Counts, Traffic::XenSlots];

    /// The row's name in the harness's tables.
    pub fn name(self) -> &'static str {
        match self {
            Traffic::Counts => "bare copy ring",
            Traffic::XenSlots => "bare ring, Xen slots",
        }
    }

    /// The child role's `--traffic` argument.
    fn arg(self) -> &'static str {
        match self {
            Traffic::Counts => "counts",
            Traffic::XenSlots => "xen",
        }
    }

    /// From the child role's `--traffic` argument.
    pub fn parse(arg: &str) -> Self {
        match arg {
            "xen" => Traffic::XenSlots,
            _ => Traffic::Counts,
        }
    }

    /// Where the receiver's count is: on its own lines, or beside the sender's.
    fn tail(self) -> usize {
        match self {
            Traffic::Counts => TAIL,
            Traffic::XenSlots => XEN_RSP_PROD,
        }
    }

    /// Frames in flight at most: as many as the buffers, or a netif ring's slots.
    fn window(self, layout: Layout) -> u32 {
        match self {
            Traffic::Counts => layout.slots,
            Traffic::XenSlots => layout.slots.min(XEN_SLOTS),
        }
    }
}

/// Bytes of buffers in the ring: memif's default ring, 1024 descriptors of 2048-byte buffers.
/// With 256 such buffers it ran 0.90-0.93x as fast (64 and 1500 B): the more buffers in
/// turn, the more of a buffer's lines have left the other core's cache by the time this side
/// writes it again. Large frames take a run of buffers each, as memif chains them.
const RING_BYTES: usize = 1024 * 2048;
/// Frames the sender copies in before it publishes them (testpmd's burst).
const BATCH: u32 = 32;
/// The sender's count of frames published and the receiver's of frames copied out, each on
/// a 128-byte line pair of its own (as memif's head and tail), so neither side's store
/// takes the line the other side's count is on.
const HEAD: usize = 0;
const TAIL: usize = 128;
/// Xen's layout: the responses' count beside the requests' (`rsp_prod` at 8, `req_prod` at
/// 0), then 256 slots of 12 bytes from byte 64.
const XEN_RSP_PROD: usize = 8;
const XEN_SLOTS: u32 = 256;
const XEN_SLOT_BYTES: usize = 12;
const XEN_FIRST_SLOT: usize = 64;
/// The first buffer: after a page of counts (and Xen slots).
const BUFFERS: usize = 4096;
/// Lines asked for ahead of a batch's copies: about as many misses as one core has in
/// flight.
const AHEAD_LINES: usize = 48;
/// The receiver's destination buffers: a burst of DPDK mbufs (32 of 2176 bytes, a 2048-byte
/// data room after a 128-byte headroom), or more bytes each for larger frames. Into one
/// buffer instead, which stays in the cache, 1500 B frames went 1.12x faster: a receiver
/// that hands frames on cannot do that.
const DSTS: usize = 32;
const DST_STRIDE: usize = 2176;
/// Spins between looks at whether the other process is still there.
const SPINS_PER_LOOK: u32 = 1 << 16;
/// The fewest frames the ring holds: two batches, so that one can be copied in while the
/// other is copied out.
const MIN_SLOTS: usize = 2 * BATCH as usize;

/// Where the frames go: `slots` buffers of `stride` bytes after the page of counts.
#[derive(Clone, Copy)]
struct Layout {
    stride: usize,
    slots: u32,
}

impl Layout {
    /// For `size`-byte frames: 2048 bytes a frame or a multiple, in [`RING_BYTES`] (at least
    /// [`MIN_SLOTS`] frames), a power of two of them (so that a frame's buffer is a mask
    /// away from its count, not a division).
    fn new(size: usize) -> Self {
        let stride = size.max(1).div_ceil(2048) * 2048;
        let slots = 1 << (RING_BYTES / stride).max(MIN_SLOTS).ilog2();
        Self {
            stride,
            slots: u32::try_from(slots).expect("a small ring"),
        }
    }

    /// The whole region.
    fn bytes(self) -> usize {
        BUFFERS + self.slots as usize * self.stride
    }

    /// Where frame `i` goes.
    fn slot(self, i: u32) -> usize {
        BUFFERS + (i & (self.slots - 1)) as usize * self.stride
    }
}

/// Calls `ask(offset, len)` for the bytes of frames `frames` that a side asks for before it
/// copies them: each frame's from its start, in turn, until [`AHEAD_LINES`] lines.
fn ahead(
    frames: std::ops::Range<u32>,
    size: usize,
    layout: Layout,
    mut ask: impl FnMut(usize, usize),
) {
    let mut lines = 0;
    for i in frames {
        let len = size.min((AHEAD_LINES - lines) * 64);
        ask(layout.slot(i), len);
        lines += len.div_ceil(64);
        if lines >= AHEAD_LINES {
            return;
        }
    }
}

/// Waits for the other side once: a pause, and every [`SPINS_PER_LOOK`] calls a check that
/// the receiver has not exited, so a failed child fails the run instead of hanging it.
fn spin(spins: &mut u32, sink: &mut ReadyChild) {
    std::hint::spin_loop();
    *spins = spins.wrapping_add(1);
    if spins.is_multiple_of(SPINS_PER_LOOK) {
        sink.check_alive();
    }
}

/// Where frame `i`'s request and response go ([`Traffic::XenSlots`]).
fn xen_slot(i: u32) -> usize {
    XEN_FIRST_SLOT + (i & (XEN_SLOTS - 1)) as usize * XEN_SLOT_BYTES
}

/// One run: as many frames as a repeated pvnet mode moves in a round.
pub fn run(opts: &Opts, size: usize, traffic: Traffic) -> Throughput {
    let frames = opts.frames(size) * opts.repeats.max(1) as u64;
    let total = u32::try_from(frames).expect("frames fit the ring's u32 counts");
    let layout = Layout::new(size);
    let bytes = layout.bytes();
    let fd = pvnet::process::create_memfd(c"bare-copy-ring", bytes).expect("memfd");
    let region = pvnet::process::map_shared(&fd, bytes).expect("map");
    crate::baselines::inheritable(&fd);
    let mut sink = ReadyChild::spawn(
        "bare-ring-sink",
        &[
            "--fds".into(),
            fd.as_raw_fd().to_string(),
            "--size".into(),
            size.to_string(),
            "--frames".into(),
            frames.to_string(),
            "--traffic".into(),
            traffic.arg().into(),
        ],
    );
    let frame = crate::child::frame(size).0;
    let cpu0 = cpu_seconds();
    let start = Instant::now();
    let (mut head, mut tail, mut spins) = (0u32, 0u32, 0u32);
    while head != total {
        let n = (total - head).min(BATCH);
        while head - tail + n > traffic.window(layout) {
            spin(&mut spins, &mut sink);
            // Acquire: the receiver's copies out of the buffers it has passed (and its
            // responses) are done before this side writes them again.
            let answered = region
                .load_u32(traffic.tail(), Ordering::Acquire)
                .expect("tail");
            if traffic == Traffic::XenSlots {
                // Each response read, as a frontend reclaims its buffers.
                for i in tail..answered {
                    let id = region
                        .load_u32(xen_slot(i), Ordering::Relaxed)
                        .expect("slot");
                    assert_eq!(id, i & 0xffff, "a response for another request");
                }
            }
            tail = answered;
        }
        ahead(head..head + n, size, layout, |at, len| {
            region.prefetch_for_write(at, len);
        });
        for i in head..head + n {
            region
                .copy_in(layout.slot(i), &frame)
                .expect("inside the region");
            if traffic == Traffic::XenSlots {
                // The request: reference, offset and flags, id and size, as netif's.
                let at = xen_slot(i);
                let size = u32::try_from(size).expect("a frame's size");
                for (k, word) in [i, 0, i << 16 | size].into_iter().enumerate() {
                    region
                        .store_u32(at + 4 * k, word, Ordering::Relaxed)
                        .expect("slot");
                }
            }
        }
        head += n;
        // Release: the frames' bytes are visible before the count that publishes them.
        region
            .store_u32(HEAD, head, Ordering::Release)
            .expect("head");
    }
    while tail != total {
        spin(&mut spins, &mut sink);
        tail = region
            .load_u32(traffic.tail(), Ordering::Acquire)
            .expect("tail");
    }
    let secs = start.elapsed().as_secs_f64();
    let cpu_parent = cpu_seconds() - cpu0;
    let cpu_child = sink.finish();
    Throughput {
        name: traffic.name().into(),
        size,
        frames,
        secs,
        cpu: cpu_parent + cpu_child,
    }
}

/// The receiver, in the child role `bare-ring-sink`: `region` is the ring the parent made.
/// Exits if the parent goes away before the last frame.
pub fn sink(region: &SharedRegion, size: usize, total: u32, traffic: Traffic) {
    let layout = Layout::new(size);
    assert!(region.len() >= layout.bytes(), "the ring's region");
    let last = crate::child::frame(size).0[size - 1];
    let parent = nix::unistd::getppid();
    println!("READY");
    std::io::stdout().flush().expect("flush");
    // Where frames are copied to: a batch's worth of buffers, each frame of a look into the
    // next (as testpmd's burst of mbufs, or netback's packet pages, hold a batch until it is
    // handed on), not one buffer that stays in the cache.
    let dst_stride = size.next_multiple_of(64).max(DST_STRIDE);
    let mut dsts = vec![0u8; DSTS * dst_stride];
    let (mut tail, mut bad, mut spins) = (0u32, 0u64, 0u32);
    while tail != total {
        // Acquire: the frames up to the sender's count were written before it.
        let head = region.load_u32(HEAD, Ordering::Acquire).expect("head");
        if head == tail {
            std::hint::spin_loop();
            spins = spins.wrapping_add(1);
            if spins.is_multiple_of(SPINS_PER_LOOK) && nix::unistd::getppid() != parent {
                panic!("the bare copy ring's sender went away");
            }
            continue;
        }
        ahead(tail..head, size, layout, |at, len| {
            for line in (0..len).step_by(64) {
                region.prefetch(at + line);
            }
        });
        for (k, i) in (tail..head).enumerate() {
            if traffic == Traffic::XenSlots {
                // The request, read before its frame, as netback copies it out.
                let at = xen_slot(i);
                let id = region.load_u32(at, Ordering::Relaxed).expect("slot");
                let rest = region.load_u32(at + 4, Ordering::Relaxed).expect("slot")
                    ^ region.load_u32(at + 8, Ordering::Relaxed).expect("slot");
                bad += u64::from(id != i);
                std::hint::black_box(rest);
            }
            let at = k % DSTS * dst_stride;
            let buf = &mut dsts[at..at + size];
            region
                .copy_out(layout.slot(i), buf)
                .expect("inside the region");
            bad += u64::from(buf[size - 1] != last);
        }
        if traffic == Traffic::XenSlots {
            // The responses (id and status), each into its request's slot, after the copies.
            for i in tail..head {
                region
                    .store_u32(xen_slot(i), i & 0xffff, Ordering::Relaxed)
                    .expect("slot");
            }
        }
        tail = head;
        // Release: the copies out (and the responses) are done before the sender may write
        // these buffers (and slots) again.
        region
            .store_u32(traffic.tail(), tail, Ordering::Release)
            .expect("tail");
    }
    assert_eq!(bad, 0, "frames with the wrong bytes");
    println!("CPU {}", cpu_seconds());
}
