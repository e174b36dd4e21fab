//! The store writer: one thread owns the store, and merges ingest batches from all streams into
//! one transaction (group commit). A batch is acknowledged only after its transaction commits
//! and is on disk.
//!
//! On SQLite the writer does not wait for the disk: it commits a group without an fsync and
//! hands its replies to a flush thread ([`Syncer`]), which fsyncs the write-ahead log (once for
//! every group committed meanwhile) and only then acknowledges them, while the writer is already
//! deciding and writing the next group. Other writes commit with their own fsync; any reply
//! issued while a flush is pending waits for it, so nothing the writer answers is ahead of the
//! disk. A checkpoint thread copies the log into the database beside the writer, so the
//! writer's own checkpoints find little left to copy.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc as std_mpsc;
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::Instant;

use suanli_store::ingest_stats::Rejected;
use suanli_store::{Candidate, Decision, Store, WalSync};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;

/// Most records merged into one transaction.
pub const GROUP_RECORDS_MAX: usize = 50_000;
/// Most jobs waiting for the writer; senders wait beyond it (backpressure).
pub const QUEUE_JOBS_MAX: usize = 256;

/// Sends a reply, given whether everything committed before it is on disk (else the error).
type Deliver = Box<dyn FnOnce(Result<(), &str>) + Send>;
type Call = Box<dyn FnOnce(&mut dyn Store) -> Deliver + Send>;

enum Job {
    Ingest {
        candidates: Vec<Candidate>,
        /// Records of the same batches refused before the store, counted in its statistics.
        rejected: Vec<Rejected>,
        reply: oneshot::Sender<Result<Ingested, String>>,
    },
    Call(Call),
}

/// The decisions for a batch's candidates, in order, with the candidates handed back: the
/// caller names records in its reply from them, and frees them off the writer thread.
pub struct Ingested {
    pub decisions: Vec<Decision>,
    pub candidates: Vec<Candidate>,
}

/// A handle to the writer thread; cheap to clone. The thread ends when every handle is dropped,
/// after finishing the jobs already queued.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
    stopped: tokio::sync::watch::Receiver<bool>,
}

/// Completes when the writer thread has ended, for whatever reason (a panic, a failed flush,
/// or every handle dropped). Holds no handle, so waiting on it never keeps the writer alive.
#[derive(Clone)]
pub struct WriterStopped(tokio::sync::watch::Receiver<bool>);

impl WriterStopped {
    pub async fn wait(mut self) {
        // An error means the sender is gone, which also means the thread has ended.
        let _ = self.0.wait_for(|stopped| *stopped).await;
    }
}

/// Marks the writer stopped when the thread ends, including by unwinding from a panic.
struct StopGuard(tokio::sync::watch::Sender<bool>);

impl Drop for StopGuard {
    fn drop(&mut self) {
        self.0.send_replace(true);
    }
}

#[derive(Debug, thiserror::Error)]
pub enum WriterError {
    #[error("the store writer has stopped")]
    Gone,
    #[error("store: {0}")]
    Store(String),
}

impl Writer {
    /// Opens the store on a new thread (running migrations) and returns once it is open.
    pub fn spawn(database_url: &str) -> anyhow::Result<(Writer, JoinHandle<()>)> {
        let (jobs, mut rx) = mpsc::channel::<Job>(QUEUE_JOBS_MAX);
        let (opened_tx, opened_rx) = std_mpsc::channel();
        let (stop_tx, stopped) = tokio::sync::watch::channel(false);
        let url = database_url.to_owned();
        let thread = std::thread::Builder::new()
            .name("suanli-writer".into())
            .spawn(move || {
                let _guard = StopGuard(stop_tx);
                let mut store = match suanli_store::open(&url) {
                    Ok(store) => store,
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                // PostgreSQL: pending accrual deltas are folded beside ingest, not in it.
                if let Err(e) = store.fold_in_background() {
                    tracing::warn!(error = %e, "cannot fold accruals in the background; ingest folds them");
                }
                let syncer = match store.defer_ingest_sync().map(Syncer::spawn).transpose() {
                    Ok(syncer) => syncer,
                    Err(e) => {
                        let _ = opened_tx.send(Err(format!("cannot start the flush thread: {e}")));
                        return;
                    }
                };
                let _ = opened_tx.send(Ok(()));
                run(store.as_mut(), &mut rx, syncer.as_ref());
                if let Some(syncer) = syncer {
                    syncer.finish();
                }
            })?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok((Writer { jobs, stopped }, thread)),
            Ok(Err(e)) => {
                let _ = thread.join();
                anyhow::bail!("cannot open database {database_url}: {e}")
            }
            Err(_) => anyhow::bail!("the store writer died while opening {database_url}"),
        }
    }

    /// Decides and stores candidates, and counts them and the `rejected` records in the ingest
    /// statistics; returns after the commit.
    pub async fn ingest(
        &self,
        candidates: Vec<Candidate>,
        rejected: Vec<Rejected>,
    ) -> Result<Ingested, WriterError> {
        if candidates.is_empty() && rejected.is_empty() {
            return Ok(Ingested {
                decisions: Vec::new(),
                candidates,
            });
        }
        let (reply, rx) = oneshot::channel();
        METRICS.writer_queue_jobs.inc();
        self.jobs
            .send(Job::Ingest {
                candidates,
                rejected,
                reply,
            })
            .await
            .map_err(|_| WriterError::Gone)?;
        rx.await
            .map_err(|_| WriterError::Gone)?
            .map_err(WriterError::Store)
    }

    /// A signal that completes when the writer thread ends.
    pub fn stop_signal(&self) -> WriterStopped {
        WriterStopped(self.stopped.clone())
    }

    /// Runs `f` on the writer thread, between transactions.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> R + Send + 'static,
    ) -> Result<R, WriterError> {
        let (reply, rx) = oneshot::channel();
        METRICS.writer_queue_jobs.inc();
        let job = Job::Call(Box::new(move |store| {
            let result = f(store);
            Box::new(move |flushed: Result<(), &str>| {
                // Not flushed: the writer has failed; the caller sees it gone.
                if flushed.is_ok() {
                    let _ = reply.send(result);
                }
            })
        }));
        self.jobs.send(job).await.map_err(|_| WriterError::Gone)?;
        rx.await.map_err(|_| WriterError::Gone)
    }
}

/// The flush thread of a store with deferred ingest sync (SQLite).
struct Syncer {
    queue: std_mpsc::Sender<Deliver>,
    /// Replies queued and not yet delivered.
    pending: Arc<AtomicUsize>,
    /// The first flush failure. After it nothing is acknowledged again: a later fsync can
    /// succeed without the lost pages having reached the disk.
    failed: Arc<Mutex<Option<String>>>,
    thread: JoinHandle<()>,
    /// Checkpoints the database beside the writer; stops when `stop` is dropped.
    checkpoints: Option<(std_mpsc::Sender<()>, JoinHandle<()>)>,
}

/// How often the checkpoint thread copies the log into the database.
const CHECKPOINT_INTERVAL: std::time::Duration = std::time::Duration::from_millis(200);

impl Syncer {
    fn spawn(mut wal: WalSync) -> std::io::Result<Syncer> {
        let checkpoints = match wal.checkpointer() {
            Ok(None) => None,
            Ok(Some(mut checkpointer)) => {
                let (stop, stopped) = std_mpsc::channel::<()>();
                let thread = std::thread::Builder::new()
                    .name("suanli-checkpoint".into())
                    .spawn(move || {
                        loop {
                            let last = !matches!(
                                stopped.recv_timeout(CHECKPOINT_INTERVAL),
                                Err(std_mpsc::RecvTimeoutError::Timeout)
                            );
                            if let Err(e) = checkpointer.checkpoint() {
                                tracing::warn!(error = %e, "checkpoint failed; the writer's own checkpoints go on");
                            }
                            if last {
                                return;
                            }
                        }
                    })?;
                Some((stop, thread))
            }
            Err(e) => return Err(std::io::Error::other(e.to_string())),
        };
        let (queue, rx) = std_mpsc::channel::<Deliver>();
        let pending = Arc::new(AtomicUsize::new(0));
        let failed: Arc<Mutex<Option<String>>> = Arc::new(Mutex::new(None));
        let thread = {
            let (pending, failed) = (pending.clone(), failed.clone());
            std::thread::Builder::new()
                .name("suanli-flush".into())
                .spawn(move || {
                    while let Ok(first) = rx.recv() {
                        let mut replies = vec![first];
                        replies.extend(rx.try_iter());
                        let known = failed
                            .lock()
                            .map(|f| f.clone())
                            .unwrap_or_default()
                            .or_else(store_sync_failure);
                        let result = match known {
                            Some(e) => Err(e),
                            None => {
                                let started = Instant::now();
                                let result = wal
                                    .sync()
                                    .map_err(|e| {
                                        format!(
                                            "flushing {} to disk failed: {e}; nothing more is acknowledged until the server restarts",
                                            wal.path().display()
                                        )
                                    })
                                    // A sync that failed elsewhere meanwhile may have lost pages
                                    // this one did not write again.
                                    .and_then(|()| store_sync_failure().map_or(Ok(()), Err));
                                METRICS
                                    .flush_seconds
                                    .observe(started.elapsed().as_secs_f64());
                                if let Err(e) = &result {
                                    tracing::error!(error = %e, "write-ahead log flush failed");
                                    if let Ok(mut f) = failed.lock() {
                                        *f = Some(e.clone());
                                    }
                                }
                                result
                            }
                        };
                        let n = replies.len();
                        for deliver in replies {
                            deliver(result.as_ref().map(|_| ()).map_err(String::as_str));
                        }
                        pending.fetch_sub(n, Ordering::Release);
                    }
                })?
        };
        Ok(Syncer {
            queue,
            pending,
            failed,
            thread,
            checkpoints,
        })
    }

    /// Delivers `deliver` once everything committed so far is on disk.
    fn after_flush(&self, deliver: Deliver) {
        self.pending.fetch_add(1, Ordering::AcqRel);
        if let Err(std_mpsc::SendError(deliver)) = self.queue.send(deliver) {
            self.pending.fetch_sub(1, Ordering::AcqRel);
            deliver(Err("the flush thread has stopped"));
        }
    }

    /// Whether every reply handed over has been delivered (so everything committed is on disk).
    fn idle(&self) -> bool {
        self.pending.load(Ordering::Acquire) == 0
    }

    fn failure(&self) -> Option<String> {
        self.failed
            .lock()
            .map(|f| f.clone())
            .unwrap_or_else(|_| {
                Some("the flush thread panicked; nothing more is acknowledged".into())
            })
            .or_else(store_sync_failure)
    }

    /// Flushes and delivers what is queued, then stops.
    fn finish(self) {
        drop(self.queue);
        let _ = self.thread.join();
        if let Some((stop, thread)) = self.checkpoints {
            drop(stop);
            let _ = thread.join();
        }
    }
}

/// A failed fsync SQLite reported (a commit, a checkpoint), as the flush thread's failure: the
/// pages it lost may hold groups waiting for a flush, which a later flush would not write again.
fn store_sync_failure() -> Option<String> {
    suanli_store::sync_failure().map(|e| {
        format!("a sync of the database failed: {e}; nothing more is acknowledged until the server restarts")
    })
}

/// Delivers at once when nothing is waiting for a flush, else after the flush.
fn deliver(syncer: Option<&Syncer>, deliver: Deliver) {
    match syncer {
        Some(s) if !s.idle() => s.after_flush(deliver),
        _ => deliver(Ok(())),
    }
}

fn run(store: &mut dyn Store, rx: &mut mpsc::Receiver<Job>, syncer: Option<&Syncer>) {
    let mut next: Option<Job> = None;
    loop {
        // Before waiting too, so a job whose commit failed its sync stops the writer at once.
        if let Some(failure) = syncer.and_then(Syncer::failure) {
            // Nothing can be acknowledged again (see `Syncer::failed`): the writer stops, its
            // callers see it gone, and the server reports itself unhealthy and exits so that
            // a restart recovers from the log.
            tracing::error!(error = %failure, "the store writer stops");
            return;
        }
        let job = match next.take() {
            Some(job) => job,
            None => match rx.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        METRICS.writer_queue_jobs.dec();
        if let Some(failure) = syncer.and_then(Syncer::failure) {
            tracing::error!(error = %failure, "the store writer stops");
            return;
        }
        match job {
            Job::Call(f) => {
                let reply = f(store);
                deliver(syncer, reply);
            }
            Job::Ingest {
                candidates,
                mut rejected,
                reply,
            } => {
                let mut records = candidates.len();
                let mut group = vec![(candidates, reply)];
                // Group commit: take every ingest job already waiting, up to the limit. The
                // batches stay where they are; the store gets references to their candidates.
                while records < GROUP_RECORDS_MAX {
                    match rx.try_recv() {
                        Ok(Job::Ingest {
                            candidates,
                            rejected: mut more_rejected,
                            reply,
                        }) => {
                            METRICS.writer_queue_jobs.dec();
                            records += candidates.len();
                            group.push((candidates, reply));
                            rejected.append(&mut more_rejected);
                        }
                        Ok(other) => {
                            // Keep queue order: run it right after this group; counted above when taken.
                            next = Some(other);
                            METRICS.writer_queue_jobs.inc();
                            break;
                        }
                        Err(_) => break,
                    }
                }
                let started = Instant::now();
                let all: Vec<&Candidate> = group.iter().flat_map(|(c, _)| c).collect();
                let result = store.ingest_noting(&all, &rejected, chrono::Utc::now());
                drop(all);
                METRICS
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                METRICS.group_records.observe(records as f64);
                match result {
                    Ok(decisions) => {
                        let mut decisions = decisions.into_iter();
                        let replies: Vec<_> = group
                            .into_iter()
                            .map(|(candidates, reply)| {
                                let decisions: Vec<Decision> =
                                    decisions.by_ref().take(candidates.len()).collect();
                                (reply, decisions, candidates)
                            })
                            .collect();
                        let send: Deliver = Box::new(move |flushed| {
                            for (reply, decisions, candidates) in replies {
                                let _ = reply.send(match flushed {
                                    Ok(()) => Ok(Ingested {
                                        decisions,
                                        candidates,
                                    }),
                                    Err(e) => Err(e.to_owned()),
                                });
                            }
                        });
                        match syncer {
                            // Committed without waiting for the disk: acknowledged after the flush.
                            Some(s) => s.after_flush(send),
                            None => send(Ok(())),
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records, "group commit failed; nothing of it was stored");
                        for (_, reply) in group {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn recorder() -> (Deliver, std_mpsc::Receiver<Result<(), String>>) {
        let (tx, rx) = std_mpsc::channel();
        let deliver: Deliver = Box::new(move |flushed: Result<(), &str>| {
            let _ = tx.send(flushed.map_err(str::to_owned));
        });
        (deliver, rx)
    }

    // A reply handed to the flush thread is delivered after a successful flush, and the thread
    // is idle again afterwards.
    #[test]
    fn replies_follow_a_flush() {
        let dir = suanli_testkit::scratch_dir("flush-ok");
        let wal = dir.join("db-wal");
        std::fs::write(&wal, b"frames").expect("write");
        let syncer = Syncer::spawn(WalSync::new(wal, dir)).expect("spawn");
        let (deliver, rx) = recorder();
        syncer.after_flush(deliver);
        assert_eq!(rx.recv().expect("delivered"), Ok(()));
        let waited = Instant::now();
        while !syncer.idle() && waited.elapsed() < std::time::Duration::from_secs(5) {
            std::thread::yield_now();
        }
        assert!(syncer.idle(), "nothing pending once delivered");
        assert_eq!(syncer.failure(), None);
        syncer.finish();
    }

    // A failed flush fails the replies waiting for it, and every later one, even once the disk
    // would flush again: a later fsync can succeed without the lost pages having been written.
    #[test]
    fn a_failed_flush_acknowledges_nothing_after_it() {
        let dir = suanli_testkit::scratch_dir("flush-fail");
        let wal = dir.join("db-wal");
        let syncer = Syncer::spawn(WalSync::new(wal.clone(), dir)).expect("spawn");
        let (deliver, rx) = recorder();
        syncer.after_flush(deliver);
        let first = rx.recv().expect("delivered");
        assert!(
            first
                .as_ref()
                .is_err_and(|e| e.contains("flushing") && e.contains("db-wal")),
            "{first:?}"
        );
        while !syncer.idle() {
            std::thread::yield_now();
        }
        assert!(syncer.failure().is_some());
        std::fs::write(&wal, b"frames").expect("write");
        let (deliver, rx) = recorder();
        syncer.after_flush(deliver);
        assert!(rx.recv().expect("delivered").is_err(), "still refused");
        syncer.finish();
    }
}
