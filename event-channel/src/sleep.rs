//! The wait for work of a loop that polls rings of its own and sleeps on their event
//! channels: late EOI, an optional bounded spin, arming the rings, and one sleep, again and
//! again until there is work. Netback and netfront both wait this way; the rule is written
//! once, here.

use std::time::{Duration, Instant};

use crate::EventError;
use crate::spin::{SpinBudget, SpinStep};

/// How often a loop looks again while some channel of it has no descriptor to sleep on (an
/// in-process port or control channel): the longest [`wait_for_work`] sleeps then.
pub const BLIND_SLEEP: Duration = Duration::from_millis(1);

/// What [`wait_for_work`] needs from a loop.
pub trait Sleeper {
    /// The loop's error type.
    type Error: From<EventError>;

    /// Clears the events the last sleep reported (late EOI): called after the rings those
    /// events announced were looked at, so one sent meanwhile is absorbed and the final check
    /// that follows sees its work.
    ///
    /// # Errors
    /// The loop's.
    fn end_of_interrupt(&mut self) -> Result<(), Self::Error>;

    /// A cheap look at the rings while spinning, arming nothing (a busy peer is not asked to
    /// notify). `clock_step` is set on every 32nd look, when the spin read the clock: a time
    /// for looks that cost more.
    ///
    /// # Errors
    /// The loop's.
    fn look(&mut self, clock_step: bool) -> Result<bool, Self::Error>;

    /// About once a millisecond while spinning: looks at what needs a system call (control
    /// channels, a waker) without waiting; `true` ends the spin at once.
    ///
    /// # Errors
    /// The loop's.
    fn look_around(&mut self) -> Result<bool, Self::Error>;

    /// Arms every ring's event and re-checks (and handles whatever else is due, such as a
    /// peer that closed): `true` if there is work. Sleeping after `false` cannot miss a
    /// notification.
    ///
    /// # Errors
    /// The loop's.
    fn final_check(&mut self) -> Result<bool, Self::Error>;

    /// The loop's own next deadline (a credit refill, a retry), if any: the sleep ends then.
    fn deadline(&self) -> Option<Instant> {
        None
    }

    /// Whether some channel has no descriptor a sleep could wake on (an in-process port or
    /// control channel): the sleep is then cut to [`BLIND_SLEEP`] and looked again after.
    fn blind(&self) -> bool {
        false
    }

    /// Sleeps until an event channel or a control channel is readable, or `timeout` passes,
    /// and records what fired. `true` if the caller must see it now (a waker, a close);
    /// `false` for ring events, which may be stale and are only cleared and looked at again.
    ///
    /// # Errors
    /// The loop's.
    fn sleep(&mut self, timeout: Option<Duration>) -> Result<bool, Self::Error>;
}

/// Waits until `s` has work: clears the events of the previous sleep, spins up to `spin`
/// looking at the rings (never past `deadline`), then arms the rings and sleeps, as often as
/// it takes. Returns `true` for work (or a wakeup the caller must see, or the loop's own
/// deadline), `false` when `deadline` passed with none: a stale event never ends the wait.
///
/// # Errors
/// What `s` reports.
pub fn wait_for_work<S: Sleeper>(
    s: &mut S,
    spin: Duration,
    deadline: Option<Instant>,
) -> Result<bool, S::Error> {
    s.end_of_interrupt()?;
    if !spin.is_zero() {
        let mut budget = SpinBudget::new(spin, deadline);
        loop {
            if s.look(budget.clock_step())? {
                return Ok(true);
            }
            match budget.step() {
                SpinStep::Spin => {}
                SpinStep::LookAround => {
                    if s.look_around()? {
                        break;
                    }
                }
                SpinStep::Done => break,
            }
        }
    }
    loop {
        if s.final_check()? {
            return Ok(true);
        }
        let now = Instant::now();
        let own = s.deadline();
        let until = match (deadline, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        let left = until.map(|d| d.saturating_duration_since(now));
        if left == Some(Duration::ZERO) {
            // The loop's own deadline is work (a refill is due); the caller's is not.
            return Ok(own.is_some_and(|o| o <= now));
        }
        let left = if s.blind() {
            Some(left.map_or(BLIND_SLEEP, |l| l.min(BLIND_SLEEP)))
        } else {
            left
        };
        if s.sleep(left)? {
            return Ok(true);
        }
        s.end_of_interrupt()?;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A loop whose "rings" are counters: work appears after some sleeps.
    struct Fake {
        sleeps: u32,
        work_after: u32,
        eois: u32,
        armed: u32,
        blind: bool,
        longest: Option<Duration>,
    }

    impl Sleeper for Fake {
        type Error = EventError;
        fn end_of_interrupt(&mut self) -> Result<(), EventError> {
            self.eois += 1;
            Ok(())
        }
        fn look(&mut self, _: bool) -> Result<bool, EventError> {
            Ok(false)
        }
        fn look_around(&mut self) -> Result<bool, EventError> {
            Ok(false)
        }
        fn final_check(&mut self) -> Result<bool, EventError> {
            self.armed += 1;
            Ok(self.sleeps >= self.work_after)
        }
        fn blind(&self) -> bool {
            self.blind
        }
        fn sleep(&mut self, t: Option<Duration>) -> Result<bool, EventError> {
            self.sleeps += 1;
            // No timeout is the longest sleep of all.
            self.longest = self.longest.max(Some(t.unwrap_or(Duration::MAX)));
            Ok(false)
        }
    }

    #[test]
    fn stale_events_are_cleared_and_only_work_or_the_deadline_ends_the_wait() {
        let mut f = Fake {
            sleeps: 0,
            work_after: 3,
            eois: 0,
            armed: 0,
            blind: false,
            longest: None,
        };
        assert!(wait_for_work(&mut f, Duration::ZERO, None).unwrap());
        // Armed before every sleep and once more; an EOI at the start and after each sleep.
        assert_eq!((f.sleeps, f.armed, f.eois), (3, 4, 4));
        let mut idle = Fake {
            sleeps: 0,
            work_after: u32::MAX,
            eois: 0,
            armed: 0,
            blind: false,
            longest: None,
        };
        let past = Instant::now();
        assert!(!wait_for_work(&mut idle, Duration::from_millis(1), Some(past)).unwrap());
    }

    #[test]
    fn a_blind_loop_sleeps_no_longer_than_blind_sleep() {
        for blind in [false, true] {
            let mut f = Fake {
                sleeps: 0,
                work_after: 2,
                eois: 0,
                armed: 0,
                blind,
                longest: None,
            };
            assert!(wait_for_work(&mut f, Duration::ZERO, None).unwrap());
            let want = if blind { BLIND_SLEEP } else { Duration::MAX };
            assert_eq!(f.longest, Some(want), "blind {blind}");
        }
    }
}
