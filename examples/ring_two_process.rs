//! Two processes, one shared ring: the frontend (this process) and a backend (a child process
//! running this same program) exchange requests and responses over a netif-tx-sized io-ring in
//! a memfd page, and wake each other through eventfds only when the ring's event indices ask.
//!
//! ```text
//! cargo run --release --example ring_two_process
//! cargo run --release --example ring_two_process -- --messages 100000   # a quick run
//! ```
//!
//! For each batch size the frontend pushes up to that many requests per publish and checks
//! every response; the table shows throughput, how many notifications each side sent (an
//! eventfd write each) and how many times each side found nothing to do and waited (spinning
//! for `--spin-us`, then sleeping on its eventfd), and the count of lost or corrupted messages,
//! which must be 0. Batching with event indices is what keeps the notifications
//! (system calls) far below one per message.

use std::fs::File;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::process::{Command, ExitCode, Stdio};
use std::sync::Arc;
use std::time::{Duration, Instant};

use clap::Parser;
use memmap2::MmapRaw;
use nix::fcntl::{FcntlArg, FdFlag, fcntl};
use nix::sys::memfd::{MFdFlags, memfd_create};
use pvnet::event::{Check, EventChannel, EventFdPort, SpinThenWait};
use pvnet::ring::{BackRing, FrontRing, SharedRegion};

/// A netif tx request's size: sequence number, its complement, and a flags word.
type Req = [u32; 3];
/// A netif tx response's size.
type Rsp = u32;

const PAGE: usize = 4096;
/// How long a side waits for an event before declaring the peer dead (a broken run fails
/// instead of hanging).
const WAIT: Option<Duration> = Some(Duration::from_secs(10));
/// Flags word of the last request: the backend answers it and exits.
const STOP: u32 = 0x5709_5709;
/// Indices start just below 2^32, so every run crosses the wrap.
const START: u32 = u32::MAX - 100;

#[derive(Parser, Debug)]
#[command(about = "Two processes exchanging requests and responses over a shared io-ring")]
struct Args {
    /// Messages (request + response) per batch size.
    #[arg(long, default_value_t = 2_000_000)]
    messages: u64,
    /// Batch sizes to run: requests pushed per publish.
    #[arg(long, value_delimiter = ',', default_values_t = [1u32, 8, 64, 256])]
    batches: Vec<u32>,
    /// Microseconds each side spins on the ring before sleeping on its eventfd; one run per
    /// value (0: purely event-driven).
    #[arg(long, value_delimiter = ',', default_values_t = [0u64, 50])]
    spin_us: Vec<u64>,
    /// Internal: run as the backend on inherited fds `MEMFD,EVENT_RX,EVENT_TX`.
    #[arg(long, value_delimiter = ',', num_args = 1, hide = true)]
    backend: Option<Vec<RawFd>>,
}

fn map_page(memfd: &File) -> std::io::Result<SharedRegion> {
    let map = Arc::new(MmapRaw::map_raw(memfd)?);
    let ptr = std::ptr::NonNull::new(map.as_mut_ptr()).expect("mmap never returns null");
    // SAFETY: the mapping is readable and writable and stays mapped while the region (which
    // owns the `Arc`) lives; this process touches it only through the region. The peer process
    // writing it concurrently is exactly what `SharedRegion` allows.
    unsafe { SharedRegion::from_raw_parts(ptr, PAGE.min(map.len()), Some(map)) }
        .map_err(std::io::Error::other)
}

fn expected_response(req: &Req) -> Rsp {
    req[0].rotate_left(5) ^ req[1]
}

#[allow(clippy::cast_possible_truncation)]
fn request(seq: u64) -> Req {
    [seq as u32, !(seq as u32), 0]
}

/// Takes ownership of the three fds the parent passed by number.
fn inherited(fds: &[RawFd]) -> Result<[OwnedFd; 3], String> {
    let &[memfd, to_back, to_front] = fds else {
        return Err(format!("--backend needs 3 fds, got {}", fds.len()));
    };
    for fd in [memfd, to_back, to_front] {
        std::fs::read_link(format!("/proc/self/fd/{fd}")).map_err(|e| format!("fd {fd}: {e}"))?;
    }
    // SAFETY: the parent created these fds without CLOEXEC for this process and passed their
    // numbers (checked open above); nothing else in this process owns them.
    Ok([memfd, to_back, to_front].map(|fd| unsafe { OwnedFd::from_raw_fd(fd) }))
}

/// The backend: answers every request until the STOP request, then reports its counters.
/// Waits until the ring has work: spinning on a cheap look at it for up to `spin` (which does
/// not ask the peer to notify), then the final check (which does, and re-checks) and a sleep on
/// the event channel. Errors (a broken ring, a dead peer) end the wait.
fn idle(
    events: &mut EventFdPort,
    spin: Duration,
    mut check: impl FnMut(Check) -> Result<bool, pvnet::ring::RingError>,
) -> Result<(), Box<dyn std::error::Error>> {
    let mut fault = None;
    let ready = SpinThenWait::new(spin).wait(
        events,
        |phase| match check(phase) {
            Ok(work) => work,
            // Stop waiting; the error is returned below.
            Err(e) => {
                fault = Some(e);
                true
            }
        },
        WAIT,
    )?;
    if let Some(e) = fault {
        return Err(e.into());
    }
    if !ready {
        return Err("no event from the peer for 10 s".into());
    }
    Ok(())
}

fn backend(fds: &[RawFd], spin: Duration) -> Result<(), Box<dyn std::error::Error>> {
    let [memfd, rx, tx] = inherited(fds)?;
    let mut back = BackRing::<Req, Rsp>::attach(map_page(&File::from(memfd))?)?;
    let mut events = EventFdPort::from_fds(rx, tx)?;
    let (mut served, mut notifies, mut waits) = (0u64, 0u64, 0u64);
    let mut answers = Vec::with_capacity(back.size() as usize);
    loop {
        answers.clear();
        let mut stop = false;
        for req in back.requests()? {
            stop |= req[2] == STOP;
            answers.push(expected_response(&req));
        }
        for a in &answers {
            back.push_response(a)?;
        }
        served += answers.len() as u64;
        if back.publish_responses() {
            events.notify()?;
            notifies += 1;
        }
        if stop {
            break;
        }
        // A cheap look; `idle` spins, then makes the final check (arming the event index).
        if back.unconsumed_requests()? == 0 {
            waits += 1;
            idle(&mut events, spin, |phase| match phase {
                Check::Spin => back.unconsumed_requests().map(|n| n > 0),
                Check::Final => back.final_check_requests(),
            })?;
        }
    }
    println!("served={served} notifies={notifies} waits={waits}");
    Ok(())
}

struct Run {
    messages: u64,
    seconds: f64,
    front_notifies: u64,
    front_waits: u64,
    backend: String,
    lost: u64,
}

/// The frontend: spawns the backend, streams `messages` requests, checks every response.
fn frontend(messages: u64, batch: u32, spin: Duration) -> Result<Run, Box<dyn std::error::Error>> {
    let memfd = File::from(memfd_create(c"pvnet-ring", MFdFlags::empty())?);
    memfd.set_len(PAGE as u64)?;
    let (mut events, theirs) = EventFdPort::pair()?;
    let (rx, tx) = theirs.clone_fds()?;
    drop(theirs);
    for fd in [&rx, &tx] {
        // The backend inherits these across exec.
        fcntl(fd, FcntlArg::F_SETFD(FdFlag::empty()))?;
    }
    let mut front = FrontRing::<Req, Rsp>::init_at(map_page(&memfd)?, START)?;

    let fds = format!(
        "{},{},{}",
        memfd.as_raw_fd(),
        rx.as_raw_fd(),
        tx.as_raw_fd()
    );
    let child = Command::new(std::env::current_exe()?)
        .args([
            "--backend",
            &fds,
            "--spin-us",
            &spin.as_micros().to_string(),
        ])
        .stdout(Stdio::piped())
        .spawn()?;
    drop((rx, tx));

    let started = Instant::now();
    let total = messages + 1; // and the STOP request
    let (mut sent, mut received, mut verified) = (0u64, 0u64, 0u64);
    let (mut notifies, mut waits) = (0u64, 0u64);
    while received < total {
        let mut pushed = 0;
        while sent < total && pushed < batch && front.free_requests() > 0 {
            let mut req = request(sent);
            if sent == messages {
                req[2] = STOP;
            }
            front.push_request(&req)?;
            sent += 1;
            pushed += 1;
        }
        if front.publish_requests() {
            events.notify()?;
            notifies += 1;
        }
        for rsp in front.responses()? {
            let mut req = request(received);
            if received == messages {
                req[2] = STOP;
            }
            if rsp == expected_response(&req) {
                verified += 1;
            }
            received += 1;
        }
        if received == total || (sent < total && front.free_requests() > 0) {
            continue;
        }
        // Nothing to send and nothing received: sleep until the backend says otherwise,
        // asking to be woken only after half of what is outstanding (as Linux netfront does).
        let ahead = front.outstanding() / 2;
        if front.unconsumed_responses()? == 0 {
            waits += 1;
            idle(&mut events, spin, |phase| match phase {
                Check::Spin => front.unconsumed_responses().map(|n| n > 0),
                Check::Final => front.final_check_responses_ahead(ahead),
            })?;
        }
    }
    let seconds = started.elapsed().as_secs_f64();
    let out = child.wait_with_output()?;
    if !out.status.success() {
        return Err(format!("backend exited with {}", out.status).into());
    }
    Ok(Run {
        messages,
        seconds,
        front_notifies: notifies,
        front_waits: waits,
        backend: String::from_utf8_lossy(&out.stdout).trim().to_owned(),
        lost: total - verified,
    })
}

fn main() -> ExitCode {
    let args = Args::parse();
    if let Some(fds) = args.backend {
        let spin = Duration::from_micros(args.spin_us.first().copied().unwrap_or(0));
        return match backend(&fds, spin) {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("backend: {e}");
                ExitCode::FAILURE
            }
        };
    }
    println!(
        "two processes, one netif-tx-sized io-ring (256 entries) in a memfd page, eventfd wakeups"
    );
    println!(
        "{:>7} {:>6} {:>10} {:>8} {:>15} {:>12}  {:<42} {:>4}",
        "spin us",
        "batch",
        "messages",
        "Mmsg/s",
        "front notifies",
        "front waits",
        "backend",
        "lost"
    );
    let mut lost = 0;
    for &spin_us in &args.spin_us {
        for &batch in &args.batches {
            let batch = batch.max(1);
            match frontend(args.messages, batch, Duration::from_micros(spin_us)) {
                Ok(r) => {
                    #[allow(clippy::cast_precision_loss)]
                    let rate = r.messages as f64 / r.seconds / 1e6;
                    println!(
                        "{:>7} {:>6} {:>10} {:>8.2} {:>15} {:>12}  {:<42} {:>4}",
                        spin_us,
                        batch,
                        r.messages,
                        rate,
                        r.front_notifies,
                        r.front_waits,
                        r.backend,
                        r.lost
                    );
                    lost += r.lost;
                }
                Err(e) => {
                    eprintln!("spin {spin_us} us, batch {batch}: {e}");
                    return ExitCode::FAILURE;
                }
            }
        }
    }
    if lost == 0 {
        ExitCode::SUCCESS
    } else {
        eprintln!("{lost} messages lost or corrupted");
        ExitCode::FAILURE
    }
}
