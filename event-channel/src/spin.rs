//! The time budget of a spin before sleeping, for loops that poll several rings themselves.

use std::time::{Duration, Instant};

/// What a spinning loop does next (see [`SpinBudget::step`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum SpinStep {
    /// Look at the rings again.
    Spin,
    /// Look at what needs a system call too (control sockets, a waker): about once a
    /// millisecond, so a long spin still notices them.
    LookAround,
    /// The spin (or the caller's deadline) is over: go and sleep.
    Done,
}

/// A bounded spin: how long to keep looking at rings before arming them and sleeping. Reads
/// the clock only every 32 steps (a clock read costs as much as a look at a ring) and asks
/// for a look around once a millisecond.
#[derive(Clone, Copy, Debug)]
pub(crate) struct SpinBudget {
    end: Instant,
    look: Instant,
    steps: u32,
}

/// How often [`SpinStep::LookAround`] comes.
const LOOK_AROUND: Duration = Duration::from_millis(1);

impl SpinBudget {
    /// A spin of `spin` from now, cut short by `deadline`.
    #[inline]
    pub(crate) fn new(spin: Duration, deadline: Option<Instant>) -> Self {
        let now = Instant::now();
        let end = now + spin;
        Self {
            end: deadline.map_or(end, |d| d.min(end)),
            look: now + LOOK_AROUND,
            steps: 0,
        }
    }

    /// The next step, after a look at the rings found nothing.
    #[inline]
    pub(crate) fn step(&mut self) -> SpinStep {
        self.steps = self.steps.wrapping_add(1);
        if !self.steps.is_multiple_of(32) {
            std::hint::spin_loop();
            return SpinStep::Spin;
        }
        let now = Instant::now();
        if now >= self.end {
            return SpinStep::Done;
        }
        if now >= self.look {
            self.look = now + LOOK_AROUND;
            return SpinStep::LookAround;
        }
        std::hint::spin_loop();
        SpinStep::Spin
    }

    /// Whether this step read the clock (every 32nd): a time for looks that cost more.
    #[inline]
    pub(crate) fn clock_step(&self) -> bool {
        self.steps % 32 == 31
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ends_after_the_spin_and_looks_around_meanwhile() {
        let start = Instant::now();
        let mut b = SpinBudget::new(Duration::from_millis(5), None);
        let mut looks = Vec::new();
        loop {
            match b.step() {
                SpinStep::Spin => {}
                SpinStep::LookAround => looks.push(Instant::now()),
                SpinStep::Done => break,
            }
        }
        assert!(start.elapsed() >= Duration::from_millis(5));
        // It looks around while it spins, and never more often than once per LOOK_AROUND.
        // (How many times in 5 ms depends on the thread not being preempted meanwhile, so
        // that is not asserted: a loaded machine saw 2.)
        assert!(!looks.is_empty(), "never looked around in 5 ms");
        // (The instants are read just after each step, a few microseconds after the step's
        // own clock reading: the slack covers that, not a shorter interval.)
        for pair in looks.windows(2) {
            assert!(
                pair[1] - pair[0] + Duration::from_micros(50) >= LOOK_AROUND,
                "looked around too often"
            );
        }
        let mut cut = SpinBudget::new(Duration::from_secs(60), Some(Instant::now()));
        while cut.step() != SpinStep::Done {}
    }
}
