//! Where a frame's L3 and L4 headers are, for the offload fields netif leaves implicit
//! (`csum_start`, `csum_offset`, `hdr_len`): Ethernet, optional VLAN tags, IPv4 with options
//! or IPv6 with extension headers, then TCP or UDP. Parsed with etherparse; a fragment is
//! refused (its L4 header is not in every piece).

use etherparse::{LaxNetSlice, LaxSlicedPacket, NetSlice, SlicedPacket, TransportSlice};

use crate::OffloadError;

/// Bytes of a frame copied out of shared memory to find its headers
/// ([`Headers::parse_head`]): Ethernet, VLAN tags, IPv6 extension headers, TCP with options.
#[cfg(any(feature = "netback", feature = "netfront"))]
pub(crate) const HEAD_COPY: usize = 256;

/// The transport header, as far as offloads care.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum L4 {
    /// TCP, with its header's length (options included).
    Tcp {
        /// Bytes of the TCP header.
        header_len: usize,
    },
    /// UDP (8-byte header).
    Udp,
    /// Anything else (no checksum offload possible).
    Other,
}

impl L4 {
    /// Where the L4 checksum lies in its header.
    pub(crate) fn csum_offset(self) -> Option<usize> {
        match self {
            L4::Tcp { .. } => Some(16),
            L4::Udp => Some(6),
            L4::Other => None,
        }
    }
}

/// A frame's header layout.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Headers {
    /// Offset of the IP header.
    pub(crate) l3_offset: usize,
    /// Offset of the L4 header (after IPv4 options and IPv6 extension headers).
    pub(crate) l4_offset: usize,
    /// IPv6 (else IPv4).
    pub(crate) ipv6: bool,
    /// The L4 protocol.
    pub(crate) l4: L4,
}

/// Offset of `inner` within `outer` (a sub-slice etherparse returned).
fn offset_in(outer: &[u8], inner: &[u8]) -> usize {
    (inner.as_ptr() as usize).wrapping_sub(outer.as_ptr() as usize)
}

impl Headers {
    /// Finds the headers of an Ethernet frame.
    ///
    /// # Errors
    /// [`OffloadError::BadFrame`] if it is not IPv4 or IPv6, is a fragment, or its headers are
    /// cut short or malformed.
    pub(crate) fn parse(frame: &[u8]) -> Result<Self, OffloadError> {
        let p = SlicedPacket::from_ethernet(frame)
            .map_err(|_| OffloadError::BadFrame("headers cut short or malformed"))?;
        let (l3_offset, ipv6, payload) = match &p.net {
            Some(NetSlice::Ipv4(ip)) => {
                (offset_in(frame, ip.header().slice()), false, ip.payload())
            }
            Some(NetSlice::Ipv6(ip)) => (offset_in(frame, ip.header().slice()), true, ip.payload()),
            _ => return Err(OffloadError::BadFrame("neither IPv4 nor IPv6")),
        };
        Self::from_slices(
            frame,
            (l3_offset, ipv6),
            (payload.fragmented, payload.payload),
            p.transport.as_ref(),
        )
    }

    /// Finds the headers from the first bytes of a frame only (`head`: a copy of what lies
    /// in shared memory, long enough for its headers), its payload cut short. The
    /// lengths the IP header gives are not checked against it.
    ///
    /// # Errors
    /// As [`parse`](Self::parse), for the headers.
    pub(crate) fn parse_head(head: &[u8]) -> Result<Self, OffloadError> {
        let p = LaxSlicedPacket::from_ethernet(head)
            .map_err(|_| OffloadError::BadFrame("headers cut short or malformed"))?;
        let (l3_offset, ipv6, payload) = match &p.net {
            Some(LaxNetSlice::Ipv4(ip)) => {
                (offset_in(head, ip.header().slice()), false, ip.payload())
            }
            Some(LaxNetSlice::Ipv6(ip)) => {
                (offset_in(head, ip.header().slice()), true, ip.payload())
            }
            _ => return Err(OffloadError::BadFrame("neither IPv4 nor IPv6")),
        };
        if p.transport.is_none() && p.stop_err.is_some() {
            return Err(OffloadError::BadFrame("headers cut short or malformed"));
        }
        Self::from_slices(
            head,
            (l3_offset, ipv6),
            (payload.fragmented, payload.payload),
            p.transport.as_ref(),
        )
    }

    fn from_slices(
        frame: &[u8],
        (l3_offset, ipv6): (usize, bool),
        (fragmented, payload): (bool, &[u8]),
        transport: Option<&TransportSlice<'_>>,
    ) -> Result<Self, OffloadError> {
        if fragmented {
            return Err(OffloadError::BadFrame("an IP fragment"));
        }
        let (l4_offset, l4) = match transport {
            Some(TransportSlice::Tcp(t)) => (
                offset_in(frame, t.header_slice()),
                L4::Tcp {
                    header_len: t.header_slice().len(),
                },
            ),
            Some(TransportSlice::Udp(u)) => (offset_in(frame, u.header_slice()), L4::Udp),
            _ => (offset_in(frame, payload), L4::Other),
        };
        if l4_offset > frame.len() || l3_offset >= l4_offset {
            return Err(OffloadError::BadFrame("headers out of order"));
        }
        Ok(Self {
            l3_offset,
            l4_offset,
            ipv6,
            l4,
        })
    }
}
