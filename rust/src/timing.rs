//! Start-up phase marks for `RUNH_TIMING=1` / `runh --debug` (python/runh/timing.py prints
//! them).
//!
//! The parent side (clone.rs) marks its phases in a process-wide list; runh-init stamps
//! its own phases into a fixed array and sends it as one `Msg::Times` just before `Ready`,
//! which the parent folds into the same list. Every stamp is CLOCK_MONOTONIC, which the
//! parent, init (another pid namespace, same clock: runh makes no time namespace offset
//! for it) and Python's time.monotonic_ns() all share, so the phases line up on one time
//! line. Always on: a stamp is one vDSO clock_gettime (~25 ns) and the message one send
//! (~5 us) per create, too little to be worth a switch.
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Mutex;

/// runh-init's phases, in the order of `Msg::Times` (each entry is the phase's end).
pub const INIT_PHASES: [&str; 7] = [
    "init: exec'd (main)",
    "init: plan+config parsed",
    "init: namespaces joined",
    "init: mounts+pivot_root",
    "init: console/hostname/sysctl",
    "init: finalize rootfs",
    "init: process prep",
];

static MARKS: Mutex<Vec<(&'static str, u64)>> = Mutex::new(Vec::new());

/// CLOCK_MONOTONIC in ns.
pub fn now() -> u64 {
    let mut ts = libc::timespec { tv_sec: 0, tv_nsec: 0 };
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// End of phase `name` now.
pub fn mark(name: &'static str) {
    mark_at(name, now());
}

pub fn mark_at(name: &'static str, t: u64) {
    if let Ok(mut m) = MARKS.lock() {
        m.push((name, t));
    }
}

/// Fold in init's `Msg::Times` (unreached phases, stamped 0, are left out).
pub fn add_init(times: &[u64]) {
    for (name, t) in INIT_PHASES.iter().zip(times) {
        if *t != 0 {
            mark_at(name, *t);
        }
    }
}

/// Start a new record (each create/start begins one).
pub fn reset() {
    if let Ok(mut m) = MARKS.lock() {
        m.clear();
    }
}

/// The marks so far, taken out of the list.
pub fn take() -> Vec<(&'static str, u64)> {
    MARKS.lock().map(|mut m| std::mem::take(&mut *m)).unwrap_or_default()
}

/// runh-init's side: one slot per phase, no allocation per stamp.
static INIT: [AtomicU64; INIT_PHASES.len()] = [const { AtomicU64::new(0) }; INIT_PHASES.len()];

/// In runh-init: phase `i` of INIT_PHASES ends now.
pub fn init_stamp(i: usize) {
    if let Some(slot) = INIT.get(i) {
        slot.store(now(), Ordering::Relaxed);
    }
}

/// In runh-init: the stamps, as sent in `Msg::Times`.
pub fn init_times() -> Vec<u64> {
    INIT.iter().map(|a| a.load(Ordering::Relaxed)).collect()
}

#[cfg(feature = "python")]
pub mod py {
    use pyo3::prelude::*;

    /// `_core.timings()`: [(phase, CLOCK_MONOTONIC ns)] recorded by the last create/start
    /// in this process (runh-init's phases included), and cleared.
    #[pyfunction]
    fn timings() -> Vec<(&'static str, u64)> {
        super::take()
    }

    pub fn register(m: &Bound<'_, PyModule>) -> PyResult<()> {
        m.add_function(wrap_pyfunction!(timings, m)?)
    }
}
