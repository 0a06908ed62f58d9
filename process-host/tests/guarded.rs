//! The strict test mode's mapping: only the frames a frontend granted are mapped, each its
//! own page between inaccessible guard pages, and a frame never granted is not mapped at all.
//! The kernel is asked (process_vm_readv on this process) whether each address can be read:
//! what the backend's code would get if it strayed there is a fault, not the next frame.

use std::io::IoSliceMut;

use grant_table::{FRAME_SIZE, FrameMemory, FrameNumber};
use nix::errno::Errno;
use nix::sys::uio::{RemoteIoVec, process_vm_readv};
use pvnet_process_host::testing::LeakCheck;
use pvnet_process_host::{GuardedFrames, create_memfd, map_shared};

/// Whether one byte at `addr` can be read in this process.
fn readable(addr: usize) -> bool {
    let mut byte = [0u8; 1];
    let remote = [RemoteIoVec { base: addr, len: 1 }];
    match process_vm_readv(
        nix::unistd::getpid(),
        &mut [IoSliceMut::new(&mut byte)],
        &remote,
    ) {
        Ok(n) => n == 1,
        Err(Errno::EFAULT) => false,
        Err(e) => panic!("process_vm_readv: {e}"),
    }
}

/// Mappings of the memfd named `name` in this process.
fn mappings(name: &str) -> usize {
    std::fs::read_to_string("/proc/self/maps")
        .unwrap()
        .lines()
        .filter(|l| l.contains(&format!("memfd:{name}")))
        .count()
}

#[test]
fn only_granted_frames_are_mapped_each_between_guard_pages() {
    let _leaks = LeakCheck::new();
    let fd = create_memfd(c"guarded-frames", 6 * FRAME_SIZE).unwrap();
    let whole = map_shared(&fd, 6 * FRAME_SIZE).unwrap();
    for f in 0..6 {
        whole
            .fill(f * FRAME_SIZE, FRAME_SIZE, 0xa0 + u8::try_from(f).unwrap())
            .unwrap();
    }
    // Frame 9 is past the end: skipped. Frame 3 twice: mapped once.
    let granted = [1, 3, 4, 3, 9].map(FrameNumber);
    let guarded = GuardedFrames::map(&fd, 6 * FRAME_SIZE, granted).unwrap();
    assert_eq!(guarded.mapped(), 3);
    assert_eq!(
        mappings("guarded-frames"),
        1 + 3,
        "one mapping per granted frame"
    );
    for f in 0..7 {
        assert_eq!(guarded.contains(FrameNumber(f)), [1, 3, 4].contains(&f));
        assert_eq!(
            guarded.locate(FrameNumber(f)).is_some(),
            [1, 3, 4].contains(&f)
        );
    }
    // Each granted frame is that frame of the memfd, shared both ways.
    let (one, at) = guarded.locate(FrameNumber(1)).unwrap();
    assert_eq!((one.len(), at), (FRAME_SIZE, 0));
    let mut page = vec![0u8; FRAME_SIZE];
    one.copy_out(0, &mut page).unwrap();
    assert!(page.iter().all(|&b| b == 0xa1));
    let (four, _) = guarded.locate(FrameNumber(4)).unwrap();
    four.copy_in(100, b"written by the backend").unwrap();
    let mut back = [0u8; 22];
    whole.copy_out(4 * FRAME_SIZE + 100, &mut back).unwrap();
    assert_eq!(&back, b"written by the backend");
    // Frame f lives at slot 2f + 1 of the window: frame 1 at slot 3. Around it, and where
    // ungranted frames would be, nothing can be read.
    let base = one.as_ptr() as usize - 3 * FRAME_SIZE;
    let slot = |s: usize| base + s * FRAME_SIZE;
    for (s, ok) in [
        (2, false), // guard before frame 1
        (3, true),  // frame 1
        (4, false), // guard after frame 1
        (5, false), // frame 2: never granted
        (6, false),
        (7, true), // frame 3
        (8, false),
        (9, true), // frame 4
        (10, false),
        (1, false), // frame 0: never granted
        (0, false),
    ] {
        assert_eq!(readable(slot(s)), ok, "slot {s}");
        assert_eq!(readable(slot(s) + FRAME_SIZE - 1), ok, "end of slot {s}");
    }
    // One byte past a granted frame's end: a fault, not the next frame's first byte.
    assert!(readable(one.as_ptr() as usize + FRAME_SIZE - 1));
    assert!(!readable(one.as_ptr() as usize + FRAME_SIZE));
    assert!(!readable(one.as_ptr() as usize - 1));
    drop(guarded);
    assert_eq!(
        mappings("guarded-frames"),
        1,
        "unmapped with its last region"
    );
}

#[test]
fn a_frontend_that_granted_nothing_is_not_mapped_at_all() {
    let _leaks = LeakCheck::new();
    let fd = create_memfd(c"guarded-none", 4 * FRAME_SIZE).unwrap();
    let guarded = GuardedFrames::map(&fd, 4 * FRAME_SIZE, []).unwrap();
    assert_eq!(guarded.mapped(), 0);
    assert_eq!(mappings("guarded-none"), 0);
    assert!(guarded.locate(FrameNumber(0)).is_none());
}
