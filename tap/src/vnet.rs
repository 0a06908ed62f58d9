//! The header a TAP opened with `IFF_VNET_HDR` puts before every frame (`virtio_net_hdr`,
//! 12 bytes with the `num_buffers` field, as `TUNSETVNETHDRSZ` sets it), and its translation
//! to and from Xen's netif offload flags, as Linux netback translates between an skb and a
//! netif packet.

use bytemuck::{Pod, Zeroable};
use netif::{Gso, GsoKind, Offload};

use crate::OffloadError;
use crate::headers::{Headers, L4};
use crate::soft::pseudo_header_sum;

/// `virtio_net_hdr_v1` (12 bytes), in the host's byte order (a TAP's default).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Pod, Zeroable)]
pub struct VnetHdr {
    /// [`flags`] bits.
    pub flags: u8,
    /// One of [`gso`], possibly with [`gso::ECN`].
    pub gso_type: u8,
    /// Length of the headers before the segmented payload (GSO only).
    pub hdr_len: u16,
    /// Payload bytes per segment (GSO only).
    pub gso_size: u16,
    /// Where checksumming starts (`NEEDS_CSUM`): the L4 header's offset.
    pub csum_start: u16,
    /// Where the checksum goes, from `csum_start`: 16 for TCP, 6 for UDP.
    pub csum_offset: u16,
    /// Receive buffers merged (unused here: no mergeable buffers).
    pub num_buffers: u16,
}

/// Size of [`VnetHdr`]: what `TUNSETVNETHDRSZ` is set to.
pub const VNET_HDR_LEN: usize = 12;

const _: () = {
    assert!(size_of::<VnetHdr>() == VNET_HDR_LEN);
    assert!(core::mem::offset_of!(VnetHdr, flags) == 0);
    assert!(core::mem::offset_of!(VnetHdr, gso_type) == 1);
    assert!(core::mem::offset_of!(VnetHdr, hdr_len) == 2);
    assert!(core::mem::offset_of!(VnetHdr, gso_size) == 4);
    assert!(core::mem::offset_of!(VnetHdr, csum_start) == 6);
    assert!(core::mem::offset_of!(VnetHdr, csum_offset) == 8);
    assert!(core::mem::offset_of!(VnetHdr, num_buffers) == 10);
};

/// `VnetHdr::flags` bits.
pub mod flags {
    /// The L4 checksum is partial: fill it from `csum_start` (Linux `CHECKSUM_PARTIAL`).
    pub const NEEDS_CSUM: u8 = 1;
    /// The checksum was validated (Linux `CHECKSUM_UNNECESSARY`).
    pub const DATA_VALID: u8 = 2;
}

/// `VnetHdr::gso_type` values.
pub mod gso {
    /// Not a GSO packet.
    pub const NONE: u8 = 0;
    /// TCP over IPv4.
    pub const TCPV4: u8 = 1;
    /// UDP fragmentation offload (not used: no netif form).
    pub const UDP: u8 = 3;
    /// TCP over IPv6.
    pub const TCPV6: u8 = 4;
    /// UDP segmentation (USO; not used: no netif form).
    pub const UDP_L4: u8 = 5;
    /// The ECN bit of a TCP GSO packet (CWR set).
    pub const ECN: u8 = 0x80;
}

impl VnetHdr {
    /// The header's bytes, to write before a frame.
    pub fn to_bytes(self) -> [u8; VNET_HDR_LEN] {
        bytemuck::cast(self)
    }

    /// A header from the bytes a TAP read put before a frame.
    pub fn from_bytes(bytes: [u8; VNET_HDR_LEN]) -> Self {
        bytemuck::cast(bytes)
    }

    /// What netif says about a frame the kernel wrote with this header (a frame leaving the
    /// host for a guest): `NEEDS_CSUM` is `csum_blank` and `data_validated` (as Linux
    /// netback marks a `CHECKSUM_PARTIAL` skb), `DATA_VALID` is `data_validated`, TCP GSO is
    /// the GSO extra. The header must agree with the frame's own headers: netif has no
    /// `csum_start` of its own (a frontend finds the L4 header itself). `frame` may be the
    /// frame's first bytes only, as long as they hold its headers (a copy out of shared
    /// memory): only they are looked at.
    ///
    /// # Errors
    /// [`OffloadError::Unsupported`] for UDP GSO, an unknown GSO type or a checksum netif cannot
    /// describe; [`OffloadError::BadFrame`] if the header does not match the frame.
    pub fn to_offload(&self, frame: &[u8]) -> Result<Offload, OffloadError> {
        let partial = self.flags & flags::NEEDS_CSUM != 0;
        let mut off = Offload {
            csum_blank: partial,
            data_validated: partial || self.flags & flags::DATA_VALID != 0,
            gso: None,
        };
        let kind = match self.gso_type & !gso::ECN {
            gso::NONE => None,
            gso::TCPV4 => Some(GsoKind::TcpV4),
            gso::TCPV6 => Some(GsoKind::TcpV6),
            gso::UDP | gso::UDP_L4 => return Err(OffloadError::Unsupported("UDP segmentation")),
            _ => return Err(OffloadError::Unsupported("unknown GSO type")),
        };
        if !partial && kind.is_none() {
            return Ok(off);
        }
        let h = Headers::parse_head(frame)?;
        if partial {
            let offset = h.l4.csum_offset().ok_or(OffloadError::Unsupported(
                "a partial checksum outside TCP and UDP",
            ))?;
            if usize::from(self.csum_start) != h.l4_offset
                || usize::from(self.csum_offset) != offset
            {
                return Err(OffloadError::BadFrame(
                    "csum_start / csum_offset off the headers",
                ));
            }
        }
        if let Some(kind) = kind {
            if !partial {
                return Err(OffloadError::BadFrame("GSO without a partial checksum"));
            }
            let L4::Tcp { .. } = h.l4 else {
                return Err(OffloadError::BadFrame(
                    "TCP GSO of a packet that is not TCP",
                ));
            };
            if (kind == GsoKind::TcpV6) != h.ipv6 || self.gso_size == 0 {
                return Err(OffloadError::BadFrame("GSO type or size off the headers"));
            }
            off.gso = Some(Gso {
                kind,
                size: self.gso_size,
            });
        }
        Ok(off)
    }

    /// The header for a frame a guest sent with `off` (a frame entering the host), found
    /// from the frame's own headers: `csum_start` is the L4 header, `csum_offset` TCP's or
    /// UDP's, `hdr_len` the headers before a GSO payload. A GSO packet without `csum_blank`
    /// is made partial here (its checksum field set to the pseudo-header sum), as Linux
    /// netback fixes such a packet up; so `frame` may change. Otherwise `frame` may be the
    /// frame's first bytes only, as long as they hold its headers.
    ///
    /// # Errors
    /// [`OffloadError::BadFrame`] if the frame's headers cannot carry the offload (GSO of a
    /// packet that is not TCP of the GSO's IP version, a fragment, a partial checksum of a
    /// protocol that is not TCP or UDP, headers cut short).
    pub fn from_offload(frame: &mut [u8], off: Offload) -> Result<Self, OffloadError> {
        let mut hdr = Self::default();
        if !off.csum_blank && off.gso.is_none() {
            if off.data_validated {
                hdr.flags = flags::DATA_VALID;
            }
            return Ok(hdr);
        }
        let h = Headers::parse_head(frame)?;
        let csum_offset = h.l4.csum_offset().ok_or(OffloadError::BadFrame(
            "a partial checksum outside TCP and UDP",
        ))?;
        if let Some(g) = off.gso {
            let L4::Tcp { header_len } = h.l4 else {
                return Err(OffloadError::BadFrame(
                    "TCP GSO of a packet that is not TCP",
                ));
            };
            if (g.kind == GsoKind::TcpV6) != h.ipv6 || g.size == 0 {
                return Err(OffloadError::BadFrame("GSO type or size off the headers"));
            }
            hdr.gso_type = if h.ipv6 { gso::TCPV6 } else { gso::TCPV4 };
            hdr.gso_size = g.size;
            hdr.hdr_len = u16::try_from(h.l4_offset + header_len)
                .map_err(|_| OffloadError::BadFrame("headers longer than 64 KiB"))?;
            if !off.csum_blank {
                // Linux netback: "A GSO SKB must be CHECKSUM_PARTIAL. If it's not we need to
                // fix it up": the checksum field then holds the pseudo-header sum.
                let field = h.l4_offset + csum_offset;
                let seed = pseudo_header_sum(frame, &h)?;
                frame[field..field + 2].copy_from_slice(&seed);
            }
        }
        hdr.flags = flags::NEEDS_CSUM;
        hdr.csum_start = u16::try_from(h.l4_offset)
            .map_err(|_| OffloadError::BadFrame("headers longer than 64 KiB"))?;
        hdr.csum_offset = u16::try_from(csum_offset).unwrap_or(u16::MAX);
        Ok(hdr)
    }
}
