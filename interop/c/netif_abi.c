/*
 * Sizes, offsets and constants of Xen's io/netif.h, reported in a fixed order for pvnet's
 * ABI comparison test (interop/tests/netif_h.rs lists the same names in the same order).
 */
#include <stddef.h>
#include <stdint.h>
#include <string.h>

#define mb()  __atomic_thread_fence(__ATOMIC_SEQ_CST)
#define rmb() __atomic_thread_fence(__ATOMIC_ACQUIRE)
#define wmb() __atomic_thread_fence(__ATOMIC_RELEASE)

#include <xen/io/netif.h>
#include <xen/grant_table.h>

#define SZ(t) (long)sizeof(t)
#define OFF(t, f) (long)offsetof(t, f)

static const long values[] = {
    SZ(netif_tx_request_t), OFF(netif_tx_request_t, gref), OFF(netif_tx_request_t, offset),
    OFF(netif_tx_request_t, flags), OFF(netif_tx_request_t, id), OFF(netif_tx_request_t, size),
    SZ(netif_tx_response_t), OFF(netif_tx_response_t, id), OFF(netif_tx_response_t, status),
    SZ(netif_rx_request_t), OFF(netif_rx_request_t, id), OFF(netif_rx_request_t, gref),
    SZ(netif_rx_response_t), OFF(netif_rx_response_t, id), OFF(netif_rx_response_t, offset),
    OFF(netif_rx_response_t, flags), OFF(netif_rx_response_t, status),
    SZ(netif_extra_info_t), OFF(netif_extra_info_t, type), OFF(netif_extra_info_t, flags),
    OFF(netif_extra_info_t, u.gso.size), OFF(netif_extra_info_t, u.gso.type),
    OFF(netif_extra_info_t, u.gso.features), OFF(netif_extra_info_t, u.mcast.addr),
    OFF(netif_extra_info_t, u.hash.type), OFF(netif_extra_info_t, u.hash.algorithm),
    OFF(netif_extra_info_t, u.hash.value),
    SZ(struct xen_netif_ctrl_request), OFF(struct xen_netif_ctrl_request, id), OFF(struct xen_netif_ctrl_request, type),
    OFF(struct xen_netif_ctrl_request, data),
    SZ(struct xen_netif_ctrl_response), OFF(struct xen_netif_ctrl_response, id), OFF(struct xen_netif_ctrl_response, type),
    OFF(struct xen_netif_ctrl_response, status), OFF(struct xen_netif_ctrl_response, data),
    NETTXF_csum_blank, NETTXF_data_validated, NETTXF_more_data, NETTXF_extra_info,
    NETRXF_data_validated, NETRXF_csum_blank, NETRXF_more_data, NETRXF_extra_info,
    NETRXF_gso_prefix,
    XEN_NETIF_EXTRA_TYPE_NONE, XEN_NETIF_EXTRA_TYPE_GSO, XEN_NETIF_EXTRA_TYPE_MCAST_ADD,
    XEN_NETIF_EXTRA_TYPE_MCAST_DEL, XEN_NETIF_EXTRA_TYPE_HASH,
    XEN_NETIF_EXTRA_FLAG_MORE,
    XEN_NETIF_GSO_TYPE_NONE, XEN_NETIF_GSO_TYPE_TCPV4, XEN_NETIF_GSO_TYPE_TCPV6,
    NETIF_RSP_DROPPED, NETIF_RSP_ERROR, NETIF_RSP_OKAY, NETIF_RSP_NULL,
    XEN_NETIF_NR_SLOTS_MIN, XEN_NETIF_MAX_TX_SIZE,
    SZ(grant_entry_v1_t), OFF(grant_entry_v1_t, flags), OFF(grant_entry_v1_t, domid),
    OFF(grant_entry_v1_t, frame),
    GTF_invalid, GTF_permit_access, GTF_accept_transfer, GTF_transitive, GTF_type_mask,
    GTF_readonly, GTF_reading, GTF_writing, GTF_transfer_committed, GTF_transfer_completed,
    GNTST_okay, GNTST_general_error, GNTST_bad_domain, GNTST_bad_gntref, GNTST_bad_handle,
    GNTST_permission_denied, GNTST_bad_page, GNTST_bad_copy_arg, GNTST_eagain, GNTST_no_space,
};

/* Copies up to `n` values into `out`; returns how many there are. */
size_t pvnet_c_netif_abi(long *out, size_t n)
{
    size_t count = sizeof(values) / sizeof(values[0]);
    memcpy(out, values, (n < count ? n : count) * sizeof(long));
    return count;
}
