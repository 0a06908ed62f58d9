//! A Linux TAP device with `IFF_VNET_HDR`: one non-blocking descriptor per queue, each frame
//! read and written with its [`VnetHdr`] as its own iovec.

use std::io::{self, IoSlice, IoSliceMut};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};

use nix::errno::Errno;
use nix::fcntl::{OFlag, open};
use nix::sys::stat::Mode;
use nix::sys::uio::{readv, writev};

use crate::vnet::{VNET_HDR_LEN, VnetHdr};

/// `struct ifreq` as `TUNSETIFF` reads it: the name, then the flags (the rest unused).
#[repr(C)]
struct IfReq {
    name: [u8; libc::IFNAMSIZ],
    flags: libc::c_short,
    _pad: [u8; 22],
}

const _: () = assert!(size_of::<IfReq>() == 40);

/// Offloads the reader of a TAP (this process) takes from the kernel (`TUNSETOFFLOAD`): the
/// kernel hands it partial checksums and GSO packets of these kinds; with none, every frame
/// comes whole and checksummed.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct TapOffloads {
    /// Partial checksums (`TUN_F_CSUM`); required by the GSO kinds.
    pub csum: bool,
    /// TCP over IPv4 GSO packets (`TUN_F_TSO4`).
    pub tso4: bool,
    /// TCP over IPv6 GSO packets (`TUN_F_TSO6`).
    pub tso6: bool,
}

impl TapOffloads {
    /// The `TUNSETOFFLOAD` argument. UDP segmentation is never asked: netif has no form for it.
    fn bits(self) -> libc::c_uint {
        let mut bits = 0;
        if self.csum {
            bits |= libc::TUN_F_CSUM;
            if self.tso4 {
                bits |= libc::TUN_F_TSO4;
            }
            if self.tso6 {
                bits |= libc::TUN_F_TSO6;
            }
        }
        bits
    }
}

/// A TAP device: `IFF_TAP | IFF_NO_PI | IFF_VNET_HDR`, a 12-byte vnet header, one
/// non-blocking descriptor per queue (`IFF_MULTI_QUEUE` with more than one). The interface
/// lives while a descriptor does (it is not persistent); bring it up and address it with
/// `ip`.
#[derive(Debug)]
pub struct Tap {
    queues: Vec<OwnedFd>,
    name: String,
}

/// One `ioctl` on a TAP descriptor with an integer argument by pointer.
fn ioctl_int(fd: &OwnedFd, request: libc::Ioctl, value: libc::c_int) -> io::Result<()> {
    let v = value;
    // SAFETY: `fd` is an open /dev/net/tun descriptor; the TUN ioctls used here read one
    // `int` through the pointer, which points at `v`, alive for the call.
    let r = unsafe { libc::ioctl(fd.as_raw_fd(), request, &raw const v) };
    Errno::result(r).map(drop).map_err(io::Error::from)
}

impl Tap {
    /// Opens (creating it if needed) the TAP `name` (at most 15 bytes; a `%d` in it is
    /// filled by the kernel) with `queues` queues. Needs `CAP_NET_ADMIN` unless the device
    /// exists and belongs to this user.
    ///
    /// # Errors
    /// The device cannot be opened or set up (`/dev/net/tun` missing, no permission, a name
    /// too long, a device of that name that is not a multi-queue TAP when asked for one).
    pub fn open(name: &str, queues: usize) -> io::Result<Self> {
        let invalid = |why: &str| io::Error::new(io::ErrorKind::InvalidInput, why.to_owned());
        if name.is_empty() || name.len() >= libc::IFNAMSIZ || name.as_bytes().contains(&0) {
            return Err(invalid("a TAP name is 1 to 15 bytes, no NUL"));
        }
        if queues == 0 {
            return Err(invalid("a TAP has at least one queue"));
        }
        let mut flags = libc::IFF_TAP | libc::IFF_NO_PI | libc::IFF_VNET_HDR;
        if queues > 1 {
            flags |= libc::IFF_MULTI_QUEUE;
        }
        let mut fds = Vec::with_capacity(queues);
        let mut actual = String::new();
        for _ in 0..queues {
            let fd = open(
                "/dev/net/tun",
                OFlag::O_RDWR | OFlag::O_NONBLOCK | OFlag::O_CLOEXEC,
                Mode::empty(),
            )?;
            let mut req = IfReq {
                name: [0; libc::IFNAMSIZ],
                flags: libc::c_short::try_from(flags).map_err(|_| invalid("flags"))?,
                _pad: [0; 22],
            };
            let want = if actual.is_empty() { name } else { &actual };
            req.name[..want.len()].copy_from_slice(want.as_bytes());
            // SAFETY: TUNSETIFF reads and writes one `struct ifreq` through the pointer;
            // `req` is one (name, flags, padding to its 40 bytes), alive and exclusively
            // borrowed for the call.
            let r = unsafe { libc::ioctl(fd.as_raw_fd(), libc::TUNSETIFF, &raw mut req) };
            Errno::result(r).map_err(io::Error::from)?;
            let len = req
                .name
                .iter()
                .position(|&b| b == 0)
                .unwrap_or(req.name.len());
            actual = String::from_utf8_lossy(&req.name[..len]).into_owned();
            let size = libc::c_int::try_from(VNET_HDR_LEN).map_err(|_| invalid("header"))?;
            ioctl_int(&fd, libc::TUNSETVNETHDRSZ, size)?;
            fds.push(fd);
        }
        Ok(Self {
            queues: fds,
            name: actual,
        })
    }

    /// The interface's name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// Number of queues.
    pub fn queues(&self) -> usize {
        self.queues.len()
    }

    /// The descriptor of queue `q`: readable when a frame waits there.
    pub fn fd(&self, q: usize) -> Option<BorrowedFd<'_>> {
        self.queues.get(q).map(AsFd::as_fd)
    }

    /// Tells the kernel which offloads this reader takes (`TUNSETOFFLOAD`).
    ///
    /// # Errors
    /// The kernel refused the combination.
    pub fn set_offloads(&self, offloads: TapOffloads) -> io::Result<()> {
        let bits = libc::c_int::try_from(offloads.bits())
            .map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
        // TUNSETOFFLOAD takes its argument by value (an unsigned long), not by pointer.
        let fd = self.queues.first().ok_or(io::ErrorKind::NotFound)?;
        // SAFETY: `fd` is an open TAP descriptor; TUNSETOFFLOAD reads its integer argument by
        // value and touches no memory of ours.
        let r = unsafe {
            libc::ioctl(
                fd.as_raw_fd(),
                libc::TUNSETOFFLOAD,
                libc::c_ulong::from(bits.unsigned_abs()),
            )
        };
        Errno::result(r).map(drop).map_err(io::Error::from)
    }

    /// Reads the next frame waiting on queue `q` into `buf`: its header and length, or
    /// `None` when none waits (or the interface is down: the kernel answers `EIO` then). A
    /// frame longer than `buf` is cut (the kernel drops the rest).
    ///
    /// # Errors
    /// The read failed (the device went away).
    pub fn recv(&self, q: usize, buf: &mut [u8]) -> io::Result<Option<(VnetHdr, usize)>> {
        self.recv_with(q, |fd, hdr| {
            let mut iov = [IoSliceMut::new(hdr), IoSliceMut::new(buf)];
            readv(fd, &mut iov).map_err(io::Error::from)
        })
    }

    /// As [`recv`](Self::recv), the read done by `read`: given queue `q`'s descriptor and
    /// the header to fill first, it makes one `read`/`readv` and returns its result (bytes,
    /// header included). For frames read straight into shared memory
    /// (`netfront::TxBuffer::read_from`). Interrupted reads are made again.
    ///
    /// # Errors
    /// As [`recv`](Self::recv).
    pub fn recv_with(
        &self,
        q: usize,
        mut read: impl FnMut(BorrowedFd<'_>, &mut [u8; VNET_HDR_LEN]) -> io::Result<usize>,
    ) -> io::Result<Option<(VnetHdr, usize)>> {
        let fd = self.queues.get(q).ok_or(io::ErrorKind::NotFound)?;
        let mut hdr = [0u8; VNET_HDR_LEN];
        loop {
            match read(fd.as_fd(), &mut hdr) {
                Ok(n) if n < VNET_HDR_LEN => {
                    return Err(io::Error::new(io::ErrorKind::UnexpectedEof, "a short read"));
                }
                Ok(n) => return Ok(Some((VnetHdr::from_bytes(hdr), n - VNET_HDR_LEN))),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || e.raw_os_error() == Some(libc::EIO) =>
                {
                    return Ok(None);
                }
                Err(e) => return Err(e),
            }
        }
    }

    /// Writes one frame with its header to queue `q`. Returns `false` when the kernel cannot
    /// take it now (`EAGAIN`, `ENOBUFS`, or `EIO` while the interface is down): keep it and
    /// try again later, or drop it.
    ///
    /// # Errors
    /// The write failed otherwise (a frame the kernel refused as malformed: `EINVAL`).
    pub fn send(&self, q: usize, hdr: &VnetHdr, frame: &[&[u8]]) -> io::Result<bool> {
        self.send_with(q, hdr, |fd, hdr| {
            let mut iov = Vec::with_capacity(frame.len() + 1);
            iov.push(IoSlice::new(hdr));
            iov.extend(frame.iter().map(|p| IoSlice::new(p)));
            writev(fd, &iov).map_err(io::Error::from)
        })
    }

    /// As [`send`](Self::send), the write done by `write`: given queue `q`'s descriptor and
    /// the header's bytes, it makes one `write`/`writev` of the header and the frame and
    /// returns its result. For frames written straight from shared memory
    /// (`netback::PacketMemory::write_to`). Interrupted writes are made again.
    ///
    /// # Errors
    /// As [`send`](Self::send).
    pub fn send_with(
        &self,
        q: usize,
        hdr: &VnetHdr,
        mut write: impl FnMut(BorrowedFd<'_>, &[u8]) -> io::Result<usize>,
    ) -> io::Result<bool> {
        let fd = self.queues.get(q).ok_or(io::ErrorKind::NotFound)?;
        let hdr = hdr.to_bytes();
        loop {
            match write(fd.as_fd(), &hdr) {
                Ok(_) => return Ok(true),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e)
                    if e.kind() == io::ErrorKind::WouldBlock
                        || matches!(e.raw_os_error(), Some(libc::ENOBUFS | libc::EIO)) =>
                {
                    return Ok(false);
                }
                Err(e) => return Err(e),
            }
        }
    }
}
