//! The process host's event channel: one eventfd per direction.

use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::time::Duration;

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::eventfd::{EfdFlags, EventFd};

use crate::{EventChannel, EventError};

/// One end of an event channel between two processes: it waits on its own eventfd and notifies
/// by writing the peer's.
///
/// An eventfd's counter is the pending bit: any number of writes before a read are one event,
/// and the read clears it. The descriptors are blocking, and this end is their only reader, so
/// an untimed [`wait`](EventChannel::wait) is one blocking `read` (the cost of a bare eventfd),
/// while [`try_wait`](EventChannel::try_wait) and timed waits `poll` first and read only a
/// counter that is ready. An eventfd cannot tell that the peer process is gone; the control
/// plane's socket does.
#[derive(Debug)]
pub struct EventFdPort {
    /// Ours: the peer writes it, we wait on it.
    rx: OwnedFd,
    /// The peer's: we write it.
    tx: OwnedFd,
    masked: bool,
}

impl EventFdPort {
    /// Creates both ends of a channel (two eventfds, each end holding its own descriptors).
    ///
    /// # Errors
    /// [`EventError::Io`] if an eventfd cannot be created.
    pub fn pair() -> Result<(Self, Self), EventError> {
        let a = new_eventfd()?;
        let b = new_eventfd()?;
        let (a2, b2) = (a.try_clone()?, b.try_clone()?);
        let front = Self {
            rx: a,
            tx: b,
            masked: false,
        };
        let back = Self {
            rx: b2,
            tx: a2,
            masked: false,
        };
        Ok((front, back))
    }

    /// An end over descriptors received from the peer: `rx` is the eventfd this end waits on,
    /// `tx` the one it notifies. Both are switched to blocking mode.
    ///
    /// # Errors
    /// [`EventError::Io`] if either descriptor is not usable.
    pub fn from_fds(rx: OwnedFd, tx: OwnedFd) -> Result<Self, EventError> {
        for fd in [&rx, &tx] {
            set_blocking(fd.as_fd())?;
        }
        Ok(Self {
            rx,
            tx,
            masked: false,
        })
    }

    /// The two descriptors, `(rx, tx)`, to hand to the peer process *swapped* (our `tx` is its
    /// `rx`). They are duplicates: this end keeps working.
    ///
    /// # Errors
    /// [`EventError::Io`] if a descriptor cannot be duplicated.
    pub fn clone_fds(&self) -> Result<(OwnedFd, OwnedFd), EventError> {
        Ok((self.rx.try_clone()?, self.tx.try_clone()?))
    }

    /// Whether an event is pending, without consuming it.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn is_pending(&self) -> Result<bool, EventError> {
        self.poll_rx(Duration::ZERO)
    }

    /// Clears an event that [`wait_any`](crate::wait_any) (or the caller's own poll/epoll)
    /// reported ready, with one `read`. This end is the eventfd's only reader, so a counter
    /// seen ready stays ready until read; on one not ready, this blocks until an event comes.
    ///
    /// # Errors
    /// [`EventError::Io`].
    pub fn consume_ready(&mut self) -> Result<(), EventError> {
        self.consume()
    }

    /// Waits up to `timeout` for the counter to become non-zero. A signal restarts the wait
    /// with the time that remains, never the whole timeout again.
    fn poll_rx(&self, timeout: Duration) -> Result<bool, EventError> {
        let deadline = std::time::Instant::now() + timeout;
        let mut fds = [PollFd::new(self.rx.as_fd(), PollFlags::POLLIN)];
        loop {
            let left = deadline.saturating_duration_since(std::time::Instant::now());
            match poll(&mut fds, poll_timeout(left)) {
                Ok(n) => return Ok(n > 0),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(EventError::Io(e.into())),
            }
        }
    }

    /// Reads (clears) the counter; blocks until it is non-zero. Only called when it is known
    /// to be ready, or for an untimed wait.
    fn consume(&self) -> Result<(), EventError> {
        let mut buf = [0u8; 8];
        loop {
            match nix::unistd::read(&self.rx, &mut buf) {
                Ok(8) => return Ok(()),
                Ok(_) => return Err(EventError::Io(std::io::Error::other("short eventfd read"))),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(EventError::Io(e.into())),
            }
        }
    }
}

fn new_eventfd() -> Result<OwnedFd, EventError> {
    let fd =
        EventFd::from_value_and_flags(0, EfdFlags::EFD_CLOEXEC).map_err(std::io::Error::from)?;
    Ok(OwnedFd::from(fd))
}

fn set_blocking(fd: BorrowedFd<'_>) -> Result<(), EventError> {
    use nix::fcntl::{FcntlArg, OFlag, fcntl};
    let flags =
        OFlag::from_bits_truncate(fcntl(fd, FcntlArg::F_GETFL).map_err(std::io::Error::from)?);
    fcntl(fd, FcntlArg::F_SETFL(flags - OFlag::O_NONBLOCK)).map_err(std::io::Error::from)?;
    Ok(())
}

/// Converts a wait timeout for `poll`, rounded up so a sub-millisecond timeout still sleeps
/// rather than spinning (longer than `poll` can express: its maximum, about 24 days).
pub(crate) fn poll_timeout(d: Duration) -> PollTimeout {
    let ms = i32::try_from(d.as_micros().div_ceil(1000)).unwrap_or(i32::MAX);
    PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX)
}

impl EventChannel for EventFdPort {
    fn notify(&self) -> Result<(), EventError> {
        // Adds 1 to the peer's counter. (A blocking eventfd write waits only if the counter is
        // within 1 of u64::MAX, which 2^64 notifies without a read would take.)
        loop {
            match nix::unistd::write(&self.tx, &1u64.to_ne_bytes()) {
                Ok(_) => return Ok(()),
                Err(Errno::EINTR) => continue,
                Err(e) => return Err(EventError::Io(e.into())),
            }
        }
    }

    fn try_wait(&mut self) -> Result<bool, EventError> {
        if self.masked || !self.is_pending()? {
            return Ok(false);
        }
        self.consume()?;
        Ok(true)
    }

    fn wait(&mut self, timeout: Option<Duration>) -> Result<bool, EventError> {
        if self.masked {
            return Err(EventError::Masked);
        }
        let Some(timeout) = timeout else {
            // Untimed: one blocking read, as cheap as a bare eventfd.
            self.consume()?;
            return Ok(true);
        };
        if self.poll_rx(timeout)? {
            self.consume()?;
            return Ok(true);
        }
        Ok(false)
    }

    fn mask(&mut self) {
        self.masked = true;
    }

    fn unmask(&mut self) -> Result<bool, EventError> {
        self.masked = false;
        self.is_pending()
    }

    fn is_masked(&self) -> bool {
        self.masked
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        Some(self.rx.as_fd())
    }

    fn clear_ready(&mut self) -> Result<(), EventError> {
        self.consume()
    }
}

impl AsFd for EventFdPort {
    /// The descriptor that becomes readable when an event is pending (for epoll / mio / tokio;
    /// call [`EventChannel::try_wait`] when it fires).
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.rx.as_fd()
    }
}

impl AsRawFd for EventFdPort {
    fn as_raw_fd(&self) -> std::os::fd::RawFd {
        self.rx.as_fd().as_raw_fd()
    }
}
