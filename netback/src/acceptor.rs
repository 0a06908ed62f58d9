//! Accepting frontends off the data path: a thread that runs handshakes (which may stall on a
//! slow or hostile frontend) and hands finished connections to the backend's thread.

use std::sync::mpsc::{Receiver, channel};

use xenbus::{BackendConnection, Listener, XenbusError};

use crate::backend::Waker;

/// Runs `listener`'s accept-and-handshake loop on a thread of its own; each result (a
/// connection to [`attach`](crate::Netback::attach), which answers it, or the error of a
/// frontend that failed its handshake) arrives on the returned channel and wakes the backend
/// through `waker`. An event loop can do the same without a thread: a non-blocking
/// [`Listener`] and [`xenbus::Handshake`]s (see `examples/event_loop.rs`). The
/// thread ends when the receiver is dropped (after the next connection attempt).
pub fn spawn_acceptor(
    listener: Listener,
    waker: Waker,
) -> Receiver<Result<BackendConnection, XenbusError>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        loop {
            // The keys only: `Netback::attach` answers Connected once it has checked them.
            let conn = listener.accept().and_then(xenbus::Incoming::receive_keys);
            if tx.send(conn).is_err() {
                return;
            }
            let _ = waker.wake();
        }
    });
    rx
}
