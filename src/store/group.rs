//! Group commit: many writers, one flush. A writer applies its batch, then
//! waits until a flush that began after its apply has finished. Whoever
//! finds no flush running starts one for everyone who applied before it;
//! the others wait for it (or for the next one, if theirs came too late).
//! So a burst of N concurrent durable commits costs about one fsync per
//! round instead of N, and no commit is answered before it is on disk.

use super::{Engine, StoreError};
use std::sync::{Condvar, Mutex, PoisonError};

#[derive(Default)]
struct State {
    /// Applies announced so far.
    applied: u64,
    /// Every apply up to this number is durable.
    durable: u64,
    flushing: bool,
}

#[derive(Default)]
pub(crate) struct GroupCommit {
    state: Mutex<State>,
    done: Condvar,
}

impl std::fmt::Debug for GroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("GroupCommit").finish_non_exhaustive()
    }
}

impl GroupCommit {
    /// Returns once everything `engine` applied before this call is
    /// durable. Call it after the batch's `apply` returned.
    pub(crate) fn durable(&self, engine: &dyn Engine) -> Result<(), StoreError> {
        let lock = || self.state.lock().unwrap_or_else(PoisonError::into_inner);
        let mut st = lock();
        st.applied += 1;
        let mine = st.applied;
        loop {
            if st.durable >= mine {
                return Ok(());
            }
            if st.flushing {
                st = self.done.wait(st).unwrap_or_else(PoisonError::into_inner);
                continue;
            }
            // Lead a flush covering every apply announced until now.
            st.flushing = true;
            let covers = st.applied;
            drop(st);
            let flushed = engine.flush();
            st = lock();
            st.flushing = false;
            if flushed.is_ok() {
                st.durable = st.durable.max(covers);
            }
            self.done.notify_all();
            // A failed flush fails its leader; the others try again.
            flushed?;
        }
    }
}

/// The asynchronous form: the waiters hold no thread, only the leader's
/// flush runs on the blocking pool.
#[derive(Default)]
pub(crate) struct AsyncGroupCommit {
    state: Mutex<State>,
    /// The number up to which every apply is durable.
    durable: tokio::sync::Notify,
}

impl std::fmt::Debug for AsyncGroupCommit {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("AsyncGroupCommit").finish_non_exhaustive()
    }
}

impl AsyncGroupCommit {
    /// Returns once everything `engine` applied before this call is
    /// durable.
    pub(crate) async fn durable(
        &self,
        engine: std::sync::Arc<dyn Engine>,
    ) -> Result<(), StoreError> {
        let mine = {
            let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
            st.applied += 1;
            st.applied
        };
        loop {
            // Register for the wake-up before looking, so none is missed.
            let woken = self.durable.notified();
            let lead = {
                let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if st.durable >= mine {
                    return Ok(());
                }
                if st.flushing {
                    None
                } else {
                    st.flushing = true;
                    Some(st.applied)
                }
            };
            let Some(covers) = lead else {
                woken.await;
                continue;
            };
            let e = engine.clone();
            let flushed = tokio::task::spawn_blocking(move || e.flush())
                .await
                .map_err(|e| StoreError::Task(e.to_string()))
                .and_then(|r| r);
            {
                let mut st = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                st.flushing = false;
                if flushed.is_ok() {
                    st.durable = st.durable.max(covers);
                }
            }
            self.durable.notify_waiters();
            flushed?;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{MemoryEngine, Write};
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// An engine that counts flushes and takes a while for each.
    #[derive(Default)]
    struct Slow {
        inner: MemoryEngine,
        flushes: AtomicUsize,
    }

    impl Engine for Slow {
        fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
            self.inner.get(key)
        }
        fn scan(
            &self,
            prefix: &[u8],
            after: Option<&[u8]>,
            limit: usize,
        ) -> Result<Vec<crate::store::Entry>, StoreError> {
            self.inner.scan(prefix, after, limit)
        }
        fn apply(&self, writes: Vec<Write>) -> Result<(), StoreError> {
            self.inner.apply(writes)
        }
        fn flush(&self) -> Result<(), StoreError> {
            self.flushes.fetch_add(1, Ordering::SeqCst);
            std::thread::sleep(std::time::Duration::from_millis(20));
            Ok(())
        }
    }

    #[test]
    fn concurrent_commits_share_flushes_and_all_return_durable() {
        let engine = Arc::new(Slow::default());
        let group = Arc::new(GroupCommit::default());
        let threads: Vec<_> = (0..32)
            .map(|i| {
                let (engine, group) = (engine.clone(), group.clone());
                std::thread::spawn(move || {
                    engine
                        .apply(vec![Write::Put(vec![i], vec![i])])
                        .expect("apply");
                    group.durable(engine.as_ref()).expect("durable");
                })
            })
            .collect();
        for t in threads {
            t.join().expect("thread");
        }
        let flushes = engine.flushes.load(Ordering::SeqCst);
        assert!(
            (1..32).contains(&flushes),
            "{flushes} flushes for 32 commits"
        );
        // One more commit after all that still gets its own flush.
        engine
            .apply(vec![Write::Put(vec![99], vec![1])])
            .expect("apply");
        group.durable(engine.as_ref()).expect("durable");
        assert_eq!(engine.flushes.load(Ordering::SeqCst), flushes + 1);
    }
}
