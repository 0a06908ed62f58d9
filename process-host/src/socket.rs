//! One message per datagram over a Unix SOCK_SEQPACKET socket, descriptors attached with
//! SCM_RIGHTS, every receive bounded by a timeout.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd, RawFd};
use std::time::{Duration, Instant};

use nix::poll::{PollFd, PollFlags, PollTimeout, poll};
use nix::sys::socket::{ControlMessage, ControlMessageOwned, MsgFlags, recvmsg, sendmsg};

use xenbus::{DecodeError, MAX_MESSAGE, Message, XenbusError};

/// Most descriptors one message may carry.
pub const MAX_FDS: usize = 32;

/// Sends `msg` with `fds` attached.
pub(crate) fn send(
    sock: &OwnedFd,
    msg: &Message,
    fds: &[BorrowedFd<'_>],
) -> Result<(), XenbusError> {
    let bytes = msg.encode()?;
    let raw: Vec<RawFd> = fds.iter().map(AsRawFd::as_raw_fd).collect();
    let cmsg = [ControlMessage::ScmRights(&raw)];
    let cmsgs: &[ControlMessage<'_>] = if raw.is_empty() { &[] } else { &cmsg };
    let sent = sendmsg::<()>(
        sock.as_raw_fd(),
        &[IoSlice::new(&bytes)],
        cmsgs,
        MsgFlags::MSG_NOSIGNAL,
        None,
    );
    match sent {
        Ok(_) => Ok(()),
        // The peer closed its end: its doing, not a local failure.
        Err(nix::Error::EPIPE | nix::Error::ECONNRESET) => Err(XenbusError::PeerClosed),
        Err(e) => Err(XenbusError::Io(e.into())),
    }
}

/// Receives one message and the descriptors attached to it, waiting at most `timeout`.
/// Descriptors are owned as soon as they arrive, so they are closed on any error.
pub(crate) fn recv(
    sock: &OwnedFd,
    timeout: Duration,
    what: &'static str,
) -> Result<(Message, Vec<OwnedFd>), XenbusError> {
    // A signal restarts the wait with the time that remains.
    let deadline = Instant::now() + timeout;
    let mut pfd = [PollFd::new(sock.as_fd(), PollFlags::POLLIN)];
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let ms = i32::try_from(left.as_millis()).unwrap_or(i32::MAX);
        match poll(
            &mut pfd,
            PollTimeout::try_from(ms).unwrap_or(PollTimeout::MAX),
        ) {
            Ok(0) => return Err(XenbusError::Timeout(what)),
            Ok(_) => break,
            Err(nix::Error::EINTR) => continue,
            Err(e) => return Err(XenbusError::Io(e.into())),
        }
    }
    let mut buf = vec![0u8; MAX_MESSAGE + 1];
    let mut space = nix::cmsg_space!([RawFd; MAX_FDS]);
    let mut iov = [IoSliceMut::new(&mut buf)];
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )
    .map_err(std::io::Error::from)?;
    let mut fds = Vec::new();
    for c in msg.cmsgs().map_err(std::io::Error::from)? {
        if let ControlMessageOwned::ScmRights(raw) = c {
            // SAFETY: SCM_RIGHTS just installed these descriptors in this process; nothing else
            // refers to them, so each is owned exactly once, here.
            fds.extend(
                raw.into_iter()
                    .map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }),
            );
        }
    }
    let (bytes, flags) = (msg.bytes, msg.flags);
    if flags.contains(MsgFlags::MSG_CTRUNC) {
        return Err(XenbusError::BadFds(format!(
            "more than {MAX_FDS} descriptors"
        )));
    }
    if flags.contains(MsgFlags::MSG_TRUNC) || bytes > MAX_MESSAGE {
        return Err(DecodeError::TooLarge(bytes).into());
    }
    if bytes == 0 {
        return Err(XenbusError::PeerClosed);
    }
    Ok((Message::decode(&buf[..bytes])?, fds))
}

/// A short description of a message for errors.
pub(crate) fn describe(msg: &Message) -> String {
    match msg {
        Message::Backend { state, .. } => format!("backend {state:?}"),
        Message::Frontend { state, .. } => format!("frontend {state:?}"),
        Message::Refused(r) => format!("refused: {r}"),
    }
}
