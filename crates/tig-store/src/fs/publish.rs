//! Group publication of small content.
//!
//! A `PUT` whose body fitted in memory used to take one hop to the blocking pool
//! of its own to write, sync, mark and link its file; under load the hops
//! (a wake-up and a thread switch each, and a pool grown to one thread per
//! upload) cost as much as the file work. Here such uploads queue up and one
//! blocking task at a time publishes whatever is queued as a group: every file
//! written and marked, all made durable together (`Inner::sync_data_of`: one `syncfs`
//! for a larger group, else each `fdatasync`ed after writeback of all was
//! started; a failed sync fails the group), each linked to its name, then
//! **one** `fsync` of the directory for all new names. Every caller gets its own
//! result only after its file and its name are durable, exactly as before; each
//! still holds its name's lock until then.

use std::io::{self, Write};
use std::sync::{Mutex, MutexGuard, PoisonError};

use tig_core::ObjectId;
use tokio::sync::{OwnedMutexGuard, oneshot};

use super::{CONTENT_MODE, Inner, TempFile};
use crate::StoreError;

/// One upload waiting to be published.
struct Job {
    id: ObjectId,
    bytes: Vec<u8>,
    /// The name's lock, held until the reply is sent.
    guard: OwnedMutexGuard<()>,
    done: oneshot::Sender<Result<(), StoreError>>,
}

/// The queue of small uploads and whether a task is publishing it.
#[derive(Default)]
pub(super) struct Publisher {
    state: Mutex<State>,
}

#[derive(Default)]
struct State {
    jobs: Vec<Job>,
    running: bool,
}

impl Publisher {
    fn state(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// Publishes `bytes` (hashing to `id`) as content, the caller holding `guard`,
/// the lock of `id`; returns once the object is durable under its name.
pub(super) async fn publish_small(
    inner: &std::sync::Arc<Inner>,
    id: ObjectId,
    bytes: Vec<u8>,
    guard: OwnedMutexGuard<()>,
) -> Result<(), StoreError> {
    let (done, result) = oneshot::channel();
    let start = {
        let mut st = inner.publisher.state();
        st.jobs.push(Job {
            id,
            bytes,
            guard,
            done,
        });
        !std::mem::replace(&mut st.running, true)
    };
    if start {
        let inner = inner.clone();
        tokio::task::spawn_blocking(move || drain(&inner));
    }
    result
        .await
        .map_err(|_| StoreError::Io(io::Error::other("the publishing task stopped")))?
}

/// Publishes groups until the queue is empty.
fn drain(inner: &Inner) {
    let _reset = ResetOnPanic(&inner.publisher);
    loop {
        let jobs = {
            let mut st = inner.publisher.state();
            if st.jobs.is_empty() {
                st.running = false;
                return;
            }
            std::mem::take(&mut st.jobs)
        };
        publish_group(inner, jobs);
    }
}

/// If publishing panics, the queued callers get an error (their senders drop)
/// and the next upload starts a new task.
struct ResetOnPanic<'a>(&'a Publisher);

impl Drop for ResetOnPanic<'_> {
    fn drop(&mut self) {
        if std::thread::panicking() {
            let mut st = self.0.state();
            st.running = false;
            st.jobs.clear();
        }
    }
}

/// An `io::Error` for each of several callers (it is not `Clone`).
fn copy_of(e: &io::Error) -> StoreError {
    StoreError::Io(io::Error::new(e.kind(), e.to_string()))
}

fn publish_group(inner: &Inner, jobs: Vec<Job>) {
    // Write and mark each file; a failure is that job's alone.
    let mut staged: Vec<(Job, Result<TempFile, StoreError>)> = jobs
        .into_iter()
        .map(|job| {
            let temp = (|| {
                let mut t = inner.new_temp()?;
                t.file.write_all(&job.bytes)?;
                t.mark(CONTENT_MODE)?;
                Ok(t)
            })();
            (job, temp)
        })
        .collect();
    if inner.opts.fsync {
        let files: Vec<&std::fs::File> = staged
            .iter()
            .filter_map(|(_, t)| t.as_ref().ok().map(|t| &t.file))
            .collect();
        if let Err(e) = inner.sync_data_of(&files) {
            for (_, t) in &mut staged {
                if t.is_ok() {
                    *t = Err(copy_of(&e));
                }
            }
        }
    }
    // Link each; remember which names are new (they need the directory sync).
    let mut results: Vec<(Job, Result<bool, StoreError>, Option<TempFile>)> = staged
        .into_iter()
        .map(|(job, t)| match t {
            Ok(mut t) => {
                let linked = inner.link_content(&mut t, job.id);
                (job, linked, Some(t))
            }
            Err(e) => (job, Err(e), None),
        })
        .collect();
    if results.iter().any(|(_, r, _)| matches!(r, Ok(true)))
        && let Err(e) = inner.sync_root()
    {
        for (_, r, _) in &mut results {
            if matches!(r, Ok(true)) {
                *r = Err(copy_of(&e));
            }
        }
    }
    for (job, result, temp) in results {
        drop(temp); // the temp name goes before the caller hears back
        let Job { guard, done, .. } = job;
        let _ = done.send(result.map(|_| ()));
        drop(guard);
    }
}
