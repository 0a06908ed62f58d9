//! `RUSTFLAGS="--cfg loom" cargo test -p grant-table --test loom --release`
//!
//! Revoke racing the grantee's use of a grant. Whatever the interleaving, a revoke that
//! succeeds is never followed by the grantee touching the frame: after a successful revoke the
//! owner reuses the frame (overwrites it), and a copy or mapping that reports success must have
//! seen only the bytes from before. A revoke that fails (in use) succeeds once the grantee is
//! done, so nothing stays pinned.
#![cfg(loom)]

use loom::thread;
use pvnet_grant_table::PeerGrants;
use pvnet_grant_table::{
    Access, CopyOp, CopyPtr, DomId, FrameNumber, GrantError, GrantMapping, GrantOps, GrantStatus,
    GrantTable,
};
use shared_mem::SharedRegion;

const BACKEND: DomId = DomId(1);
const ORIGINAL: [u8; 4] = [0xaa; 4];
const REUSED: [u8; 4] = [0xff; 4];

/// The owner: one frame with ORIGINAL at offset 0, granted read-only; a table of 16 entries.
fn setup() -> (
    SharedRegion,
    GrantTable,
    PeerGrants,
    pvnet_grant_table::GrantRef,
) {
    let frames = SharedRegion::new_zeroed(4096);
    frames.copy_in(0, &ORIGINAL).unwrap();
    let mut table = GrantTable::new(SharedRegion::new_zeroed(16 * 8)).unwrap();
    let gref = table.grant_access(BACKEND, FrameNumber(0), true).unwrap();
    let peer = PeerGrants::new(
        BACKEND,
        table.region().clone(),
        frames.clone(),
        SharedRegion::new_zeroed(4096),
    );
    (frames, table, peer, gref)
}

/// The owner's side of the race: revoke, and on success reuse the frame at once.
fn revoke_and_reuse(
    table: &mut GrantTable,
    frames: &SharedRegion,
    gref: pvnet_grant_table::GrantRef,
) -> bool {
    match table.end_access(gref) {
        Ok(_) => {
            frames.copy_in(0, &REUSED).unwrap();
            true
        }
        Err(GrantError::InUse(_)) => false,
        Err(e) => panic!("unexpected {e}"),
    }
}

fn model(f: impl Fn() + Sync + Send + 'static) {
    let mut builder = loom::model::Builder::new();
    builder.preemption_bound = Some(3);
    builder.check(f);
}

#[test]
fn revoke_racing_a_copy_never_lets_the_copy_see_a_reused_frame() {
    model(|| {
        let (frames, mut table, peer, gref) = setup();
        let grantee = thread::spawn(move || {
            let mut ops = [CopyOp::new(
                CopyPtr::Grant { gref, offset: 0 },
                CopyPtr::Local {
                    frame: FrameNumber(0),
                    offset: 0,
                },
                4,
            )];
            peer.copy(&mut ops);
            let mut got = [0u8; 4];
            peer.local().copy_out(0, &mut got).unwrap();
            (ops[0].status, got, peer.pinned())
        });
        let revoked = revoke_and_reuse(&mut table, &frames, gref);
        let (status, got, pinned) = grantee.join().unwrap();
        assert_eq!(pinned, 0);
        match status {
            GrantStatus::Okay => {
                assert_eq!(got, ORIGINAL, "copy succeeded but read a reused frame")
            }
            // The revoke won: the copy found the entry gone.
            GrantStatus::GeneralError => {
                assert!(revoked, "copy failed though the grant was never revoked")
            }
            other => panic!("unexpected status {other:?}"),
        }
        if !revoked {
            assert!(
                revoke_and_reuse(&mut table, &frames, gref),
                "revoke succeeds once the copy is done"
            );
        }
    });
}

#[test]
fn revoke_racing_a_mapping_fails_while_the_mapping_lives() {
    model(|| {
        let (frames, mut table, peer, gref) = setup();
        let grantee = thread::spawn(move || {
            let result = match peer.map(gref, Access::ReadOnly) {
                Ok(m) => {
                    let mut first = [0u8; 4];
                    m.read(0, &mut first).unwrap();
                    let mut second = [0u8; 4];
                    m.read(0, &mut second).unwrap();
                    // Both reads while mapped: the frame cannot have been reused in between.
                    Some((first, second))
                }
                Err(status) => {
                    assert_eq!(status, GrantStatus::GeneralError);
                    None
                }
            };
            (result, peer.pinned())
        });
        let revoked = revoke_and_reuse(&mut table, &frames, gref);
        let (result, pinned) = grantee.join().unwrap();
        assert_eq!(pinned, 0);
        match result {
            Some((first, second)) => {
                assert_eq!(first, ORIGINAL);
                assert_eq!(second, ORIGINAL);
            }
            None => assert!(revoked),
        }
        if !revoked {
            assert!(revoke_and_reuse(&mut table, &frames, gref));
        }
    });
}
