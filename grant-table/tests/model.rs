//! Grant, revoke, map and copy against a model, in one process over heap memory.
//!
//! The owner's memory alternates canary frames (never granted, filled with a pattern) with
//! grantable frames; the backend's local memory has canaries around its one buffer. After every
//! step: the canaries are intact, the model's bytes match the real frames, revoke failed exactly
//! while the grant was mapped, and nothing stays pinned that is not mapped.

use std::collections::BTreeMap;

use proptest::prelude::*;
use pvnet_grant_table::PeerGrants;
use pvnet_grant_table::{
    Access, CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, GrantError, GrantMapping, GrantOps,
    GrantRef, GrantStatus, GrantTable,
};
use shared_mem::SharedRegion;

const BACKEND: DomId = DomId(7);
/// Owner frames: 0 c, 1 g, 2 c, 3 g, 4 c, 5 g, 6 c, 7 g, 8 c.
const OWNER_FRAMES: usize = 9;
/// Local frames: 0 c, 1 buffer, 2 c.
const LOCAL_BUFFER: FrameNumber = FrameNumber(1);
const CANARY: u8 = 0xc5;

fn grantable(i: u8) -> FrameNumber {
    FrameNumber(u32::from(i % 4) * 2 + 1)
}

#[derive(Clone, Debug)]
enum Op {
    Grant {
        frame: u8,
        readonly: bool,
    },
    Revoke {
        which: u8,
    },
    Map {
        which: u8,
        write: bool,
    },
    Unmap {
        which: u8,
    },
    CopyIn {
        which: u8,
        offset: u16,
        len: u16,
        seed: u8,
    },
    CopyOut {
        which: u8,
        offset: u16,
        len: u16,
    },
    /// A copy naming any reference, including reserved, revoked and out-of-range ones.
    CopyAnyRef {
        gref: u32,
        offset: u16,
        len: u16,
    },
}

fn op() -> impl Strategy<Value = Op> {
    let range = (0u16..4200, 0u16..4200);
    prop_oneof![
        3 => (any::<u8>(), any::<bool>()).prop_map(|(frame, readonly)| Op::Grant { frame, readonly }),
        2 => any::<u8>().prop_map(|which| Op::Revoke { which }),
        2 => (any::<u8>(), any::<bool>()).prop_map(|(which, write)| Op::Map { which, write }),
        2 => any::<u8>().prop_map(|which| Op::Unmap { which }),
        3 => (any::<u8>(), range.clone(), any::<u8>()).prop_map(|(which, (offset, len), seed)| Op::CopyIn { which, offset: offset % 4096, len: len % 1600, seed }),
        3 => (any::<u8>(), range).prop_map(|(which, (offset, len))| Op::CopyOut { which, offset, len: len % 1600 }),
        1 => (0u32..600, 0u16..4096, 0u16..64).prop_map(|(gref, offset, len)| Op::CopyAnyRef { gref, offset, len }),
    ]
}

struct Live {
    frame: FrameNumber,
    readonly: bool,
    maps: usize,
}

fn pick<T>(map: &BTreeMap<GrantRef, T>, which: u8) -> Option<GrantRef> {
    if map.is_empty() {
        return None;
    }
    map.keys().nth(usize::from(which) % map.len()).copied()
}

/// Copies `len` bytes at `offset` of the grant into the local buffer; returns the status.
/// Twice: as a batch of one, then as `copy_one` (the same bytes again), which must agree.
fn copy_out(peer: &PeerGrants, gref: GrantRef, offset: u16, len: u16) -> GrantStatus {
    let op = CopyOp::new(
        CopyPtr::Grant { gref, offset },
        CopyPtr::Local {
            frame: LOCAL_BUFFER,
            offset: 0,
        },
        len,
    );
    let mut ops = [op];
    peer.copy(&mut ops);
    let mut single = op;
    peer.copy_one(&mut single);
    assert_eq!(single.status, ops[0].status, "copy_one agrees with copy");
    ops[0].status
}

/// The model's side of a successful [`copy_out`].
fn model_copy_out(local: &mut [u8], frames: &[Vec<u8>], grant: &Live, offset: u16, len: u16) {
    let (f, o, n) = (
        grant.frame.0 as usize,
        usize::from(offset),
        usize::from(len),
    );
    local[..n].copy_from_slice(&frames[f][o..o + n]);
}

fn check_canaries(r: &SharedRegion, frames: &[usize]) -> Result<(), TestCaseError> {
    let mut page = vec![0u8; FRAME_SIZE];
    for &f in frames {
        r.copy_out(f * FRAME_SIZE, &mut page).unwrap();
        prop_assert!(
            page.iter().all(|&b| b == CANARY),
            "canary frame {f} was touched"
        );
    }
    Ok(())
}

fn run(ops: Vec<Op>) -> Result<(), TestCaseError> {
    let frames = SharedRegion::new_zeroed(OWNER_FRAMES * FRAME_SIZE);
    let local = SharedRegion::new_zeroed(3 * FRAME_SIZE);
    for f in (0..OWNER_FRAMES).step_by(2) {
        frames.fill(f * FRAME_SIZE, FRAME_SIZE, CANARY).unwrap();
    }
    for f in [0, 2] {
        local.fill(f * FRAME_SIZE, FRAME_SIZE, CANARY).unwrap();
    }
    let mut model_frames = vec![vec![0u8; FRAME_SIZE]; OWNER_FRAMES];
    let mut model_local = vec![0u8; FRAME_SIZE];

    let mut table = GrantTable::new(SharedRegion::new_zeroed(FRAME_SIZE)).unwrap();
    let peer = PeerGrants::new(
        BACKEND,
        table.region().clone(),
        frames.clone(),
        local.clone(),
    );
    let mut live: BTreeMap<GrantRef, Live> = BTreeMap::new();
    let mut mappings = Vec::new();

    for op in ops {
        match op {
            Op::Grant { frame, readonly } => {
                let frame = grantable(frame);
                let gref = table.grant_access(BACKEND, frame, readonly).unwrap();
                prop_assert!(!live.contains_key(&gref), "reference handed out twice");
                live.insert(
                    gref,
                    Live {
                        frame,
                        readonly,
                        maps: 0,
                    },
                );
            }
            Op::Revoke { which } => {
                let Some(gref) = pick(&live, which) else {
                    continue;
                };
                match table.end_access(gref) {
                    Ok(frame) => {
                        prop_assert_eq!(live[&gref].maps, 0, "revoked while mapped");
                        prop_assert_eq!(frame, live[&gref].frame);
                        live.remove(&gref);
                    }
                    Err(GrantError::InUse(_)) => {
                        prop_assert!(live[&gref].maps > 0, "in use but not mapped")
                    }
                    Err(e) => prop_assert!(false, "unexpected {e}"),
                }
            }
            Op::Map { which, write } => {
                let Some(gref) = pick(&live, which) else {
                    continue;
                };
                let access = if write {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                };
                match peer.map(gref, access) {
                    Ok(m) => {
                        prop_assert!(!(write && live[&gref].readonly));
                        prop_assert_eq!(m.frame(), live[&gref].frame);
                        live.get_mut(&gref).unwrap().maps += 1;
                        mappings.push((gref, m));
                    }
                    Err(status) => {
                        prop_assert!(write && live[&gref].readonly);
                        prop_assert_eq!(status, GrantStatus::PermissionDenied);
                    }
                }
            }
            Op::Unmap { which } => {
                if mappings.is_empty() {
                    continue;
                }
                let (gref, m) = mappings.swap_remove(usize::from(which) % mappings.len());
                // Reading through the mapping sees the model's bytes before it goes.
                let mut head = [0u8; 16];
                m.read(0, &mut head).unwrap();
                let f = live[&gref].frame.0 as usize;
                prop_assert_eq!(&head[..], &model_frames[f][..16]);
                drop(m);
                live.get_mut(&gref).unwrap().maps -= 1;
            }
            Op::CopyIn {
                which,
                offset,
                len,
                seed,
            } => {
                let Some(gref) = pick(&live, which) else {
                    continue;
                };
                let bytes: Vec<u8> = (0..len)
                    .map(|i| seed.wrapping_add(i.to_le_bytes()[0]))
                    .collect();
                local
                    .copy_in(LOCAL_BUFFER.0 as usize * FRAME_SIZE, &bytes)
                    .unwrap();
                model_local[..bytes.len()].copy_from_slice(&bytes);
                let mut ops = [CopyOp::new(
                    CopyPtr::Local {
                        frame: LOCAL_BUFFER,
                        offset: 0,
                    },
                    CopyPtr::Grant { gref, offset },
                    len,
                )];
                peer.copy(&mut ops);
                let fits = usize::from(offset) + usize::from(len) <= FRAME_SIZE;
                let want = if !fits {
                    GrantStatus::BadCopyArg
                } else if live[&gref].readonly {
                    GrantStatus::PermissionDenied
                } else {
                    GrantStatus::Okay
                };
                prop_assert_eq!(ops[0].status, want);
                if want == GrantStatus::Okay {
                    let f = live[&gref].frame.0 as usize;
                    let o = usize::from(offset);
                    model_frames[f][o..o + bytes.len()].copy_from_slice(&bytes);
                }
            }
            Op::CopyOut { which, offset, len } => {
                let Some(gref) = pick(&live, which) else {
                    continue;
                };
                let status = copy_out(&peer, gref, offset, len);
                let want = if usize::from(offset) + usize::from(len) > FRAME_SIZE {
                    GrantStatus::BadCopyArg
                } else {
                    GrantStatus::Okay
                };
                prop_assert_eq!(status, want);
                if status == GrantStatus::Okay {
                    model_copy_out(&mut model_local, &model_frames, &live[&gref], offset, len);
                }
            }
            Op::CopyAnyRef { gref, offset, len } => {
                let gref = GrantRef(gref);
                let status = copy_out(&peer, gref, offset, len);
                let want = if usize::from(offset) + usize::from(len) > FRAME_SIZE {
                    GrantStatus::BadCopyArg
                } else if gref.0 < 8 || gref.0 >= 512 {
                    GrantStatus::BadGntref
                } else if live.contains_key(&gref) {
                    GrantStatus::Okay
                } else {
                    GrantStatus::GeneralError
                };
                prop_assert_eq!(status, want);
                if status == GrantStatus::Okay {
                    model_copy_out(&mut model_local, &model_frames, &live[&gref], offset, len);
                }
            }
        }
        // After every step.
        check_canaries(&frames, &[0, 2, 4, 6, 8])?;
        check_canaries(&local, &[0, 2])?;
        let mut page = vec![0u8; FRAME_SIZE];
        for f in (1..OWNER_FRAMES).step_by(2) {
            frames.copy_out(f * FRAME_SIZE, &mut page).unwrap();
            prop_assert!(page == model_frames[f], "frame {f} differs from the model");
        }
        local
            .copy_out(LOCAL_BUFFER.0 as usize * FRAME_SIZE, &mut page)
            .unwrap();
        prop_assert!(page == model_local, "local buffer differs from the model");
        let mapped: std::collections::BTreeSet<GrantRef> =
            mappings.iter().map(|(g, _)| *g).collect();
        prop_assert_eq!(peer.pinned(), mapped.len());
        for (gref, l) in &live {
            prop_assert_eq!(table.in_use(*gref), l.maps > 0);
        }
    }
    // Unmapping everything makes every grant revocable: nothing leaks a pin.
    drop(mappings);
    prop_assert_eq!(peer.pinned(), 0);
    for gref in live.keys() {
        prop_assert!(table.end_access(*gref).is_ok());
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn grants_match_the_model(ops in proptest::collection::vec(op(), 1..80)) {
        run(ops)?;
    }
}
