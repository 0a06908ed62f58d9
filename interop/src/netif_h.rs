//! The values `c/netif_abi.c` reads out of Xen's `io/netif.h` and `grant_table.h`.

use std::ffi::c_long;

unsafe extern "C" {
    fn pvnet_c_netif_abi(out: *mut c_long, n: usize) -> usize;
}

/// Every size, offset and constant the C side reports, in its order.
pub fn values() -> Vec<i64> {
    let mut out: Vec<c_long> = vec![0; 256];
    // SAFETY: `out` has room for 256 values; the C side writes at most that many and returns
    // its total count, which we use to truncate.
    let n = unsafe { pvnet_c_netif_abi(out.as_mut_ptr(), out.len()) };
    assert!(
        n <= out.len(),
        "the C side reports {n} values; raise the buffer size"
    );
    out.truncate(n);
    #[allow(clippy::useless_conversion)] // `c_long` is `i32` on 32-bit targets
    out.into_iter().map(i64::from).collect()
}
