//! Test helpers (feature `test-utils`): checks that a test leaves this process's descriptors
//! and shared-memory mappings as it found them.

use std::sync::{Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

/// Descriptors open in this process and memfd mappings in it. A test that made and ended
/// connections must leave both as it found them (take [`serial`] first, so that no other
/// test of the binary opens or closes any meanwhile).
///
/// # Panics
/// If `/proc/self` cannot be read (not Linux, or no procfs).
pub fn resources() -> (usize, usize) {
    let fds = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .count();
    let maps = std::fs::read_to_string("/proc/self/maps")
        .expect("/proc/self/maps")
        .lines()
        .filter(|l| l.contains("/memfd:"))
        .count();
    (fds, maps)
}

/// Runs the tests that count [`resources`] one at a time (a test that panicked while
/// holding it does not block the others).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Checks, when dropped at the end of a test that did not fail, that the process has no more
/// descriptors and memfd mappings than it had when this was made, waiting up to its timeout for
/// threads that are letting go; holds [`serial`] meanwhile. Make it first in a test, so that
/// it is dropped last. Every test of a binary that uses it should, or one running beside it
/// can open descriptors meanwhile.
#[derive(Debug)]
pub struct LeakCheck {
    before: (usize, usize),
    wait: Duration,
    _one_at_a_time: MutexGuard<'static, ()>,
}

impl LeakCheck {
    /// Counts now; checks at drop, waiting up to 10 s.
    pub fn new() -> Self {
        Self::waiting(Duration::from_secs(10))
    }

    /// Counts now; checks at drop, waiting up to `wait` for the counts to come back.
    pub fn waiting(wait: Duration) -> Self {
        let guard = serial();
        Self {
            before: resources(),
            wait,
            _one_at_a_time: guard,
        }
    }
}

impl Default for LeakCheck {
    fn default() -> Self {
        Self::new()
    }
}

impl Drop for LeakCheck {
    fn drop(&mut self) {
        if std::thread::panicking() {
            return;
        }
        // Left behind means more than at the start. Fewer is not this test's doing: a
        // descriptor counted at the start (a thread of the test before, letting go) closed
        // meanwhile.
        let left_behind = |(fds, maps): (usize, usize)| fds > self.before.0 || maps > self.before.1;
        let deadline = Instant::now() + self.wait;
        while left_behind(resources()) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(10));
        }
        let after = resources();
        if left_behind(after) {
            for e in std::fs::read_dir("/proc/self/fd")
                .into_iter()
                .flatten()
                .flatten()
            {
                eprintln!(
                    "fd {:?} -> {:?}",
                    e.file_name(),
                    std::fs::read_link(e.path())
                );
            }
        }
        assert!(
            !left_behind(after),
            "(descriptors, memfd mappings) left behind: {after:?} at the end, {:?} at the start",
            self.before
        );
    }
}

/// A directory of its own for one test's sockets (`pvnet-LABEL-PID` in the temporary
/// directory, emptied first if a killed run left it), removed with all it holds when
/// dropped: also when the test fails.
#[derive(Debug)]
pub struct TestDir(std::path::PathBuf);

impl TestDir {
    /// Makes the directory for `label` (unique among this binary's tests).
    ///
    /// # Panics
    /// If the directory cannot be made.
    pub fn new(label: &str) -> Self {
        let dir = std::env::temp_dir().join(format!("pvnet-{label}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("a test directory");
        Self(dir)
    }

    /// The directory.
    pub fn path(&self) -> &std::path::Path {
        &self.0
    }

    /// `name` in the directory (nothing is made there).
    pub fn join(&self, name: &str) -> std::path::PathBuf {
        self.0.join(name)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}
