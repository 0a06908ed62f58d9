//! Offloads done in software, for a frame that must reach a peer which did not negotiate
//! them: L4 checksums filled in, TCP segmentation. The arithmetic is etherparse's
//! (`checksum`); the segmentation follows Linux's `tcp_gso_segment`: every segment gets the
//! headers, its IPv4 length, identification and header checksum or its IPv6 payload length,
//! its sequence number, the flags only the first or last segment may carry, and a full
//! checksum.

use etherparse::checksum::u32_16bit_word;

use crate::OffloadError;
use crate::headers::{Headers, L4};

/// IP protocol numbers.
const TCP: u8 = 6;
const UDP: u8 = 17;

/// The L4 length (header and payload) from the IP header's own length field, and the end
/// of the IP packet in the frame (Ethernet padding excluded).
fn l4_span(frame: &[u8], h: &Headers) -> Result<(usize, usize), OffloadError> {
    let short = OffloadError::BadFrame("IP length off the frame");
    let word = |at: usize| -> Result<usize, OffloadError> {
        let b = frame.get(at..at + 2).ok_or(short)?;
        Ok(usize::from(u16::from_be_bytes([b[0], b[1]])))
    };
    let end = if h.ipv6 {
        h.l3_offset + 40 + word(h.l3_offset + 4)?
    } else {
        h.l3_offset + word(h.l3_offset + 2)?
    };
    if end > frame.len() || end < h.l4_offset {
        return Err(short);
    }
    Ok((end - h.l4_offset, end))
}

fn protocol(h: &Headers) -> Result<u8, OffloadError> {
    match h.l4 {
        L4::Tcp { .. } => Ok(TCP),
        L4::Udp => Ok(UDP),
        L4::Other => Err(OffloadError::BadFrame("a checksum outside TCP and UDP")),
    }
}

/// The pseudo-header's sum (addresses, protocol, L4 length), not yet folded.
fn pseudo_sum(frame: &[u8], h: &Headers, l4_len: usize) -> Result<u32, OffloadError> {
    let (addrs, len) = if h.ipv6 {
        (h.l3_offset + 8..h.l3_offset + 40, l4_len)
    } else {
        (h.l3_offset + 12..h.l3_offset + 20, l4_len)
    };
    let addrs = frame
        .get(addrs)
        .ok_or(OffloadError::BadFrame("IP header cut short"))?;
    let len = u32::try_from(len).map_err(|_| OffloadError::BadFrame("L4 longer than 4 GiB"))?;
    let mut sum = u32_16bit_word::add_slice(0, addrs);
    sum = u32_16bit_word::add_4bytes(sum, len.to_be_bytes());
    Ok(u32_16bit_word::add_2bytes(sum, [0, protocol(h)?]))
}

/// Folds a 32-bit one's complement sum to 16 bits. etherparse's sums read the words in the
/// host's byte order (faster, and the same sum byte-swapped), so the folded value is
/// written back in the host's byte order too (`to_ne_bytes`): the bytes come out in network
/// order.
fn fold(mut sum: u32) -> u16 {
    while sum > 0xffff {
        sum = (sum & 0xffff) + (sum >> 16);
    }
    u16::try_from(sum).unwrap_or(u16::MAX)
}

/// The bytes of the checksum over a sum: its folded complement.
fn checksum_bytes(sum: u32) -> [u8; 2] {
    (!fold(sum)).to_ne_bytes()
}

/// The bytes a partial checksum field holds (Linux `CHECKSUM_PARTIAL`): the folded sum of
/// the pseudo-header, not complemented.
pub(crate) fn pseudo_header_sum(frame: &[u8], h: &Headers) -> Result<[u8; 2], OffloadError> {
    let (l4_len, _) = l4_span(frame, h)?;
    Ok(fold(pseudo_sum(frame, h, l4_len)?).to_ne_bytes())
}

/// Fills in the L4 checksum of `frame` (TCP or UDP over IPv4 or IPv6) from scratch, whatever
/// the field held (a partial sum, or nothing): for a frame marked `csum_blank` going to a
/// peer that cannot take partial checksums.
///
/// # Errors
/// [`OffloadError::BadFrame`] if the frame is not TCP or UDP, is a fragment, or its lengths do not
/// add up.
pub fn fill_checksum(frame: &mut [u8]) -> Result<(), OffloadError> {
    let h = Headers::parse(frame)?;
    fill_checksum_of(frame, &h)
}

fn fill_checksum_of(frame: &mut [u8], h: &Headers) -> Result<(), OffloadError> {
    let (l4_len, end) = l4_span(frame, h)?;
    let field = h.l4_offset
        + h.l4
            .csum_offset()
            .ok_or(OffloadError::BadFrame("not TCP or UDP"))?;
    frame[field..field + 2].copy_from_slice(&[0, 0]);
    let sum = u32_16bit_word::add_slice(pseudo_sum(frame, h, l4_len)?, &frame[h.l4_offset..end]);
    let mut csum = checksum_bytes(sum);
    if csum == [0, 0] && h.l4 == L4::Udp {
        // A UDP checksum of 0 means "none": the sum 0 is sent as all ones.
        csum = [0xff, 0xff];
    }
    frame[field..field + 2].copy_from_slice(&csum);
    Ok(())
}

/// Splits a TCP GSO packet into segments of at most `mss` payload bytes, each a complete
/// frame with every checksum filled in, handed to `emit` in order (in a buffer reused for
/// each). Returns the number of segments.
///
/// # Errors
/// [`OffloadError::BadFrame`] if the frame is not TCP, is a fragment, its lengths do not add up,
/// or `mss` is 0; nothing is emitted then.
pub fn segment(frame: &[u8], mss: u16, mut emit: impl FnMut(&[u8])) -> Result<usize, OffloadError> {
    let h = Headers::parse(frame)?;
    let L4::Tcp { header_len } = h.l4 else {
        return Err(OffloadError::BadFrame(
            "TCP segmentation of a packet that is not TCP",
        ));
    };
    if mss == 0 {
        return Err(OffloadError::BadFrame("a segment size of 0"));
    }
    let (_, end) = l4_span(frame, &h)?;
    let hdr_len = h.l4_offset + header_len;
    let payload = &frame[hdr_len..end];
    let mss = usize::from(mss);
    let count = payload.len().div_ceil(mss).max(1);
    let (l3, l4) = (h.l3_offset, h.l4_offset);
    let seq = u32::from_be_bytes([frame[l4 + 4], frame[l4 + 5], frame[l4 + 6], frame[l4 + 7]]);
    let id = u16::from_be_bytes([frame[l3 + 4], frame[l3 + 5]]);
    let tcp_flags = frame[l4 + 13];
    let mut buf = Vec::with_capacity(hdr_len + mss);
    for (i, chunk) in payload
        .chunks(mss)
        .chain(payload.is_empty().then_some(&[][..]))
        .enumerate()
    {
        buf.clear();
        buf.extend_from_slice(&frame[..hdr_len]);
        buf.extend_from_slice(chunk);
        let ip_len = buf.len() - l3;
        if h.ipv6 {
            let len = u16::try_from(ip_len - 40)
                .map_err(|_| OffloadError::BadFrame("segment too long"))?;
            buf[l3 + 4..l3 + 6].copy_from_slice(&len.to_be_bytes());
        } else {
            let len =
                u16::try_from(ip_len).map_err(|_| OffloadError::BadFrame("segment too long"))?;
            buf[l3 + 2..l3 + 4].copy_from_slice(&len.to_be_bytes());
            let n = u16::try_from(i).unwrap_or(u16::MAX);
            buf[l3 + 4..l3 + 6].copy_from_slice(&id.wrapping_add(n).to_be_bytes());
            buf[l3 + 10..l3 + 12].copy_from_slice(&[0, 0]);
            let ihl = l4 - l3;
            let csum = checksum_bytes(u32_16bit_word::add_slice(0, &buf[l3..l3 + ihl]));
            buf[l3 + 10..l3 + 12].copy_from_slice(&csum);
        }
        let offset = u32::try_from(i * mss).unwrap_or(u32::MAX);
        buf[l4 + 4..l4 + 8].copy_from_slice(&seq.wrapping_add(offset).to_be_bytes());
        let mut f = tcp_flags;
        if i + 1 < count {
            f &= !(0x01 | 0x08); // FIN and PSH only on the last segment
        }
        if i > 0 {
            f &= !0x80; // CWR only on the first
        }
        buf[l4 + 13] = f;
        fill_checksum_of(&mut buf, &h)?;
        emit(&buf);
    }
    Ok(count)
}
