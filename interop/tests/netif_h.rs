//! pvnet's netif and grant ABI against Xen's own headers: every struct size, field offset and
//! constant, compared by name with what a C program compiled against `io/netif.h` and
//! `grant_table.h` reports.

use core::mem::offset_of;

use grant_table::{GrantEntryV1, GrantStatus, flags as gtf};
use netif::wire::{
    CtrlRequest, CtrlResponse, ExtraInfo, MAX_TX_SIZE, NR_SLOTS_MIN, RxRequest, RxResponse,
    TxRequest, TxResponse, extra_flags, extra_type, gso_type, rx_flags, status, tx_flags,
};

/// pvnet's values, named, in the order `c/netif_abi.c` lists Xen's.
fn ours() -> Vec<(&'static str, i64)> {
    let z = |v: usize| i64::try_from(v).unwrap();
    vec![
        ("sizeof tx_request", z(size_of::<TxRequest>())),
        ("tx_request.gref", z(offset_of!(TxRequest, gref))),
        ("tx_request.offset", z(offset_of!(TxRequest, offset))),
        ("tx_request.flags", z(offset_of!(TxRequest, flags))),
        ("tx_request.id", z(offset_of!(TxRequest, id))),
        ("tx_request.size", z(offset_of!(TxRequest, size))),
        ("sizeof tx_response", z(size_of::<TxResponse>())),
        ("tx_response.id", z(offset_of!(TxResponse, id))),
        ("tx_response.status", z(offset_of!(TxResponse, status))),
        ("sizeof rx_request", z(size_of::<RxRequest>())),
        ("rx_request.id", z(offset_of!(RxRequest, id))),
        ("rx_request.gref", z(offset_of!(RxRequest, gref))),
        ("sizeof rx_response", z(size_of::<RxResponse>())),
        ("rx_response.id", z(offset_of!(RxResponse, id))),
        ("rx_response.offset", z(offset_of!(RxResponse, offset))),
        ("rx_response.flags", z(offset_of!(RxResponse, flags))),
        ("rx_response.status", z(offset_of!(RxResponse, status))),
        ("sizeof extra_info", z(size_of::<ExtraInfo>())),
        ("extra_info.type", z(offset_of!(ExtraInfo, kind))),
        ("extra_info.flags", z(offset_of!(ExtraInfo, flags))),
        ("extra_info.u.gso.size", z(offset_of!(ExtraInfo, data))),
        ("extra_info.u.gso.type", z(offset_of!(ExtraInfo, data) + 2)),
        (
            "extra_info.u.gso.features",
            z(offset_of!(ExtraInfo, data) + 4),
        ),
        ("extra_info.u.mcast.addr", z(offset_of!(ExtraInfo, data))),
        ("extra_info.u.hash.type", z(offset_of!(ExtraInfo, data))),
        (
            "extra_info.u.hash.algorithm",
            z(offset_of!(ExtraInfo, data) + 1),
        ),
        (
            "extra_info.u.hash.value",
            z(offset_of!(ExtraInfo, data) + 2),
        ),
        ("sizeof ctrl_request", z(size_of::<CtrlRequest>())),
        ("ctrl_request.id", z(offset_of!(CtrlRequest, id))),
        ("ctrl_request.type", z(offset_of!(CtrlRequest, kind))),
        ("ctrl_request.data", z(offset_of!(CtrlRequest, data))),
        ("sizeof ctrl_response", z(size_of::<CtrlResponse>())),
        ("ctrl_response.id", z(offset_of!(CtrlResponse, id))),
        ("ctrl_response.type", z(offset_of!(CtrlResponse, kind))),
        ("ctrl_response.status", z(offset_of!(CtrlResponse, status))),
        ("ctrl_response.data", z(offset_of!(CtrlResponse, data))),
        ("NETTXF_csum_blank", tx_flags::CSUM_BLANK.into()),
        ("NETTXF_data_validated", tx_flags::DATA_VALIDATED.into()),
        ("NETTXF_more_data", tx_flags::MORE_DATA.into()),
        ("NETTXF_extra_info", tx_flags::EXTRA_INFO.into()),
        ("NETRXF_data_validated", rx_flags::DATA_VALIDATED.into()),
        ("NETRXF_csum_blank", rx_flags::CSUM_BLANK.into()),
        ("NETRXF_more_data", rx_flags::MORE_DATA.into()),
        ("NETRXF_extra_info", rx_flags::EXTRA_INFO.into()),
        ("NETRXF_gso_prefix", rx_flags::GSO_PREFIX.into()),
        ("EXTRA_TYPE_NONE", extra_type::NONE.into()),
        ("EXTRA_TYPE_GSO", extra_type::GSO.into()),
        ("EXTRA_TYPE_MCAST_ADD", extra_type::MCAST_ADD.into()),
        ("EXTRA_TYPE_MCAST_DEL", extra_type::MCAST_DEL.into()),
        ("EXTRA_TYPE_HASH", extra_type::HASH.into()),
        ("EXTRA_FLAG_MORE", extra_flags::MORE.into()),
        ("GSO_TYPE_NONE", gso_type::NONE.into()),
        ("GSO_TYPE_TCPV4", gso_type::TCPV4.into()),
        ("GSO_TYPE_TCPV6", gso_type::TCPV6.into()),
        ("NETIF_RSP_DROPPED", status::DROPPED.into()),
        ("NETIF_RSP_ERROR", status::ERROR.into()),
        ("NETIF_RSP_OKAY", status::OKAY.into()),
        ("NETIF_RSP_NULL", status::NULL.into()),
        ("XEN_NETIF_NR_SLOTS_MIN", NR_SLOTS_MIN.into()),
        ("XEN_NETIF_MAX_TX_SIZE", MAX_TX_SIZE.into()),
        ("sizeof grant_entry_v1", z(size_of::<GrantEntryV1>())),
        ("grant_entry_v1.flags", z(offset_of!(GrantEntryV1, flags))),
        ("grant_entry_v1.domid", z(offset_of!(GrantEntryV1, domid))),
        ("grant_entry_v1.frame", z(offset_of!(GrantEntryV1, frame))),
        ("GTF_invalid", gtf::INVALID.into()),
        ("GTF_permit_access", gtf::PERMIT_ACCESS.into()),
        ("GTF_accept_transfer", gtf::ACCEPT_TRANSFER.into()),
        ("GTF_transitive", gtf::TRANSITIVE.into()),
        ("GTF_type_mask", gtf::TYPE_MASK.into()),
        ("GTF_readonly", gtf::READONLY.into()),
        ("GTF_reading", gtf::READING.into()),
        ("GTF_writing", gtf::WRITING.into()),
        ("GTF_transfer_committed", gtf::TRANSFER_COMMITTED.into()),
        ("GTF_transfer_completed", gtf::TRANSFER_COMPLETED.into()),
        ("GNTST_okay", (GrantStatus::Okay as i16).into()),
        (
            "GNTST_general_error",
            (GrantStatus::GeneralError as i16).into(),
        ),
        ("GNTST_bad_domain", (GrantStatus::BadDomain as i16).into()),
        ("GNTST_bad_gntref", (GrantStatus::BadGntref as i16).into()),
        ("GNTST_bad_handle", (GrantStatus::BadHandle as i16).into()),
        (
            "GNTST_permission_denied",
            (GrantStatus::PermissionDenied as i16).into(),
        ),
        ("GNTST_bad_page", (GrantStatus::BadPage as i16).into()),
        (
            "GNTST_bad_copy_arg",
            (GrantStatus::BadCopyArg as i16).into(),
        ),
        ("GNTST_eagain", (GrantStatus::Eagain as i16).into()),
        ("GNTST_no_space", (GrantStatus::NoSpace as i16).into()),
    ]
}

#[test]
fn netif_and_grant_abi_match_xens_headers() {
    if !pvnet_xen_interop::XEN_HEADERS {
        return pvnet_xen_interop::skip_without_headers("netif_and_grant_abi_match_xens_headers");
    }
    #[cfg(xen_headers)]
    {
        let theirs = pvnet_xen_interop::netif_h::values();
        let ours = ours();
        assert_eq!(
            theirs.len(),
            ours.len(),
            "the C list and the Rust list must name the same values"
        );
        let mismatches: Vec<String> = ours
            .iter()
            .zip(&theirs)
            .filter(|((_, a), b)| a != *b)
            .map(|((name, a), b)| format!("{name}: pvnet {a}, Xen {b}"))
            .collect();
        assert!(
            mismatches.is_empty(),
            "ABI mismatches:\n{}",
            mismatches.join("\n")
        );
        eprintln!(
            "{} sizes, offsets and constants match Xen's headers",
            ours.len()
        );
    }
}
