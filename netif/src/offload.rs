//! Offload metadata, independent of direction: what the tx and rx flag bits and the GSO extra
//! say about a packet. (The checksum bits sit at different positions in tx and rx flags.)

use crate::rx::RxPacket;
use crate::tx::TxPacket;
use crate::wire::{ExtraInfo, gso_type, rx_flags, tx_flags};

/// Which segmentation a GSO packet asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum GsoKind {
    /// TCP over IPv4 (`XEN_NETIF_GSO_TYPE_TCPV4`).
    TcpV4,
    /// TCP over IPv6 (`XEN_NETIF_GSO_TYPE_TCPV6`).
    TcpV6,
}

impl GsoKind {
    /// The wire value.
    pub fn wire(self) -> u8 {
        match self {
            GsoKind::TcpV4 => gso_type::TCPV4,
            GsoKind::TcpV6 => gso_type::TCPV6,
        }
    }

    /// From the wire value (`None` for none or an unknown type).
    pub fn from_wire(v: u8) -> Option<Self> {
        match v {
            gso_type::TCPV4 => Some(GsoKind::TcpV4),
            gso_type::TCPV6 => Some(GsoKind::TcpV6),
            _ => None,
        }
    }
}

/// A large packet to be segmented: its kind and segment size (MSS).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Gso {
    /// TCP over IPv4 or IPv6.
    pub kind: GsoKind,
    /// Segment size; never 0 on the wire.
    pub size: u16,
}

/// What travels with a packet besides its bytes.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub struct Offload {
    /// The L4 checksum is not filled in yet (partial checksum).
    pub csum_blank: bool,
    /// The checksum is known to be good.
    pub data_validated: bool,
    /// Segmentation offload, carried in a GSO extra slot.
    pub gso: Option<Gso>,
}

impl Offload {
    /// The flags of a tx request's first slot (without `more_data` / `extra_info`).
    #[inline]
    pub fn tx_flags(&self) -> u16 {
        (if self.csum_blank {
            tx_flags::CSUM_BLANK
        } else {
            0
        }) | (if self.data_validated {
            tx_flags::DATA_VALIDATED
        } else {
            0
        })
    }

    /// The flags of an rx response's first slot (without `more_data` / `extra_info`).
    pub fn rx_flags(&self) -> u16 {
        (if self.csum_blank {
            rx_flags::CSUM_BLANK
        } else {
            0
        }) | (if self.data_validated {
            rx_flags::DATA_VALIDATED
        } else {
            0
        })
    }

    /// The GSO extra slot, if any.
    pub fn gso_extra(&self) -> Option<ExtraInfo> {
        self.gso
            .map(|g| ExtraInfo::gso(g.size, g.kind.wire(), false))
    }

    /// What a validated tx packet carries.
    #[inline]
    pub fn from_tx(p: &TxPacket) -> Self {
        Self {
            gso: gso(p.gso()),
            ..Self::from_tx_flags(p.flags)
        }
    }

    /// What a tx packet without extras carries, from its first slot's `flags` (as
    /// [`from_tx`](Self::from_tx) of such a packet; a packet [`tx_one_slot`](crate::tx_one_slot)
    /// accepts, for one).
    #[inline]
    pub fn from_tx_flags(flags: u16) -> Self {
        Self {
            csum_blank: flags & tx_flags::CSUM_BLANK != 0,
            data_validated: flags & tx_flags::DATA_VALIDATED != 0,
            gso: None,
        }
    }

    /// What a validated rx packet carries.
    #[inline]
    pub fn from_rx(p: &RxPacket) -> Self {
        Self {
            gso: gso(p.gso()),
            ..Self::from_rx_flags(p.flags)
        }
    }

    /// What an rx packet without extras carries, from its first slot's `flags` (as
    /// [`from_rx`](Self::from_rx) of such a packet; a packet
    /// [`rx_one_slot`](crate::rx_one_slot) accepts, for one).
    #[inline]
    pub fn from_rx_flags(flags: u16) -> Self {
        Self {
            csum_blank: flags & rx_flags::CSUM_BLANK != 0,
            data_validated: flags & rx_flags::DATA_VALIDATED != 0,
            gso: None,
        }
    }
}

fn gso(g: Option<(u8, u16)>) -> Option<Gso> {
    let (kind, size) = g?;
    Some(Gso {
        kind: GsoKind::from_wire(kind)?,
        size,
    })
}
