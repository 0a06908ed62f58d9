//! What crosses the socket beside the messages: memory (memfds) and event channels (doorbell
//! socket pairs), made and offered by the frontend ([`Offer`]), checked and adopted by the backend
//! ([`BackendConnection::map_memory`], [`BackendConnection::take_event_channel`]).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use event_channel::EventError;
use grant_table::FRAME_SIZE;
use shared_mem::SharedRegion;
use xenbus::{EventFds, FrontendChoice, Resources, XenbusError};

use crate::doorbell::Doorbell;
use crate::endpoint::{BackendConnection, FrontendConnection, FrontendPending};
use crate::memfd::{check_sealed, create_memfd, map_shared};

/// The largest memory a frontend may hand over in one descriptor (1 GiB): bounds what a
/// hostile frontend can make its backend map.
pub const MAX_MAPPED: usize = 1 << 30;

/// The descriptors a frontend process hands its backend, in the order its [`Resources`] name
/// them by index: memfds it made and mapped, and the backend's ends of its event channels.
#[derive(Debug, Default)]
pub struct Offer {
    fds: Vec<OwnedFd>,
}

impl Offer {
    /// Nothing offered yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// A new memfd of `bytes` bytes (zero-filled), mapped here: the mapping and the
    /// descriptor's index.
    ///
    /// # Errors
    /// The memfd cannot be created or mapped.
    pub fn memory(&mut self, name: &CStr, bytes: usize) -> io::Result<(SharedRegion, usize)> {
        let fd = create_memfd(name, bytes)?;
        let region = map_shared(&fd, bytes)?;
        self.fds.push(fd);
        Ok((region, self.fds.len() - 1))
    }

    /// A new event channel: this process's end, and the indices of the backend's two
    /// descriptors.
    ///
    /// # Errors
    /// [`EventError::Io`] if a socket cannot be created.
    pub fn event_channel(&mut self) -> Result<(Doorbell, EventFds), EventError> {
        let (ours, theirs) = Doorbell::pair()?;
        let (waits, notifies) = theirs.into_fds();
        self.fds.push(waits);
        self.fds.push(notifies);
        let n = self.fds.len();
        Ok((
            ours,
            EventFds {
                backend_waits: n - 2,
                backend_notifies: n - 1,
            },
        ))
    }

    /// The descriptor at `index` (to map it again, or remap frames from it).
    pub fn fd(&self, index: usize) -> Option<BorrowedFd<'_>> {
        self.fds.get(index).map(AsFd::as_fd)
    }

    /// Sends `choice`, `resources` and the descriptors ([`FrontendPending::finish`]); ours
    /// close once the backend has its duplicates (the mappings stay).
    ///
    /// # Errors
    /// As [`FrontendPending::finish`].
    pub fn send(
        self,
        pending: FrontendPending,
        choice: &FrontendChoice,
        resources: &Resources,
    ) -> Result<FrontendConnection, XenbusError> {
        let borrowed: Vec<BorrowedFd<'_>> = self.fds.iter().map(AsFd::as_fd).collect();
        pending.finish(choice, resources, &borrowed)
    }
}

impl BackendConnection {
    /// Maps the memory the frontend handed over at descriptor `index` (`what` names it in
    /// errors): a memfd sealed against resizing ([`SEALS`](crate::SEALS)), of whole 4 KiB
    /// pages, at most `max_bytes` (and [`MAX_MAPPED`]), mapped shared. Checked before
    /// anything is mapped or allocated; an unsealed memfd could be truncated under the
    /// mapping, and the next access would kill this process with SIGBUS.
    ///
    /// # Errors
    /// [`XenbusError::BadFds`] (the frontend's fault) if the descriptor is missing, was taken
    /// already, or is not such a file.
    pub fn map_memory(
        &mut self,
        index: usize,
        what: &str,
        max_bytes: usize,
    ) -> Result<SharedRegion, XenbusError> {
        let bad = |why: String| XenbusError::BadFds(format!("{what}: {why}"));
        let fd = self
            .take_fd(index)
            .ok_or_else(|| bad("descriptor missing".into()))?;
        let len = check_sealed(&fd).map_err(|e| bad(e.to_string()))?;
        let max = max_bytes.min(MAX_MAPPED);
        if len == 0 || !len.is_multiple_of(FRAME_SIZE) || len > max {
            return Err(bad(format!(
                "{len} bytes is not a whole number of pages up to {max}"
            )));
        }
        map_shared(&fd, len).map_err(|e| bad(e.to_string()))
    }

    /// Adopts one event channel the frontend handed over (the descriptors `fds` names):
    /// two AF_UNIX datagram sockets ([`Doorbell::from_fds`]).
    ///
    /// # Errors
    /// [`XenbusError::BadFds`] (the frontend's fault) if a descriptor is missing or is not
    /// a doorbell.
    pub fn take_event_channel(&mut self, fds: EventFds) -> Result<Doorbell, XenbusError> {
        let waits = self.take_fd(fds.backend_waits);
        let notifies = self.take_fd(fds.backend_notifies);
        match (waits, notifies) {
            (Some(w), Some(n)) => Doorbell::from_fds(w, n)
                .map_err(|e| XenbusError::BadFds(format!("event channel: {e}"))),
            _ => Err(XenbusError::BadFds(
                "event channel descriptor missing".into(),
            )),
        }
    }
}
