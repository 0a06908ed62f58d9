//! Where guests' frames go: the [`Uplink`] trait and the uplinks pvnet ships (a learning
//! switch, echo, sink, and a callback for embedders).

use std::collections::HashMap;
use std::os::fd::BorrowedFd;
use std::time::Instant;

use netif::Offload;
use xenbus::FrontendChoice;

use crate::memory::{PacketId, PacketMemory};

/// A vif's identity within one [`Netback`](crate::Netback); never reused.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct VifId(pub u32);

/// Where frames a guest transmits go. Netback calls [`transmit`](Self::transmit) for each
/// accepted frame, in the order the guest sent them; the uplink delivers it (or others) to
/// vifs through the [`Outbox`]. A frame delivered nowhere is dropped.
pub trait Uplink {
    /// A frame `from` sent, held in backend memory until its last delivery is done.
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>);

    /// `vif` attached, having negotiated `choice`: its MAC address (a switch binds it there)
    /// and the offloads it takes on receive (an uplink that brings frames from outside does
    /// in software what the vif did not negotiate).
    fn vif_added(&mut self, vif: VifId, choice: &FrontendChoice) {
        let _ = (vif, choice);
    }

    /// `vif` is gone: forget it (a switch drops the MAC addresses it learnt there).
    fn vif_removed(&mut self, vif: VifId) {
        let _ = vif;
    }

    /// The descriptors on which frames from outside arrive (a TAP's queues), readable when
    /// some wait: [`Netback::wait`](crate::Netback::wait) sleeps on them too, and
    /// [`Netback::descriptors`](crate::Netback::descriptors) lists them as
    /// [`Token::Uplink`](crate::Token::Uplink). None by default.
    fn readiness_fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) {
        let _ = out;
    }

    /// Brings frames from outside to the vifs (through `out`), at most `budget` of them;
    /// called by every [`Netback::poll`](crate::Netback::poll). Returns how many it brought
    /// (0: none waiting). Nothing by default.
    fn receive(&mut self, out: &mut Outbox<'_>, budget: usize) -> usize {
        let _ = (out, budget);
        0
    }

    /// Whether the uplink takes frames from `from` now. While it does not, netback leaves
    /// that vif's transmit requests in its rings (back-pressure on the guest, not loss) and
    /// looks again at every poll and by [`retry_at`](Self::retry_at). Always by default.
    fn accepting(&self, from: VifId) -> bool {
        let _ = from;
        true
    }

    /// When an uplink that is not [`accepting`](Self::accepting) wants to be asked again
    /// (a sleep ends by then). `None` by default.
    fn retry_at(&self) -> Option<Instant> {
        None
    }
}

/// A boxed uplink is an uplink, so one backend type can serve an uplink chosen at run time
/// (`Netback<Box<dyn Uplink>>`) at the price of one indirect call per frame.
impl<U: Uplink + ?Sized> Uplink for Box<U> {
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        (**self).transmit(from, packet, out);
    }

    fn vif_added(&mut self, vif: VifId, choice: &FrontendChoice) {
        (**self).vif_added(vif, choice);
    }

    fn vif_removed(&mut self, vif: VifId) {
        (**self).vif_removed(vif);
    }

    fn readiness_fds<'a>(&'a self, out: &mut Vec<BorrowedFd<'a>>) {
        (**self).readiness_fds(out);
    }

    fn receive(&mut self, out: &mut Outbox<'_>, budget: usize) -> usize {
        (**self).receive(out, budget)
    }

    fn accepting(&self, from: VifId) -> bool {
        (**self).accepting(from)
    }

    fn retry_at(&self) -> Option<Instant> {
        (**self).retry_at()
    }
}

/// What an uplink can do with a frame: deliver it to vifs, read it, or make new frames.
#[derive(Debug)]
pub struct Outbox<'a> {
    mem: &'a mut PacketMemory,
    deliveries: &'a mut Vec<(VifId, PacketId)>,
    vifs: &'a [VifId],
}

impl<'a> Outbox<'a> {
    /// The backend's memory, where deliveries are queued, and the active vifs.
    pub(crate) fn new(
        mem: &'a mut PacketMemory,
        deliveries: &'a mut Vec<(VifId, PacketId)>,
        vifs: &'a [VifId],
    ) -> Self {
        Self {
            mem,
            deliveries,
            vifs,
        }
    }
}

impl Outbox<'_> {
    /// Queues `packet` for `to`'s receive ring. The same packet may go to several vifs; its
    /// memory is shared until the last copy into a guest is done. A packet handed to
    /// [`Uplink::transmit`] is held only during that call: delivered later, after netback
    /// released it, it goes nowhere (and a debug build panics).
    pub fn deliver(&mut self, to: VifId, packet: PacketId) {
        // A packet released already (an uplink that kept a handle past `transmit`) is
        // delivered nowhere: its page may hold another packet by now.
        if self.mem.retain(packet) {
            self.deliveries.push((to, packet));
        }
    }

    /// Queues a new frame of `bytes` for `to`. Returns `false` (and counts nothing) when the
    /// frame is longer than 65535 bytes or backend memory is short.
    pub fn inject(&mut self, to: VifId, bytes: &[u8], meta: Offload) -> bool {
        match self.mem.alloc_from(bytes, meta) {
            Some(p) => {
                self.deliveries.push((to, p));
                true
            }
            None => false,
        }
    }

    /// The packet memory, to read a frame ([`PacketMemory::read`]).
    pub fn memory(&self) -> &PacketMemory {
        self.mem
    }

    /// The vifs that can receive now (attached and not disabled).
    pub fn vifs(&self) -> &[VifId] {
        self.vifs
    }
}

/// Sends every frame back to the vif that sent it.
#[derive(Clone, Copy, Debug, Default)]
pub struct Echo;

impl Uplink for Echo {
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        out.deliver(from, packet);
    }
}

/// Counts and drops every frame.
#[derive(Clone, Copy, Debug, Default)]
pub struct Sink {
    /// Frames received.
    pub frames: u64,
    /// Bytes received.
    pub bytes: u64,
}

impl Uplink for Sink {
    fn transmit(&mut self, _from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        self.frames += 1;
        self.bytes += u64::from(out.memory().len(packet));
    }
}

/// An L2 switch joining the vifs of one backend. By default each vif owns exactly the MAC
/// address it negotiated (the table holds one entry per vif, bound when it attaches): a frame
/// whose source is not its sender's own address is dropped and counted as
/// [`spoofed`](Self::spoofed), so no guest can draw another's unicast traffic to itself by
/// claiming its address. [`Switch::learning`] also learns addresses behind a vif (a guest
/// that bridges or routes), up to [`MAX_LEARNT`] of them, each forgotten [`LEARNT_AGE`] after
/// it was learnt when room is needed; a vif's own address is never taken over. A unicast frame
/// goes to the vif that owns its destination; broadcast, multicast and unknown destinations
/// are flooded to every other vif. A frame never goes back where it came from. Frames pass
/// only through backend memory: no guest sees another guest's pages.
#[derive(Clone, Debug, Default)]
pub struct Switch {
    table: HashMap<[u8; 6], Entry>,
    /// Each vif's negotiated address.
    own: HashMap<VifId, [u8; 6]>,
    learning: bool,
    /// Learnt (not bound) entries in the table.
    learnt: usize,
    /// Frames forwarded to one known vif.
    pub forwarded: u64,
    /// Frames flooded.
    pub flooded: u64,
    /// Frames dropped because their source address was not their sender's to use.
    pub spoofed: u64,
}

/// Where an address lives, and whether it was learnt (and when) or bound at attach.
#[derive(Clone, Copy, Debug)]
struct Entry {
    vif: VifId,
    learnt: Option<std::time::Instant>,
}

/// Most addresses a [`Switch::learning`] switch learns (besides the vifs' own).
pub const MAX_LEARNT: usize = 4096;

/// How long a learnt address is kept before it may be forgotten to make room.
pub const LEARNT_AGE: std::time::Duration = std::time::Duration::from_secs(300);

impl Switch {
    /// A switch that also learns source addresses behind vifs, beyond their own (see the
    /// type's documentation for the bounds).
    pub fn learning() -> Self {
        Self {
            learning: true,
            ..Self::default()
        }
    }

    /// Where the switch has the address `mac` living.
    pub fn lookup(&self, mac: [u8; 6]) -> Option<VifId> {
        self.table.get(&mac).map(|e| e.vif)
    }

    /// Whether `from` may send frames with source address `src` (a learning switch learns
    /// it here); a refusal counts as [`spoofed`](Self::spoofed). For an uplink that routes
    /// with this switch's table and adds ports of its own (a TAP).
    pub fn admit_source(&mut self, from: VifId, src: [u8; 6]) -> bool {
        let ok = self.admit(from, src);
        if !ok {
            self.spoofed += 1;
        }
        ok
    }

    /// Whether `from` may send with source `src` (learning it if this switch learns).
    fn admit(&mut self, from: VifId, src: [u8; 6]) -> bool {
        match self.table.get(&src) {
            Some(e) if e.vif == from => true,
            // Another vif's own address is never taken over.
            Some(e) if e.learnt.is_none() => false,
            _ if !self.learning => false,
            // A multicast source address is bogus.
            _ if src[0] & 1 == 1 => false,
            Some(_) => {
                // Learnt behind another vif: it moved.
                let now = std::time::Instant::now();
                self.table.insert(
                    src,
                    Entry {
                        vif: from,
                        learnt: Some(now),
                    },
                );
                true
            }
            None => {
                let now = std::time::Instant::now();
                if self.learnt >= MAX_LEARNT {
                    let before = self.table.len();
                    self.table.retain(|_, e| {
                        e.learnt
                            .is_none_or(|t| now.saturating_duration_since(t) < LEARNT_AGE)
                    });
                    self.learnt -= before - self.table.len();
                }
                if self.learnt < MAX_LEARNT {
                    self.table.insert(
                        src,
                        Entry {
                            vif: from,
                            learnt: Some(now),
                        },
                    );
                    self.learnt += 1;
                }
                // Full of fresh entries: the frame goes on, its source is not learnt.
                true
            }
        }
    }
}

impl Uplink for Switch {
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        let mut hdr = [0u8; 12];
        if out.memory().read(packet, 0, &mut hdr) < hdr.len() {
            return;
        }
        let (dst, src) = hdr.split_at(6);
        let (dst, src): ([u8; 6], [u8; 6]) = (
            dst.try_into().expect("6 bytes"),
            src.try_into().expect("6 bytes"),
        );
        if !self.admit_source(from, src) {
            return;
        }
        match self.table.get(&dst) {
            Some(e) if dst[0] & 1 == 0 => {
                if e.vif != from {
                    self.forwarded += 1;
                    out.deliver(e.vif, packet);
                }
            }
            _ => {
                self.flooded += 1;
                let vifs = out.vifs;
                for &to in vifs.iter().filter(|v| **v != from) {
                    out.deliver(to, packet);
                }
            }
        }
    }

    fn vif_added(&mut self, vif: VifId, choice: &FrontendChoice) {
        let mac = choice.mac;
        self.own.insert(vif, mac);
        // First come: an address another vif owns stays its own (the newcomer, claiming it,
        // can send nothing).
        let taken = self.table.get(&mac).is_some_and(|e| e.learnt.is_none());
        if !taken && mac[0] & 1 == 0 {
            if self.table.get(&mac).is_some_and(|e| e.learnt.is_some()) {
                self.learnt -= 1;
            }
            self.table.insert(mac, Entry { vif, learnt: None });
        }
    }

    fn vif_removed(&mut self, vif: VifId) {
        self.own.remove(&vif);
        self.table.retain(|_, e| e.vif != vif);
        self.learnt = self.table.values().filter(|e| e.learnt.is_some()).count();
    }
}

/// An uplink made of a closure: it gets each frame's bytes (copied into a buffer reused from
/// frame to frame) and its offload metadata, and may deliver or inject frames.
pub struct Callback<F> {
    f: F,
    scratch: Vec<u8>,
}

impl<F> core::fmt::Debug for Callback<F> {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("Callback").finish_non_exhaustive()
    }
}

impl<F> Callback<F>
where
    F: FnMut(VifId, PacketId, &[u8], Offload, &mut Outbox<'_>),
{
    /// An uplink calling `f(from, packet, bytes, offload, outbox)` for each frame.
    pub fn new(f: F) -> Self {
        Self {
            f,
            scratch: Vec::new(),
        }
    }
}

impl<F> Uplink for Callback<F>
where
    F: FnMut(VifId, PacketId, &[u8], Offload, &mut Outbox<'_>),
{
    fn transmit(&mut self, from: VifId, packet: PacketId, out: &mut Outbox<'_>) {
        let len = out.memory().len(packet) as usize;
        self.scratch.resize(len, 0);
        out.memory().read(packet, 0, &mut self.scratch);
        let meta = out.memory().meta(packet);
        (self.f)(from, packet, &self.scratch, meta, out);
    }
}
