//! The guest-memory host: a VMM's guest RAM (vm-memory, several regions and a hole) as frame
//! memory under the one claim protocol. Frames in the hole or past the end of RAM are
//! `BadPage`; copies land at the guest-physical address the frame names; every page the
//! grantee writes is in vm-memory's dirty bitmap, and no page it only read is.

#![cfg(not(loom))]

use std::sync::Arc;

use pvnet_grant_table::guest::GuestFrames;
use pvnet_grant_table::{
    CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, GrantOps, GrantStatus, GrantTable, PeerGrants,
};
use shared_mem::SharedRegion;
use vm_memory::bitmap::{AtomicBitmap, Bitmap};
use vm_memory::{Bytes, GuestAddress, GuestMemoryBackend, GuestMemoryMmap, GuestMemoryRegion};

const BACKEND: DomId = DomId(3);
/// RAM: 1 MiB at 0 (frames 0..256), a hole, 1 MiB at 16 MiB (frames 4096..4352).
const HIGH: u64 = 16 << 20;

fn guest() -> Arc<GuestMemoryMmap<AtomicBitmap>> {
    Arc::new(
        GuestMemoryMmap::<AtomicBitmap>::from_ranges(&[
            (GuestAddress(0), 1 << 20),
            (GuestAddress(HIGH), 1 << 20),
        ])
        .unwrap(),
    )
}

fn dirty_pages(mem: &GuestMemoryMmap<AtomicBitmap>) -> Vec<u64> {
    let mut pages = Vec::new();
    for r in mem.iter() {
        let len = usize::try_from(r.len()).unwrap();
        for off in (0..len).step_by(FRAME_SIZE) {
            if r.bitmap().dirty_at(off) {
                pages.push((r.start_addr().0 + off as u64) / FRAME_SIZE as u64);
            }
        }
    }
    pages
}

/// Copies `len` bytes of our frame 0 into the start of granted frame `g`.
fn copy_in(
    peer: &PeerGrants<GuestFrames<AtomicBitmap>>,
    g: pvnet_grant_table::GrantRef,
    len: u16,
) -> GrantStatus {
    let mut ops = [CopyOp::new(
        CopyPtr::Local {
            frame: FrameNumber(0),
            offset: 0,
        },
        CopyPtr::Grant { gref: g, offset: 0 },
        len,
    )];
    peer.copy(&mut ops);
    ops[0].status
}

#[test]
fn guest_ram_with_a_hole_is_frame_memory_and_writes_are_logged() {
    let mem = guest();
    let frames = GuestFrames::new(mem.clone()).unwrap();
    // The guest's grant table lives in its own RAM: frame 1.
    let table_mem = frames
        .range(GuestAddress(FRAME_SIZE as u64), FRAME_SIZE)
        .unwrap();
    let mut table = GrantTable::new(table_mem.clone()).unwrap();
    let local = SharedRegion::new_zeroed(FRAME_SIZE);
    local.copy_in(0, &[0xab; FRAME_SIZE]).unwrap();
    let peer = PeerGrants::new(BACKEND, table_mem, frames.clone(), local.clone());
    let high0 = u32::try_from(HIGH / FRAME_SIZE as u64).unwrap();

    // 64 writable grants spread over both regions, written through copies.
    let targets: Vec<u32> = (10..42).chain(high0 + 100..high0 + 132).collect();
    let before = dirty_pages(&mem);
    for &f in &targets {
        let g = table.grant_access(BACKEND, FrameNumber(f), false).unwrap();
        assert_eq!(copy_in(&peer, g, 4096), GrantStatus::Okay, "frame {f}");
        // The bytes are at the guest-physical address the frame names.
        let mut got = [0u8; 16];
        mem.read_slice(
            &mut got,
            GuestAddress(u64::from(f) * FRAME_SIZE as u64 + 4080),
        )
        .unwrap();
        assert_eq!(got, [0xab; 16]);
        table.end_access(g).unwrap();
    }
    let mut written = dirty_pages(&mem);
    written.retain(|p| !before.contains(p));
    let expected: Vec<u64> = targets.iter().map(|&f| u64::from(f)).collect();
    assert_eq!(written, expected, "all 64 written pages marked, no other");

    // A read (copy out of a grant) marks nothing.
    let ro = table.grant_access(BACKEND, FrameNumber(200), true).unwrap();
    let mut ops = [CopyOp::new(
        CopyPtr::Grant {
            gref: ro,
            offset: 0,
        },
        CopyPtr::Local {
            frame: FrameNumber(0),
            offset: 0,
        },
        64,
    )];
    peer.copy(&mut ops);
    assert_eq!(ops[0].status, GrantStatus::Okay);
    assert!(!dirty_pages(&mem).contains(&200));

    // The hole and past the end of RAM: BadPage, never a fault.
    for f in [256, 1000, high0 - 1, high0 + 256, u32::MAX] {
        let g = table.grant_access(BACKEND, FrameNumber(f), false).unwrap();
        assert_eq!(copy_in(&peer, g, 8), GrantStatus::BadPage, "frame {f}");
        assert!(
            peer.map_held(g, pvnet_grant_table::Access::ReadOnly)
                .is_err()
        );
        table.end_access(g).unwrap();
    }
    // Ranges inside one region only.
    assert!(frames.range(GuestAddress((1 << 20) - 4096), 8192).is_none());
    assert!(frames.range(GuestAddress(HIGH), 1 << 20).is_some());
    assert!(frames.range(GuestAddress(2 << 20), 4096).is_none());
}

#[test]
fn misshapen_guest_memory_is_refused() {
    let odd = Arc::new(GuestMemoryMmap::<()>::from_ranges(&[(GuestAddress(0x800), 8192)]).unwrap());
    assert!(GuestFrames::new(odd).is_err());
}
