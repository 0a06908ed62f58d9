//! Persistent claims (`PeerGrants::with_persistent_copies`): copies keep their grants claimed,
//! the owner cannot revoke them meanwhile, and `release_persistent` lets them all go. Hints
//! (`prefetch`, `prefetch_for_write`) take no claim, held or not.

use pvnet_grant_table::PeerGrants;
use pvnet_grant_table::{
    CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, GrantError, GrantOps, GrantRef, GrantStatus,
    GrantTable,
};
use shared_mem::SharedRegion;

const PEER: DomId = DomId(0);

/// One copy, as a batch of one and then again as `copy_one` (which must agree: the same
/// bytes land twice, and a held claim stays one claim).
fn copy(peer: &PeerGrants, source: CopyPtr, dest: CopyPtr, len: u16) -> GrantStatus {
    let op = CopyOp::new(source, dest, len);
    let mut ops = [op];
    peer.copy(&mut ops);
    let mut single = op;
    peer.copy_one(&mut single);
    assert_eq!(single.status, ops[0].status, "copy_one agrees with copy");
    ops[0].status
}

#[test]
fn persistent_claims_hold_until_released() {
    let table_mem = SharedRegion::new_zeroed(FRAME_SIZE);
    let frames = SharedRegion::new_zeroed(4 * FRAME_SIZE);
    let local = SharedRegion::new_zeroed(2 * FRAME_SIZE);
    let mut owner = GrantTable::new(table_mem.clone()).unwrap();
    let src = owner.grant_access(PEER, FrameNumber(1), true).unwrap();
    let dst = owner.grant_access(PEER, FrameNumber(2), false).unwrap();
    frames
        .copy_in(FRAME_SIZE, b"hello, persistent grants")
        .unwrap();
    let peer =
        PeerGrants::new(PEER, table_mem, frames.clone(), local.clone()).with_persistent_copies();
    let here = |frame| CopyPtr::Local {
        frame: FrameNumber(frame),
        offset: 0,
    };
    for round in 0..3 {
        assert_eq!(
            copy(
                &peer,
                CopyPtr::Grant {
                    gref: src,
                    offset: 0
                },
                here(0),
                24
            ),
            GrantStatus::Okay
        );
        assert_eq!(
            copy(
                &peer,
                here(0),
                CopyPtr::Grant {
                    gref: dst,
                    offset: 8
                },
                24
            ),
            GrantStatus::Okay,
            "round {round}"
        );
    }
    let mut got = [0u8; 24];
    frames.copy_out(2 * FRAME_SIZE + 8, &mut got).unwrap();
    assert_eq!(&got, b"hello, persistent grants");
    // Both claims are held: the owner's revoke fails (XSA-396) while they are.
    assert_eq!(peer.pinned(), 2);
    assert!(matches!(owner.end_access(src), Err(GrantError::InUse(_))));
    assert!(matches!(owner.end_access(dst), Err(GrantError::InUse(_))));
    // Through a held claim, a copy past the end of either frame, or from a frame we do not
    // have, is still refused with its status, and copies nothing.
    let past = |offset| CopyPtr::Local {
        frame: FrameNumber(0),
        offset,
    };
    let from_src = |offset| CopyPtr::Grant { gref: src, offset };
    let to_dst = |offset| CopyPtr::Grant { gref: dst, offset };
    let refused = [
        (from_src(4090), here(1), GrantStatus::BadCopyArg),
        (from_src(0), past(4090), GrantStatus::BadCopyArg),
        (past(4090), to_dst(0), GrantStatus::BadCopyArg),
        (here(0), to_dst(4090), GrantStatus::BadCopyArg),
        (from_src(0), here(2), GrantStatus::BadPage),
        (here(2), to_dst(0), GrantStatus::BadPage),
    ];
    for (source, dest, status) in refused {
        assert_eq!(
            copy(&peer, source, dest, 8),
            status,
            "{source:?} -> {dest:?}"
        );
    }
    let mut tail = [1u8; 6];
    local.copy_out(4090, &mut tail).unwrap();
    assert_eq!(tail, [0; 6], "nothing copied by refused copies");
    frames.copy_out(2 * FRAME_SIZE + 4090, &mut tail).unwrap();
    assert_eq!(tail, [0; 6], "nothing copied by refused copies");
    // A write through the read-only grant is still refused, claim or not.
    assert_eq!(
        copy(
            &peer,
            here(0),
            CopyPtr::Grant {
                gref: src,
                offset: 0
            },
            4
        ),
        GrantStatus::PermissionDenied
    );
    // Hints through held claims and through none, with any offset and length (a peer's
    // garbage): no fault, no claim taken or dropped, no byte changed.
    let before = {
        let mut b = vec![0u8; 4 * FRAME_SIZE];
        frames.copy_out(0, &mut b).unwrap();
        b
    };
    for gref in [src, dst, GrantRef(7), GrantRef(u32::MAX)] {
        for (offset, len) in [
            (0, 0),
            (0, 1),
            (8, 1500),
            (4095, u16::MAX),
            (u16::MAX, u16::MAX),
        ] {
            peer.prefetch(gref, offset, len);
            peer.prefetch_for_write(gref, offset, len);
        }
    }
    assert_eq!(peer.pinned(), 2);
    let mut after = vec![0u8; 4 * FRAME_SIZE];
    frames.copy_out(0, &mut after).unwrap();
    assert!(after == before, "a hint changes no byte");
    assert_eq!(peer.release_persistent(), 2);
    assert_eq!(peer.pinned(), 0);
    owner.end_access(src).unwrap();
    owner.end_access(dst).unwrap();
    // Revoked: a copy now fails, it does not reuse the old claim.
    assert_ne!(
        copy(
            &peer,
            CopyPtr::Grant {
                gref: src,
                offset: 0
            },
            here(1),
            4
        ),
        GrantStatus::Okay
    );
}

/// A grantee that died holding claims leaves their marks; `reclaim` takes such grants back
/// whatever the marks say (for a grantee known to be gone), and the references are reusable.
#[test]
fn reclaim_takes_back_grants_a_dead_grantee_left_marked() {
    let table_mem = SharedRegion::new_zeroed(FRAME_SIZE);
    let frames = SharedRegion::new_zeroed(4 * FRAME_SIZE);
    let mut owner = GrantTable::new(table_mem.clone()).unwrap();
    let held = owner.grant_access(PEER, FrameNumber(1), false).unwrap();
    let idle = owner.grant_access(PEER, FrameNumber(2), false).unwrap();
    let peer = PeerGrants::new(
        PEER,
        table_mem,
        frames,
        SharedRegion::new_zeroed(FRAME_SIZE),
    )
    .with_persistent_copies();
    let src = CopyPtr::Grant {
        gref: held,
        offset: 0,
    };
    let dst = CopyPtr::Local {
        frame: FrameNumber(0),
        offset: 0,
    };
    assert_eq!(copy(&peer, src, dst, 8), GrantStatus::Okay);
    // The grantee "dies" holding its claim: nothing releases it.
    std::mem::forget(peer);
    assert!(matches!(owner.end_access(held), Err(GrantError::InUse(_))));
    assert!(owner.reclaim(held).unwrap(), "it was marked in use");
    assert!(!owner.reclaim(idle).unwrap(), "not marked");
    assert!(matches!(
        owner.reclaim(held),
        Err(GrantError::NotGranted(_))
    ));
    // Both references are free again.
    let again = owner.grant_access(PEER, FrameNumber(3), false).unwrap();
    assert!(again == held || again == idle);
}

/// Hints without persistent claims go through the frame the owner's entry names: they take
/// no claim (the owner revokes at once afterwards), change no byte, and an entry naming a
/// frame beyond the owner's memory, a reserved reference or one beyond the table aims them
/// nowhere.
#[test]
fn hints_through_entries_take_nothing() {
    let table_mem = SharedRegion::new_zeroed(FRAME_SIZE);
    let frames = SharedRegion::new_zeroed(4 * FRAME_SIZE);
    let local = SharedRegion::new_zeroed(FRAME_SIZE);
    let mut owner = GrantTable::new(table_mem.clone()).unwrap();
    let good = owner.grant_access(PEER, FrameNumber(1), false).unwrap();
    let wild = owner.grant_access(PEER, FrameNumber(2), false).unwrap();
    // The entry's frame word (bytes 4..8 of its 8) aimed far beyond the owner's 4 frames.
    table_mem
        .store_u32(
            wild.0 as usize * 8 + 4,
            u32::MAX,
            std::sync::atomic::Ordering::Relaxed,
        )
        .unwrap();
    frames.copy_in(FRAME_SIZE, &[7; 100]).unwrap();
    let mut before = vec![0u8; 4 * FRAME_SIZE];
    frames.copy_out(0, &mut before).unwrap();
    let peer = PeerGrants::new(PEER, table_mem, frames.clone(), local);
    for gref in [
        good,
        wild,
        GrantRef(0),
        GrantRef(511),
        GrantRef(512),
        GrantRef(u32::MAX),
    ] {
        for (offset, len) in [(0, 0), (0, 1500), (4000, 4000), (u16::MAX, u16::MAX)] {
            peer.prefetch(gref, offset, len);
            peer.prefetch_for_write(gref, offset, len);
        }
    }
    assert_eq!(peer.pinned(), 0, "no claim taken");
    let mut after = vec![0u8; 4 * FRAME_SIZE];
    frames.copy_out(0, &mut after).unwrap();
    assert!(after == before, "a hint changes no byte");
    assert_eq!(
        owner.end_access(good).unwrap(),
        FrameNumber(1),
        "not in use"
    );
}
