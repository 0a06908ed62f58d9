//! A TAP as netback's uplink (feature `netback`): the host joins the vifs on one L2 segment.
//! Frames between vifs are switched in backend memory ([`Switch`]: each vif owns the MAC it
//! negotiated); frames for the host, broadcast, multicast and unknown destinations go out
//! the TAP with their offloads as a `virtio_net_hdr`; frames the host sends come in through
//! the TAP and go to the vif owning their destination (or every vif). A vif that did not
//! negotiate an offload a frame carries gets it done in software: checksums filled in, TCP
//! segmented.

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use netback::{Outbox, PacketId, Switch, Uplink, VifId};
use netif::{GsoKind, Offload};
use xenbus::FrontendChoice;

use crate::device::{Tap, TapOffloads};
use crate::headers::{HEAD_COPY, Headers};
use crate::soft::{fill_checksum, segment};
use crate::vnet::VnetHdr;

/// Most bytes of a frame plus room (a GSO packet is at most 64 KiB of IP).
const FRAME_MAX: usize = 65535 + 14 + 4;

/// How long a refused write waits before it is tried again.
const RETRY: Duration = Duration::from_millis(1);

/// Most segments one GSO packet is split into here (a 64 KiB packet at a 256-byte MSS). A
/// guest choosing a tiny segment size would otherwise buy thousands of segments, each
/// checksummed, with one packet.
const MAX_SEGMENTS: usize = 256;

/// Most host MAC addresses remembered (those the TAP's frames came from).
const MAX_HOST_MACS: usize = 1024;

/// What a vif takes on receive (from its negotiation).
#[derive(Clone, Copy, Debug)]
struct RxCaps {
    csum4: bool,
    csum6: bool,
    gso4: bool,
    gso6: bool,
}

impl RxCaps {
    fn of(c: &FrontendChoice) -> Self {
        Self {
            csum4: c.ipv4_csum_offload,
            csum6: c.ipv6_csum_offload,
            // GSO needs scatter-gather to carry the packet at all.
            gso4: c.gso_tcpv4 && c.sg,
            gso6: c.gso_tcpv6 && c.sg,
        }
    }

    fn takes_gso(self, kind: GsoKind) -> bool {
        match kind {
            GsoKind::TcpV4 => self.gso4,
            GsoKind::TcpV6 => self.gso6,
        }
    }
}

/// What the TAP uplink did, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapStats {
    /// Frames written to the TAP (to the host).
    pub to_host: u64,
    /// Frames read from the TAP (from the host).
    pub from_host: u64,
    /// Frames segmented in software for a vif without GSO.
    pub segmented: u64,
    /// Frames whose checksum was filled in for a vif without checksum offload.
    pub checksummed: u64,
    /// Frames dropped: their offload could not be translated (a guest's malformed frame,
    /// or UDP segmentation from the host).
    pub bad_offload: u64,
    /// Frames dropped: backend memory or a vif's backlog was full.
    pub no_room: u64,
    /// Writes the kernel refused for now (`EAGAIN` / `ENOBUFS`), retried.
    pub deferred: u64,
    /// Writes the kernel refused for good (`EINVAL`: a frame it judged malformed).
    pub refused: u64,
}

/// The TAP uplink: a [`Switch`] between the vifs with the host as one more port.
#[derive(Debug)]
pub struct TapUplink {
    tap: Tap,
    switch: Switch,
    vifs: HashMap<VifId, RxCaps>,
    host_macs: HashMap<[u8; 6], ()>,
    offloads: TapOffloads,
    buf: Vec<u8>,
    /// A frame the TAP refused for now, with the vif it came from.
    pending: Option<(VifId, VnetHdr, Vec<u8>)>,
    retry: Option<Instant>,
    stats: TapStats,
}

impl TapUplink {
    /// An uplink over `tap`, which takes no offload until vifs that can receive them attach.
    ///
    /// # Errors
    /// `TUNSETOFFLOAD` failed.
    pub fn new(tap: Tap) -> std::io::Result<Self> {
        tap.set_offloads(TapOffloads::default())?;
        Ok(Self {
            tap,
            switch: Switch::default(),
            vifs: HashMap::new(),
            host_macs: HashMap::new(),
            offloads: TapOffloads::default(),
            buf: vec![0; FRAME_MAX],
            pending: None,
            retry: None,
            stats: TapStats::default(),
        })
    }

    /// The TAP.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// What it did.
    pub fn stats(&self) -> TapStats {
        self.stats
    }

    /// The switch between the vifs (its counters: forwarded, flooded, spoofed).
    pub fn switch(&self) -> &Switch {
        &self.switch
    }

    /// Asks the kernel for the offloads some vif takes (the others get them in software).
    fn update_offloads(&mut self) {
        let any = |f: fn(&RxCaps) -> bool| self.vifs.values().any(f);
        let want = TapOffloads {
            csum: any(|c| c.csum4 || c.csum6),
            tso4: any(|c| c.gso4),
            tso6: any(|c| c.gso6),
        };
        if want != self.offloads && self.tap.set_offloads(want).is_ok() {
            self.offloads = want;
        }
    }

    /// Queues `bytes` for `to`, doing in software what `to` did not negotiate.
    fn inject(&mut self, to: VifId, bytes: &mut [u8], meta: Offload, out: &mut Outbox<'_>) {
        let Some(&caps) = self.vifs.get(&to) else {
            return;
        };
        let stats = &mut self.stats;
        let mut push = |bytes: &[u8], meta: Offload| {
            if !out.inject(to, bytes, meta) {
                stats.no_room += 1;
            }
        };
        if let Some(g) = meta.gso.filter(|g| !caps.takes_gso(g.kind)) {
            if bytes.len() / usize::from(g.size.max(1)) > MAX_SEGMENTS {
                stats.bad_offload += 1;
                return;
            }
            // Every segment complete and checksummed: validated, nothing partial.
            let whole = Offload {
                csum_blank: false,
                data_validated: true,
                gso: None,
            };
            match segment(bytes, g.size, |s| push(s, whole)) {
                Ok(_) => stats.segmented += 1,
                Err(_) => stats.bad_offload += 1,
            }
            return;
        }
        if meta.csum_blank {
            let ipv6 = Headers::parse(bytes).is_ok_and(|h| h.ipv6);
            let takes = if ipv6 { caps.csum6 } else { caps.csum4 };
            if !takes {
                if fill_checksum(bytes).is_err() {
                    stats.bad_offload += 1;
                    return;
                }
                stats.checksummed += 1;
                push(
                    bytes,
                    Offload {
                        csum_blank: false,
                        ..meta
                    },
                );
                return;
            }
        }
        push(bytes, meta);
    }

    /// Delivers a vif's packet to another vif: shared when it takes the packet's offloads,
    /// else copied and done in software.
    fn deliver(&mut self, to: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        let meta = out.memory().meta(packet);
        let Some(&caps) = self.vifs.get(&to) else {
            return;
        };
        let needs_gso = meta.gso.is_some_and(|g| !caps.takes_gso(g.kind));
        let needs_csum = meta.csum_blank && !(caps.csum4 && caps.csum6);
        if !needs_gso && !needs_csum {
            out.deliver(to, packet);
            return;
        }
        let len = out.memory().read(packet, 0, &mut self.buf);
        let mut bytes = std::mem::take(&mut self.buf);
        self.inject(to, &mut bytes[..len], meta, out);
        self.buf = bytes;
    }

    /// Writes a vif's packet to the host: straight from packet memory (one `writev`), its
    /// headers read from a copy of its first bytes; a GSO packet that must be made partial
    /// first (its checksum field written) goes through a copy.
    fn send_to_host(&mut self, from: VifId, packet: PacketId, out: &Outbox<'_>) {
        if self.pending.is_some() {
            // Not accepting: netback stops taking from the rings, but frames it took in the
            // same poll still come. One is held; the rest count as no room.
            self.stats.no_room += 1;
            return;
        }
        let mem = out.memory();
        let meta = mem.meta(packet);
        if meta.gso.is_some() && !meta.csum_blank {
            let len = mem.read(packet, 0, &mut self.buf);
            let hdr = match VnetHdr::from_offload(&mut self.buf[..len], meta) {
                Ok(h) => h,
                Err(_) => {
                    self.stats.bad_offload += 1;
                    return;
                }
            };
            self.write(from, hdr, len);
            return;
        }
        let mut head = [0u8; HEAD_COPY];
        let n = mem.read(packet, 0, &mut head);
        let Ok(hdr) = VnetHdr::from_offload(&mut head[..n], meta) else {
            self.stats.bad_offload += 1;
            return;
        };
        let q = usize::try_from(from.0).unwrap_or(0) % self.tap.queues();
        match self
            .tap
            .send_with(q, &hdr, |fd, h| mem.write_to(packet, fd, h))
        {
            Ok(true) => self.stats.to_host += 1,
            Ok(false) => {
                // Kept for a retry: the packet's memory goes back to netback when this returns.
                let len = mem.read(packet, 0, &mut self.buf);
                self.stats.deferred += 1;
                self.pending = Some((from, hdr, self.buf[..len].to_vec()));
                self.retry = Some(Instant::now() + RETRY);
            }
            Err(_) => self.stats.refused += 1,
        }
    }

    /// Writes `self.buf[..len]` with `hdr`; keeps it for a retry if the kernel cannot take
    /// it now.
    fn write(&mut self, from: VifId, hdr: VnetHdr, len: usize) {
        let q = usize::try_from(from.0).unwrap_or(0) % self.tap.queues();
        match self.tap.send(q, &hdr, &[&self.buf[..len]]) {
            Ok(true) => self.stats.to_host += 1,
            Ok(false) => {
                self.stats.deferred += 1;
                self.pending = Some((from, hdr, self.buf[..len].to_vec()));
                self.retry = Some(Instant::now() + RETRY);
            }
            Err(_) => self.stats.refused += 1,
        }
    }

    /// Tries the refused write again.
    fn flush(&mut self) {
        let Some((from, hdr, frame)) = self.pending.take() else {
            return;
        };
        let q = usize::try_from(from.0).unwrap_or(0) % self.tap.queues();
        match self.tap.send(q, &hdr, &[&frame]) {
            Ok(true) => {
                self.stats.to_host += 1;
                self.retry = None;
            }
            Ok(false) => {
                self.pending = Some((from, hdr, frame));
                self.retry = Some(Instant::now() + RETRY);
            }
            Err(_) => {
                self.stats.refused += 1;
                self.retry = None;
            }
        }
    }

    /// Remembers a host source address (bounded: the oldest are forgotten by clearing).
    fn learn_host(&mut self, src: [u8; 6]) {
        if src[0] & 1 == 1 || self.host_macs.contains_key(&src) {
            return;
        }
        if self.host_macs.len() >= MAX_HOST_MACS {
            self.host_macs.clear();
        }
        self.host_macs.insert(src, ());
    }
}

fn macs(hdr: &[u8]) -> ([u8; 6], [u8; 6]) {
    let mut dst = [0; 6];
    let mut src = [0; 6];
    dst.copy_from_slice(&hdr[..6]);
    src.copy_from_slice(&hdr[6..12]);
    (dst, src)
}

impl Uplink for TapUplink {
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        let mut hdr = [0u8; 12];
        if out.memory().read(packet, 0, &mut hdr) < hdr.len() {
            return;
        }
        let (dst, src) = macs(&hdr);
        if !self.switch.admit_source(from, src) {
            return;
        }
        let unicast = dst[0] & 1 == 0;
        if unicast {
            if let Some(to) = self.switch.lookup(dst) {
                if to != from {
                    self.deliver(to, packet, out);
                }
                return;
            }
            if self.host_macs.contains_key(&dst) {
                self.send_to_host(from, packet, out);
                return;
            }
        }
        // Broadcast, multicast, unknown: every other vif and the host.
        let others: Vec<VifId> = out.vifs().iter().copied().filter(|v| *v != from).collect();
        for to in others {
            self.deliver(to, packet, out);
        }
        self.send_to_host(from, packet, out);
    }

    fn vif_added(&mut self, vif: VifId, choice: &FrontendChoice) {
        self.switch.vif_added(vif, choice);
        self.vifs.insert(vif, RxCaps::of(choice));
        self.update_offloads();
    }

    fn vif_removed(&mut self, vif: VifId) {
        self.switch.vif_removed(vif);
        self.vifs.remove(&vif);
        self.update_offloads();
    }

    fn readiness_fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) {
        out.extend((0..self.tap.queues()).filter_map(|q| self.tap.fd(q)));
    }

    fn receive(&mut self, out: &mut Outbox<'_>, budget: usize) -> usize {
        self.flush();
        let mut got = 0;
        for q in 0..self.tap.queues() {
            for _ in 0..budget {
                let mut buf = std::mem::take(&mut self.buf);
                let read = self.tap.recv(q, &mut buf);
                let Ok(Some((hdr, len))) = read else {
                    self.buf = buf;
                    break;
                };
                got += 1;
                self.stats.from_host += 1;
                self.route_from_host(hdr, &mut buf[..len], out);
                self.buf = buf;
            }
        }
        got
    }

    fn accepting(&self, _from: VifId) -> bool {
        self.pending.is_none()
    }

    fn retry_at(&self) -> Option<Instant> {
        self.retry
    }
}

impl TapUplink {
    /// A frame the host sent: to the vif owning its destination, or to every vif.
    fn route_from_host(&mut self, hdr: VnetHdr, frame: &mut [u8], out: &mut Outbox<'_>) {
        if frame.len() < 14 {
            return;
        }
        let meta = match hdr.to_offload(frame) {
            Ok(m) => m,
            Err(_) => {
                self.stats.bad_offload += 1;
                return;
            }
        };
        let (dst, src) = macs(&frame[..12]);
        self.learn_host(src);
        if dst[0] & 1 == 0 {
            if let Some(to) = self.switch.lookup(dst) {
                self.inject(to, frame, meta, out);
            }
            // Unicast for no vif of ours: not ours to flood back at the host's segment.
            return;
        }
        let all: Vec<VifId> = out.vifs().to_vec();
        if all.len() == 1 {
            self.inject(all[0], frame, meta, out);
            return;
        }
        // Each vif gets its own copy (a fallback may change the bytes).
        let copy = frame.to_vec();
        for to in all {
            let mut bytes = copy.clone();
            self.inject(to, &mut bytes, meta, out);
        }
    }
}
