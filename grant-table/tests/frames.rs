//! Frame memory with several regions and holes (`FrameRegions`, guest RAM as a VMM lays it
//! out) under the one claim protocol: frames in a hole or past the end are `BadPage` for every
//! operation, never a fault; bytes land in the right region; every write into a granted frame
//! is reported to the memory (a VMM's dirty log), persistent claims included.

use std::cell::RefCell;
use std::collections::BTreeSet;

use pvnet_grant_table::{
    Access, CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameMemory, FrameNumber, FrameRegions,
    GrantMapping, GrantOps, GrantStatus, GrantTable, PeerGrants,
};
use shared_mem::SharedRegion;

const PEER: DomId = DomId(0);

/// Guest RAM: frames 0..4 and 16..20, a hole between, nothing past 20.
fn ram() -> (FrameRegions, SharedRegion, SharedRegion) {
    let low = SharedRegion::new_zeroed(4 * FRAME_SIZE);
    let high = SharedRegion::new_zeroed(4 * FRAME_SIZE);
    let mut ram = FrameRegions::new();
    ram.add(FrameNumber(16), high.clone()).unwrap();
    ram.add(FrameNumber(0), low.clone()).unwrap();
    (ram, low, high)
}

/// Records every frame it is told was written.
struct Logged {
    ram: FrameRegions,
    dirty: RefCell<BTreeSet<u32>>,
}

impl FrameMemory for Logged {
    fn locate(&self, frame: FrameNumber) -> Option<(&SharedRegion, usize)> {
        self.ram.locate(frame)
    }
    fn written(&self, frame: FrameNumber) {
        self.dirty.borrow_mut().insert(frame.0);
    }
}

fn one_copy<M: FrameMemory>(peer: &PeerGrants<M>, source: CopyPtr, dest: CopyPtr) -> GrantStatus {
    let mut ops = [CopyOp::new(source, dest, 16)];
    peer.copy(&mut ops);
    ops[0].status
}

fn grant(gref: pvnet_grant_table::GrantRef) -> CopyPtr {
    CopyPtr::Grant { gref, offset: 100 }
}

const LOCAL: CopyPtr = CopyPtr::Local {
    frame: FrameNumber(0),
    offset: 0,
};

#[test]
fn regions_are_located_and_holes_refused() {
    let (ram, _, _) = ram();
    for f in [0, 3, 16, 19] {
        assert!(ram.locate(FrameNumber(f)).is_some(), "frame {f}");
    }
    for f in [4, 10, 15, 20, u32::MAX] {
        assert!(ram.locate(FrameNumber(f)).is_none(), "frame {f}");
    }
    let mut ram = ram;
    // Overlaps and misshapen regions are refused.
    assert!(
        ram.add(FrameNumber(2), SharedRegion::new_zeroed(FRAME_SIZE))
            .is_err()
    );
    assert!(
        ram.add(FrameNumber(15), SharedRegion::new_zeroed(2 * FRAME_SIZE))
            .is_err()
    );
    assert!(
        ram.add(FrameNumber(8), SharedRegion::new_zeroed(100))
            .is_err()
    );
    assert!(
        ram.add(
            FrameNumber(u32::MAX),
            SharedRegion::new_zeroed(2 * FRAME_SIZE)
        )
        .is_err()
    );
    ram.add(FrameNumber(4), SharedRegion::new_zeroed(FRAME_SIZE))
        .unwrap();
    assert!(ram.locate(FrameNumber(4)).is_some());
}

#[test]
fn copies_and_maps_reach_the_right_region_and_never_a_hole() {
    for persistent in [false, true] {
        let (ram, low, high) = ram();
        let table_mem = SharedRegion::new_zeroed(FRAME_SIZE);
        let mut owner = GrantTable::new(table_mem.clone()).unwrap();
        let in_low = owner.grant_access(PEER, FrameNumber(2), false).unwrap();
        let in_high = owner.grant_access(PEER, FrameNumber(17), false).unwrap();
        let in_hole = owner.grant_access(PEER, FrameNumber(8), false).unwrap();
        let past_end = owner.grant_access(PEER, FrameNumber(20), false).unwrap();
        let memory = Logged {
            ram,
            dirty: RefCell::default(),
        };
        let mut peer = PeerGrants::new(
            PEER,
            table_mem,
            memory,
            SharedRegion::new_zeroed(FRAME_SIZE),
        );
        if persistent {
            peer = peer.with_persistent_copies();
        }
        peer.local().copy_in(0, b"sixteen bytes!!!").unwrap();

        for g in [in_low, in_high] {
            assert_eq!(one_copy(&peer, LOCAL, grant(g)), GrantStatus::Okay);
        }
        let mut got = [0u8; 16];
        low.copy_out(2 * FRAME_SIZE + 100, &mut got).unwrap();
        assert_eq!(&got, b"sixteen bytes!!!");
        high.copy_out(FRAME_SIZE + 100, &mut got).unwrap();
        assert_eq!(&got, b"sixteen bytes!!!");

        // Both copies were reported (a copy out of a grant is not a write).
        assert_eq!(one_copy(&peer, grant(in_low), LOCAL), GrantStatus::Okay);
        assert_eq!(
            *peer_dirty(&peer),
            BTreeSet::from([2, 17]),
            "copies, persistent {persistent}"
        );
        peer.frames().dirty.borrow_mut().clear();
        // Again, through the claims the first copies left held when persistent: still
        // reported.
        assert_eq!(one_copy(&peer, LOCAL, grant(in_high)), GrantStatus::Okay);
        assert_eq!(
            *peer_dirty(&peer),
            BTreeSet::from([17]),
            "a second copy, persistent {persistent}"
        );
        peer.frames().dirty.borrow_mut().clear();

        for g in [in_hole, past_end] {
            assert_eq!(one_copy(&peer, LOCAL, grant(g)), GrantStatus::BadPage);
            assert_eq!(one_copy(&peer, grant(g), LOCAL), GrantStatus::BadPage);
            assert_eq!(
                peer.map(g, Access::ReadOnly).unwrap_err(),
                GrantStatus::BadPage
            );
            assert_eq!(
                peer.map_held(g, Access::ReadWrite).unwrap_err(),
                GrantStatus::BadPage
            );
        }
        {
            let m = peer.map(in_high, Access::ReadWrite).unwrap();
            m.write(0, b"mapped").unwrap();
            let held = peer.map_held(in_low, Access::ReadWrite).unwrap();
            held.region().copy_in(0, b"held").unwrap();
            peer.unmap_held(held);
        }
        high.copy_out(FRAME_SIZE, &mut got[..6]).unwrap();
        assert_eq!(&got[..6], b"mapped");

        // Both writable mappings were reported when they ended; no refused grant was.
        assert_eq!(
            *peer_dirty(&peer),
            BTreeSet::from([2, 17]),
            "maps, persistent {persistent}"
        );
        peer.release_persistent();
        assert_eq!(peer.pinned(), 0);
        // A refused grant holds nothing: the owner can revoke all of them.
        for g in [in_low, in_high, in_hole, past_end] {
            owner.end_access(g).unwrap();
        }
    }
}

fn peer_dirty(peer: &PeerGrants<Logged>) -> std::cell::Ref<'_, BTreeSet<u32>> {
    peer.frames().dirty.borrow()
}

/// The strict test memory holds only the frames listed, each on its own: a grant of a frame
/// not listed is `BadPage` (though the frame exists in the owner's memory), a listed one
/// works, and a located frame is exactly one page (nothing beyond it is reachable).
#[test]
fn strict_frames_hold_only_what_was_listed() {
    use pvnet_grant_table::StrictFrames;
    let mem = SharedRegion::new_zeroed(8 * FRAME_SIZE);
    let strict = StrictFrames::new(&mem, [FrameNumber(2), FrameNumber(5)]);
    let (page, at) = strict.locate(FrameNumber(2)).unwrap();
    assert_eq!((page.len(), at), (FRAME_SIZE, 0));
    assert!(strict.locate(FrameNumber(3)).is_none());
    assert!(strict.locate(FrameNumber(100)).is_none());
    let table = SharedRegion::new_zeroed(FRAME_SIZE);
    let mut owner = GrantTable::new(table.clone()).unwrap();
    let listed = owner.grant_access(PEER, FrameNumber(5), true).unwrap();
    let unlisted = owner.grant_access(PEER, FrameNumber(3), true).unwrap();
    mem.copy_in(5 * FRAME_SIZE + 100, b"only frame five")
        .unwrap();
    let peer = PeerGrants::new(PEER, table, strict, SharedRegion::new_zeroed(FRAME_SIZE));
    assert_eq!(one_copy(&peer, grant(listed), LOCAL), GrantStatus::Okay);
    let mut got = [0u8; 15];
    peer.local().copy_out(0, &mut got).unwrap();
    assert_eq!(&got, b"only frame five");
    assert_eq!(
        one_copy(&peer, grant(unlisted), LOCAL),
        GrantStatus::BadPage
    );
}
