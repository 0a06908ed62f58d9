//! The process host's glue: a frontend's memory in memfds, its event channels eventfds, its
//! resources handed to a backend process over the control socket.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::path::Path;

use event_channel::{EventFdPort, QueuePorts};
use grant_table::host::{RemapWindow, create_memfd, map_shared};
use xenbus::{EventFds, QueueResources, Resources, RxMode};

use crate::device::{Netfront, NetfrontConfig, PendingNetfront, Remap};
use crate::error::NetfrontError;
use crate::host::{FrontMemory, ProcessHost};

/// A new event channel: our end, and the backend's two descriptors appended to `fds`.
fn event_pair(fds: &mut Vec<OwnedFd>) -> Result<(EventFdPort, EventFds), NetfrontError> {
    let (ours, theirs) = EventFdPort::pair()?;
    let (waits, notifies) = theirs.clone_fds()?;
    fds.push(waits);
    fds.push(notifies);
    Ok((
        ours,
        EventFds {
            backend_waits: fds.len() - 2,
            backend_notifies: fds.len() - 1,
        },
    ))
}

fn io(e: std::io::Error) -> NetfrontError {
    NetfrontError::Memory(grant_table::GrantError::Io(e))
}

impl Netfront<ProcessHost> {
    /// Connects to the backend listening at `path`: allocates memfds for rings, buffers and
    /// the grant table (and the flip pool), grants them, hands them over with the event
    /// channels, and posts every receive buffer.
    ///
    /// # Errors
    /// A choice the backend does not offer, a refused or timed-out handshake
    /// ([`NetfrontError::Xenbus`]), or a local failure to set up memory.
    pub fn connect(path: &Path, cfg: NetfrontConfig) -> Result<Self, NetfrontError> {
        let layout = PendingNetfront::<ProcessHost>::layout(&cfg)?;
        let choice = cfg.choice.clone();
        let pending = xenbus::connect(path, cfg.timeout)?;
        let frames_fd = create_memfd(c"netfront-frames", layout.frames_bytes)?;
        let frames = map_shared(&frames_fd, layout.frames_bytes)?;
        let table_fd = create_memfd(c"netfront-grants", layout.table_bytes)?;
        let table = map_shared(&table_fd, layout.table_bytes)?;
        let mut fds: Vec<OwnedFd> = vec![frames_fd, table_fd];
        let mem = if choice.rx_mode == RxMode::Copy {
            FrontMemory::new(frames, table, None)
        } else {
            let fd = create_memfd(c"netfront-flip-pool", layout.pool_bytes)?;
            let pool = map_shared(&fd, layout.pool_bytes)?;
            let mut mem = FrontMemory::new(frames, table, Some(pool));
            if cfg.flip_remap {
                let slots = layout.pool_bytes / grant_table::FRAME_SIZE / 2;
                mem.remap = Some(Remap {
                    window: RemapWindow::new(slots)?,
                    fd: fd.try_clone().map_err(io)?,
                });
            }
            fds.push(fd);
            mem
        };
        let flip_pool = (choice.rx_mode == RxMode::Flip).then_some(2);
        let mut ports = Vec::new();
        let mut events = Vec::new();
        for _ in 0..choice.queues {
            let (tx, tx_fds) = event_pair(&mut fds)?;
            let rx = if choice.split_event_channels {
                Some(event_pair(&mut fds)?)
            } else {
                None
            };
            events.push((tx_fds, rx.as_ref().map(|(_, e)| *e)));
            ports.push(QueuePorts::new(tx, rx.map(|(p, _)| p)));
        }
        let dev = PendingNetfront::<ProcessHost>::new(cfg, mem, ports)?;
        let res = Resources {
            frames: 0,
            grant_table: 1,
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
        let borrowed: Vec<BorrowedFd<'_>> = fds.iter().map(AsFd::as_fd).collect();
        let conn = pending.finish(&choice, &res, &borrowed)?;
        drop(borrowed);
        // The backend has its duplicates; ours close here (the mappings stay).
        drop(fds);
        dev.connect(conn)
    }
}
