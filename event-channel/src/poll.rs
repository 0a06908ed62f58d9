//! Waiting on many descriptors at once: the sleep of a loop that serves several rings (queues,
//! interfaces) and their control sockets.

use std::os::fd::BorrowedFd;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::poll::{PollFd, PollFlags, PollTimeout, poll};

use crate::EventError;

/// Blocks until at least one of `fds` is readable (or has hung up), or until `timeout`
/// passes; `None` waits for ever. Sets `ready[i]` for each descriptor that is ready and returns
/// how many are. A signal restarts the wait with the time that remains.
///
/// The descriptors are typically [`EventFdPort`](crate::EventFdPort)s (then clear each ready
/// one with [`EventFdPort::consume_ready`](crate::EventFdPort::consume_ready)) and control
/// sockets. Nothing is consumed here.
///
/// # Errors
/// [`EventError::Io`] if `poll` fails, or if `ready` is shorter than `fds`.
pub fn wait_any(
    fds: &[BorrowedFd<'_>],
    timeout: Option<Duration>,
    ready: &mut [bool],
) -> Result<usize, EventError> {
    if ready.len() < fds.len() {
        return Err(EventError::Io(std::io::Error::other(
            "wait_any: ready flags shorter than the descriptors",
        )));
    }
    let mut polled: Vec<PollFd<'_>> = fds
        .iter()
        .map(|fd| PollFd::new(*fd, PollFlags::POLLIN))
        .collect();
    let deadline = timeout.map(|t| Instant::now() + t);
    let n = loop {
        let left = match deadline {
            None => PollTimeout::NONE,
            Some(d) => crate::eventfd::poll_timeout(d.saturating_duration_since(Instant::now())),
        };
        match poll(&mut polled, left) {
            Ok(n) => break n,
            Err(Errno::EINTR) => continue,
            Err(e) => return Err(EventError::Io(e.into())),
        }
    };
    for (flag, fd) in ready.iter_mut().zip(&polled) {
        *flag = fd.revents().is_some_and(|r| !r.is_empty());
    }
    Ok(usize::try_from(n).unwrap_or(0))
}
