/*
 * Xen's own ring.h macros driving a netif tx ring, for pvnet's interop tests.
 *
 * Everything ring-related below uses only the public macros of xen/io/ring.h and the types of
 * xen/io/netif.h, exactly as a Xen frontend or backend written in C would. The Rust test
 * drives the other end of the same page with io-ring. Events are modelled by a shared word per
 * direction (set = pending), polled with a timeout, so a lost wakeup shows up as a timeout.
 */
#include <errno.h>
#include <sched.h>
#include <stddef.h>
#include <stdint.h>
#include <string.h>
#include <time.h>

/* ring.h (interface version < 0x00030208) expects mb/rmb/wmb. Full fence, and the C11
 * acquire/release fences that are at least as strong as Linux's rmb/wmb for this use. */
#define mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#include <xen/io/netif.h>

#define PAGE 4096

/* What both sides expect request / response number n to hold. */
static void expected_request(uint32_t n, netif_tx_request_t *req)
{
    req->gref = 0x10000u + n;
    req->offset = (uint16_t)(n % PAGE);
    req->flags = (uint16_t)(n & 0xf);
    req->id = (uint16_t)n;
    req->size = (uint16_t)(n * 7u);
}

static int16_t expected_status(uint32_t n)
{
    return (int16_t)((int)(n % 3u) - 1); /* -1, 0, 1: error, okay, null */
}

static void event_send(uint32_t *ev)
{
    __atomic_store_n(ev, 1u, __ATOMIC_SEQ_CST);
}

/* Waits until the event is pending and clears it; -ETIMEDOUT after 10 s. */
static int event_wait(uint32_t *ev)
{
    struct timespec start, now;
    clock_gettime(CLOCK_MONOTONIC, &start);
    for (;;) {
        if (__atomic_exchange_n(ev, 0u, __ATOMIC_SEQ_CST))
            return 0;
        clock_gettime(CLOCK_MONOTONIC, &now);
        if (now.tv_sec - start.tv_sec > 10)
            return -ETIMEDOUT;
        sched_yield();
    }
}

size_t pvnet_c_tx_slot_bytes(void)
{
    return sizeof(((struct netif_tx_sring *)0)->ring[0]);
}

unsigned int pvnet_c_tx_ring_size(void *page)
{
    netif_tx_front_ring_t fr;
    FRONT_RING_INIT(&fr, (netif_tx_sring_t *)page, PAGE);
    return RING_SIZE(&fr);
}

/* Initialises the shared page as a Xen frontend does, with indices starting at `start`. */
void pvnet_c_front_init(void *page, uint32_t start)
{
    netif_tx_sring_t *s = page;
    memset(page, 0xee, PAGE); /* SHARED_RING_INIT must not depend on a zeroed page */
    SHARED_RING_INIT(s);
    s->req_prod = s->rsp_prod = start;
    s->req_event = s->rsp_event = start + 1;
}

/*
 * Frontend: sends `count` requests and checks every response. Returns the number of
 * notifications sent (>= 0), or a negative error: -1000 - n for a bad response n,
 * -2000 - n for response padding that is not zero, -ETIMEDOUT for a lost wakeup.
 */
long pvnet_c_front_run(void *page, uint32_t start, uint32_t count, uint32_t *to_back,
                       uint32_t *to_front)
{
    netif_tx_sring_t *s = page;
    netif_tx_front_ring_t fr;
    uint32_t sent = 0, got = 0;
    long notifies = 0;
    int notify, more;

    FRONT_RING_ATTACH(&fr, s, start, PAGE);
    while (got < count) {
        while (sent < count && !RING_FULL(&fr)) {
            expected_request(sent, RING_GET_REQUEST(&fr, fr.req_prod_pvt));
            fr.req_prod_pvt++;
            sent++;
        }
        RING_PUSH_REQUESTS_AND_CHECK_NOTIFY(&fr, notify);
        if (notify) {
            event_send(to_back);
            notifies++;
        }
        RING_IDX prod = s->rsp_prod;
        rmb(); /* see responses /after/ the index */
        for (; fr.rsp_cons != prod; fr.rsp_cons++, got++) {
            netif_tx_response_t rsp;
            const uint8_t *slot = (const uint8_t *)RING_GET_RESPONSE(&fr, fr.rsp_cons);
            RING_COPY_RESPONSE(&fr, fr.rsp_cons, &rsp);
            if (rsp.id != (uint16_t)got || rsp.status != expected_status(got))
                return -1000 - (long)got;
            for (size_t i = sizeof(rsp); i < pvnet_c_tx_slot_bytes(); i++)
                if (slot[i] != 0)
                    return -2000 - (long)got;
        }
        if (got == count)
            break;
        if (sent < count && !RING_FULL(&fr))
            continue;
        RING_FINAL_CHECK_FOR_RESPONSES(&fr, more);
        if (!more && event_wait(to_front))
            return -ETIMEDOUT;
    }
    return notifies;
}

/*
 * Backend: attaches to the ring the (Rust) frontend initialised, answers `count` requests,
 * checking each one. Returns the number of notifications sent, or -1000 - n for a bad
 * request n, -ETIMEDOUT for a lost wakeup.
 */
long pvnet_c_back_run(void *page, uint32_t count, uint32_t *to_back, uint32_t *to_front)
{
    netif_tx_sring_t *s = page;
    netif_tx_back_ring_t br;
    uint32_t done = 0;
    long notifies = 0;
    int notify, more;

    BACK_RING_ATTACH(&br, s, s->rsp_prod, PAGE);
    while (done < count) {
        unsigned int avail = RING_HAS_UNCONSUMED_REQUESTS(&br);
        rmb(); /* see requests /after/ the index */
        for (; avail > 0; avail--, done++) {
            netif_tx_request_t req, want;
            RING_COPY_REQUEST(&br, br.req_cons, &req);
            br.req_cons++;
            expected_request(done, &want);
            if (memcmp(&req, &want, sizeof(req)) != 0)
                return -1000 - (long)done;
            netif_tx_response_t *rsp = RING_GET_RESPONSE(&br, br.rsp_prod_pvt);
            rsp->id = req.id;
            rsp->status = expected_status(done);
            br.rsp_prod_pvt++;
        }
        RING_PUSH_RESPONSES_AND_CHECK_NOTIFY(&br, notify);
        if (notify) {
            event_send(to_front);
            notifies++;
        }
        if (done == count)
            break;
        RING_FINAL_CHECK_FOR_REQUESTS(&br, more);
        if (!more && event_wait(to_back))
            return -ETIMEDOUT;
    }
    return notifies;
}
