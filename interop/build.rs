//! Compiles the C side of the interop tests against Xen's public headers, if they are
//! installed (Debian: `libxen-dev`). Without them the tests report a skip, and fail instead
//! when `PVNET_REQUIRE_XEN_HEADERS=1` (as CI sets it).

use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(xen_headers)");
    println!("cargo::rerun-if-changed=c");
    println!("cargo::rerun-if-env-changed=XEN_INCLUDE_DIR");
    let include = std::env::var_os("XEN_INCLUDE_DIR")
        .map_or_else(|| PathBuf::from("/usr/include"), PathBuf::from);
    if !include.join("xen/io/ring.h").exists() || !include.join("xen/io/netif.h").exists() {
        println!(
            "cargo::warning=Xen headers not found under {} (install libxen-dev): interop tests will skip",
            include.display()
        );
        return;
    }
    cc::Build::new()
        .file("c/ring_interop.c")
        .file("c/netif_abi.c")
        .include(&include)
        .warnings(true)
        .extra_warnings(true)
        .flag("-std=gnu11")
        .opt_level(2)
        .compile("pvnet_xen_interop");
    println!("cargo::rustc-cfg=xen_headers");
}
