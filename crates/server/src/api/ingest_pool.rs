//! Where `IngestBatch`'s CPU work runs: a few threads of its own, at a lower scheduling priority
//! than the threads answering queries.
//!
//! On two cores, flat-out ingest on the blocking pool kept up to one runnable thread per batch in
//! flight (16 in the load benchmark) competing with every query on equal terms: a TopCustomers of a
//! millisecond waited tens of them (BENCHMARKS.md). Batches now queue for `threads` workers (as
//! many as cores by default), and those run at `nice` (Linux; 0 leaves the priority alone), so the
//! scheduler hands a core to a query the moment it is ready while ingest keeps every idle cycle.

use crate::api::error::ApiError;
use std::sync::{mpsc, Arc, Mutex};

/// One batch's work.
type Job = Box<dyn FnOnce() + Send>;

/// A fixed set of ingest threads fed in arrival order.
pub struct IngestPool {
    jobs: Mutex<mpsc::Sender<Job>>,
}

impl IngestPool {
    /// `threads` workers (0: one per core) at niceness `nice` (0 to 19; 0: unchanged).
    pub fn new(threads: usize, nice: i32) -> std::io::Result<Self> {
        let threads = match threads {
            0 => std::thread::available_parallelism().map_or(1, |cores| cores.get()),
            threads => threads,
        };
        let (sender, receiver) = mpsc::channel::<Job>();
        let receiver = Arc::new(Mutex::new(receiver));
        for index in 0..threads {
            let receiver = Arc::clone(&receiver);
            std::thread::Builder::new()
                .name(format!("rapport-ingest-{index}"))
                .spawn(move || {
                    lower_priority(nice);
                    loop {
                        let job = {
                            let receiver = receiver.lock().unwrap_or_else(|e| e.into_inner());
                            receiver.recv()
                        };
                        let Ok(job) = job else {
                            return; // the pool is gone
                        };
                        // A panicking batch answers INTERNAL (its result sender is dropped); the
                        // thread stays for the next one.
                        let _ = std::panic::catch_unwind(std::panic::AssertUnwindSafe(job));
                    }
                })?;
        }
        Ok(Self {
            jobs: Mutex::new(sender),
        })
    }

    /// Runs `work` on an ingest thread once one is free; its result.
    pub async fn run<T: Send + 'static>(
        &self,
        work: impl FnOnce() -> T + Send + 'static,
    ) -> Result<T, ApiError> {
        let (result, answer) = tokio::sync::oneshot::channel();
        let job: Job = Box::new(move || {
            let _ = result.send(work());
        });
        self.jobs
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .send(job)
            .map_err(|_| ApiError::Unavailable("the server is shutting down".into()))?;
        answer
            .await
            .map_err(|_| ApiError::Internal("an ingest batch failed".into()))
    }
}

/// Lowers the calling thread's scheduling priority to niceness `nice` (Linux only; 0 or
/// elsewhere: nothing). A failure is logged and ignored: ingest still runs, at the usual priority.
fn lower_priority(nice: i32) {
    #[cfg(target_os = "linux")]
    if nice > 0 {
        // SAFETY: gettid takes no arguments; setpriority on this thread's id changes only this
        // thread's niceness.
        let done = unsafe {
            let thread_id = libc::syscall(libc::SYS_gettid) as libc::id_t;
            libc::setpriority(libc::PRIO_PROCESS, thread_id, nice)
        };
        if done != 0 {
            tracing::warn!(
                nice,
                error = %std::io::Error::last_os_error(),
                "cannot lower the ingest threads' priority; they run at the usual one"
            );
        }
    }
    #[cfg(not(target_os = "linux"))]
    let _ = nice;
}
