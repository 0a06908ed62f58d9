//! io-ring against Xen's own `io/ring.h`: a C frontend (or backend) built from the header's
//! macros and netif tx types shares one page with a Rust back ring (or front ring). Thousands of
//! requests cross the 2^32 index wrap; both sides check every request and response, and each
//! side sleeps on its event whenever its final check says so, so a disagreement about the
//! event-index rule shows up as a timeout.

use bytemuck::{Pod, Zeroable};
use io_ring::{BackRing, FrontRing, SharedRegion, slot_bytes};
use pvnet_xen_interop::events::{self, Events};

/// `netif_tx_request_t`, defined here until the netif crate exists.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct TxRequest {
    gref: u32,
    offset: u16,
    flags: u16,
    id: u16,
    size: u16,
}

/// `netif_tx_response_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, PartialEq, Eq, Pod, Zeroable)]
struct TxResponse {
    id: u16,
    status: i16,
}

/// Mirrors `expected_request` in `c/ring_interop.c`.
#[allow(clippy::cast_possible_truncation)] // the C side truncates the same way
fn expected_request(n: u32) -> TxRequest {
    TxRequest {
        gref: 0x10000 + n,
        offset: (n % 4096) as u16,
        flags: (n & 0xf) as u16,
        id: n as u16,
        size: n.wrapping_mul(7) as u16,
    }
}

/// Mirrors `expected_status`.
#[allow(clippy::cast_possible_truncation, clippy::cast_possible_wrap)]
fn expected_status(n: u32) -> i16 {
    (n % 3) as i16 - 1
}

const COUNT: u32 = 5000;
const START: u32 = u32::MAX - 1000;

#[test]
fn slot_and_ring_sizes_agree_with_ring_h() {
    if !pvnet_xen_interop::XEN_HEADERS {
        return pvnet_xen_interop::skip_without_headers("slot_and_ring_sizes_agree_with_ring_h");
    }
    #[cfg(xen_headers)]
    {
        use pvnet_xen_interop::ring_h;
        let page = SharedRegion::new_zeroed(ring_h::PAGE);
        assert_eq!(
            ring_h::tx_slot_bytes(),
            slot_bytes::<TxRequest, TxResponse>()
        );
        let front = FrontRing::<TxRequest, TxResponse>::init(page.clone()).unwrap();
        assert_eq!(ring_h::tx_ring_size(&page), front.size());
        assert_eq!(front.size(), 256);
    }
}

#[test]
fn c_frontend_with_rust_backend() {
    if !pvnet_xen_interop::XEN_HEADERS {
        return pvnet_xen_interop::skip_without_headers("c_frontend_with_rust_backend");
    }
    #[cfg(xen_headers)]
    {
        use pvnet_xen_interop::ring_h;
        let page = SharedRegion::new_zeroed(ring_h::PAGE);
        ring_h::front_init(&page, START);
        let mut back = BackRing::<TxRequest, TxResponse>::attach(page.clone()).unwrap();
        let ev = std::sync::Arc::new(Events::default());
        let c_front = {
            let (page, ev) = (page.clone(), ev.clone());
            std::thread::spawn(move || ring_h::front_run(&page, START, COUNT, &ev))
        };
        let (mut done, mut notifies) = (0u32, 0u64);
        while done < COUNT {
            let requests: Vec<TxRequest> = back.requests().unwrap().collect();
            for req in requests {
                assert_eq!(req, expected_request(done), "request {done}");
                back.push_response(&TxResponse {
                    id: req.id,
                    status: expected_status(done),
                })
                .unwrap();
                done += 1;
            }
            if back.publish_responses() {
                events::send(&ev.to_front);
                notifies += 1;
            }
            if done < COUNT && !back.final_check_requests().unwrap() {
                assert!(
                    events::wait(&ev.to_back),
                    "lost wakeup: no event after {done} requests"
                );
            }
        }
        let c_notifies = c_front
            .join()
            .unwrap()
            .expect("the C frontend checked every response");
        eprintln!(
            "C front sent {c_notifies} notifications, Rust back {notifies}, for {COUNT} requests"
        );
        assert!(c_notifies > 0 && notifies > 0);
    }
}

#[test]
fn rust_frontend_with_c_backend() {
    if !pvnet_xen_interop::XEN_HEADERS {
        return pvnet_xen_interop::skip_without_headers("rust_frontend_with_c_backend");
    }
    #[cfg(xen_headers)]
    {
        use pvnet_xen_interop::ring_h;
        let page = SharedRegion::new_zeroed(ring_h::PAGE);
        let mut front = FrontRing::<TxRequest, TxResponse>::init_at(page.clone(), START).unwrap();
        let ev = std::sync::Arc::new(Events::default());
        let c_back = {
            let (page, ev) = (page.clone(), ev.clone());
            std::thread::spawn(move || ring_h::back_run(&page, COUNT, &ev))
        };
        let (mut sent, mut got, mut notifies) = (0u32, 0u32, 0u64);
        while got < COUNT {
            while sent < COUNT && front.free_requests() > 0 {
                front.push_request(&expected_request(sent)).unwrap();
                sent += 1;
            }
            if front.publish_requests() {
                events::send(&ev.to_back);
                notifies += 1;
            }
            let responses: Vec<TxResponse> = front.responses().unwrap().collect();
            for rsp in responses {
                let want = TxResponse {
                    id: expected_request(got).id,
                    status: expected_status(got),
                };
                assert_eq!(rsp, want, "response {got}");
                got += 1;
            }
            if got == COUNT || (sent < COUNT && front.free_requests() > 0) {
                continue;
            }
            if !front.final_check_responses().unwrap() {
                assert!(
                    events::wait(&ev.to_front),
                    "lost wakeup: no event after {got} responses"
                );
            }
        }
        let c_notifies = c_back
            .join()
            .unwrap()
            .expect("the C backend checked every request");
        eprintln!(
            "Rust front sent {notifies} notifications, C back {c_notifies}, for {COUNT} requests"
        );
        assert!(c_notifies > 0 && notifies > 0);
    }
}
