//! The netif wire structs (`io/netif.h`), little-endian, `#[repr(C)]`, with size and offset
//! asserts. The interop crate compares every one with Xen's own header.

use core::mem::offset_of;

use bytemuck::{Pod, Zeroable};

/// `netif_tx_request_t`: one slot of a guest-to-backend packet.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TxRequest {
    /// Grant of the page holding this slot's bytes.
    pub gref: u32,
    /// Offset of the bytes in the page.
    pub offset: u16,
    /// [`tx_flags`].
    pub flags: u16,
    /// Echoed in the response.
    pub id: u16,
    /// First slot: the whole packet's length; later slots: this slot's length.
    pub size: u16,
}

/// `netif_tx_response_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct TxResponse {
    /// The request's id.
    pub id: u16,
    /// A [`status`] code.
    pub status: i16,
}

/// `netif_rx_request_t`: an empty granted page the backend may fill.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RxRequest {
    /// Echoed in the response.
    pub id: u16,
    /// Padding (zero).
    pub pad: u16,
    /// Grant of the page to fill.
    pub gref: u32,
}

/// `netif_rx_response_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct RxResponse {
    /// The request's id.
    pub id: u16,
    /// Offset of the data in the page.
    pub offset: u16,
    /// [`rx_flags`].
    pub flags: u16,
    /// Bytes in this slot if > 0, a [`status`] error if < 0.
    pub status: i16,
}

/// `netif_extra_info_t`: an extra slot after the first request (tx) or response (rx). The
/// union's bytes are kept raw; the accessors read the member the type names.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct ExtraInfo {
    /// [`extra_type`].
    pub kind: u8,
    /// [`extra_flags`].
    pub flags: u8,
    /// The union (gso, mcast, hash).
    pub data: [u8; 6],
}

impl ExtraInfo {
    /// `u.gso.size`: the MSS.
    pub fn gso_size(&self) -> u16 {
        u16::from_le_bytes([self.data[0], self.data[1]])
    }
    /// `u.gso.type`: a [`gso_type`].
    pub fn gso_type(&self) -> u8 {
        self.data[2]
    }
    /// `u.gso.features`.
    pub fn gso_features(&self) -> u16 {
        u16::from_le_bytes([self.data[4], self.data[5]])
    }
    /// `u.mcast.addr`.
    pub fn mcast_addr(&self) -> [u8; 6] {
        self.data
    }
    /// `u.hash.type`.
    pub fn hash_type(&self) -> u8 {
        self.data[0]
    }
    /// `u.hash.algorithm`.
    pub fn hash_algorithm(&self) -> u8 {
        self.data[1]
    }
    /// `u.hash.value`.
    pub fn hash_value(&self) -> u32 {
        u32::from_le_bytes([self.data[2], self.data[3], self.data[4], self.data[5]])
    }
    /// A GSO extra.
    pub fn gso(size: u16, kind: u8, more: bool) -> Self {
        let s = size.to_le_bytes();
        Self {
            kind: extra_type::GSO,
            flags: if more { extra_flags::MORE } else { 0 },
            data: [s[0], s[1], kind, 0, 0, 0],
        }
    }
    /// The extra stored in a tx request slot (an extra occupies the slot's first 8 bytes).
    pub fn from_tx_slot(slot: &TxRequest) -> Self {
        let bytes = bytemuck::bytes_of(slot);
        let mut out = [0u8; 8];
        out.copy_from_slice(&bytes[..8]);
        bytemuck::cast(out)
    }
    /// The rx response slot carrying this extra (both are 8 bytes).
    pub fn to_rx_slot(self) -> RxResponse {
        bytemuck::cast(self)
    }
    /// The tx request slot carrying this extra (the rest zeroed).
    pub fn to_tx_slot(self) -> TxRequest {
        let mut bytes = [0u8; 12];
        bytes[..8].copy_from_slice(bytemuck::bytes_of(&self));
        bytemuck::cast(bytes)
    }
}

/// `netif_ctrl_request_t`: a control-ring request.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtrlRequest {
    /// Echoed in the response.
    pub id: u16,
    /// The operation.
    pub kind: u16,
    /// Operation arguments.
    pub data: [u32; 3],
}

/// `netif_ctrl_response_t`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct CtrlResponse {
    /// The request's id.
    pub id: u16,
    /// The operation.
    pub kind: u16,
    /// Result.
    pub status: u32,
    /// Result data.
    pub data: u32,
}

const _: () = {
    assert!(size_of::<TxRequest>() == 12);
    assert!(offset_of!(TxRequest, gref) == 0);
    assert!(offset_of!(TxRequest, offset) == 4);
    assert!(offset_of!(TxRequest, flags) == 6);
    assert!(offset_of!(TxRequest, id) == 8);
    assert!(offset_of!(TxRequest, size) == 10);
    assert!(size_of::<TxResponse>() == 4);
    assert!(offset_of!(TxResponse, id) == 0);
    assert!(offset_of!(TxResponse, status) == 2);
    assert!(size_of::<RxRequest>() == 8);
    assert!(offset_of!(RxRequest, id) == 0);
    assert!(offset_of!(RxRequest, pad) == 2);
    assert!(offset_of!(RxRequest, gref) == 4);
    assert!(size_of::<RxResponse>() == 8);
    assert!(offset_of!(RxResponse, id) == 0);
    assert!(offset_of!(RxResponse, offset) == 2);
    assert!(offset_of!(RxResponse, flags) == 4);
    assert!(offset_of!(RxResponse, status) == 6);
    assert!(size_of::<ExtraInfo>() == 8);
    assert!(offset_of!(ExtraInfo, kind) == 0);
    assert!(offset_of!(ExtraInfo, flags) == 1);
    assert!(offset_of!(ExtraInfo, data) == 2);
    assert!(size_of::<CtrlRequest>() == 16);
    assert!(offset_of!(CtrlRequest, id) == 0);
    assert!(offset_of!(CtrlRequest, kind) == 2);
    assert!(offset_of!(CtrlRequest, data) == 4);
    assert!(size_of::<CtrlResponse>() == 12);
    assert!(offset_of!(CtrlResponse, id) == 0);
    assert!(offset_of!(CtrlResponse, kind) == 2);
    assert!(offset_of!(CtrlResponse, status) == 4);
    assert!(offset_of!(CtrlResponse, data) == 8);
};

/// Tx request flags (`NETTXF_*`).
pub mod tx_flags {
    /// The protocol checksum is blank: the backend (or hardware) must fill it.
    pub const CSUM_BLANK: u16 = 1;
    /// The protocol checksum is known to be good.
    pub const DATA_VALIDATED: u16 = 2;
    /// Another data slot of this packet follows.
    pub const MORE_DATA: u16 = 4;
    /// An extra slot follows this one.
    pub const EXTRA_INFO: u16 = 8;
}

/// Rx response flags (`NETRXF_*`). Bits 0 and 1 are swapped against tx.
pub mod rx_flags {
    /// The protocol checksum is known to be good.
    pub const DATA_VALIDATED: u16 = 1;
    /// The protocol checksum is blank.
    pub const CSUM_BLANK: u16 = 2;
    /// Another data slot of this packet follows.
    pub const MORE_DATA: u16 = 4;
    /// An extra slot follows this one.
    pub const EXTRA_INFO: u16 = 8;
    /// Deprecated GSO prefix.
    pub const GSO_PREFIX: u16 = 16;
}

/// Extra slot types (`XEN_NETIF_EXTRA_TYPE_*`).
pub mod extra_type {
    /// Not an extra.
    pub const NONE: u8 = 0;
    /// GSO parameters.
    pub const GSO: u8 = 1;
    /// Add a multicast address.
    pub const MCAST_ADD: u8 = 2;
    /// Remove a multicast address.
    pub const MCAST_DEL: u8 = 3;
    /// A receive hash.
    pub const HASH: u8 = 4;
    /// XDP headroom (Linux).
    pub const XDP: u8 = 5;
    /// One past the last type accepted.
    pub const MAX: u8 = 6;
}

/// Extra slot flags.
pub mod extra_flags {
    /// Another extra slot follows.
    pub const MORE: u8 = 1;
}

/// GSO types (`XEN_NETIF_GSO_TYPE_*`).
pub mod gso_type {
    /// No GSO.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 2;
}

/// Response status codes (`XEN_NETIF_RSP_*`).
pub mod status {
    /// Done.
    pub const OKAY: i16 = 0;
    /// Failed.
    pub const ERROR: i16 = -1;
    /// Dropped.
    pub const DROPPED: i16 = -2;
    /// The answer to an extra slot.
    pub const NULL: i16 = 1;
}

/// `XEN_NETIF_NR_SLOTS_MIN`: slots per packet a backend must accept.
pub const NR_SLOTS_MIN: u32 = 18;
/// `XEN_NETIF_MAX_TX_SIZE`: the largest packet.
pub const MAX_TX_SIZE: u32 = 0xffff;
/// Bytes of a granted page.
pub const PAGE_SIZE: u32 = 4096;
/// An Ethernet header: the shortest first slot accepted.
pub const ETH_HLEN: u16 = 14;
