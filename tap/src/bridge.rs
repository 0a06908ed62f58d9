//! A netfront as a Linux interface (feature `netfront`): frames move between a [`Netfront`]
//! and a TAP, so the kernel's own stack uses the paravirtual NIC as its NIC, offloads
//! included: the kernel's large TCP segments cross as 64 KiB GSO packets when the backend
//! takes GSO, and partial checksums stay partial when it takes them.

use std::os::fd::BorrowedFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use netfront::{FrontendHost, Netfront, NetfrontError, SendError, TxBatch};
use netif::Offload;

use crate::device::{Tap, TapOffloads};
use crate::headers::{HEAD_COPY, Headers};
use crate::soft::{fill_checksum, segment};
use crate::vnet::VnetHdr;

const FRAME_MAX: usize = 65535 + 14 + 4;

/// What a [`TapBridge`] moved, counted.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Frames the kernel sent that went out through netfront.
    pub to_backend: u64,
    /// Frames netfront received that went to the kernel.
    pub to_host: u64,
    /// Frames the kernel sent that were segmented or checksummed here first (an offload the
    /// backend did not negotiate).
    pub soft: u64,
    /// Frames dropped: an offload that cannot be translated, or a frame netfront refused.
    pub dropped: u64,
}

/// Moves frames between a TAP and a netfront. One owner (the thread that pumps it).
#[derive(Debug)]
pub struct TapBridge {
    tap: Tap,
    buf: Vec<u8>,
    /// A received frame on its way to the kernel (reused: no allocation per frame).
    rx_buf: Vec<u8>,
    /// Per TAP queue: its transmit ring had no room at the last pump, so wait for
    /// completions there, not for that TAP queue (the other queues go on).
    ring_full: Vec<bool>,
    /// Bytes of transmit buffers taken for each read from the TAP (one page at MTU 1500
    /// without GSO, 17 with it).
    reserve: usize,
    stats: BridgeStats,
    budget: usize,
}

/// Why pumping stopped.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BridgeError {
    /// The netfront failed (its backend misbehaved or went away, or a local failure).
    #[error(transparent)]
    Netfront(#[from] NetfrontError),
    /// The TAP failed.
    #[error("tap: {0}")]
    Tap(#[from] std::io::Error),
}

impl TapBridge {
    /// A bridge between `tap` and `nic`: the TAP is told to hand over what the backend
    /// takes ([`Netfront::tx_features`]): partial checksums (an IPv6 one is filled here if
    /// the backend does not take those), TCPv4 GSO, TCPv6 GSO when IPv6 partial checksums
    /// come with it.
    ///
    /// # Errors
    /// `TUNSETOFFLOAD` failed.
    pub fn new<H: FrontendHost>(tap: Tap, nic: &Netfront<H>) -> std::io::Result<Self> {
        let all = TapOffloads {
            csum: true,
            tso4: true,
            tso6: true,
        };
        Self::with_offloads(tap, nic, all)
    }

    /// As [`new`](Self::new), taking from the kernel at most `wanted` (what `ethtool -K`
    /// turns off on a NIC): `TapOffloads::default()` has the kernel send every frame whole
    /// and checksummed.
    ///
    /// # Errors
    /// `TUNSETOFFLOAD` failed.
    pub fn with_offloads<H: FrontendHost>(
        tap: Tap,
        nic: &Netfront<H>,
        wanted: TapOffloads,
    ) -> std::io::Result<Self> {
        let f = nic.tx_features();
        // GSO packets come with partial checksums: no GSO without `csum`.
        let csum = wanted.csum;
        let offloads = TapOffloads {
            csum,
            tso4: csum && wanted.tso4 && f.gso_tcpv4,
            tso6: csum && wanted.tso6 && f.gso_tcpv6 && f.ipv6_csum_offload,
        };
        tap.set_offloads(offloads)?;
        // The largest frame the kernel sends with these offloads (a VLAN tag included), and
        // a byte more: a read that fills the buffers may have been cut.
        let largest = if offloads.tso4 || offloads.tso6 {
            FRAME_MAX
        } else {
            f.max_len + 4
        };
        let queues = tap.queues();
        Ok(Self {
            reserve: largest + 1,
            tap,
            buf: vec![0; FRAME_MAX],
            rx_buf: Vec::with_capacity(FRAME_MAX),
            ring_full: vec![false; queues],
            stats: BridgeStats::default(),
            budget: 64,
        })
    }

    /// The TAP.
    pub fn tap(&self) -> &Tap {
        &self.tap
    }

    /// What it moved.
    pub fn stats(&self) -> BridgeStats {
        self.stats
    }

    /// What the backend would not take, done here: segmented, or checksummed.
    fn queue_soft<H: FrontendHost>(
        b: &mut TxBatch<'_, H>,
        stats: &mut BridgeStats,
        frame: &mut [u8],
        off: Offload,
    ) {
        if let Some(g) = off.gso {
            let whole = Offload {
                csum_blank: false,
                data_validated: true,
                gso: None,
            };
            // A ring too full for every segment loses the rest, as a NIC queue would.
            let r = segment(frame, g.size, |s| {
                if b.send(s, whole).is_ok() {
                    stats.to_backend += 1;
                } else {
                    stats.dropped += 1;
                }
            });
            if r.is_err() {
                stats.dropped += 1;
            }
            return;
        }
        if off.csum_blank && fill_checksum(frame).is_ok() {
            let whole = Offload {
                csum_blank: false,
                ..off
            };
            if b.send(frame, whole).is_ok() {
                stats.to_backend += 1;
                return;
            }
        }
        stats.dropped += 1;
    }

    /// Frames the kernel sent, through netfront, in one batch (one publish, at most one
    /// notification): until the TAP has no more, the budget is spent or the ring is full.
    /// Each frame is read straight into netfront's transmit buffers (one `readv`: the
    /// virtio header here, the frame there); only a frame that needs work in software
    /// (an offload the backend did not negotiate) is copied out.
    fn pump_from_host<H: FrontendHost>(
        &mut self,
        nic: &mut Netfront<H>,
    ) -> Result<usize, BridgeError> {
        let ipv6_csum = nic.tx_features().ipv6_csum_offload;
        let Self {
            tap,
            buf,
            ring_full,
            reserve,
            stats,
            budget,
            ..
        } = self;
        ring_full.fill(false);
        nic.batch(|b| {
            let mut moved = 0;
            for (q, full) in ring_full.iter_mut().enumerate() {
                for _ in 0..*budget {
                    let mut slot = match b.reserve(q, *reserve) {
                        Ok(slot) => slot,
                        Err(SendError::Broken(f)) => return Err(NetfrontError::Broken(f).into()),
                        // Full: this queue's frames wait in the TAP until completions come;
                        // the next queue goes on.
                        Err(_) => {
                            *full = true;
                            break;
                        }
                    };
                    let Some((hdr, len)) = tap.recv_with(q, |fd, h| slot.read_from(fd, h))? else {
                        break;
                    };
                    moved += 1;
                    if len >= slot.capacity() {
                        // Longer than the interface's MTU allows (cut by the read).
                        stats.dropped += 1;
                        continue;
                    }
                    let mut head = [0u8; HEAD_COPY];
                    let n = slot.read(0, &mut head[..len.min(HEAD_COPY)]);
                    let head = &head[..n];
                    let Ok(mut off) = hdr.to_offload(head) else {
                        stats.dropped += 1;
                        continue;
                    };
                    // A partial IPv6 checksum the backend did not agree to take.
                    let fill = off.csum_blank
                        && off.gso.is_none()
                        && !ipv6_csum
                        && Headers::parse_head(head).is_ok_and(|h| h.ipv6);
                    if !fill {
                        match slot.commit(len, off) {
                            Ok(()) => {
                                stats.to_backend += 1;
                                continue;
                            }
                            Err(SendError::OffloadNotNegotiated | SendError::TooLong { .. }) => {}
                            Err(SendError::Broken(f)) => {
                                return Err(NetfrontError::Broken(f).into());
                            }
                            Err(_) => {
                                stats.dropped += 1;
                                continue;
                            }
                        }
                    }
                    // Done in software, on a copy; the buffers go back first, so the
                    // frame (or its first segments) has room.
                    let len = len.min(buf.len());
                    let frame = &mut buf[..len];
                    slot.read(0, frame);
                    drop(slot);
                    stats.soft += 1;
                    if fill && fill_checksum(frame).is_ok() {
                        off.csum_blank = false;
                        if b.send(frame, off).is_ok() {
                            stats.to_backend += 1;
                        } else {
                            stats.dropped += 1;
                        }
                    } else {
                        Self::queue_soft(b, stats, frame, off);
                    }
                }
            }
            Ok(moved)
        })
        .unwrap_or_else(|e| match e {
            // Queued and published; the backend sees them at its next look.
            SendError::Notify => Ok(1),
            SendError::Broken(f) => Err(NetfrontError::Broken(f).into()),
            // `batch` itself fails with nothing else.
            _ => Ok(0),
        })
    }

    /// Moves what waits, both ways: the kernel's frames out through netfront (until its
    /// ring is full), netfront's received frames into the kernel. Returns frames moved.
    ///
    /// # Errors
    /// The netfront broke, or the TAP failed.
    pub fn pump<H: FrontendHost>(&mut self, nic: &mut Netfront<H>) -> Result<usize, BridgeError> {
        nic.poll()?;
        let mut moved = self.pump_from_host(nic)?;
        let tap = &self.tap;
        let stats = &mut self.stats;
        let frame = &mut self.rx_buf;
        let mut failed = None;
        moved += nic.receive(self.budget, |rx| {
            // A copy: the header fix-up of a GSO packet writes into it.
            frame.clear();
            frame.extend_from_slice(rx.data);
            let q = rx.queue % tap.queues();
            match VnetHdr::from_offload(frame, rx.offload) {
                Ok(hdr) => match tap.send(q, &hdr, &[frame]) {
                    Ok(true) => stats.to_host += 1,
                    Ok(false) => stats.dropped += 1,
                    Err(e) => failed = Some(e),
                },
                Err(_) => stats.dropped += 1,
            }
        })?;
        if let Some(e) = failed {
            return Err(e.into());
        }
        Ok(moved)
    }

    /// Pumps until `stop` is set (looked at least every `tick`), sleeping on netfront's
    /// channels and the TAP when nothing moves.
    ///
    /// # Errors
    /// As [`pump`](Self::pump).
    pub fn run<H: FrontendHost>(
        &mut self,
        nic: &mut Netfront<H>,
        stop: &AtomicBool,
        tick: Duration,
    ) -> Result<(), BridgeError> {
        while !stop.load(Ordering::Acquire) {
            if self.pump(nic)? == 0 {
                // A queue whose ring is full waits for transmit completions, not its TAP queue.
                let fds: Vec<BorrowedFd<'_>> = (0..self.tap.queues())
                    .filter(|&q| !self.ring_full[q])
                    .filter_map(|q| self.tap.fd(q))
                    .collect();
                nic.wait_with(&fds, Some(tick))?;
            }
        }
        Ok(())
    }
}
