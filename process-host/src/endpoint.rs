//! The two ends of the control channel: the backend's listener and the frontend's connect, the
//! handshake between them, and the close protocol.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, Backlog, SockFlag, SockType, UnixAddr, bind, connect as sock_connect,
    getsockopt, listen, socket, sockopt::PeerCredentials,
};

use xenbus::{
    BackendFeatures, FrontendChoice, Keys, Message, Peer, Resources, RxMode, State, XenbusError,
};

use crate::doorbell::Doorbell;
use crate::socket::{describe, recv, send};

/// A new close-on-exec Unix SOCK_SEQPACKET socket and the address of `path`.
fn seqpacket(path: &Path) -> Result<(OwnedFd, UnixAddr), XenbusError> {
    let sock = socket(
        AddressFamily::Unix,
        SockType::SeqPacket,
        SockFlag::SOCK_CLOEXEC,
        None,
    )
    .map_err(std::io::Error::from)?;
    Ok((sock, UnixAddr::new(path).map_err(std::io::Error::from)?))
}

/// How a backend listens.
#[derive(Clone, Debug)]
#[non_exhaustive]
pub struct BackendConfig {
    /// What it offers.
    pub features: BackendFeatures,
    /// Uids allowed to connect (the backend's own uid is not implied).
    pub allowed_uids: Vec<u32>,
    /// How long each handshake step may take.
    pub timeout: Duration,
}

impl Default for BackendConfig {
    /// Every feature offered, only this process's own uid allowed, 5 s per handshake step.
    fn default() -> Self {
        Self {
            features: BackendFeatures::default(),
            allowed_uids: vec![nix::unistd::getuid().as_raw()],
            timeout: Duration::from_secs(5),
        }
    }
}

/// A backend's listening socket, created with mode 0600 and removed on drop.
#[derive(Debug)]
pub struct Listener {
    sock: std::os::unix::net::UnixListener,
    path: PathBuf,
    /// The socket file's device and inode when bound: the file a drop may remove.
    file: (u64, u64),
    config: BackendConfig,
}

impl Listener {
    /// Listens on `path` (which must not exist), mode 0600.
    ///
    /// # Errors
    /// [`XenbusError::Io`] if the socket cannot be created or bound.
    pub fn bind(path: &Path, config: BackendConfig) -> Result<Self, XenbusError> {
        let (sock, addr) = seqpacket(path)?;
        bind(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr).map_err(std::io::Error::from)?;
        // The allow-list is the gate; the mode keeps other users from even connecting.
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))?;
        listen(&sock, Backlog::new(16).map_err(std::io::Error::from)?)
            .map_err(std::io::Error::from)?;
        let meta = std::fs::symlink_metadata(path)?;
        Ok(Self {
            sock: sock.into(),
            path: path.to_owned(),
            file: (meta.dev(), meta.ino()),
            config,
        })
    }

    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Makes [`try_accept`](Self::try_accept) return at once when no frontend is waiting
    /// (for an event loop that watches the listener's descriptor). The connections it
    /// accepts stay blocking.
    ///
    /// # Errors
    /// [`XenbusError::Io`].
    pub fn set_nonblocking(&self, nonblocking: bool) -> Result<(), XenbusError> {
        Ok(self.sock.set_nonblocking(nonblocking)?)
    }

    /// As [`accept`](Self::accept), but `Ok(None)` when no frontend is waiting on a
    /// non-blocking listener.
    ///
    /// # Errors
    /// As [`accept`](Self::accept).
    pub fn try_accept(&self) -> Result<Option<Incoming>, XenbusError> {
        match self.accept() {
            Ok(i) => Ok(Some(i)),
            Err(XenbusError::Io(e)) if e.kind() == std::io::ErrorKind::WouldBlock => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Accepts the next frontend and checks its credentials (SO_PEERCRED) against the
    /// allow-list, telling a refused peer why. Returns at once: run
    /// [`Incoming::handshake`] next, on another thread if other frontends must not wait for
    /// this one.
    ///
    /// # Errors
    /// [`XenbusError::NotAllowed`], or [`XenbusError::Io`].
    pub fn accept(&self) -> Result<Incoming, XenbusError> {
        // std's accept adopts the new descriptor safely (accept4 with SOCK_CLOEXEC on Linux);
        // it works on any listening Unix socket, SOCK_SEQPACKET included.
        let (stream, _) = self.sock.accept()?;
        let sock = OwnedFd::from(stream);
        let cred = getsockopt(&sock, PeerCredentials).map_err(std::io::Error::from)?;
        let peer = Peer {
            pid: cred.pid(),
            uid: cred.uid(),
            gid: cred.gid(),
        };
        if !self.config.allowed_uids.contains(&peer.uid) {
            let _ = send(
                &sock,
                &Message::Refused(format!("uid {} is not allowed", peer.uid)),
                &[],
            );
            return Err(XenbusError::NotAllowed { uid: peer.uid });
        }
        Ok(Incoming {
            sock,
            peer,
            features: self.config.features.clone(),
            timeout: self.config.timeout,
        })
    }

    /// [`accept`](Self::accept) then [`Incoming::handshake`], on this thread.
    ///
    /// # Errors
    /// As both.
    pub fn accept_and_handshake(&self) -> Result<BackendConnection, XenbusError> {
        self.accept()?.handshake()
    }
}

/// An accepted frontend whose credentials passed, before the handshake.
#[derive(Debug)]
pub struct Incoming {
    sock: OwnedFd,
    /// Who connected.
    pub peer: Peer,
    features: BackendFeatures,
    timeout: Duration,
}

impl Incoming {
    /// Turns the frontend away before the handshake, telling it why.
    pub fn refuse(self, reason: &str) {
        // A fresh socket's buffer takes a short message without blocking; a frontend that
        // went already misses nothing.
        let _ = send(&self.sock, &Message::Refused(reason.to_owned()), &[]);
    }

    /// Runs the handshake: advertises the features (`InitWait`), takes the frontend's keys and
    /// descriptors, validates them, and answers `Connected`. Each step waits at most the
    /// configured timeout. An error concerns this frontend only. For a backend that checks
    /// more before answering (netback attaches first), use [`start`](Self::start) or
    /// [`receive_keys`](Self::receive_keys) and answer with
    /// [`BackendControl::connected`](xenbus::BackendControl::connected) or
    /// [`BackendControl::refuse`](xenbus::BackendControl::refuse).
    ///
    /// # Errors
    /// A peer fault (malformed, out of order, stalled, gone, wrong descriptors, unacceptable
    /// keys; the frontend is told why where it can be), or [`XenbusError::Io`].
    pub fn handshake(self) -> Result<BackendConnection, XenbusError> {
        let mut conn = self.receive_keys()?;
        xenbus::BackendControl::connected(&mut conn)?;
        Ok(conn)
    }

    /// The handshake up to the frontend's keys, waiting (at most the timeout) on this thread;
    /// `Connected` is not sent yet.
    ///
    /// # Errors
    /// As [`handshake`](Self::handshake).
    pub fn receive_keys(self) -> Result<BackendConnection, XenbusError> {
        let hs = self.start()?;
        let wait = hs.deadline.saturating_duration_since(Instant::now());
        let (msg, fds) = recv(&hs.sock, wait, "the frontend's keys")?;
        hs.finish(msg, fds)
    }

    /// Starts the handshake without waiting: advertises the features (`InitWait`) and returns
    /// the exchange, for an event loop to [`step`](Handshake::step) when its socket is
    /// readable. A silent frontend then delays no one.
    ///
    /// # Errors
    /// The frontend is gone, or [`XenbusError::Io`].
    pub fn start(self) -> Result<Handshake, XenbusError> {
        let Incoming {
            sock,
            peer,
            features,
            timeout,
        } = self;
        send(
            &sock,
            &Message::Backend {
                state: State::InitWait,
                keys: features.to_keys(),
            },
            &[],
        )?;
        Ok(Handshake {
            sock,
            peer,
            features,
            timeout,
            deadline: Instant::now() + timeout,
        })
    }
}

/// A handshake in progress ([`Incoming::start`]): waiting for the frontend's keys. Readable
/// (as [`AsFd`]) when they may have come.
#[derive(Debug)]
pub struct Handshake {
    sock: OwnedFd,
    /// Who connected.
    pub peer: Peer,
    features: BackendFeatures,
    timeout: Duration,
    deadline: Instant,
}

/// Where a [`Handshake`] is after a [`step`](Handshake::step).
#[derive(Debug)]
pub enum Step {
    /// The frontend's keys have not come yet: step again when the socket is readable.
    Waiting(Handshake),
    /// They came and were valid: the connection, not answered yet (attach, then
    /// [`BackendControl::connected`](xenbus::BackendControl::connected) or
    /// [`refuse`](xenbus::BackendControl::refuse)).
    Keys(BackendConnection),
}

impl Handshake {
    /// Takes the frontend's keys if they came, without waiting.
    ///
    /// # Errors
    /// A peer fault (including [`XenbusError::Timeout`] once the deadline passed with nothing
    /// received) or [`XenbusError::Io`]: the handshake is over.
    pub fn step(self) -> Result<Step, XenbusError> {
        match recv(&self.sock, Duration::ZERO, "the frontend's keys") {
            Ok((msg, fds)) => self.finish(msg, fds).map(Step::Keys),
            Err(XenbusError::Timeout(what)) => {
                if Instant::now() >= self.deadline {
                    Err(XenbusError::Timeout(what))
                } else {
                    Ok(Step::Waiting(self))
                }
            }
            Err(e) => Err(e),
        }
    }

    /// When the frontend's keys are due: drop the handshake after this.
    pub fn deadline(&self) -> Instant {
        self.deadline
    }

    /// Validates the frontend's message; refuses it (telling it why) if it does not do.
    fn finish(self, msg: Message, fds: Vec<OwnedFd>) -> Result<BackendConnection, XenbusError> {
        let keys = match msg {
            Message::Frontend {
                state: State::Connected | State::Initialised,
                keys,
            } => keys,
            other => {
                return Err(XenbusError::Unexpected {
                    expected: "frontend Connected",
                    got: describe(&other),
                });
            }
        };
        let features = &self.features;
        let checked = FrontendChoice::from_keys(&keys, features)
            .map_err(XenbusError::from)
            .and_then(|choice| {
                let queues = usize::try_from(choice.queues).unwrap_or(usize::MAX);
                let flip = choice.rx_mode == RxMode::Flip;
                let resources = Resources::from_keys(
                    &keys,
                    queues,
                    choice.split_event_channels,
                    flip,
                    fds.len(),
                )?;
                Ok((choice, resources))
            });
        let (choice, resources) = match checked {
            Ok(c) => c,
            Err(e) => {
                let _ = send(&self.sock, &Message::Refused(e.to_string()), &[]);
                return Err(e);
            }
        };
        // Our end of each event channel, receiving on a socket only we hold; `Connected`
        // hands the frontend the sending ends. A failure here is ours (descriptors).
        let mut doorbells = Vec::new();
        let mut answer = Vec::new();
        for _ in resources.event_channels() {
            let (bell, theirs) = Doorbell::receiving().map_err(|e| match e {
                event_channel::EventError::Io(e) => XenbusError::Io(e),
                other => XenbusError::Io(std::io::Error::other(other.to_string())),
            })?;
            doorbells.push(Some(bell));
            answer.push(theirs);
        }
        Ok(BackendConnection {
            end: End::new(self.sock, self.timeout),
            answered: false,
            peer: self.peer,
            choice,
            resources,
            fds: fds.into_iter().map(Some).collect(),
            doorbells,
            answer,
        })
    }
}

impl AsFd for Handshake {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsFd for Listener {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.sock.as_fd()
    }
}

impl AsFd for BackendConnection {
    /// The control socket: readable when the frontend changes state or goes away (then call
    /// [`frontend_closing`](BackendConnection::frontend_closing)), for a poll loop.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.end.sock.as_fd()
    }
}

impl AsFd for FrontendConnection {
    /// The control socket: readable when the backend changes state or goes away (then call
    /// [`backend_closing`](FrontendConnection::backend_closing)), for a poll loop.
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.end.sock.as_fd()
    }
}

/// Removes the socket file, if it is still the one this listener bound. Another listener may
/// have been bound at the same path since (a backend restarted while this one's acceptor
/// thread was still ending): its file is not ours to remove.
impl Drop for Listener {
    fn drop(&mut self) {
        if std::fs::symlink_metadata(&self.path).is_ok_and(|m| (m.dev(), m.ino()) == self.file) {
            let _ = std::fs::remove_file(&self.path);
        }
    }
}

/// The state a peer's state message announces (either side's).
fn state_of(m: &Message) -> Option<State> {
    match m {
        Message::Backend { state, .. } | Message::Frontend { state, .. } => Some(*state),
        Message::Refused(_) => None,
    }
}

/// One end of an established channel: the close protocol.
#[derive(Debug)]
struct End {
    sock: OwnedFd,
    timeout: Duration,
    closing: bool,
    /// The peer answered `Closed` (or went away) after our `Closing`.
    closed: bool,
    /// The peer's end is gone (end of file, a reset) without a `Closed` from it.
    vanished: bool,
}

impl End {
    fn new(sock: OwnedFd, timeout: Duration) -> Self {
        Self {
            sock,
            timeout,
            closing: false,
            closed: false,
            vanished: false,
        }
    }

    fn msg(&self, state: State, backend: bool) -> Message {
        if backend {
            Message::Backend {
                state,
                keys: Keys::new(),
            }
        } else {
            Message::Frontend {
                state,
                keys: Keys::new(),
            }
        }
    }

    /// Whether the peer has asked to close (or gone), waiting at most `wait`.
    fn peer_closing(&mut self, wait: Duration) -> Result<bool, XenbusError> {
        if self.closing {
            return Ok(true);
        }
        match recv(&self.sock, wait, "a state change") {
            Ok((m, _)) if state_of(&m) == Some(State::Closing) => {
                self.closing = true;
                Ok(true)
            }
            Ok((other, _)) => Err(XenbusError::Unexpected {
                expected: "Closing",
                got: describe(&other),
            }),
            Err(XenbusError::Timeout(_)) => Ok(false),
            Err(XenbusError::PeerClosed) => {
                self.closing = true;
                self.vanished = true;
                Ok(true)
            }
            Err(e) => Err(e),
        }
    }

    /// Asks the peer to close and waits for its `Closed` (or for it to go).
    fn close(mut self, backend: bool) -> Result<(), XenbusError> {
        self.request_close(backend)?;
        if self.closed(self.timeout, backend)? {
            Ok(())
        } else {
            Err(XenbusError::Timeout("the peer's Closed"))
        }
    }

    /// Sends `Closing`; a peer already gone is a close too.
    fn request_close(&mut self, backend: bool) -> Result<(), XenbusError> {
        match send(&self.sock, &self.msg(State::Closing, backend), &[]) {
            Ok(()) => Ok(()),
            Err(XenbusError::PeerClosed) => {
                self.closed = true;
                self.vanished = true;
                Ok(())
            }
            Err(e) => Err(e),
        }
    }

    /// Whether the peer answered `Closed` (or went away), waiting at most `wait`.
    fn closed(&mut self, wait: Duration, backend: bool) -> Result<bool, XenbusError> {
        if self.closed {
            return Ok(true);
        }
        let closed = match recv(&self.sock, wait, "the peer's Closed") {
            Ok((m, _)) if state_of(&m) == Some(State::Closed) => true,
            Err(XenbusError::PeerClosed) => {
                self.vanished = true;
                true
            }
            // Both sides asked at once. A backend asks only after releasing everything, and
            // a backend that receives this has released too (it released before asking):
            // either way the close is done. Answer the peer's Closing so it stops waiting.
            Ok((m, _)) if state_of(&m) == Some(State::Closing) => {
                let _ = send(&self.sock, &self.msg(State::Closed, backend), &[]);
                true
            }
            Err(XenbusError::Timeout(_)) => false,
            Ok((other, _)) => {
                return Err(XenbusError::Unexpected {
                    expected: "Closed",
                    got: describe(&other),
                });
            }
            Err(e) => return Err(e),
        };
        self.closed = closed;
        Ok(closed)
    }

    fn acknowledge(self, backend: bool) -> Result<(), XenbusError> {
        match send(&self.sock, &self.msg(State::Closed, backend), &[]) {
            // The peer may already be gone: that is a close too.
            Err(XenbusError::PeerClosed) | Ok(()) => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// The backend's view of a connected frontend.
#[derive(Debug)]
pub struct BackendConnection {
    end: End,
    /// `Connected` (or `Refused`) was sent.
    answered: bool,
    /// Who connected.
    pub peer: Peer,
    /// What it chose.
    pub choice: FrontendChoice,
    /// What it handed over, by descriptor index.
    pub resources: Resources,
    fds: Vec<Option<OwnedFd>>,
    /// Our end of each event channel (in [`Resources::event_channels`] order), until taken.
    doorbells: Vec<Option<Doorbell>>,
    /// Their sending ends of those, sent with `Connected`.
    answer: Vec<OwnedFd>,
}

impl BackendConnection {
    /// Takes the descriptor at `index` (each can be taken once).
    pub fn take_fd(&mut self, index: usize) -> Option<OwnedFd> {
        self.fds.get_mut(index)?.take()
    }

    /// Takes our end of the event channel at `position` in [`Resources::event_channels`]
    /// order (each can be taken once).
    pub(crate) fn take_doorbell(&mut self, position: usize) -> Option<Doorbell> {
        self.doorbells.get_mut(position)?.take()
    }

    /// Whether the frontend asked to close (or went away), waiting at most `wait`.
    ///
    /// # Errors
    /// A peer fault or [`XenbusError::Io`].
    pub fn frontend_closing(&mut self, wait: Duration) -> Result<bool, XenbusError> {
        self.end.peer_closing(wait)
    }

    /// Answers a frontend's close with `Closed`. Call it after releasing every mapping, grant
    /// and descriptor of this frontend: the frontend may reuse them as soon as it sees this.
    ///
    /// # Errors
    /// [`XenbusError::Io`].
    pub fn acknowledge_closed(self) -> Result<(), XenbusError> {
        self.end.acknowledge(true)
    }

    /// Asks the frontend to close and waits for its `Closed`.
    ///
    /// # Errors
    /// A timeout, a peer fault or [`XenbusError::Io`].
    pub fn close(self) -> Result<(), XenbusError> {
        self.end.close(true)
    }
}

/// A frontend that has read the backend's features and not yet connected.
#[derive(Debug)]
pub struct FrontendPending {
    sock: OwnedFd,
    timeout: Duration,
    /// What the backend offers.
    pub offered: BackendFeatures,
}

/// The uids a frontend accepts as its backend unless told otherwise: its own, and root's.
pub fn default_backend_uids() -> Vec<u32> {
    let me = nix::unistd::getuid().as_raw();
    if me == 0 { vec![0] } else { vec![me, 0] }
}

/// Connects to the backend at `path` and reads what it offers, if the process listening
/// there runs as one of [`default_backend_uids`] (this process's own uid, or root).
///
/// # Errors
/// As [`connect_to`].
pub fn connect(path: &Path, timeout: Duration) -> Result<FrontendPending, XenbusError> {
    connect_to(path, timeout, &default_backend_uids())
}

/// Connects to the backend at `path` and reads what it offers. The process listening there
/// must run as one of `backend_uids` (SO_PEERCRED, checked before a byte is exchanged):
/// whoever listens receives this frontend's memory, so a socket path another user could
/// have taken first must not be trusted.
///
/// # Errors
/// [`XenbusError::NotAllowed`] (the listener's uid), [`XenbusError::Refused`] (for
/// example, our uid is not allowed), a timeout, a peer fault, or [`XenbusError::Io`].
pub fn connect_to(
    path: &Path,
    timeout: Duration,
    backend_uids: &[u32],
) -> Result<FrontendPending, XenbusError> {
    let (sock, addr) = seqpacket(path)?;
    sock_connect(std::os::fd::AsRawFd::as_raw_fd(&sock), &addr).map_err(std::io::Error::from)?;
    let uid = getsockopt(&sock, PeerCredentials)
        .map_err(std::io::Error::from)?
        .uid();
    if !backend_uids.contains(&uid) {
        return Err(XenbusError::NotAllowed { uid });
    }
    match recv(&sock, timeout, "the backend's features")? {
        (
            Message::Backend {
                state: State::InitWait,
                keys,
            },
            _,
        ) => {
            let offered = BackendFeatures::from_keys(&keys)?;
            Ok(FrontendPending {
                sock,
                timeout,
                offered,
            })
        }
        (Message::Refused(reason), _) => Err(XenbusError::Refused(reason)),
        (other, _) => Err(XenbusError::Unexpected {
            expected: "backend InitWait",
            got: describe(&other),
        }),
    }
}

impl FrontendPending {
    /// Sends our choices, resources and descriptors in one message (`Connected`) and waits for
    /// the backend to attach and answer `Connected`.
    ///
    /// # Errors
    /// A choice the backend did not offer (checked here first), [`XenbusError::Refused`], a
    /// timeout, a peer fault or [`XenbusError::Io`].
    pub fn finish(
        self,
        choice: &FrontendChoice,
        resources: &Resources,
        fds: &[BorrowedFd<'_>],
    ) -> Result<FrontendConnection, XenbusError> {
        let mut keys = choice.to_keys();
        // The same checks the backend makes, so a local mistake is reported locally.
        FrontendChoice::from_keys(&keys, &self.offered)?;
        keys.extend(resources.to_keys());
        send(
            &self.sock,
            &Message::Frontend {
                state: State::Connected,
                keys,
            },
            fds,
        )?;
        match recv(&self.sock, self.timeout, "the backend's Connected")? {
            (
                Message::Backend {
                    state: State::Connected,
                    ..
                },
                doorbells,
            ) => {
                let channels = resources.event_channels().count();
                if doorbells.len() != channels {
                    return Err(XenbusError::BadFds(format!(
                        "the backend answered with {} doorbells for {channels} event channels",
                        doorbells.len()
                    )));
                }
                Ok(FrontendConnection {
                    end: End::new(self.sock, self.timeout),
                    doorbells,
                    offered: self.offered,
                })
            }
            (Message::Refused(reason), _) => Err(XenbusError::Refused(reason)),
            (other, _) => Err(XenbusError::Unexpected {
                expected: "backend Connected",
                got: describe(&other),
            }),
        }
    }
}

/// The frontend's view of a connected backend.
#[derive(Debug)]
pub struct FrontendConnection {
    end: End,
    /// The sending ends of the backend's doorbells, until connected.
    doorbells: Vec<OwnedFd>,
    /// What the backend offered.
    offered: BackendFeatures,
}

impl FrontendConnection {
    /// Gives each of our event channel ends (in [`Resources::event_channels`] order, the
    /// ends [`Offer::event_channel`](crate::Offer::event_channel) made) the backend's
    /// sending end to ring, which came with its `Connected`. Call it once, before the first
    /// notify.
    ///
    /// # Errors
    /// [`XenbusError::BadFds`] (the backend's fault) if a descriptor is not a doorbell, or
    /// if `bells` names more or fewer channels than were offered.
    pub fn connect_doorbells<'a>(
        &mut self,
        bells: impl IntoIterator<Item = &'a mut Doorbell>,
    ) -> Result<(), XenbusError> {
        let mut fds = std::mem::take(&mut self.doorbells).into_iter();
        for bell in bells {
            let fd = fds.next().ok_or_else(|| {
                XenbusError::BadFds("more event channels than the backend answered".into())
            })?;
            bell.connect_peer(fd)
                .map_err(|e| XenbusError::BadFds(format!("the backend's doorbell: {e}")))?;
        }
        if fds.next().is_some() {
            return Err(XenbusError::BadFds(
                "fewer event channels than the backend answered".into(),
            ));
        }
        Ok(())
    }

    /// Asks the backend to close and waits until it has released everything (`Closed`).
    ///
    /// # Errors
    /// A timeout, a peer fault or [`XenbusError::Io`].
    pub fn close(self) -> Result<(), XenbusError> {
        self.end.close(false)
    }

    /// Whether the backend asked to close (or went away), waiting at most `wait`.
    ///
    /// # Errors
    /// A peer fault or [`XenbusError::Io`].
    pub fn backend_closing(&mut self, wait: Duration) -> Result<bool, XenbusError> {
        self.end.peer_closing(wait)
    }

    /// Answers a backend's close with `Closed`.
    ///
    /// # Errors
    /// [`XenbusError::Io`].
    pub fn acknowledge_closed(self) -> Result<(), XenbusError> {
        self.end.acknowledge(false)
    }
}

impl xenbus::BackendControl for BackendConnection {
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.end.sock.as_fd())
    }

    fn connected(&mut self) -> Result<(), XenbusError> {
        if std::mem::replace(&mut self.answered, true) {
            return Ok(());
        }
        // With it, the sending end of each of our doorbells, in `Resources` order.
        let answer: Vec<BorrowedFd<'_>> = self.answer.iter().map(AsFd::as_fd).collect();
        send(
            &self.end.sock,
            &Message::Backend {
                state: State::Connected,
                keys: Keys::new(),
            },
            &answer,
        )?;
        self.answer.clear();
        Ok(())
    }

    fn refuse(self, reason: &str) -> Result<(), XenbusError> {
        if self.answered {
            // Connected already: a refusal now is a close.
            return self.end.close(true);
        }
        match send(&self.end.sock, &Message::Refused(reason.to_owned()), &[]) {
            Ok(()) | Err(XenbusError::PeerClosed) => Ok(()),
            Err(e) => Err(e),
        }
    }

    fn frontend_closing(&mut self) -> bool {
        // A frontend that broke the control protocol is treated as gone.
        self.end.peer_closing(Duration::ZERO).unwrap_or(true)
    }

    fn acknowledge_closed(self) -> Result<(), XenbusError> {
        BackendConnection::acknowledge_closed(self)
    }

    fn close(self) -> Result<(), XenbusError> {
        BackendConnection::close(self)
    }
}

impl xenbus::FrontendControl for FrontendConnection {
    fn offered(&self) -> &BackendFeatures {
        &self.offered
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.end.sock.as_fd())
    }

    fn backend_closing(&mut self) -> bool {
        self.end.peer_closing(Duration::ZERO).unwrap_or(true)
    }

    fn request_close(&mut self) -> Result<(), XenbusError> {
        self.end.request_close(false)
    }

    fn closed(&mut self, wait: Duration) -> Result<bool, XenbusError> {
        self.end.closed(wait, false)
    }

    fn vanished(&self) -> bool {
        self.end.vanished
    }

    fn acknowledge_closed(self) -> Result<(), XenbusError> {
        FrontendConnection::acknowledge_closed(self)
    }
}
