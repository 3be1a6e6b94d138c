//! Threads of calls that may block or run long: calls of plugins with
//! files (a thread each, reused), and CPU-bound calls moved off the
//! runtime's workers (a thread each, new). A thread whose call proved
//! CPU-bound runs at the lowest priority; without privileges it cannot
//! raise it again, so it ends with that call and is never reused.

use std::cell::Cell;
use std::sync::mpsc;
use std::sync::{Arc, Mutex, Weak};

thread_local! {
    /// Whether this thread lowered its priority.
    static LOWERED: Cell<bool> = const { Cell::new(false) };
}

type Work = Box<dyn FnOnce() + Send>;

/// Threads for calls of plugins with files, kept between calls (a thread
/// start per call cost a file search a fifth of its calls/s). An idle
/// thread waits for its next call; a call with none idle starts one, so a
/// call never waits behind another (one blocked on a FIFO, say). A
/// thread holds an instance slot while its call runs and gives it back
/// just before it goes idle, so there are at most twice as many threads
/// as slots; they end when the runtime is dropped.
#[derive(Default)]
pub(super) struct FileThreads {
    idle: Mutex<Vec<mpsc::Sender<Work>>>,
}

impl FileThreads {
    /// Runs `work` on an idle thread, or on a new one.
    pub(super) fn run(self: &Arc<Self>, mut work: Work) -> std::io::Result<()> {
        loop {
            let Some(thread) = self.idle.lock().expect("idle threads").pop() else {
                break;
            };
            match thread.send(work) {
                Ok(()) => return Ok(()),
                // It ended meanwhile; the work comes back.
                Err(mpsc::SendError(back)) => work = back,
            }
        }
        let pool = Arc::downgrade(self);
        std::thread::Builder::new()
            .name("moat-files".into())
            .spawn(move || serve(work, pool))
            .map(drop)
    }
}

/// A file thread's life: its first call, then one call at a time while
/// it is idle in the pool, until it lowered itself or the pool is gone.
fn serve(mut work: Work, pool: Weak<FileThreads>) {
    loop {
        work();
        if LOWERED.get() {
            return;
        }
        let Some(threads) = pool.upgrade() else {
            return;
        };
        let (sender, next) = mpsc::channel();
        threads.idle.lock().expect("idle threads").push(sender);
        drop(threads);
        match next.recv() {
            Ok(call) => work = call,
            // The pool was dropped with this thread's sender in it.
            Err(_) => return,
        }
    }
}

/// How much less CPU a CPU-bound call's thread is given than the
/// transport's workers and short calls when both want it: at nice 19 the
/// kernel weighs it 15 against their 1024, so it runs in what they leave.
/// Unused CPU is still all its own, and its deadline is wall-clock time,
/// so a starved call ends as `timed_out`. (Nice 10 left another tenant's
/// p99 at 2.1-2.2x its p99 alone, nice 19 at 2.0x: docs/BENCHMARKS.md.)
const CPU_BOUND_NICE: libc::c_int = 19;

/// Lowers the calling thread's priority to [`CPU_BOUND_NICE`], so that the
/// kernel runs short requests (another tenant's included) ahead of it.
/// Linux applies `setpriority` to one thread; elsewhere it would lower the
/// whole process, so there the thread keeps its priority.
pub(super) fn lower_current() {
    LOWERED.set(true);
    #[cfg(target_os = "linux")]
    // SAFETY: gettid and setpriority read and write no memory of ours. A
    // failure leaves the thread at its priority (said once in the log),
    // which is only slower for others.
    if unsafe {
        libc::setpriority(
            libc::PRIO_PROCESS,
            libc::gettid() as libc::id_t,
            CPU_BOUND_NICE,
        )
    } != 0
    {
        static WARNED: std::sync::Once = std::sync::Once::new();
        let error = std::io::Error::last_os_error();
        WARNED.call_once(|| {
            tracing::warn!(
                "cannot lower a CPU-bound call's priority ({error}): such calls compete \
                 with short ones for the CPU"
            )
        });
    }
}
