//! Two real processes. The parent owns frames, a grant table and a flip pool (memfds) and one
//! end of an event channel (eventfds); the child, a re-run of this test binary, receives the
//! fds over a Unix socket (SCM_RIGHTS), maps them, and as the grantee copies grant to grant,
//! maps a grant, is refused what it may not do, flips frames to the parent, and ping-pongs on
//! the event channel. The parent verifies every byte, the statuses, the frame accounting of
//! both sides, and that every grant is revocable afterwards.

use pvnet_process_host::testing::LeakCheck;
use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::Command;
use std::time::Duration;

use event_channel::{EventChannel, EventFdPort};
use grant_table::{
    Access, CopyOp, CopyPtr, DomId, FRAME_SIZE, FrameNumber, FramePool, GrantMapping, GrantOps,
    GrantRef, GrantStatus, GrantTable, PeerGrants, TransferEnd, TransferOp,
};
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, recvmsg,
    sendmsg, socketpair,
};
use pvnet_process_host::{RemapWindow, create_memfd, map_shared};
use shared_mem::SharedRegion;

const BACKEND: DomId = DomId(0);
const FRAMES: usize = 8;
const POOL: u32 = 8;
const PINGS: u32 = 1000;
const CHILD_ENV: &str = "PVNET_GRANT_CHILD_FD";
const WAIT: Option<Duration> = Some(Duration::from_secs(10));

fn pattern(seed: u32) -> Vec<u8> {
    (0..u32::try_from(FRAME_SIZE).unwrap())
        .map(|i| (i.wrapping_mul(31) ^ seed.wrapping_mul(0x9e37)).to_le_bytes()[0])
        .collect()
}

fn send(sock: &OwnedFd, payload: &[u8], fds: &[RawFd]) {
    let cmsg = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsg };
    sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(payload)],
        cmsgs,
        MsgFlags::empty(),
        None,
    )
    .unwrap();
}

fn recv(sock: &OwnedFd) -> (Vec<u8>, Vec<OwnedFd>) {
    let mut buf = vec![0u8; 4096];
    let mut space = nix::cmsg_space!([RawFd; 8]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .unwrap();
    let mut fds = Vec::new();
    for c in msg.cmsgs().unwrap() {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this process for us.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let n = msg.bytes;
    buf.truncate(n);
    (buf, fds)
}

/// A status as the child reports it: its `i16` code's bits in a `u32`.
fn code(s: GrantStatus) -> u32 {
    u32::from(s as i16 as u16)
}

fn u32s(bytes: &[u8]) -> Vec<u32> {
    bytes
        .chunks_exact(4)
        .map(|c| u32::from_le_bytes([c[0], c[1], c[2], c[3]]))
        .collect()
}

#[test]
fn two_processes_copy_map_flip_and_ping_pong() {
    let _leaks = LeakCheck::new();
    // The owner's memory: frames 1 and 3 hold data, frame 2 receives the child's writes.
    let frames_fd = create_memfd(c"owner-frames", FRAMES * FRAME_SIZE).unwrap();
    let frames = map_shared(&frames_fd, FRAMES * FRAME_SIZE).unwrap();
    let table_fd = create_memfd(c"owner-grants", FRAME_SIZE).unwrap();
    let mut table = GrantTable::new(map_shared(&table_fd, FRAME_SIZE).unwrap()).unwrap();
    let pool_fd = create_memfd(c"flip-pool", POOL as usize * FRAME_SIZE).unwrap();
    let front_pool = FramePool::new(
        map_shared(&pool_fd, POOL as usize * FRAME_SIZE).unwrap(),
        |f| f.0 < POOL / 2,
    );
    let (mut events, child_events) = EventFdPort::pair().unwrap();
    let (a, b) = (pattern(1), pattern(3));
    frames.copy_in(FRAME_SIZE, &a).unwrap();
    frames.copy_in(3 * FRAME_SIZE, &b).unwrap();

    let g1 = table.grant_access(BACKEND, FrameNumber(1), true).unwrap();
    let g2 = table.grant_access(BACKEND, FrameNumber(2), false).unwrap();
    let g3 = table.grant_access(BACKEND, FrameNumber(3), true).unwrap();
    let mut offers = Vec::new();
    for f in [FrameNumber(0), FrameNumber(1)] {
        front_pool.give(f).unwrap();
        offers.push((table.grant_transfer(BACKEND, f).unwrap(), f));
    }

    // The child's socket end must survive exec (no CLOEXEC); ours must not leak into it.
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::SeqPacket,
        None,
        SockFlag::empty(),
    )
    .unwrap();
    nix::fcntl::fcntl(
        &ours,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::FD_CLOEXEC),
    )
    .unwrap();
    let mut child = Command::new(std::env::current_exe().unwrap())
        .args([
            "--exact",
            "child_process_entry",
            "--ignored",
            "--nocapture",
            "--test-threads",
            "1",
        ])
        .env(CHILD_ENV, theirs.as_raw_fd().to_string())
        .spawn()
        .unwrap();
    drop(theirs);

    let (ev_rx, ev_tx) = child_events.clone_fds().unwrap();
    let grefs: Vec<u8> = [g1, g2, g3, offers[0].0, offers[1].0]
        .iter()
        .flat_map(|g| g.0.to_le_bytes())
        .collect();
    send(
        &ours,
        &grefs,
        &[
            frames_fd.as_raw_fd(),
            table_fd.as_raw_fd(),
            pool_fd.as_raw_fd(),
            ev_rx.as_raw_fd(),
            ev_tx.as_raw_fd(),
        ],
    );
    drop((ev_rx, ev_tx, child_events));

    // Ping-pong: every event answered, none lost.
    for i in 0..PINGS {
        events.notify().unwrap();
        assert!(events.wait(WAIT).unwrap(), "no answer to ping {i}");
    }

    let (report, _) = recv(&ours);
    let status = child.wait().unwrap();
    assert!(status.success(), "child failed: {status}");
    let report = u32s(&report);
    let statuses = &report[..4];
    let child_owned: Vec<u32> = report[4..].to_vec();

    // The child copied a[..2048] grant to grant, and b[..2048] via a mapping, into frame 2.
    let mut page = vec![0u8; FRAME_SIZE];
    frames.copy_out(2 * FRAME_SIZE, &mut page).unwrap();
    assert_eq!(&page[..2048], &a[..2048]);
    assert_eq!(&page[2048..], &b[..2048]);
    // And was refused what it may not do.
    assert_eq!(
        statuses[0],
        code(GrantStatus::PermissionDenied),
        "write through a read-only grant"
    );
    assert_eq!(
        statuses[1],
        code(GrantStatus::BadGntref),
        "reference outside the table"
    );
    assert_eq!(
        statuses[2],
        code(GrantStatus::PermissionDenied),
        "writable map of a read-only grant"
    );
    assert_eq!(statuses[3], code(GrantStatus::Okay), "both flips");

    // The flipped frames are ours now and hold what the child wrote; read them in place and
    // remapped into a slot of our own.
    let window = RemapWindow::new(2).unwrap();
    for (slot, (gref, offered)) in offers.into_iter().enumerate() {
        let TransferEnd::Completed {
            received,
            offered: o,
        } = table.end_transfer(gref).unwrap()
        else {
            panic!("transfer into {gref:?} did not complete");
        };
        assert_eq!(o, offered);
        front_pool.receive(received).unwrap();
        let want = pattern(100 + received.0);
        front_pool.read(received, 0, &mut page).unwrap();
        assert_eq!(page, want, "flipped frame {received:?} in place");
        window.remap(slot, &pool_fd, received).unwrap();
        window
            .region()
            .copy_out(slot * FRAME_SIZE, &mut page)
            .unwrap();
        assert_eq!(page, want, "flipped frame {received:?} remapped");
    }

    // Exact accounting across both processes: every pool frame owned by exactly one side.
    let mut holders = vec![0; POOL as usize];
    for f in front_pool.owned_frames().map(|f| f.0).chain(child_owned) {
        holders[f as usize] += 1;
    }
    assert!(
        holders.iter().all(|&h| h == 1),
        "pool frame holders {holders:?}"
    );

    // The child is gone and held nothing: every grant is revocable.
    for g in [g1, g2, g3] {
        table.end_access(g).unwrap();
    }
}

/// The child's side of `two_processes_copy_map_flip_and_ping_pong`: not a test of its own
/// (ignored), but the entry point that test runs in a second process.
#[test]
#[ignore = "run by two_processes_copy_map_flip_and_ping_pong in a child process"]
fn child_process_entry() {
    let Ok(fd) = std::env::var(CHILD_ENV) else {
        eprintln!(
            "child_process_entry: only runs as the child of two_processes_copy_map_flip_and_ping_pong"
        );
        return;
    };
    let fd: RawFd = fd.parse().unwrap();
    std::fs::read_link(format!("/proc/self/fd/{fd}")).expect("the inherited socket is open");
    // SAFETY: the parent passed us this descriptor (checked open above); nothing else owns it.
    let sock = unsafe { OwnedFd::from_raw_fd(fd) };
    let (payload, fds) = recv(&sock);
    let grefs: Vec<GrantRef> = u32s(&payload).into_iter().map(GrantRef).collect();
    let [frames_fd, table_fd, pool_fd, ev_rx, ev_tx]: [OwnedFd; 5] = fds.try_into().unwrap();
    let (g1, g2, g3, gt1, gt2) = (grefs[0], grefs[1], grefs[2], grefs[3], grefs[4]);

    let pool = FramePool::new(
        map_shared(&pool_fd, POOL as usize * FRAME_SIZE).unwrap(),
        |f| f.0 >= POOL / 2,
    );
    let peer = PeerGrants::new(
        BACKEND,
        map_shared(&table_fd, FRAME_SIZE).unwrap(),
        map_shared(&frames_fd, FRAMES * FRAME_SIZE).unwrap(),
        SharedRegion::new_zeroed(FRAME_SIZE),
    )
    .with_flip_pool(pool);
    let mut events = EventFdPort::from_fds(ev_rx, ev_tx).unwrap();

    // Grant to grant: g1[..2048] -> g2[..2048].
    let mut ops = [CopyOp::new(
        CopyPtr::Grant {
            gref: g1,
            offset: 0,
        },
        CopyPtr::Grant {
            gref: g2,
            offset: 0,
        },
        2048,
    )];
    peer.copy(&mut ops);
    assert_eq!(ops[0].status, GrantStatus::Okay);
    // Through a mapping: g3[..2048] -> our frame -> g2[2048..].
    let mut half = vec![0u8; 2048];
    {
        let m = peer.map(g3, Access::ReadOnly).unwrap();
        m.read(0, &mut half).unwrap();
    }
    peer.local().copy_in(0, &half).unwrap();
    let local = CopyPtr::Local {
        frame: FrameNumber(0),
        offset: 0,
    };
    let mut ops = [
        CopyOp::new(
            local,
            CopyPtr::Grant {
                gref: g2,
                offset: 2048,
            },
            2048,
        ),
        CopyOp::new(
            local,
            CopyPtr::Grant {
                gref: g1,
                offset: 0,
            },
            16,
        ),
        CopyOp::new(
            CopyPtr::Grant {
                gref: GrantRef(10_000),
                offset: 0,
            },
            local,
            16,
        ),
    ];
    peer.copy(&mut ops);
    assert_eq!(ops[0].status, GrantStatus::Okay);
    let map_rw = peer
        .map(g1, Access::ReadWrite)
        .err()
        .unwrap_or(GrantStatus::Okay);

    // Flip two of our pool frames, each holding a packet, into the parent's offers.
    let p = peer.pool().unwrap();
    let mut flips = Vec::new();
    for (frame, gref) in [(FrameNumber(4), gt1), (FrameNumber(5), gt2)] {
        p.write(frame, 0, &pattern(100 + frame.0)).unwrap();
        flips.push(TransferOp::new(frame, gref));
    }
    peer.transfer(&mut flips);
    let flipped = flips.iter().all(|t| t.status == GrantStatus::Okay);

    for i in 0..PINGS {
        assert!(events.wait(WAIT).unwrap(), "no ping {i}");
        events.notify().unwrap();
    }
    assert_eq!(peer.pinned(), 0, "nothing left in use");

    let mut report: Vec<u32> = vec![
        code(ops[1].status),
        code(ops[2].status),
        code(map_rw),
        code(if flipped {
            GrantStatus::Okay
        } else {
            GrantStatus::GeneralError
        }),
    ];
    report.extend(peer.pool().unwrap().owned_frames().map(|f| f.0));
    let bytes: Vec<u8> = report.iter().flat_map(|v| v.to_le_bytes()).collect();
    send(&sock, &bytes, &[]);
}
