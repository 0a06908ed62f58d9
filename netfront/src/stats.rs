//! Device counters, as `ethtool -S` shows them for a vif.

/// Counters of a netfront device (all queues).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
#[non_exhaustive]
pub struct Stats {
    /// Frames handed to the backend.
    pub tx_packets: u64,
    /// Their bytes.
    pub tx_bytes: u64,
    /// Frames the backend dropped (`DROPPED`).
    pub tx_dropped: u64,
    /// Frames the backend failed (`ERROR`).
    pub tx_errors: u64,
    /// Frames received.
    pub rx_packets: u64,
    /// Their bytes.
    pub rx_bytes: u64,
    /// Received frames dropped here (a drop-severity problem: bad GSO, too many slots).
    pub rx_dropped: u64,
    /// Frames the backend reported failed (a negative status).
    pub rx_errors: u64,
}
