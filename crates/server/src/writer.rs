//! The store writer: one thread owns the store, and merges ingest batches from all streams into
//! one transaction (group commit). A batch is acknowledged only after its transaction commits.

use std::sync::mpsc as std_mpsc;
use std::thread::JoinHandle;
use std::time::Instant;

use suanli_store::ingest_stats::Rejected;
use suanli_store::{Candidate, Decision, Store};
use tokio::sync::{mpsc, oneshot};

use crate::metrics::METRICS;

/// Most records merged into one transaction.
pub const GROUP_RECORDS_MAX: usize = 50_000;
/// Most jobs waiting for the writer; senders wait beyond it (backpressure).
pub const QUEUE_JOBS_MAX: usize = 256;

type Call = Box<dyn FnOnce(&mut dyn Store) + Send>;

enum Job {
    Ingest {
        candidates: Vec<Candidate>,
        /// Records of the same batches refused before the store, counted in its statistics.
        rejected: Vec<Rejected>,
        reply: oneshot::Sender<Result<Vec<Decision>, String>>,
    },
    Call(Call),
}

/// A handle to the writer thread; cheap to clone. The thread ends when every handle is dropped,
/// after finishing the jobs already queued.
#[derive(Clone)]
pub struct Writer {
    jobs: mpsc::Sender<Job>,
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
        let url = database_url.to_owned();
        let thread = std::thread::Builder::new()
            .name("suanli-writer".into())
            .spawn(move || {
                let mut store = match suanli_store::open(&url) {
                    Ok(store) => {
                        let _ = opened_tx.send(Ok(()));
                        store
                    }
                    Err(e) => {
                        let _ = opened_tx.send(Err(e.to_string()));
                        return;
                    }
                };
                run(store.as_mut(), &mut rx);
            })?;
        match opened_rx.recv() {
            Ok(Ok(())) => Ok((Writer { jobs }, thread)),
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
    ) -> Result<Vec<Decision>, WriterError> {
        if candidates.is_empty() && rejected.is_empty() {
            return Ok(Vec::new());
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

    /// Runs `f` on the writer thread, between transactions.
    pub async fn call<R: Send + 'static>(
        &self,
        f: impl FnOnce(&mut dyn Store) -> R + Send + 'static,
    ) -> Result<R, WriterError> {
        let (reply, rx) = oneshot::channel();
        METRICS.writer_queue_jobs.inc();
        let job = Job::Call(Box::new(move |store| {
            let _ = reply.send(f(store));
        }));
        self.jobs.send(job).await.map_err(|_| WriterError::Gone)?;
        rx.await.map_err(|_| WriterError::Gone)
    }
}

fn run(store: &mut dyn Store, rx: &mut mpsc::Receiver<Job>) {
    let mut next: Option<Job> = None;
    loop {
        let job = match next.take() {
            Some(job) => job,
            None => match rx.blocking_recv() {
                Some(job) => job,
                None => return,
            },
        };
        METRICS.writer_queue_jobs.dec();
        match job {
            Job::Call(f) => f(store),
            Job::Ingest {
                candidates,
                mut rejected,
                reply,
            } => {
                let mut group = vec![(candidates.len(), reply)];
                let mut all = candidates;
                // Group commit: take every ingest job already waiting, up to the limit.
                while all.len() < GROUP_RECORDS_MAX {
                    match rx.try_recv() {
                        Ok(Job::Ingest {
                            mut candidates,
                            rejected: mut more_rejected,
                            reply,
                        }) => {
                            METRICS.writer_queue_jobs.dec();
                            group.push((candidates.len(), reply));
                            all.append(&mut candidates);
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
                let result = store.ingest_noting(&all, &rejected, chrono::Utc::now());
                METRICS
                    .commit_seconds
                    .observe(started.elapsed().as_secs_f64());
                METRICS.group_records.observe(all.len() as f64);
                match result {
                    Ok(decisions) => {
                        let mut decisions = decisions.into_iter();
                        for (n, reply) in group {
                            let _ = reply.send(Ok(decisions.by_ref().take(n).collect()));
                        }
                    }
                    Err(e) => {
                        tracing::error!(error = %e, records = all.len(), "group commit failed; nothing of it was stored");
                        for (_, reply) in group {
                            let _ = reply.send(Err(e.to_string()));
                        }
                    }
                }
            }
        }
    }
}
