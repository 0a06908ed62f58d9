//! Netfront as a smoltcp device (feature `smoltcp`): a user-space TCP/IP stack over the
//! paravirtual NIC, no kernel in between.
//!
//! Follows smoltcp's conventions: [`Device::receive`] hands out a frame already copied out
//! of shared memory (the backend cannot change it afterwards), [`Device::transmit`] a token
//! only while the transmit ring has room for a full frame on every queue, and
//! [`DeviceCapabilities`] says what this device does: Ethernet, the negotiated MTU, bursts
//! as large as the ring holds, and checksums computed and verified by smoltcp (netif has no
//! way to hand smoltcp a partial checksum to finish, so frames the backend marks
//! `csum_blank` are checksummed here before smoltcp sees them).

use std::collections::VecDeque;

use netif::Offload;
use smoltcp::phy::{self, Device, DeviceCapabilities, Medium};
use smoltcp::time::Instant;
use smoltcp::wire::{
    EthernetFrame, EthernetProtocol, IpAddress, IpProtocol, Ipv4Packet, Ipv6Packet, TcpPacket,
    UdpPacket,
};

use crate::device::Netfront;
use crate::error::NetfrontError;
use crate::host::FrontendHost;
use crate::process::ProcessHost;

/// Frames taken from the rings at once, at most.
const BURST: usize = 64;

/// A [`Netfront`] as a [`smoltcp::phy::Device`] (Ethernet medium).
///
/// Configure the netfront without receive GSO (a frame longer than the MTU is dropped here:
/// smoltcp cannot take one). Errors of the device (its backend went away) are kept and
/// returned by [`take_error`](Self::take_error); meanwhile the device offers no tokens.
#[derive(Debug)]
pub struct SmoltcpDevice<H: FrontendHost = ProcessHost> {
    nic: Netfront<H>,
    rx: VecDeque<Vec<u8>>,
    spare: Vec<Vec<u8>>,
    tx_buf: Vec<u8>,
    error: Option<NetfrontError>,
    /// Frames dropped here: longer than the MTU, or refused by the ring.
    dropped: u64,
}

impl<H: FrontendHost> SmoltcpDevice<H> {
    /// The device over `nic`.
    pub fn new(nic: Netfront<H>) -> Self {
        Self {
            nic,
            rx: VecDeque::new(),
            spare: Vec::new(),
            tx_buf: Vec::new(),
            error: None,
            dropped: 0,
        }
    }

    /// The netfront (stats, waiting for work).
    pub fn nic(&mut self) -> &mut Netfront<H> {
        &mut self.nic
    }

    /// The netfront back (to close it).
    pub fn into_inner(self) -> Netfront<H> {
        self.nic
    }

    /// The error that stopped the device, if one did.
    pub fn take_error(&mut self) -> Option<NetfrontError> {
        self.error.take()
    }

    /// Frames dropped here (longer than the MTU, or refused by the ring).
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// The largest frame: the MTU and the Ethernet header.
    fn max_frame(&self) -> usize {
        usize::try_from(self.nic.choice().mtu).unwrap_or(1500) + 14
    }

    /// Takes received frames off the rings into the queue.
    fn fill(&mut self) {
        if self.error.is_some() {
            return;
        }
        let max = self.max_frame();
        let (rx, spare, dropped) = (&mut self.rx, &mut self.spare, &mut self.dropped);
        let r = self.nic.receive(BURST, |f| {
            if f.data.len() > max {
                *dropped += 1;
                return;
            }
            let mut buf = spare.pop().unwrap_or_default();
            buf.clear();
            buf.extend_from_slice(f.data);
            if f.offload.csum_blank {
                complete_checksum(&mut buf);
            }
            rx.push_back(buf);
        });
        if let Err(e) = r.and_then(|_| self.nic.poll()) {
            self.error = Some(e);
        }
    }
}

/// Fills in the L4 checksum of a frame the backend marked `csum_blank` (TCP or UDP over
/// IPv4, or over IPv6 without extension headers; anything else is left for smoltcp to judge).
fn complete_checksum(frame: &mut [u8]) {
    let l3 = EthernetFrame::<&[u8]>::header_len();
    let Ok(eth) = EthernetFrame::new_checked(&frame[..]) else {
        return;
    };
    let (src, dst, proto, l4, end) = match eth.ethertype() {
        EthernetProtocol::Ipv4 => {
            let Ok(ip) = Ipv4Packet::new_checked(&frame[l3..]) else {
                return;
            };
            if ip.more_frags() || ip.frag_offset() != 0 {
                return;
            }
            (
                IpAddress::Ipv4(ip.src_addr()),
                IpAddress::Ipv4(ip.dst_addr()),
                ip.next_header(),
                l3 + usize::from(ip.header_len()),
                l3 + usize::from(ip.total_len()),
            )
        }
        EthernetProtocol::Ipv6 => {
            let Ok(ip) = Ipv6Packet::new_checked(&frame[l3..]) else {
                return;
            };
            (
                IpAddress::Ipv6(ip.src_addr()),
                IpAddress::Ipv6(ip.dst_addr()),
                ip.next_header(),
                l3 + 40,
                l3 + ip.total_len(),
            )
        }
        _ => return,
    };
    let Some(segment) = frame.get_mut(l4..end) else {
        return;
    };
    match proto {
        IpProtocol::Tcp => {
            if let Ok(mut t) = TcpPacket::new_checked(segment) {
                t.fill_checksum(&src, &dst);
            }
        }
        IpProtocol::Udp => {
            if let Ok(mut u) = UdpPacket::new_checked(segment) {
                u.fill_checksum(&src, &dst);
            }
        }
        _ => {}
    }
}

/// A received frame, its buffer returned to the device's spares when consumed.
#[derive(Debug)]
pub struct RxToken<'a> {
    frame: Vec<u8>,
    spare: &'a mut Vec<Vec<u8>>,
}

impl phy::RxToken for RxToken<'_> {
    fn consume<R, F>(self, f: F) -> R
    where
        F: FnOnce(&[u8]) -> R,
    {
        let r = f(&self.frame);
        self.spare.push(self.frame);
        r
    }
}

/// Room for one frame in the transmit ring.
#[derive(Debug)]
pub struct TxToken<'a, H: FrontendHost> {
    nic: &'a mut Netfront<H>,
    buf: &'a mut Vec<u8>,
    dropped: &'a mut u64,
}

impl<H: FrontendHost> phy::TxToken for TxToken<'_, H> {
    fn consume<R, F>(self, len: usize, f: F) -> R
    where
        F: FnOnce(&mut [u8]) -> R,
    {
        self.buf.clear();
        self.buf.resize(len, 0);
        let r = f(self.buf);
        // The checksums are smoltcp's own: nothing partial, nothing to validate for us.
        if self.nic.send(self.buf, Offload::default()).is_err() {
            *self.dropped += 1;
        }
        r
    }
}

impl<H: FrontendHost> Device for SmoltcpDevice<H> {
    type RxToken<'a>
        = RxToken<'a>
    where
        Self: 'a;
    type TxToken<'a>
        = TxToken<'a, H>
    where
        Self: 'a;

    fn receive(&mut self, _timestamp: Instant) -> Option<(Self::RxToken<'_>, Self::TxToken<'_>)> {
        if self.rx.is_empty() {
            self.fill();
        }
        let frame = self.rx.pop_front()?;
        Some((
            RxToken {
                frame,
                spare: &mut self.spare,
            },
            TxToken {
                nic: &mut self.nic,
                buf: &mut self.tx_buf,
                dropped: &mut self.dropped,
            },
        ))
    }

    fn transmit(&mut self, _timestamp: Instant) -> Option<Self::TxToken<'_>> {
        if self.error.is_some() {
            return None;
        }
        let max = self.max_frame();
        if !self.nic.can_send(max, false) {
            // Completed transmits give their buffers back here.
            if let Err(e) = self.nic.poll() {
                self.error = Some(e);
                return None;
            }
            if !self.nic.can_send(max, false) {
                return None;
            }
        }
        Some(TxToken {
            nic: &mut self.nic,
            buf: &mut self.tx_buf,
            dropped: &mut self.dropped,
        })
    }

    fn capabilities(&self) -> DeviceCapabilities {
        let mut caps = DeviceCapabilities::default();
        caps.medium = Medium::Ethernet;
        caps.max_transmission_unit = self.max_frame();
        // A ring's worth of full frames, over every queue.
        let per_frame = self.max_frame().div_ceil(grant_table::FRAME_SIZE);
        let slots = usize::try_from(crate::device::RING_SLOTS).unwrap_or(256);
        caps.max_burst_size = Some((slots / per_frame).max(1));
        caps
    }
}
