//! Safe wrappers over the C programs of `c/ring_interop.c`, which drive a netif tx ring with
//! Xen's `ring.h` macros.

use std::ffi::{c_long, c_uint, c_void};

use io_ring::SharedRegion;

use crate::events::Events;

/// Bytes of one page, what the C side assumes the ring occupies.
pub const PAGE: usize = 4096;

unsafe extern "C" {
    fn pvnet_c_tx_slot_bytes() -> usize;
    fn pvnet_c_tx_ring_size(page: *mut c_void) -> c_uint;
    fn pvnet_c_front_init(page: *mut c_void, start: u32);
    fn pvnet_c_front_run(
        page: *mut c_void,
        start: u32,
        count: u32,
        to_back: *mut u32,
        to_front: *mut u32,
    ) -> c_long;
    fn pvnet_c_back_run(
        page: *mut c_void,
        count: u32,
        to_back: *mut u32,
        to_front: *mut u32,
    ) -> c_long;
}

/// A failure the C side reported.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CSideError {
    /// Entry `n` held the wrong contents.
    BadEntry(u32),
    /// The 8 bytes after response `n` in its 12-byte slot were not zero.
    DirtyPadding(u32),
    /// No event came within 10 s: a lost wakeup.
    Timeout,
    /// Any other code.
    Other(i64),
}

/// Decodes the C side's return value (see the comments in `c/ring_interop.c`).
fn result(code: c_long) -> Result<u64, CSideError> {
    const ETIMEDOUT: i64 = 110; // Linux
    #[allow(clippy::useless_conversion)] // `c_long` is `i32` on 32-bit targets
    let code = i64::from(code);
    if let Ok(notifies) = u64::try_from(code) {
        return Ok(notifies);
    }
    let entry = |n: i64| u32::try_from(n).unwrap_or(u32::MAX);
    Err(match -code {
        ETIMEDOUT => CSideError::Timeout,
        n @ 1000..2000 => CSideError::BadEntry(entry(n - 1000)),
        n @ 2000.. => CSideError::DirtyPadding(entry(n - 2000)),
        _ => CSideError::Other(code),
    })
}

fn page_ptr(page: &SharedRegion) -> *mut c_void {
    assert!(page.len() >= PAGE, "the C side needs a whole page");
    page.as_ptr().cast()
}

/// `sizeof(ring[0])` of `netif_tx_sring` as C computes it.
pub fn tx_slot_bytes() -> usize {
    // SAFETY: pure function of the C types, no arguments.
    unsafe { pvnet_c_tx_slot_bytes() }
}

/// `RING_SIZE` of a one-page netif tx front ring as C computes it (reads nothing).
pub fn tx_ring_size(page: &SharedRegion) -> u32 {
    let p = page_ptr(page);
    // SAFETY: FRONT_RING_INIT only records the pointer and computes the size; `p` is a page.
    unsafe { pvnet_c_tx_ring_size(p) }
}

/// Initialises `page` as a C frontend does (`SHARED_RING_INIT`), indices at `start`.
///
/// Call before any Rust handle attaches; the C side writes the page non-atomically.
pub fn front_init(page: &SharedRegion, start: u32) {
    let p = page_ptr(page);
    // SAFETY: `p` points to a live page of at least 4096 bytes (checked); no other thread
    // uses it during this call (caller's contract in the doc above).
    unsafe { pvnet_c_front_init(p, start) }
}

/// Runs a C frontend on `page` (initialised by [`front_init`] with the same `start`) for
/// `count` requests, checking every response. Returns how many notifications it sent.
///
/// # Errors
/// What the C side found wrong.
pub fn front_run(
    page: &SharedRegion,
    start: u32,
    count: u32,
    ev: &Events,
) -> Result<u64, CSideError> {
    let p = page_ptr(page);
    // SAFETY: `p` is a live page (checked) kept alive by `page` for the call; the event words
    // are live atomics whose pointers C accesses only with __atomic builtins; the peer thread
    // touches the page only through io-ring's atomics and the ring protocol.
    let code =
        unsafe { pvnet_c_front_run(p, start, count, ev.to_back.as_ptr(), ev.to_front.as_ptr()) };
    result(code)
}

/// Runs a C backend on `page` (initialised by a Rust frontend) for `count` requests, checking
/// every request. Returns how many notifications it sent.
///
/// # Errors
/// What the C side found wrong.
pub fn back_run(page: &SharedRegion, count: u32, ev: &Events) -> Result<u64, CSideError> {
    let p = page_ptr(page);
    // SAFETY: as for `front_run`.
    let code = unsafe { pvnet_c_back_run(p, count, ev.to_back.as_ptr(), ev.to_front.as_ptr()) };
    result(code)
}
