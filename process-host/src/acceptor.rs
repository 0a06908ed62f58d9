//! Accepting frontends off the data path: a thread that runs handshakes (which may stall on a
//! slow or hostile frontend) and hands finished connections to the backend's thread.

use std::sync::mpsc::{Receiver, channel};

use xenbus::XenbusError;

use crate::endpoint::{BackendConnection, Listener};

/// Runs `listener`'s accept-and-handshake loop on a thread of its own, up to the frontend's
/// keys (`Connected` is the backend's to answer once it has checked them); each result (a
/// connection, or the error of a frontend that failed its handshake) arrives on the returned
/// channel, and `wake` is called after each. An event loop can do the same without a
/// thread: a non-blocking [`Listener`] and [`Handshake`](crate::Handshake)s. The thread ends
/// when the receiver is dropped (after the next connection attempt).
pub fn spawn_acceptor(
    listener: Listener,
    wake: impl Fn() + Send + 'static,
) -> Receiver<Result<BackendConnection, XenbusError>> {
    let (tx, rx) = channel();
    std::thread::spawn(move || {
        loop {
            let conn = listener
                .accept()
                .and_then(crate::endpoint::Incoming::receive_keys);
            if tx.send(conn).is_err() {
                return;
            }
            wake();
        }
    });
    rx
}
