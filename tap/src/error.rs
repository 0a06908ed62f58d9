//! Errors: a frame's offload that cannot be translated (small and `Copy`: decided per
//! frame), apart from the TAP device failing.

/// Why a frame's offload could not be translated or done in software. On a frame a guest
/// sent, the guest is at fault (drop the frame); on one the kernel wrote, it asked for an
/// offload this crate never enables.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum OffloadError {
    /// The frame's headers cannot carry the offload (not TCP or UDP, a fragment, cut short,
    /// lengths that do not add up, a header that disagrees with the frame).
    #[error("frame: {0}")]
    BadFrame(&'static str),
    /// An offload netif has no form for (UDP segmentation, say).
    #[error("unsupported offload: {0}")]
    Unsupported(&'static str),
}

/// Why a TAP operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TapError {
    /// The TAP device or a system call failed (local).
    #[error("tap: {0}")]
    Io(#[from] std::io::Error),
    /// A frame's offload could not be translated.
    #[error(transparent)]
    Offload(#[from] OffloadError),
}
