//! Bounding an event storm (XSA-332's class): a frontend can make its event channel fire
//! without end (notify in a loop, or keep a doorbell readable for good). Late EOI already
//! limits each wakeup to one look at its rings; this limits the wakeups. A vif whose events
//! keep bringing no work is not listened to for a while, longer each time (as Linux's
//! `xen_irq_lateeoi` delays the EOI of a spurious event channel): its rings are still looked
//! at whenever the backend wakes for anything else, and again when the quiet time ends, so
//! nothing is lost, only a storming frontend's own latency grows.

use std::time::{Duration, Instant};

/// Useless wakeups in a row a vif may cause before it is quieted: a legitimate frontend
/// causes one now and then (an event for requests a spin had already taken counts as work),
/// never many in a row.
const TOLERATED: u32 = 8;

/// The first quiet time, doubled for every further useless wakeup.
const FIRST_QUIET: Duration = Duration::from_millis(1);

/// The longest quiet time.
const MAX_QUIET: Duration = Duration::from_secs(1);

/// One vif's storm bookkeeping.
#[derive(Debug, Default)]
pub(crate) struct Storm {
    /// Useless wakeups in a row (events reported, no work since the last of them).
    spurious: u32,
    /// The vif's work counter at the last reported event.
    mark: u64,
    /// Not listened to until then.
    quiet_until: Option<Instant>,
}

impl Storm {
    /// After an end of interrupt: `fired` whether the vif's events had been reported, `mark`
    /// its work counter now. Returns whether the vif just became quiet (its descriptors
    /// leave the set to sleep on).
    pub(crate) fn after_eoi(&mut self, fired: bool, mark: u64, now: Instant) -> bool {
        if !fired {
            return false;
        }
        if mark == self.mark {
            self.spurious = self.spurious.saturating_add(1);
        } else {
            self.spurious = 0;
            self.mark = mark;
        }
        if self.spurious <= TOLERATED || self.quiet_until.is_some() {
            return false;
        }
        let doublings = (self.spurious - TOLERATED - 1).min(20);
        let quiet = FIRST_QUIET.saturating_mul(1 << doublings).min(MAX_QUIET);
        self.quiet_until = Some(now + quiet);
        true
    }

    /// Ends the quiet time if it is over. Returns whether it just ended (the descriptors
    /// come back).
    pub(crate) fn wake_if_due(&mut self, now: Instant) -> bool {
        match self.quiet_until {
            Some(t) if now >= t => {
                self.quiet_until = None;
                true
            }
            _ => false,
        }
    }

    /// Whether the vif is not listened to now.
    pub(crate) fn quiet(&self) -> bool {
        self.quiet_until.is_some()
    }

    /// When the quiet time ends, if the vif is quiet.
    pub(crate) fn until(&self) -> Option<Instant> {
        self.quiet_until
    }

    /// Useless wakeups in a row so far.
    #[cfg(test)]
    fn spurious(&self) -> u32 {
        self.spurious
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn useless_wakeups_quiet_a_vif_for_longer_each_time_and_work_forgives() {
        let t0 = Instant::now();
        let mut s = Storm::default();
        for _ in 0..TOLERATED {
            assert!(!s.after_eoi(true, 0, t0));
        }
        assert!(s.after_eoi(true, 0, t0));
        assert_eq!(s.until(), Some(t0 + FIRST_QUIET));
        assert!(!s.wake_if_due(t0));
        assert!(s.wake_if_due(t0 + FIRST_QUIET));
        assert!(s.after_eoi(true, 0, t0));
        assert_eq!(s.until(), Some(t0 + 2 * FIRST_QUIET));
        assert!(s.wake_if_due(t0 + MAX_QUIET));
        for _ in 0..40 {
            s.after_eoi(true, 0, t0);
            s.wake_if_due(t0 + 2 * MAX_QUIET);
        }
        s.after_eoi(true, 0, t0);
        assert_eq!(s.until(), Some(t0 + MAX_QUIET), "capped");
        // Work resets the count; wakeups without reported events change nothing.
        assert!(s.wake_if_due(t0 + MAX_QUIET));
        assert!(!s.after_eoi(true, 1, t0));
        assert_eq!(s.spurious(), 0);
        assert!(!s.after_eoi(false, 1, t0));
        assert_eq!(s.spurious(), 0);
    }
}
