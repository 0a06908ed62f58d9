//! An in-memory control plane for a frontend and a backend in one process: XenStore's role
//! with no socket and no descriptor. The frontend's choice is checked against the backend's
//! offer exactly as the socket handshake checks it; afterwards each end sees the other's
//! state (and whether it was dropped) with no system call, so one thread can step both
//! drivers through connect, traffic and close.

use std::os::fd::BorrowedFd;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::Duration;

use crate::{BackendControl, BackendFeatures, FrontendChoice, FrontendControl, State, XenbusError};

#[derive(Debug)]
struct States {
    front: State,
    back: State,
}

type Shared = Arc<Mutex<States>>;

fn states(s: &Shared) -> std::sync::MutexGuard<'_, States> {
    // The states are plain values, valid whatever a panicking holder was doing.
    s.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Whether the other end was dropped (only this end holds the states).
fn alone(s: &Shared) -> bool {
    Arc::strong_count(s) < 2
}

/// Connects in memory: checks `choice` against `offered` (the checks the backend makes in the
/// socket handshake) and returns both ends, `Connected`, with the choice as parsed.
///
/// # Errors
/// [`XenbusError::Negotiation`] for a choice the backend does not offer.
pub fn connect(
    offered: &BackendFeatures,
    choice: &FrontendChoice,
) -> Result<(LocalBackend, LocalFrontend, FrontendChoice), XenbusError> {
    let checked = FrontendChoice::from_keys(&choice.to_keys(), offered)?;
    let shared = Arc::new(Mutex::new(States {
        front: State::Connected,
        back: State::Connected,
    }));
    Ok((
        LocalBackend {
            shared: shared.clone(),
        },
        LocalFrontend {
            shared,
            offered: offered.clone(),
        },
        checked,
    ))
}

/// The backend's end of an in-memory control channel.
#[derive(Debug)]
pub struct LocalBackend {
    shared: Shared,
}

/// The frontend's end of an in-memory control channel.
#[derive(Debug)]
pub struct LocalFrontend {
    shared: Shared,
    offered: BackendFeatures,
}

impl BackendControl for LocalBackend {
    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn connected(&mut self) -> Result<(), XenbusError> {
        // Both ends start Connected: the in-memory handshake has nothing more to say.
        Ok(())
    }

    fn refuse(self, _reason: &str) -> Result<(), XenbusError> {
        states(&self.shared).back = State::Closed;
        Ok(())
    }

    fn frontend_closing(&mut self) -> bool {
        alone(&self.shared) || matches!(states(&self.shared).front, State::Closing | State::Closed)
    }

    fn acknowledge_closed(self) -> Result<(), XenbusError> {
        states(&self.shared).back = State::Closed;
        Ok(())
    }

    fn close(self) -> Result<(), XenbusError> {
        // Released before asking (the caller's contract): the frontend answers when it looks.
        states(&self.shared).back = State::Closing;
        Ok(())
    }
}

impl FrontendControl for LocalFrontend {
    fn offered(&self) -> &BackendFeatures {
        &self.offered
    }

    fn readiness_fd(&self) -> Option<BorrowedFd<'_>> {
        None
    }

    fn backend_closing(&mut self) -> bool {
        alone(&self.shared) || matches!(states(&self.shared).back, State::Closing | State::Closed)
    }

    fn request_close(&mut self) -> Result<(), XenbusError> {
        states(&self.shared).front = State::Closing;
        Ok(())
    }

    fn closed(&mut self, _wait: Duration) -> Result<bool, XenbusError> {
        // No waiting in memory: one thread steps the backend between looks. A backend that
        // asked to close (Closing) had released everything before it asked.
        Ok(alone(&self.shared)
            || matches!(states(&self.shared).back, State::Closed | State::Closing))
    }

    fn vanished(&self) -> bool {
        // Dropped without having said Closing or Closed.
        alone(&self.shared) && states(&self.shared).back == State::Connected
    }

    fn acknowledge_closed(self) -> Result<(), XenbusError> {
        states(&self.shared).front = State::Closed;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn close_protocol_both_ways_and_a_dropped_peer() {
        let offered = BackendFeatures::default();
        let (mut back, mut front, _) = connect(&offered, &FrontendChoice::default()).unwrap();
        assert!(!back.frontend_closing() && !front.backend_closing());
        front.request_close().unwrap();
        assert!(back.frontend_closing());
        assert!(!front.closed(Duration::ZERO).unwrap());
        back.acknowledge_closed().unwrap();
        assert!(front.closed(Duration::ZERO).unwrap());

        let (back, mut front, _) = connect(&offered, &FrontendChoice::default()).unwrap();
        back.close().unwrap();
        assert!(front.backend_closing());

        let (mut back, front, _) = connect(&offered, &FrontendChoice::default()).unwrap();
        drop(front);
        assert!(back.frontend_closing());
    }

    #[test]
    fn a_choice_not_offered_is_refused() {
        let offered = BackendFeatures {
            max_queues: 1,
            ..BackendFeatures::default()
        };
        let choice = FrontendChoice {
            queues: 2,
            ..FrontendChoice::default()
        };
        assert!(matches!(
            connect(&offered, &choice),
            Err(XenbusError::Negotiation(_))
        ));
    }
}
