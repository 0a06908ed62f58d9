//! Interop tests of pvnet against Xen's own public headers (`libxen-dev`).
//!
//! `build.rs` compiles small C programs that use the headers' macros and types (`io/ring.h`,
//! `io/netif.h`) exactly as Xen frontends and backends do; the tests in `tests/` drive the other
//! end of the same memory with pvnet's crates and check every byte both ways. Without the
//! headers the tests print why they skip, unless `PVNET_REQUIRE_XEN_HEADERS=1` makes that a
//! failure (CI sets it).
#![deny(missing_docs)]

/// Whether the C side was built (Xen's headers were found at build time).
pub const XEN_HEADERS: bool = cfg!(xen_headers);

/// Reports a skipped interop test, or panics when CI requires the headers.
pub fn skip_without_headers(test: &str) {
    let required = std::env::var("PVNET_REQUIRE_XEN_HEADERS").is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{test}: Xen's headers were not found at build time but PVNET_REQUIRE_XEN_HEADERS=1"
    );
    eprintln!(
        "skipping {test}: Xen's public headers are not installed (apt-get install libxen-dev)"
    );
}

pub mod events;
#[cfg(xen_headers)]
pub mod netif_h;
#[cfg(xen_headers)]
pub mod ring_h;
