//! The control plane as the drivers use it once connected: whether the peer is closing, and
//! the close protocol. One implementation per host: the in-memory pair of
//! [`local`](crate::local) for one process, the Unix-socket connections of the
//! `pvnet-process-host` crate, a VMM's XenStore emulation.

use std::os::fd::BorrowedFd;
use std::time::Duration;

use crate::{BackendFeatures, XenbusError};

/// Who a frontend is, as its transport vouches for it (between processes, the kernel's
/// SO_PEERCRED; a VMM knows its guest's domain and can fill in what it tracks).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Peer {
    /// Process id.
    pub pid: i32,
    /// User id.
    pub uid: u32,
    /// Group id.
    pub gid: u32,
}

/// The backend's end of one frontend's control channel.
pub trait BackendControl {
    /// A descriptor that becomes readable when the frontend changes state or goes away (then
    /// call [`frontend_closing`](Self::frontend_closing)); `None` if there is none (an
    /// in-memory channel: look at it on every poll, it costs no system call).
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Tells the frontend the backend attached it (`Connected`): sent only after everything
    /// it handed over was checked and works. Sending it twice sends it once.
    ///
    /// # Errors
    /// The frontend is gone ([`XenbusError::PeerClosed`]) or [`XenbusError::Io`].
    fn connected(&mut self) -> Result<(), XenbusError>;

    /// Tells the frontend it was not attached, and why (`Refused`); the channel is done.
    ///
    /// # Errors
    /// [`XenbusError::Io`]; a frontend already gone is not an error.
    fn refuse(self, reason: &str) -> Result<(), XenbusError>
    where
        Self: Sized;

    /// Whether the frontend asked to close or went away. Never waits. A frontend that broke
    /// the control protocol counts as gone.
    fn frontend_closing(&mut self) -> bool;

    /// Answers a frontend's close with `Closed`. Call it after releasing every mapping, grant
    /// and descriptor of this frontend: the frontend may reuse them as soon as it sees this.
    ///
    /// # Errors
    /// A local failure to send ([`XenbusError::Io`]); a frontend already gone is not one.
    fn acknowledge_closed(self) -> Result<(), XenbusError>
    where
        Self: Sized;

    /// Asks the frontend to close (everything of it was released first), and waits for its
    /// `Closed` where the channel can wait (a socket, up to its timeout; an in-memory channel
    /// returns at once: the frontend answers when it next looks).
    ///
    /// # Errors
    /// A timeout, a peer fault or [`XenbusError::Io`].
    fn close(self) -> Result<(), XenbusError>
    where
        Self: Sized;
}

/// The frontend's end of its control channel to the backend.
pub trait FrontendControl {
    /// What the backend offered (its keys at `InitWait`): what it can receive, and so what
    /// the frontend may send ([`TxFeatures`](crate::TxFeatures)).
    fn offered(&self) -> &BackendFeatures;

    /// A descriptor that becomes readable when the backend changes state or goes away;
    /// `None` if there is none.
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>>;

    /// Whether the backend asked to close or went away. Never waits.
    fn backend_closing(&mut self) -> bool;

    /// Tells the backend we are closing (`Closing`). Returns at once; see
    /// [`closed`](Self::closed).
    ///
    /// # Errors
    /// [`XenbusError::Io`]; a backend already gone is not an error.
    fn request_close(&mut self) -> Result<(), XenbusError>;

    /// After [`request_close`](Self::request_close): whether the backend has released
    /// everything and answered `Closed` (or went away), waiting at most `wait`.
    ///
    /// # Errors
    /// A peer fault or [`XenbusError::Io`].
    fn closed(&mut self, wait: Duration) -> Result<bool, XenbusError>;

    /// Whether the backend went away without answering (its end of the channel is gone: its
    /// process died). Its grants' in-use marks are then stale, as a dead Xen domain's are
    /// once the hypervisor tore its mappings down, and the frontend reclaims them. `false`
    /// by default: a channel that cannot tell never lets a frontend reclaim.
    fn vanished(&self) -> bool {
        false
    }

    /// Answers a backend's close with `Closed`.
    ///
    /// # Errors
    /// [`XenbusError::Io`]; a backend already gone is not an error.
    fn acknowledge_closed(self) -> Result<(), XenbusError>
    where
        Self: Sized;
}
