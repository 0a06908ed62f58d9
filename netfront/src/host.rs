//! The host seam, as the frontend sees it: event channels and a control channel of the
//! host's kind, and memory the host provides (a memfd between processes, guest RAM in a VMM,
//! heap memory in one process). Netfront lays out its rings and buffers in that memory and
//! grants them itself; the host hands the grants over.

use event_channel::EventChannel;
use grant_table::{FrameNumber, GrantRef};
use shared_mem::SharedRegion;
use xenbus::FrontendControl;

/// How a frontend reads a frame a page flip gave it: through a window of fixed receive
/// slots, one per receive buffer (the process host maps each frame into its slot, which
/// costs what a flip costs on real hardware: a page-table update and a TLB flush). Without
/// one, netfront reads the frame where it is in the flip pool.
pub trait FlipWindow: core::fmt::Debug + Send {
    /// Makes pool frame `frame` the page of slot `slot` and copies `buf.len()` bytes from
    /// `offset` in it. Slots number `0 .. pool frames / 2`.
    ///
    /// # Errors
    /// The slot does not exist or the frame cannot be placed there (a local failure).
    fn read(
        &self,
        slot: usize,
        frame: FrameNumber,
        offset: usize,
        buf: &mut [u8],
    ) -> std::io::Result<()>;
}

/// The types a host provides to a frontend.
pub trait FrontendHost {
    /// One end of an event channel to the backend.
    type Port: EventChannel + core::fmt::Debug;
    /// The frontend's end of the control channel.
    type Control: FrontendControl + core::fmt::Debug;
}

/// A host given by its two types (a VMM's; the in-process pair's
/// [`LocalPort`](event_channel::LocalPort) and [`xenbus::local::LocalFrontend`]).
#[derive(Debug)]
pub struct Host<P, C>(core::marker::PhantomData<Types<P, C>>);

/// The marker's payload: a function type, so `Host` is `Send`, `Sync` and `Copy` whatever the
/// types are.
type Types<P, C> = fn() -> (P, C);

impl<P, C> FrontendHost for Host<P, C>
where
    P: EventChannel + core::fmt::Debug,
    C: FrontendControl + core::fmt::Debug,
{
    type Port = P;
    type Control = C;
}

/// How much memory a frontend needs for a configuration
/// ([`PendingNetfront::layout`](crate::PendingNetfront::layout)).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct Layout {
    /// Bytes of frame memory: rings and buffers (frame n at byte n * 4096).
    pub frames_bytes: usize,
    /// Bytes of grant table (whole pages).
    pub table_bytes: usize,
    /// Bytes of flip pool (flip mode; 0 otherwise).
    pub pool_bytes: usize,
}

/// The memory a host gives a frontend, each region at least as large as the
/// [`Layout`] asks. The backend must see the same memory behind the same frame numbers: the
/// frames region as the frames its grants name, the table as the grant table, the pool as
/// the flip pool.
#[derive(Debug)]
pub struct FrontMemory {
    pub(crate) frames: SharedRegion,
    pub(crate) table: SharedRegion,
    pub(crate) pool: Option<SharedRegion>,
    pub(crate) remap: Option<Box<dyn FlipWindow>>,
    pub(crate) frame_base: FrameNumber,
}

impl FrontMemory {
    /// Frame memory, grant table, and (flip mode) the flip pool.
    pub fn new(frames: SharedRegion, table: SharedRegion, pool: Option<SharedRegion>) -> Self {
        Self {
            frames,
            table,
            pool,
            remap: None,
            frame_base: FrameNumber(0),
        }
    }

    /// Reads flipped frames through `window` (flip mode) instead of in the pool.
    #[must_use]
    pub fn with_flip_window(mut self, window: Box<dyn FlipWindow>) -> Self {
        self.remap = Some(window);
        self
    }

    /// The frame number the backend knows the first frame of `frames` by (the grants name
    /// `base + n` for frame n of it). 0 by default, as on the process host, where the
    /// backend maps the same memfd; in a VMM's guest, the guest-physical address of `frames`
    /// divided by 4096.
    #[must_use]
    pub fn with_frame_base(mut self, base: FrameNumber) -> Self {
        self.frame_base = base;
        self
    }
}

/// The grants of one queue's two ring pages, for the host to hand to the backend.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct RingRefs {
    /// The transmit ring's page.
    pub tx: GrantRef,
    /// The receive ring's page.
    pub rx: GrantRef,
}
