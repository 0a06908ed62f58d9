//! The process host's glue (the only file of netback that names `process_host`): the default
//! [`ProcessHost`] and its strict test variant [`StrictProcessHost`], packet memory in a
//! memfd, attaching a frontend process from what it handed over the control socket, and the
//! acceptor thread.

use event_channel::QueuePorts;
use grant_table::{FRAME_SIZE, FramePool, GrantRef, PeerGrants, PoolSide, permitted_frames};
use process_host::{
    Accepted, BACKEND_DOMID, BackendConnection, Doorbell, GuardedFrames, Listener, create_memfd,
    map_shared,
};
use shared_mem::SharedRegion;
use xenbus::{BackendControl, RxMode, XenbusError};

use crate::backend::{Netback, Waker};
use crate::error::NetbackError;
use crate::host::{BackendHost, QueueParts, VifParts};
use crate::memory::PacketMemory;
use crate::uplink::{Uplink, VifId};

/// The Linux process host (the default): a frontend's memory is a memfd mapped `MAP_SHARED`,
/// its event channels doorbells ([`Doorbell`]), its control channel a Unix socket
/// ([`process_host`]).
#[derive(Clone, Copy, Debug, Default)]
pub struct ProcessHost;

impl BackendHost for ProcessHost {
    type Memory = SharedRegion;
    type Port = Doorbell;
    type Control = BackendConnection;
}

/// The process host in strict test mode: the backend maps only the frames the frontend's
/// grant table names at attach, each between inaccessible guard pages
/// ([`GuardedFrames`]), so a backend access outside a granted frame faults (`SIGSEGV`: the
/// test dies) instead of reaching the neighbouring frame. For tests ("never outside a
/// grant"), not for serving: it costs a mapping per frame at attach.
#[derive(Clone, Copy, Debug, Default)]
pub struct StrictProcessHost;

impl BackendHost for StrictProcessHost {
    type Memory = GuardedFrames;
    type Port = Doorbell;
    type Control = BackendConnection;
}

mod sealed {
    pub trait Sealed {}
    impl Sealed for super::ProcessHost {}
    impl Sealed for super::StrictProcessHost {}
}

/// The process hosts ([`ProcessHost`], [`StrictProcessHost`]): how each maps a frontend
/// process's frames. Sealed.
pub trait ProcessHosts:
    BackendHost<Memory: Send, Port = Doorbell, Control = BackendConnection> + sealed::Sealed
{
    /// Maps the frames memfd at descriptor `index`, given the frontend's grant table.
    #[doc(hidden)]
    fn map_frames(
        conn: &mut BackendConnection,
        index: usize,
        max_bytes: usize,
        table: &SharedRegion,
    ) -> Result<Self::Memory, XenbusError>;
}

impl ProcessHosts for ProcessHost {
    fn map_frames(
        conn: &mut BackendConnection,
        index: usize,
        max_bytes: usize,
        _table: &SharedRegion,
    ) -> Result<SharedRegion, XenbusError> {
        conn.map_memory(index, "frames", max_bytes)
    }
}

impl ProcessHosts for StrictProcessHost {
    fn map_frames(
        conn: &mut BackendConnection,
        index: usize,
        max_bytes: usize,
        table: &SharedRegion,
    ) -> Result<GuardedFrames, XenbusError> {
        conn.map_guarded(
            index,
            "frames",
            max_bytes,
            permitted_frames(table, BACKEND_DOMID),
        )
    }
}

impl PacketMemory {
    /// `pages` pages of packet memory in a memfd (untouched pages cost nothing).
    ///
    /// # Errors
    /// [`NetbackError::Memory`] if the memory cannot be created.
    pub fn new(pages: u32) -> Result<Self, NetbackError> {
        let bytes = pages as usize * FRAME_SIZE;
        let memory = |e| NetbackError::Memory(grant_table::GrantError::Io(e));
        let fd = create_memfd(c"netback-packets", bytes).map_err(memory)?;
        Ok(Self::over(map_shared(&fd, bytes).map_err(memory)?))
    }
}

impl<U: Uplink> Netback<U, ProcessHost> {
    /// A backend with no vif yet, on the process host (packet memory in a memfd).
    ///
    /// # Errors
    /// [`NetbackError::Memory`] or [`NetbackError::Event`] if its memory or waker cannot be
    /// created.
    pub fn new(cfg: crate::NetbackConfig, uplink: U) -> Result<Self, NetbackError> {
        let mem = PacketMemory::new(cfg.memory_pages)?;
        Self::with_memory(cfg, uplink, mem)
    }
}

impl<U: Uplink> Netback<U, StrictProcessHost> {
    /// As [`Netback::new`], on the strict process host ([`StrictProcessHost`]: frontends'
    /// frames mapped one by one between guard pages), for tests.
    ///
    /// # Errors
    /// As [`Netback::new`].
    pub fn new_strict(cfg: crate::NetbackConfig, uplink: U) -> Result<Self, NetbackError> {
        let mem = PacketMemory::new(cfg.memory_pages)?;
        Self::with_memory(cfg, uplink, mem)
    }
}

impl<U: Uplink, H: ProcessHosts> Netback<U, H> {
    /// Attaches a frontend process whose keys and descriptors the control plane took
    /// ([`process_host::Incoming::receive_keys`], a [`process_host::Handshake`] or
    /// [`spawn_acceptor`]): maps its memory and rings, takes its event channels, and answers
    /// `Connected`.
    ///
    /// # Errors
    /// [`NetbackError::BadFrontend`] / [`NetbackError::RingGrant`] if what it handed over does
    /// not work: it is refused with the reason; local errors otherwise.
    pub fn attach(&mut self, mut conn: BackendConnection) -> Result<VifId, NetbackError> {
        let limits = (
            self.config().max_grant_frames,
            self.config().max_frontend_bytes,
        );
        let persistent = self.config().persistent_grants;
        match take_parts::<H>(
            &mut conn,
            self.memory().region().clone(),
            limits,
            persistent,
        ) {
            Ok((grants, queues)) => {
                let (choice, peer) = (conn.choice.clone(), conn.peer);
                self.attach_parts(VifParts::new(choice, grants, queues, conn).with_peer(peer))
            }
            Err(e) => {
                let _ = conn.refuse(&e.to_string());
                Err(e)
            }
        }
    }
}

/// Runs the accept-and-handshake loop of `listener` on a thread of its own
/// ([`process_host::spawn_acceptor`]), waking the backend through `waker` after each result:
/// a connection to [`attach`](Netback::attach), which answers it, or the error of a frontend
/// that failed its handshake. An event loop can do without the thread: a non-blocking
/// [`Listener`] and [`process_host::Handshake`]s (see `examples/event_loop.rs`). The thread
/// ends when the returned [`Accepted`] is dropped.
///
/// # Errors
/// [`NetbackError::Xenbus`] ([`XenbusError::Io`]) if the thread's stop pipe cannot be made.
pub fn spawn_acceptor(listener: Listener, waker: Waker) -> Result<Accepted, NetbackError> {
    process_host::spawn_acceptor(listener, move || {
        let _ = waker.wake();
    })
    .map_err(|e| NetbackError::Xenbus(XenbusError::Io(e)))
}

type Taken<M> = (PeerGrants<M>, Vec<QueueParts<Doorbell>>);

/// The frontend's fault, as netback reports it.
fn bad(e: XenbusError) -> NetbackError {
    NetbackError::BadFrontend(e.to_string())
}

/// Maps what a frontend process handed over (frames, grant table, flip pool) and takes its
/// event channels. `local` is the backend's packet memory; copies keep their claims if
/// `persistent` ([`NetbackConfig::persistent_grants`](crate::NetbackConfig)).
fn take_parts<H: ProcessHosts>(
    conn: &mut BackendConnection,
    local: SharedRegion,
    (max_grant_frames, max_bytes): (u32, usize),
    persistent: bool,
) -> Result<Taken<H::Memory>, NetbackError> {
    let res = conn.resources.clone();
    let table_bytes = max_grant_frames as usize * FRAME_SIZE;
    // The table first: it is the one whose size costs the backend memory.
    let table = conn
        .map_memory(res.grant_table, "grant table", table_bytes)
        .map_err(bad)?;
    let frames = H::map_frames(conn, res.frames, max_bytes, &table).map_err(|e| match e {
        // Mapping the frames one by one failed here (address space, map count): ours.
        XenbusError::Io(e) => NetbackError::Memory(grant_table::GrantError::Io(e)),
        other => bad(other),
    })?;
    // Netfront grants its buffers once for the connection: copies keep their claims, unless
    // the configuration says otherwise.
    let mut grants = PeerGrants::new(BACKEND_DOMID, table, frames, local);
    if persistent {
        grants = grants.with_persistent_copies();
    }
    if conn.choice.rx_mode == RxMode::Flip {
        let i = res
            .flip_pool
            .ok_or_else(|| NetbackError::BadFrontend("flip mode without a flip pool".into()))?;
        let pool = conn.map_memory(i, "flip pool", max_bytes).map_err(bad)?;
        grants = grants.with_flip_pool(FramePool::split(pool, PoolSide::Backend));
    }
    let mut queues = Vec::with_capacity(res.queues.len());
    for q in &res.queues {
        let tx = conn.take_event_channel(q.tx_event).map_err(bad)?;
        let rx = q
            .rx_event
            .map(|e| conn.take_event_channel(e))
            .transpose()
            .map_err(bad)?;
        queues.push(QueueParts {
            tx_ring: GrantRef(q.tx_ring_ref),
            rx_ring: GrantRef(q.rx_ring_ref),
            events: QueuePorts::new(tx, rx),
        });
    }
    Ok((grants, queues))
}
