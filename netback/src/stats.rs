//! Per-vif counters, named from the guest's point of view as `ethtool -S` on a netfront shows
//! them: `tx` is what the guest sent (netback received), `rx` what the guest receives.

/// Counters of one vif.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct VifStats {
    /// Guest frames accepted and handed to the uplink.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Guest frames dropped by the protocol's rules (too many slots, bad sizes).
    pub tx_dropped: u64,
    /// Guest frames answered with an error (short header, a grant that failed).
    pub tx_errors: u64,
    /// Times transmit stopped for lack of rate-limit credit.
    pub tx_throttled: u64,
    /// Frames delivered into the guest's receive buffers.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Frames dropped for the guest: its backlog was over the byte cap (it is not posting
    /// buffers), backend memory was short, or the guest is disabled.
    pub rx_dropped: u64,
    /// Frames that failed to reach the guest (a receive buffer grant that failed).
    pub rx_errors: u64,
    /// Times the vif's events were ignored for a while because they kept bringing no work
    /// (an event storm; see `NetbackConfig` and DESIGN.md).
    pub quieted: u64,
}
