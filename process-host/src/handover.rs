//! What crosses the socket beside the messages: memory (memfds) and event channels (doorbell
//! sockets), made and offered by the frontend ([`Offer`]), checked and adopted by the backend
//! ([`BackendConnection::map_memory`], [`BackendConnection::take_event_channel`]). Each side
//! of an event channel makes the socket it receives on and hands over only the sending end:
//! the frontend with its offer, the backend with its `Connected`
//! ([`FrontendConnection::connect_doorbells`]).

use std::ffi::CStr;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use event_channel::EventError;
use grant_table::{FRAME_SIZE, FrameNumber};
use shared_mem::SharedRegion;
use xenbus::{EventFds, FrontendChoice, Resources, XenbusError};

use crate::doorbell::Doorbell;
use crate::endpoint::{BackendConnection, FrontendConnection, FrontendPending};
use crate::guarded::GuardedFrames;
use crate::memfd::{check_sealed, create_memfd, map_owned, map_shared};

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

    /// A new memfd of `bytes` bytes (zero-filled), its pages allocated and mapped here
    /// ([`map_owned`]): the mapping and the descriptor's index.
    ///
    /// # Errors
    /// The memfd cannot be created, allocated or mapped.
    pub fn memory(&mut self, name: &CStr, bytes: usize) -> io::Result<(SharedRegion, usize)> {
        let fd = create_memfd(name, bytes)?;
        let region = map_owned(&fd, bytes)?;
        self.fds.push(fd);
        Ok((region, self.fds.len() - 1))
    }

    /// A new event channel: this process's end (receiving on a socket only this process
    /// holds; it rings the backend once [`FrontendConnection::connect_doorbells`] gave it
    /// the backend's end), and the index of the sending end offered to the backend.
    ///
    /// # Errors
    /// [`EventError::Io`] if a socket cannot be created.
    pub fn event_channel(&mut self) -> Result<(Doorbell, EventFds), EventError> {
        let (ours, theirs) = Doorbell::receiving()?;
        self.fds.push(theirs);
        Ok((
            ours,
            EventFds {
                backend_notifies: self.fds.len() - 1,
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
        let (fd, len) = self.take_memory(index, what, max_bytes)?;
        map_shared(&fd, len).map_err(|e| XenbusError::BadFds(format!("{what}: {e}")))
    }

    /// As [`map_memory`](Self::map_memory), but only the frames `granted` lists, each between
    /// inaccessible guard pages ([`GuardedFrames`]): the strict test mode, in which a backend
    /// access outside a granted frame faults.
    ///
    /// # Errors
    /// As [`map_memory`](Self::map_memory); [`XenbusError::Io`] if the frames cannot be
    /// mapped (address space, `vm.max_map_count`).
    pub fn map_guarded(
        &mut self,
        index: usize,
        what: &str,
        max_bytes: usize,
        granted: impl IntoIterator<Item = FrameNumber>,
    ) -> Result<GuardedFrames, XenbusError> {
        let (fd, len) = self.take_memory(index, what, max_bytes)?;
        Ok(GuardedFrames::map(&fd, len, granted)?)
    }

    /// Takes the descriptor at `index` if it is memory we may map: a sealed memfd of whole
    /// pages, at most `max_bytes` (and [`MAX_MAPPED`]). Returns it with its size.
    fn take_memory(
        &mut self,
        index: usize,
        what: &str,
        max_bytes: usize,
    ) -> Result<(OwnedFd, usize), XenbusError> {
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
        Ok((fd, len))
    }

    /// Our end of one of the frontend's event channels (`fds`, one of
    /// [`Resources::event_channels`]): it receives on a socket this process made (its sending
    /// end goes to the frontend with `Connected`) and rings the frontend on the descriptor
    /// the frontend handed over, which must be an AF_UNIX datagram socket
    /// ([`Doorbell::connect_peer`]).
    ///
    /// # Errors
    /// [`XenbusError::BadFds`] (the frontend's fault) if the descriptor is missing or is not
    /// a doorbell; [`XenbusError::Io`] (local) if `fds` is not one of this connection's
    /// channels or was taken already.
    pub fn take_event_channel(&mut self, fds: EventFds) -> Result<Doorbell, XenbusError> {
        let misuse = |why: &str| XenbusError::Io(io::Error::new(io::ErrorKind::InvalidInput, why));
        let position = self
            .resources
            .event_channels()
            .position(|e| e == fds)
            .ok_or_else(|| misuse("not an event channel of this connection"))?;
        let mut bell = self
            .take_doorbell(position)
            .ok_or_else(|| misuse("event channel taken already"))?;
        let notifies = self
            .take_fd(fds.backend_notifies)
            .ok_or_else(|| XenbusError::BadFds("event channel descriptor missing".into()))?;
        bell.connect_peer(notifies)
            .map_err(|e| XenbusError::BadFds(format!("event channel: {e}")))?;
        Ok(bell)
    }
}
