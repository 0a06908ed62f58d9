//! The process host's glue: a frontend process's connection (descriptors received over the
//! control socket) turned into the parts a vif attaches from.

use std::os::fd::{AsFd, OwnedFd};

use event_channel::{EventFdPort, QueuePorts};
use grant_table::host::{BACKEND_DOMID, FramePool, PoolSide, map_shared};
use grant_table::{FRAME_SIZE, GrantRef, PeerGrants};
use shared_mem::SharedRegion;
use xenbus::{BackendConnection, EventFds, RxMode};

use crate::error::NetbackError;
use crate::host::{ProcessHost, QueueParts, VifParts};

/// The largest memory a frontend may hand over in one descriptor (1 GiB): bounds what a
/// hostile frontend can make us map.
const MAX_MAPPED: usize = 1 << 30;

fn map_fd(fd: Option<OwnedFd>, what: &str) -> Result<SharedRegion, NetbackError> {
    let fd = fd.ok_or_else(|| NetbackError::BadFrontend(format!("{what}: descriptor missing")))?;
    let st = nix::sys::stat::fstat(fd.as_fd())
        .map_err(|e| NetbackError::BadFrontend(format!("{what}: {e}")))?;
    let len = usize::try_from(st.st_size).unwrap_or(0);
    if len == 0 || !len.is_multiple_of(FRAME_SIZE) || len > MAX_MAPPED {
        return Err(NetbackError::BadFrontend(format!(
            "{what}: {len} bytes is not a whole number of pages up to 1 GiB"
        )));
    }
    map_shared(&fd, len).map_err(|e| NetbackError::BadFrontend(format!("{what}: {e}")))
}

/// Maps what a frontend process handed over (frames, grant table, flip pool) and takes its
/// event channels. `local` is the backend's packet memory. On failure the connection comes
/// back, to refuse the frontend with the reason.
pub(crate) fn parts(
    mut conn: BackendConnection,
    local: SharedRegion,
) -> Result<VifParts<ProcessHost>, Box<(NetbackError, BackendConnection)>> {
    match take_parts(&mut conn, local) {
        Ok((grants, queues)) => {
            let (choice, peer) = (conn.choice.clone(), conn.peer);
            Ok(VifParts::new(choice, grants, queues, conn).with_peer(peer))
        }
        Err(e) => Err(Box::new((e, conn))),
    }
}

type Taken = (PeerGrants<SharedRegion>, Vec<QueueParts<EventFdPort>>);

fn take_parts(conn: &mut BackendConnection, local: SharedRegion) -> Result<Taken, NetbackError> {
    let res = conn.resources.clone();
    let frames = map_fd(conn.take_fd(res.frames), "frames")?;
    let table = map_fd(conn.take_fd(res.grant_table), "grant table")?;
    // Netfront grants its buffers once for the connection: copies keep their claims.
    let mut grants = PeerGrants::new(BACKEND_DOMID, table, frames, local).with_persistent_copies();
    if conn.choice.rx_mode == RxMode::Flip {
        let i = res
            .flip_pool
            .ok_or_else(|| NetbackError::BadFrontend("flip mode without a flip pool".into()))?;
        let pool = map_fd(conn.take_fd(i), "flip pool")?;
        grants = grants.with_flip_pool(FramePool::split(pool, PoolSide::Backend));
    }
    let mut take = |e: EventFds| -> Result<EventFdPort, NetbackError> {
        let rx = conn.take_fd(e.backend_waits);
        let tx = conn.take_fd(e.backend_notifies);
        match (rx, tx) {
            (Some(rx), Some(tx)) => Ok(EventFdPort::from_fds(rx, tx)?),
            _ => Err(NetbackError::BadFrontend("event descriptor missing".into())),
        }
    };
    let mut queues = Vec::with_capacity(res.queues.len());
    for q in &res.queues {
        let tx = take(q.tx_event)?;
        let rx = q.rx_event.map(&mut take).transpose()?;
        queues.push(QueueParts {
            tx_ring: GrantRef(q.tx_ring_ref),
            rx_ring: GrantRef(q.rx_ring_ref),
            events: QueuePorts::new(tx, rx),
        });
    }
    Ok((grants, queues))
}
