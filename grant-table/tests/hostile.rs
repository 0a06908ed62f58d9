//! A hostile owner writes anything into its grant table while the grantee works: the grantee
//! never panics, never touches its own memory outside the buffers it named, never leaves a
//! grant pinned, and answers every bad entry with an error status. And page flips keep exact
//! frame accounting whatever order offers, transfers and cancels come in.

use proptest::prelude::*;
use pvnet_grant_table::{
    Access, CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, GrantMapping, GrantOps, GrantRef,
    GrantStatus, GrantTable, TransferEnd, TransferOp, TransferState,
};
use pvnet_grant_table::{FramePool, PeerGrants};
use shared_mem::SharedRegion;

const BACKEND: DomId = DomId(3);
const FRONTEND_POOL: u32 = 6;
const POOL: u32 = 12;

#[derive(Clone, Debug)]
enum Step {
    /// The owner writes a word anywhere in its table.
    Scribble {
        word: usize,
        value: u32,
    },
    /// The owner writes a plausible entry: a type, our domid or not, any frame.
    Forge {
        gref: u32,
        flags: u16,
        ours: bool,
        frame: u32,
    },
    Copy {
        gref: u32,
        offset: u16,
        len: u16,
        into_grant: bool,
    },
    Map {
        gref: u32,
        write: bool,
    },
    Unmap,
    Transfer {
        frame: u32,
        gref: u32,
    },
}

fn step() -> impl Strategy<Value = Step> {
    prop_oneof![
        (0usize..128, any::<u32>()).prop_map(|(word, value)| Step::Scribble { word, value }),
        (0u32..20, 0u16..64, any::<bool>(), 0u32..40).prop_map(|(gref, flags, ours, frame)| {
            Step::Forge {
                gref,
                flags,
                ours,
                frame,
            }
        }),
        (0u32..24, 0u16..4200, 0u16..300, any::<bool>()).prop_map(
            |(gref, offset, len, into_grant)| Step::Copy {
                gref,
                offset,
                len,
                into_grant
            }
        ),
        (0u32..24, any::<bool>()).prop_map(|(gref, write)| Step::Map { gref, write }),
        Just(Step::Unmap),
        (0u32..POOL + 2, 0u32..24).prop_map(|(frame, gref)| Step::Transfer { frame, gref }),
    ]
}

fn hostile_owner(steps: Vec<Step>) -> Result<(), TestCaseError> {
    let table = SharedRegion::new_zeroed(FRAME_SIZE / 4); // 128 entries
    let frames = SharedRegion::new_zeroed(8 * FRAME_SIZE);
    let local = SharedRegion::new_zeroed(3 * FRAME_SIZE);
    local.fill(0, FRAME_SIZE, 0xc5).unwrap();
    local.fill(2 * FRAME_SIZE, FRAME_SIZE, 0xc5).unwrap();
    let pool = FramePool::new(SharedRegion::new_zeroed(POOL as usize * FRAME_SIZE), |f| {
        f.0 >= FRONTEND_POOL
    });
    let peer = PeerGrants::new(BACKEND, table.clone(), frames, local.clone()).with_flip_pool(pool);
    let mut maps = Vec::new();
    for s in steps {
        match s {
            Step::Scribble { word, value } => table
                .store_u32(word * 4, value, core::sync::atomic::Ordering::Relaxed)
                .unwrap(),
            Step::Forge {
                gref,
                flags,
                ours,
                frame,
            } => {
                let domid = if ours { BACKEND.0 } else { 99 };
                let word = u32::from(flags) | (u32::from(domid) << 16);
                table
                    .store_u32(
                        gref as usize * 8 + 4,
                        frame,
                        core::sync::atomic::Ordering::Relaxed,
                    )
                    .unwrap();
                table
                    .store_u32(
                        gref as usize * 8,
                        word.to_le(),
                        core::sync::atomic::Ordering::Release,
                    )
                    .unwrap();
            }
            Step::Copy {
                gref,
                offset,
                len,
                into_grant,
            } => {
                let g = CopyPtr::Grant {
                    gref: GrantRef(gref),
                    offset,
                };
                let l = CopyPtr::Local {
                    frame: FrameNumber(1),
                    offset: 0,
                };
                let mut ops = [if into_grant {
                    CopyOp::new(l, g, len)
                } else {
                    CopyOp::new(g, l, len)
                }];
                peer.copy(&mut ops);
                if usize::from(offset) + usize::from(len) > FRAME_SIZE {
                    prop_assert_eq!(ops[0].status, GrantStatus::BadCopyArg);
                }
            }
            Step::Map { gref, write } => {
                let access = if write {
                    Access::ReadWrite
                } else {
                    Access::ReadOnly
                };
                if let Ok(m) = peer.map(GrantRef(gref), access) {
                    let mut b = [0u8; 8];
                    m.read(4088, &mut b).unwrap();
                    prop_assert_eq!(m.read(4089, &mut b), Err(GrantStatus::BadCopyArg));
                    maps.push(m);
                }
            }
            Step::Unmap => {
                maps.pop();
            }
            Step::Transfer { frame, gref } => {
                let mut ops = [TransferOp::new(FrameNumber(frame), GrantRef(gref))];
                peer.transfer(&mut ops);
            }
        }
        let pool = peer.pool().unwrap();
        prop_assert!(pool.owned_count() <= POOL as usize);
        prop_assert!(pool.owned_frames().all(|f| f.0 < POOL));
    }
    drop(maps);
    prop_assert_eq!(peer.pinned(), 0, "every claim released");
    let mut page = vec![0u8; FRAME_SIZE];
    for f in [0usize, 2] {
        local.copy_out(f * FRAME_SIZE, &mut page).unwrap();
        prop_assert!(
            page.iter().all(|&b| b == 0xc5),
            "local canary {} touched",
            f
        );
    }
    Ok(())
}

#[derive(Clone, Debug)]
enum Flip {
    Offer,
    Transfer { which: u8 },
    End { which: u8 },
}

fn flip() -> impl Strategy<Value = Flip> {
    prop_oneof![
        2 => Just(Flip::Offer),
        3 => any::<u8>().prop_map(|which| Flip::Transfer { which }),
        2 => any::<u8>().prop_map(|which| Flip::End { which }),
    ]
}

fn flips(steps: Vec<Flip>) -> Result<(), TestCaseError> {
    let pool_mem = SharedRegion::new_zeroed(POOL as usize * FRAME_SIZE);
    let front_pool = FramePool::new(pool_mem.clone(), |f| f.0 < FRONTEND_POOL);
    let back_pool = FramePool::new(pool_mem, |f| f.0 >= FRONTEND_POOL);
    let mut table = GrantTable::new(SharedRegion::new_zeroed(FRAME_SIZE)).unwrap();
    let peer = PeerGrants::new(
        BACKEND,
        table.region().clone(),
        SharedRegion::new_zeroed(FRAME_SIZE),
        SharedRegion::new_zeroed(FRAME_SIZE),
    )
    .with_flip_pool(back_pool);
    // Offered and not yet ended: (grant, offered frame).
    let mut offers: Vec<(GrantRef, FrameNumber)> = Vec::new();
    for s in steps {
        match s {
            Flip::Offer => {
                let Some(frame) = front_pool.owned_frames().next() else {
                    continue;
                };
                front_pool.give(frame).unwrap();
                let gref = table.grant_transfer(BACKEND, frame).unwrap();
                offers.push((gref, frame));
            }
            Flip::Transfer { which } => {
                if offers.is_empty() {
                    continue;
                }
                let (gref, _) = offers[usize::from(which) % offers.len()];
                let back = peer.pool().unwrap();
                let Some(give) = back.owned_frames().next() else {
                    continue;
                };
                // The backend writes a packet into its frame, then flips it.
                back.write(give, 0, &give.0.to_le_bytes()).unwrap();
                let mut ops = [TransferOp::new(give, gref)];
                peer.transfer(&mut ops);
                if ops[0].status != GrantStatus::Okay {
                    // Only a second transfer into the same grant may fail.
                    prop_assert_eq!(ops[0].status, GrantStatus::GeneralError);
                }
            }
            Flip::End { which } => {
                if offers.is_empty() {
                    continue;
                }
                let (gref, offered) = offers.swap_remove(usize::from(which) % offers.len());
                match table.end_transfer(gref).unwrap() {
                    TransferEnd::Cancelled { offered: o } => {
                        prop_assert_eq!(o, offered);
                        front_pool.receive(o).unwrap();
                    }
                    TransferEnd::Completed {
                        received,
                        offered: o,
                    } => {
                        prop_assert_eq!(o, offered);
                        front_pool.receive(received).unwrap();
                        // The flipped frame holds the packet the backend wrote, unchanged.
                        let mut b = [0u8; 4];
                        front_pool.read(received, 0, &mut b).unwrap();
                        prop_assert_eq!(u32::from_le_bytes(b), received.0);
                    }
                }
            }
        }
        // Exact accounting: every frame is the front's, the back's, or in flight in exactly
        // one open offer (the offered frame, or the received one once the flip completed).
        let back = peer.pool().unwrap();
        let mut holders = vec![0u32; POOL as usize];
        for f in front_pool.owned_frames().chain(back.owned_frames()) {
            holders[f.0 as usize] += 1;
        }
        for (gref, offered) in &offers {
            let in_flight = match table.transfer_state(*gref).unwrap() {
                TransferState::Completed(received) => received,
                _ => *offered,
            };
            holders[in_flight.0 as usize] += 1;
        }
        prop_assert!(
            holders.iter().all(|&h| h == 1),
            "frame holders {:?}",
            holders
        );
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn hostile_owner_cannot_hurt_the_grantee(steps in proptest::collection::vec(step(), 1..100)) {
        hostile_owner(steps)?;
    }

    #[test]
    fn page_flips_keep_exact_accounting(steps in proptest::collection::vec(flip(), 1..100)) {
        flips(steps)?;
    }
}
