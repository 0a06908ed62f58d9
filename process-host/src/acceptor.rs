//! Accepting frontends off the data path: a thread that runs handshakes (which may stall on a
//! slow or hostile frontend) and hands finished connections to the backend's thread.
//!
//! Handshakes run concurrently, stepped from one `poll` loop, so a frontend that connects
//! and says nothing delays no one (before, accept and handshake were serial: one silent
//! frontend kept every other out for the timeout, and for ever if it reconnected). At most
//! [`MAX_HANDSHAKES`] are in progress; beyond that, new frontends wait in the listen backlog.
//! One uid may have at most [`MAX_HANDSHAKES_PER_UID`] of them: a frontend of a uid at its
//! cap is told to retry and dropped, so silent connections of one user cannot fill the slots
//! other users' frontends need. (Within a uid there is nothing to protect: its processes can
//! signal and trace each other anyway.)
//! When accepting fails for lack of resources (the descriptor limit, memory), the listener
//! is left alone for a while, longer each time, instead of being retried at full speed.

use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::sync::mpsc::{Receiver, Sender, channel};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use event_channel::wait_any;
use nix::errno::Errno;
use xenbus::XenbusError;

use crate::endpoint::{BackendConnection, Handshake, Listener, Step};

/// Handshakes in progress at once.
pub const MAX_HANDSHAKES: usize = 64;

/// Handshakes in progress at once for frontends of one uid.
pub const MAX_HANDSHAKES_PER_UID: usize = 16;

/// The first pause after accepting failed for lack of resources, doubled each time it fails
/// again, up to [`MAX_BACKOFF`].
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);

/// The results of an acceptor thread ([`spawn_acceptor`]): a [`Receiver`] (it derefs to
/// one: `try_recv`, `recv_timeout`, `try_iter`) that also stops the thread when dropped, so
/// a backend that goes leaves no thread, listener or waker behind.
#[derive(Debug)]
pub struct Accepted {
    rx: Receiver<Result<BackendConnection, XenbusError>>,
    /// The write end of the thread's stop pipe: closing it (on drop) wakes and ends the thread.
    stop: Option<OwnedFd>,
    /// The thread, joined on drop.
    thread: Option<JoinHandle<()>>,
}

/// Ends the thread and waits for it, so that the listener is closed (and its socket file
/// removed) by the time the drop returns: a backend bound again at the same path right after
/// finds it free, and keeps its own file.
impl Drop for Accepted {
    fn drop(&mut self) {
        drop(self.stop.take());
        // Not from the thread itself (an `Accepted` dropped inside `wake`): it cannot wait
        // for its own end, and ends once this returns.
        if let Some(t) = self.thread.take()
            && t.thread().id() != std::thread::current().id()
        {
            let _ = t.join();
        }
    }
}

impl std::ops::Deref for Accepted {
    type Target = Receiver<Result<BackendConnection, XenbusError>>;

    fn deref(&self) -> &Self::Target {
        &self.rx
    }
}

/// Runs `listener`'s accept-and-handshake loop on a thread of its own, up to the frontend's
/// keys (`Connected` is the backend's to answer once it has checked them); each result (a
/// connection, or the error of a frontend that failed its handshake) arrives on the returned
/// channel, and `wake` is called after each. An event loop can do the same without a
/// thread: a non-blocking [`Listener`] and [`Handshake`]s. The thread ends, closing the
/// listener, when the returned [`Accepted`] is dropped; the drop waits for it.
///
/// # Errors
/// The thread's stop pipe cannot be made.
pub fn spawn_acceptor(
    listener: Listener,
    wake: impl Fn() + Send + 'static,
) -> std::io::Result<Accepted> {
    let (tx, rx) = channel();
    let (stop, stop_w) = nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC)?;
    let thread = std::thread::spawn(move || {
        let _ = Acceptor {
            listener,
            pending: Vec::new(),
            backoff: Duration::ZERO,
            paused_until: None,
            tx,
            wake: Box::new(wake),
            stop,
        }
        .run();
    });
    Ok(Accepted {
        rx,
        stop: Some(stop_w),
        thread: Some(thread),
    })
}

/// The receiver is gone: the thread ends.
struct Gone;

struct Acceptor {
    listener: Listener,
    pending: Vec<Handshake>,
    backoff: Duration,
    /// Accepting failed for lack of resources: not before then.
    paused_until: Option<Instant>,
    tx: Sender<Result<BackendConnection, XenbusError>>,
    wake: Box<dyn Fn() + Send>,
    /// Readable (end of file) once the [`Accepted`] is dropped.
    stop: OwnedFd,
}

impl Acceptor {
    fn run(&mut self) -> Result<(), Gone> {
        if let Err(e) = self.listener.set_nonblocking(true) {
            return self.report(Err(e));
        }
        loop {
            let now = Instant::now();
            if self.paused_until.is_some_and(|t| now >= t) {
                self.paused_until = None;
            }
            let listening = self.paused_until.is_none() && self.pending.len() < MAX_HANDSHAKES;
            let deadline = self
                .pending
                .iter()
                .map(Handshake::deadline)
                .chain(self.paused_until)
                .min();
            let (stopped, listener_ready, ready) = self.sleep(listening, deadline);
            if stopped {
                return Err(Gone);
            }
            if listener_ready {
                self.accept_all()?;
            }
            self.step_handshakes(&ready)?;
        }
    }

    /// Sleeps until the stop pipe, the listener (if `listening`) or a handshake is readable,
    /// or `deadline`; returns whether the thread is to stop, whether the listener is ready,
    /// and which handshakes are.
    fn sleep(&self, listening: bool, deadline: Option<Instant>) -> (bool, bool, Vec<bool>) {
        let mut fds: Vec<BorrowedFd<'_>> = Vec::with_capacity(self.pending.len() + 2);
        fds.push(self.stop.as_fd());
        if listening {
            fds.push(self.listener.as_fd());
        }
        fds.extend(self.pending.iter().map(AsFd::as_fd));
        let timeout = deadline.map(|d| d.saturating_duration_since(Instant::now()));
        let mut ready = vec![false; fds.len()];
        // A failing poll (no memory) is not retried at full speed; everything is looked at
        // once, as after a timeout (handshakes past their deadline are dropped there).
        if wait_any(&fds, timeout, &mut ready).is_err() {
            std::thread::sleep(FIRST_BACKOFF);
        }
        let stopped = ready[0];
        let (listener, rest) = if listening {
            (ready[1], &ready[2..])
        } else {
            (false, &ready[1..])
        };
        (stopped, listener, rest.to_vec())
    }

    /// Accepts the frontends waiting (up to the cap, and at most [`MAX_HANDSHAKES`] per
    /// call, so that refusing a flood leaves time to step the handshakes) and starts their
    /// handshakes.
    fn accept_all(&mut self) -> Result<(), Gone> {
        for _ in 0..MAX_HANDSHAKES {
            if self.pending.len() >= MAX_HANDSHAKES {
                break;
            }
            match self.listener.try_accept() {
                Ok(Some(incoming)) => {
                    self.backoff = Duration::ZERO;
                    let uid = incoming.peer.uid;
                    let ongoing = self.pending.iter().filter(|h| h.peer.uid == uid).count();
                    if ongoing >= MAX_HANDSHAKES_PER_UID {
                        incoming.refuse(&format!(
                            "uid {uid} has {ongoing} handshakes in progress; retry later"
                        ));
                        self.report(Err(XenbusError::Busy { uid }))?;
                        continue;
                    }
                    match incoming.start() {
                        Ok(h) => self.pending.push(h),
                        Err(e) => self.report(Err(e))?,
                    }
                }
                Ok(None) => return Ok(()),
                Err(XenbusError::Io(e)) if out_of_resources(&e) => {
                    self.backoff = (self.backoff * 2).clamp(FIRST_BACKOFF, MAX_BACKOFF);
                    self.paused_until = Some(Instant::now() + self.backoff);
                    return self.report(Err(XenbusError::Io(e)));
                }
                // A refused uid, or a connection that went away before it was accepted:
                // that frontend's failure; go on with the next.
                Err(e) => self.report(Err(e))?,
            }
        }
        Ok(())
    }

    /// Steps the handshakes that are readable (or past their deadline).
    fn step_handshakes(&mut self, ready: &[bool]) -> Result<(), Gone> {
        let now = Instant::now();
        let pending = std::mem::take(&mut self.pending);
        for (h, r) in pending
            .into_iter()
            .zip(ready.iter().copied().chain(std::iter::repeat(false)))
        {
            if !r && now < h.deadline() {
                self.pending.push(h);
                continue;
            }
            match h.step() {
                Ok(Step::Waiting(h)) => self.pending.push(h),
                Ok(Step::Keys(conn)) => self.report(Ok(conn))?,
                Err(e) => self.report(Err(e))?,
            }
        }
        Ok(())
    }

    fn report(&self, r: Result<BackendConnection, XenbusError>) -> Result<(), Gone> {
        self.tx.send(r).map_err(|_| Gone)?;
        (self.wake)();
        Ok(())
    }
}

/// Whether accepting failed for lack of resources (it would fail again at once).
fn out_of_resources(e: &std::io::Error) -> bool {
    matches!(
        e.raw_os_error().map(Errno::from_raw),
        Some(Errno::EMFILE | Errno::ENFILE | Errno::ENOBUFS | Errno::ENOMEM)
    )
}
