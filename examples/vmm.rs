//! A VMM-style host, written only against pvnet's public API and in safe code: the guest's
//! RAM is rust-vmm's `GuestMemoryMmap` (two regions with a hole between them, anonymous, with
//! a dirty bitmap), the guest's netfront lives in that RAM (grant table, rings and buffers at
//! guest-physical addresses), the event channels are eventfds the VMM made, and the control
//! plane is in memory (the VMM's XenStore): no Unix socket, no second process. The backend
//! runs on the VMM's thread, the guest's netfront on a "vCPU" thread; every frame comes back
//! through an echo uplink byte for byte, and every page the backend wrote into the guest is
//! in vm-memory's dirty bitmap (what live migration needs).
//!
//! ```text
//! cargo run --release --example vmm -- --frames 100000 --size 1500
//! ```

mod common;

use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use clap::Parser;
use common::{Pattern, Res, stream};
use pvnet::back::{Echo, Host, Netback, NetbackConfig, PacketMemory, QueueParts, VifParts};
use pvnet::bus::local::{LocalBackend, LocalFrontend};
use pvnet::bus::{BackendFeatures, RxMode};
use pvnet::event::{EventFdPort, QueuePorts};
use pvnet::front::{FrontMemory, NetfrontConfig, PendingNetfront};
use pvnet::grant::guest::GuestFrames;
use pvnet::grant::{DomId, FRAME_SIZE, FrameNumber, PeerGrants};
use pvnet::mem::SharedRegion;
use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::{GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

/// The backend's domain under Xen-on-KVM emulation (any id but the guest's own).
const BACKEND_DOMID: DomId = DomId(1);

type BackHost = Host<GuestFrames<AtomicBitmap>, EventFdPort, LocalBackend>;
type FrontHost = pvnet::front::Host<EventFdPort, LocalFrontend>;

#[derive(Parser, Debug)]
#[command(about = "netback in a VMM, over guest memory; the guest's netfront in guest RAM")]
struct Args {
    /// Frames streamed through the echo uplink (every byte checked).
    #[arg(long, default_value_t = 100_000)]
    frames: u64,
    /// Frame size in bytes.
    #[arg(long, default_value_t = 1500)]
    size: usize,
    /// Guest RAM below the hole, MiB.
    #[arg(long, default_value_t = 64)]
    low_mib: usize,
    /// Guest RAM above the hole (which starts at 4 GiB), MiB.
    #[arg(long, default_value_t = 64)]
    high_mib: usize,
    /// Page-flip receive instead of grant copy.
    #[arg(long)]
    flip: bool,
}

fn main() -> ExitCode {
    match run(&Args::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("vmm: {e}");
            ExitCode::FAILURE
        }
    }
}

fn run(args: &Args) -> Res<()> {
    // Guest RAM: low memory, a hole up to 4 GiB, high memory.
    let high = 4u64 << 30;
    let ram = Arc::new(GuestMemoryMmap::<AtomicBitmap>::from_ranges(&[
        (GuestAddress(0), args.low_mib << 20),
        (GuestAddress(high), args.high_mib << 20),
    ])?);
    let guest = GuestFrames::new(ram.clone())?;

    // The guest's netfront: where its driver would put things in its RAM. Its buffers and
    // rings in high memory, its grant table in low memory, its flip pool after the buffers.
    let mut cfg = NetfrontConfig::default();
    cfg.backend_domid = BACKEND_DOMID;
    cfg.choice.mtu = 9000;
    cfg.choice.gso_tcpv4 = true;
    if args.flip {
        cfg.choice.rx_mode = RxMode::Flip;
    }
    let rx_buffers = cfg.rx_buffers;
    let layout = PendingNetfront::<FrontHost>::layout(&cfg)?;
    let frames_at = GuestAddress(high + (1 << 20));
    let table_at = GuestAddress(1 << 20);
    let pool_at = GuestAddress(frames_at.0 + layout.frames_bytes as u64);
    let range = |at: GuestAddress, len: usize| {
        guest
            .range(at, len)
            .ok_or_else(|| format!("{len} bytes at {:#x} are not in one RAM region", at.0))
    };
    let frames = range(frames_at, layout.frames_bytes)?;
    let table = range(table_at, layout.table_bytes)?;
    let pool = if args.flip {
        Some(range(pool_at, layout.pool_bytes)?)
    } else {
        None
    };
    let first_frame = FrameNumber(u32::try_from(frames_at.0 / FRAME_SIZE as u64)?);
    let memory = FrontMemory::new(frames, table.clone(), pool.clone()).with_frame_base(first_frame);

    // Event channels: eventfds the VMM owns, one pair per queue.
    let (front_port, back_port) = EventFdPort::pair()?;
    let pending =
        PendingNetfront::<FrontHost>::new(cfg, memory, vec![QueuePorts::new(front_port, None)])?;

    // The VMM's XenStore: in memory. Then the backend attaches from the guest's grants.
    let offered = BackendFeatures::default();
    let (back_ctl, front_ctl, choice) = pvnet::bus::local::connect(&offered, pending.choice())?;
    let packets = PacketMemory::over(SharedRegion::new_zeroed(4096 * FRAME_SIZE));
    let mut backend: Netback<Echo, BackHost> =
        Netback::with_memory(NetbackConfig::default(), Echo, packets)?;
    // Claims kept between copies: this guest runs pvnet's netfront, which grants its buffers
    // for the whole connection. A Linux guest grants per packet: leave this out for it.
    let mut grants = PeerGrants::new(
        BACKEND_DOMID,
        table,
        guest.clone(),
        backend.memory().region().clone(),
    )
    .with_persistent_copies();
    if let Some(pool) = pool {
        grants = grants.with_flip_pool(pvnet::grant::FramePool::split(
            pool,
            pvnet::grant::PoolSide::Backend,
        ));
    }
    let rings = pending.rings()[0];
    let queues = vec![QueueParts {
        tx_ring: rings.tx,
        rx_ring: rings.rx,
        events: QueuePorts::new(back_port, None),
    }];
    backend.attach_parts(VifParts::new(choice, grants, queues, back_ctl))?;
    let mut nic = pending.connect(front_ctl)?;

    // Dirty log from here: clear it, as a VMM does when migration starts.
    for r in ram.iter() {
        vm_memory::MmapRegion::bitmap(r).reset();
    }

    // The backend on this (the VMM's) thread, the guest on a vCPU thread.
    let stop = Arc::new(AtomicBool::new(false));
    let stop2 = stop.clone();
    let size = args.size;
    let frames_wanted = args.frames;
    let vcpu = std::thread::spawn(move || -> Result<_, String> {
        let pattern = Pattern::new(size, [0x02, 0, 0, 0, 0, 1], [0x02, 0, 0, 0, 0, 1]);
        let r = stream(&mut nic, &pattern, frames_wanted).map_err(|e| e.to_string());
        stop2.store(true, Ordering::Release);
        let r = r?;
        nic.start_close().map_err(|e| e.to_string())?;
        Ok((r, nic))
    });
    let start = Instant::now();
    while !stop.load(Ordering::Acquire) {
        backend.wait(Some(Duration::from_millis(10)))?;
        backend.poll()?;
    }
    let (result, mut nic) = vcpu.join().map_err(|_| "the vCPU thread panicked")??;
    // The close completes here: the backend sees it in its poll, the guest revokes.
    let deadline = Instant::now() + Duration::from_secs(5);
    let report = loop {
        backend.poll()?;
        if let Some(r) = nic.finish_close(Duration::ZERO)? {
            break r;
        }
        if Instant::now() > deadline {
            return Err("the close did not complete".into());
        }
    };
    let closed = backend.take_closed();
    let secs = start.elapsed().as_secs_f64();

    // Every page the backend wrote (received frames) is dirty; count them.
    let dirty: usize = ram
        .iter()
        .map(|r| {
            let len = usize::try_from(r.len()).unwrap_or(0);
            (0..len)
                .step_by(FRAME_SIZE)
                .filter(|&o| r.bitmap().dirty_at(o))
                .count()
        })
        .sum();
    println!(
        "vmm: {} frames of {} B through netback over guest memory ({} + {} MiB, hole below 4 GiB), {:.2} Mpps, lost {}, corrupt {}; {} grants revoked; {} guest pages dirty",
        result.frames,
        args.size,
        args.low_mib,
        args.high_mib,
        result.frames as f64 / secs / 1e6,
        result.lost,
        result.corrupt,
        report.revoked,
        dirty
    );
    if result.lost > 0 || result.corrupt > 0 || result.frames != args.frames {
        return Err("frames lost or corrupted".into());
    }
    if closed.len() != 1 || closed[0].pinned != 0 {
        return Err("the vif did not close cleanly".into());
    }
    // What the backend wrote into guest RAM: both ring pages (logged when it unmapped them,
    // as Xen does) and, in copy mode, every receive buffer the stream reached (netfront
    // posts them in turn, so a stream of more pages than buffers reaches them all).
    // Flip mode writes pool frames and transfers them, and the grant table's status bits:
    // neither goes through the frame memory, so neither is logged (DESIGN.md: a migrating
    // VMM treats the pool and the table as always dirty).
    let pages = args
        .frames
        .saturating_mul(args.size.div_ceil(FRAME_SIZE) as u64);
    let expected = if args.flip {
        2
    } else {
        2 + usize::try_from(pages.min(u64::from(rx_buffers))).unwrap_or(usize::MAX)
    };
    if dirty != expected {
        return Err(format!("{dirty} guest pages logged dirty, {expected} written").into());
    }
    Ok(())
}
