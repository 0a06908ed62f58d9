//! The process host's event channel: a doorbell per direction, each one AF_UNIX datagram
//! socket pair, used only with per-call non-blocking flags.
//!
//! Why not an eventfd: the peer holds the same file, so it can write 2^64-2 into it (our next
//! blocking notify then hangs for ever), read our events first (our blocking read then hangs),
//! or set `O_NONBLOCK` on the file description, which the two processes share (our blocking
//! read then fails with `EAGAIN`). A datagram socket takes `MSG_DONTWAIT` on every call, so
//! no flag the peer sets and nothing it writes or reads can make this end block: a full queue
//! means "already pending", an empty one "nothing pending", a vanished peer a notify that is
//! nobody's news (the control channel reports departures).
//!
//! Each side makes the socket pair it receives on ([`Doorbell::receiving`]) and hands the
//! peer only the sending end, so the peer never holds our receiving socket: it cannot take
//! our events, and since shutting down or closing a datagram socket does not touch its peer,
//! the one thing it can do to our end is send, which fills a bounded queue. That is an event
//! storm, which costs us wakeups and which the backend bounds (it backs off a vif whose
//! events bring no work).

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::{Duration, Instant};

use event_channel::{EventChannel, EventError, wait_any};
use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, MultiHeaders, SockFlag, SockType, SockaddrLike, SockaddrStorage,
    getsockname, getsockopt, recvmmsg, send, socketpair, sockopt,
};
use std::io::IoSliceMut;

/// Datagrams one clear takes at most: the rest stay pending for the next (a peer that sends
/// without pause buys one bounded clear per wakeup, never an unbounded loop).
const DRAIN: usize = 64;

/// One end of an event channel between two processes: it receives on its own socket and
/// notifies by sending on the peer's, every call with `MSG_DONTWAIT`, so nothing the peer
/// does with its descriptors (saturate, drain, flip `O_NONBLOCK` on a shared file
/// description, shut down) can make this end block, as it could with an eventfd the peer
/// holds too. A full queue on notify means "already pending"; a vanished peer makes a notify
/// nobody's news (the control channel reports departures).
///
/// Between processes that do not trust each other, each makes its own end with
/// [`receiving`](Self::receiving) and gives the peer the sending end; each then
/// [`connect_peer`](Self::connect_peer)s the sending end it got. [`pair`](Self::pair) makes
/// both ends in one process (for a child it starts, or tests).
#[derive(Debug)]
pub struct Doorbell {
    /// Ours: the peer sends to it, we receive on it.
    rx: OwnedFd,
    /// Towards the peer: we send on it. `None` until the peer's sending end came
    /// ([`Doorbell::connect_peer`]): a notify rings nobody meanwhile.
    tx: Option<OwnedFd>,
    masked: bool,
}

fn io(e: Errno) -> EventError {
    EventError::Io(e.into())
}

/// A connected pair of close-on-exec AF_UNIX datagram sockets: (sending end, receiving end).
fn dgram_pair() -> Result<(OwnedFd, OwnedFd), EventError> {
    socketpair(
        AddressFamily::Unix,
        SockType::Datagram,
        None,
        SockFlag::SOCK_CLOEXEC,
    )
    .map_err(io)
}

/// Whether `fd` is an AF_UNIX datagram socket (what a doorbell is made of).
fn check_doorbell(fd: &OwnedFd, what: &str) -> Result<(), EventError> {
    let refuse = |why: String| {
        EventError::Io(std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{what}: {why}"),
        ))
    };
    let kind =
        getsockopt(fd, sockopt::SockType).map_err(|e| refuse(format!("not a socket ({e})")))?;
    if kind != SockType::Datagram {
        return Err(refuse(format!("a {kind:?} socket, not a datagram socket")));
    }
    let addr: SockaddrStorage =
        getsockname(fd.as_raw_fd()).map_err(|e| refuse(format!("no address ({e})")))?;
    if addr.family() != Some(AddressFamily::Unix) {
        return Err(refuse(format!("{:?}, not AF_UNIX", addr.family())));
    }
    Ok(())
}

impl Doorbell {
    /// Creates both ends of a channel (two socket pairs, one per direction).
    ///
    /// # Errors
    /// [`EventError::Io`] if a socket cannot be created.
    pub fn pair() -> Result<(Self, Self), EventError> {
        let (a_tx, b_rx) = dgram_pair()?;
        let (b_tx, a_rx) = dgram_pair()?;
        Ok((
            Self {
                rx: a_rx,
                tx: Some(a_tx),
                masked: false,
            },
            Self {
                rx: b_rx,
                tx: Some(b_tx),
                masked: false,
            },
        ))
    }

    /// A new end receiving on a socket pair only this process holds, and the pair's sending
    /// end, for the peer to notify this end through. The end rings nobody until
    /// [`connect_peer`](Self::connect_peer) gives it the peer's sending end.
    ///
    /// # Errors
    /// [`EventError::Io`] if a socket cannot be created (a local failure).
    pub fn receiving() -> Result<(Self, OwnedFd), EventError> {
        let (theirs, rx) = dgram_pair()?;
        Ok((
            Self {
                rx,
                tx: None,
                masked: false,
            },
            theirs,
        ))
    }

    /// Sets the socket this end notifies: the sending end the peer made
    /// ([`receiving`](Self::receiving) on its side) and handed over. It must be an AF_UNIX
    /// datagram socket (a pipe, an eventfd or `/dev/zero` is refused: each could block or
    /// spin this end).
    ///
    /// # Errors
    /// [`EventError::Io`] (kind `InvalidInput`, with the reason) if it is not one, or if this
    /// end has its peer already.
    pub fn connect_peer(&mut self, notifies: OwnedFd) -> Result<(), EventError> {
        check_doorbell(&notifies, "the doorbell we ring")?;
        if self.tx.is_some() {
            return Err(EventError::Io(std::io::Error::new(
                std::io::ErrorKind::InvalidInput,
                "the doorbell rings its peer already",
            )));
        }
        self.tx = Some(notifies);
        Ok(())
    }

    /// An end over both its descriptors, `waits` (the socket this end receives on) and
    /// `notifies` (the one it sends on), from a process that made the pair
    /// ([`into_fds`](Self::into_fds)). Use it only when that process is trusted, such as the
    /// parent that started this one: whoever made the pair may keep our receiving socket.
    /// Both must be AF_UNIX datagram sockets.
    ///
    /// # Errors
    /// [`EventError::Io`] (kind `InvalidInput`, with the reason) if either is not one.
    pub fn from_fds(waits: OwnedFd, notifies: OwnedFd) -> Result<Self, EventError> {
        check_doorbell(&waits, "the doorbell we wait on")?;
        let mut bell = Self {
            rx: waits,
            tx: None,
            masked: false,
        };
        bell.connect_peer(notifies)?;
        Ok(bell)
    }

    /// This end's descriptors, `(waits, notifies)` (`notifies` is `None` before
    /// [`connect_peer`](Self::connect_peer)): to hand an end of a [`pair`](Self::pair) to
    /// a process this one starts (its [`from_fds`](Self::from_fds) takes them in this order).
    pub fn into_fds(self) -> (OwnedFd, Option<OwnedFd>) {
        (self.rx, self.tx)
    }

    /// Whether a datagram waits, without taking it.
    fn readable(&self, timeout: Duration) -> Result<bool, EventError> {
        let mut ready = [false];
        Ok(wait_any(&[self.rx.as_fd()], Some(timeout), &mut ready)? > 0)
    }

    /// Takes up to [`DRAIN`] datagrams without waiting, in one `recvmmsg`; whether there was
    /// any.
    fn drain(&self) -> Result<bool, EventError> {
        // Every datagram queued (up to DRAIN), so the socket is not left readable with events
        // that were already seen (which would make the next sleep return at once: a hidden
        // busy loop). One call: it returns what it took when the queue runs dry, so there is
        // no `recv` that only finds the queue empty.
        let mut bufs = [[0u8; 8]; DRAIN];
        let mut slices: [[IoSliceMut<'_>; 1]; DRAIN] =
            bufs.each_mut().map(|b| [IoSliceMut::new(b)]);
        let mut headers = MultiHeaders::<()>::preallocate(DRAIN, None);
        // Non-blocking, so never interrupted by a signal (EINTR is for calls that wait).
        match recvmmsg(
            self.rx.as_raw_fd(),
            &mut headers,
            slices.iter_mut(),
            MsgFlags::MSG_DONTWAIT,
            None,
        ) {
            Ok(got) => Ok(got.count() > 0),
            Err(Errno::EAGAIN) => Ok(false),
            // A pending error on the socket (one the peer's doing could set) is taken by this
            // call: nothing more to read now.
            Err(_) => Ok(false),
        }
    }
}

impl EventChannel for Doorbell {
    fn notify(&self) -> Result<(), EventError> {
        // No peer yet: nobody to ring (the handshake has not handed its end over).
        let Some(tx) = &self.tx else {
            return Ok(());
        };
        loop {
            match send(
                tx.as_raw_fd(),
                &[1],
                MsgFlags::MSG_DONTWAIT | MsgFlags::MSG_NOSIGNAL,
            ) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                // The peer's queue is full: it has events it has not taken, so it is rung.
                Err(Errno::EAGAIN | Errno::ENOBUFS) => return Ok(()),
                // The peer is gone: ringing nobody is no failure of ours, and the control
                // channel reports the departure.
                Err(Errno::ECONNREFUSED | Errno::EPIPE | Errno::ECONNRESET | Errno::ENOTCONN) => {
                    return Ok(());
                }
                Err(e) => return Err(io(e)),
            }
        }
    }

    fn try_wait(&mut self) -> Result<bool, EventError> {
        if self.masked {
            return Ok(false);
        }
        self.drain()
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, EventError> {
        if self.masked {
            return Err(EventError::Masked);
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            let left = match deadline {
                None => Duration::from_secs(3600),
                Some(d) => d.saturating_duration_since(Instant::now()),
            };
            // Poll first (a pending event returns at once): then take what came. Readable
            // but nothing to take means the peer took it first, if it kept our end: wait
            // again, for the time that remains.
            if self.readable(left)? && self.drain()? {
                return Ok(true);
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
        }
    }

    fn mask(&mut self) {
        self.masked = true;
    }

    fn unmask(&mut self) -> Result<bool, EventError> {
        self.masked = false;
        self.readable(Duration::ZERO)
    }

    fn is_masked(&self) -> bool {
        self.masked
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.as_fd())
    }

    fn clear_ready(&mut self) -> Result<(), EventError> {
        self.drain().map(drop)
    }
}

impl AsFd for Doorbell {
    /// The descriptor that becomes readable when an event is pending (for epoll / mio /
    /// tokio; call [`EventChannel::try_wait`] when it fires).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}
