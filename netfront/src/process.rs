//! The process host's glue (the only file of netfront that names `process_host`): the default
//! [`ProcessHost`], and connecting to a backend process: the frontend's memory in memfds, its
//! event channels doorbells, all handed over the control socket.

use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::path::Path;

use event_channel::QueuePorts;
use grant_table::{FRAME_SIZE, FrameNumber};
use process_host::{Doorbell, FrontendConnection, Offer, RemapWindow};
use xenbus::{QueueResources, Resources, RxMode};

use crate::device::{Netfront, NetfrontConfig, PendingNetfront};
use crate::error::NetfrontError;
use crate::host::{FlipWindow, FrontMemory, FrontendHost};

/// The Linux process host (the default): doorbells ([`Doorbell`]) and a Unix socket
/// ([`process_host`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessHost;

impl FrontendHost for ProcessHost {
    type Port = Doorbell;
    type Control = FrontendConnection;
}

/// Flipped frames mapped into fixed slots from the pool's memfd.
#[derive(Debug)]
struct PoolWindow {
    window: RemapWindow,
    pool: OwnedFd,
}

impl FlipWindow for PoolWindow {
    fn read(
        &self,
        slot: usize,
        frame: FrameNumber,
        offset: usize,
        buf: &mut [u8],
    ) -> io::Result<()> {
        self.window.remap(slot, &self.pool, frame)?;
        let at = slot
            .checked_mul(FRAME_SIZE)
            .and_then(|s| s.checked_add(offset))
            .ok_or(io::ErrorKind::InvalidInput)?;
        self.window
            .region()
            .copy_out(at, buf)
            .map_err(io::Error::other)
    }
}

fn io(e: io::Error) -> NetfrontError {
    NetfrontError::Memory(grant_table::GrantError::Io(e))
}

impl Netfront<ProcessHost> {
    /// Connects to the backend listening at `path`: allocates memfds for rings, buffers and
    /// the grant table (and the flip pool), grants them, hands them over with the event
    /// channels, and posts every receive buffer.
    ///
    /// # Errors
    /// A choice the backend does not offer, a listener running as a uid not in
    /// [`NetfrontConfig::backend_uids`], a refused or timed-out handshake
    /// ([`NetfrontError::Xenbus`]), or a local failure to set up memory.
    pub fn connect(path: &Path, cfg: NetfrontConfig) -> Result<Self, NetfrontError> {
        let layout = PendingNetfront::<ProcessHost>::layout(&cfg)?;
        let choice = cfg.choice.clone();
        let uids = cfg
            .backend_uids
            .clone()
            .unwrap_or_else(process_host::default_backend_uids);
        let pending = process_host::connect_to(path, cfg.timeout, &uids)?;
        let mut offer = Offer::new();
        let (frames, frames_fd) = offer
            .memory(c"netfront-frames", layout.frames_bytes)
            .map_err(io)?;
        let (table, table_fd) = offer
            .memory(c"netfront-grants", layout.table_bytes)
            .map_err(io)?;
        let (mem, flip_pool) = if choice.rx_mode == RxMode::Copy {
            (FrontMemory::new(frames, table, None), None)
        } else {
            let (pool, i) = offer
                .memory(c"netfront-flip-pool", layout.pool_bytes)
                .map_err(io)?;
            let mut mem = FrontMemory::new(frames, table, Some(pool));
            if cfg.flip_remap {
                let fd = offer
                    .fd(i)
                    .ok_or_else(|| io(io::ErrorKind::NotFound.into()))?;
                mem = mem.with_flip_window(Box::new(PoolWindow {
                    window: RemapWindow::new(layout.pool_bytes / FRAME_SIZE / 2).map_err(io)?,
                    pool: fd.as_fd().try_clone_to_owned().map_err(io)?,
                }));
            }
            (mem, Some(i))
        };
        let mut ports = Vec::new();
        let mut events = Vec::new();
        for _ in 0..choice.queues {
            let (tx, tx_fds) = offer.event_channel()?;
            let rx = if choice.split_event_channels {
                Some(offer.event_channel()?)
            } else {
                None
            };
            events.push((tx_fds, rx.as_ref().map(|(_, e)| *e)));
            ports.push(QueuePorts::new(tx, rx.map(|(p, _)| p)));
        }
        let mut dev = PendingNetfront::<ProcessHost>::new(cfg, mem, ports)?;
        let res = Resources {
            frames: frames_fd,
            grant_table: table_fd,
            flip_pool,
            queues: dev
                .rings()
                .iter()
                .zip(events)
                .map(|(r, (tx_event, rx_event))| QueueResources {
                    tx_ring_ref: r.tx.0,
                    rx_ring_ref: r.rx.0,
                    tx_event,
                    rx_event,
                })
                .collect(),
        };
        let mut conn = offer.send(pending, &choice, &res)?;
        // Our doorbells ring the backend's sockets, which came with its `Connected`.
        conn.connect_doorbells(dev.ports_mut())?;
        dev.connect(conn)
    }
}
