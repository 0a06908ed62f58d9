//! Credit-based rate limiting of a guest's transmit (netback's `credit_bytes` /
//! `credit_usec`): a byte budget refilled every period, with a burst allowance so one large
//! (GSO) packet can always pass.

use std::time::{Duration, Instant};

/// The smallest burst allowed, whatever the rate: a 64 KiB GSO packet and then some (as Linux
/// netback allows 128 KiB so a jumbo packet is never stuck).
pub const MIN_BURST: u64 = 128 * 1024;

/// A rate limit: `bytes` per `period`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RateLimit {
    /// Bytes allowed per period.
    pub bytes: u64,
    /// The period.
    pub period: Duration,
}

/// The credit state of one vif.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Credit {
    limit: Option<RateLimit>,
    remaining: u64,
    next_refill: Option<Instant>,
}

impl Credit {
    pub(crate) fn new(limit: Option<RateLimit>) -> Self {
        Self {
            limit,
            remaining: limit.map_or(u64::MAX, burst),
            next_refill: None,
        }
    }

    pub(crate) fn limited(&self) -> bool {
        self.limit.is_some()
    }

    /// Takes `bytes` of credit if there is enough (refilling first if a period has passed).
    /// On `false` the packet waits until [`refill_at`](Self::refill_at).
    pub(crate) fn take(&mut self, bytes: u64, now: Instant) -> bool {
        let Some(limit) = self.limit else {
            return true;
        };
        let due = *self.next_refill.get_or_insert(now + limit.period);
        if now >= due {
            let periods = 1 + (now - due).as_nanos() / limit.period.as_nanos().max(1);
            let refill = limit
                .bytes
                .saturating_mul(u64::try_from(periods).unwrap_or(u64::MAX));
            self.remaining = self.remaining.saturating_add(refill).min(burst(limit));
            self.next_refill = Some(now + limit.period);
        }
        if bytes <= self.remaining {
            self.remaining -= bytes;
            true
        } else {
            false
        }
    }

    /// When more credit comes (only meaningful after `take` said no).
    pub(crate) fn refill_at(&self) -> Option<Instant> {
        self.limit.and(self.next_refill)
    }
}

fn burst(l: RateLimit) -> u64 {
    l.bytes.max(MIN_BURST)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn burst_then_rate() {
        let limit = RateLimit {
            bytes: 10_000,
            period: Duration::from_millis(10),
        };
        let mut c = Credit::new(Some(limit));
        let t0 = Instant::now();
        // The burst: 128 KiB at once, a 64 KiB packet fits.
        assert!(c.take(65_535, t0));
        assert!(c.take(65_535, t0));
        assert!(!c.take(65_535, t0), "burst spent");
        assert!(
            !c.take(65_535, t0 + Duration::from_millis(10)),
            "one period: 10 kB"
        );
        assert!(c.take(10_000, t0 + Duration::from_millis(10)));
        // Seven idle periods refill 70 kB (capped by the burst).
        assert!(c.take(65_535, t0 + Duration::from_millis(80)));
        assert!(Credit::new(None).take(u64::MAX, t0));
    }
}
