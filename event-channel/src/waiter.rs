//! Spin briefly, then block: the NAPI-style wait that keeps a busy peer free of system calls.

use std::time::{Duration, Instant};

use crate::{EventChannel, EventError};

/// Which check [`SpinThenWait::wait`] asks for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Check {
    /// While spinning: a cheap look (the ring's `unconsumed_*`), which must not re-arm the
    /// event index, so a busy peer is not asked to notify.
    Spin,
    /// Before sleeping: the ring's final check (`final_check_*`), which arms the event index
    /// and re-checks, so that sleeping afterwards cannot miss a wakeup.
    Final,
}

/// Waits for work by first polling a cheap readiness check for up to `spin`, and only then
/// blocking on the event channel.
///
/// While the peer keeps producing, the check succeeds during the spin and no system call is
/// made, and since spinning does not arm the event index, the peer is not asked to notify
/// either. `spin` is zero by default (block at once, the right choice when cores are scarce);
/// the benchmarks measure what a given spin buys.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct SpinThenWait {
    /// How long to poll before blocking.
    pub spin: Duration,
}

impl SpinThenWait {
    /// A waiter that polls for `spin` before blocking.
    pub fn new(spin: Duration) -> Self {
        Self { spin }
    }

    /// Returns `Ok(true)` as soon as `ready` reports work (spinning, or after an event),
    /// `Ok(false)` if `timeout` passes with no event. `ready(Check::Spin)` must be a cheap
    /// look; `ready(Check::Final)` the ring's final check (see [`Check`]). Consumes the event
    /// that woke it.
    ///
    /// # Errors
    /// What the channel's `wait` reports (a masked port: [`EventError::Masked`]).
    pub fn wait<C: EventChannel + ?Sized>(
        &self,
        port: &mut C,
        mut ready: impl FnMut(Check) -> bool,
        timeout: Option<Duration>,
    ) -> Result<bool, EventError> {
        if !self.spin.is_zero() {
            let start = Instant::now();
            loop {
                if ready(Check::Spin) {
                    // An event sent meanwhile is stale now; drop it so the next wait blocks.
                    port.try_wait()?;
                    return Ok(true);
                }
                if start.elapsed() >= self.spin {
                    break;
                }
                std::hint::spin_loop();
            }
        }
        let deadline = timeout.map(|t| Instant::now() + t);
        loop {
            if ready(Check::Final) {
                return Ok(true);
            }
            let left = deadline.map(|d| d.saturating_duration_since(Instant::now()));
            if left == Some(Duration::ZERO) || !port.wait(left)? {
                return Ok(ready(Check::Final));
            }
        }
    }
}
