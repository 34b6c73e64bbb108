//! Supervised stages: every stage thread of `run` is started through [`Supervisor::spawn`]. A
//! stage that panics is caught, named and recorded (the first failure wins), and the sources
//! are told to stop, so the rest of the pipeline drains in order — queues emptied, tracks
//! ended, events flushed, the index snapshotted — and `run` then fails naming the stage.
//!
//! Fault injection for tests of this path: `REID_PIPE_PANIC_AT=<stage>:<n>` makes
//! [`fault_point`] panic on its n-th call in that stage (the embedding stage calls it once per
//! batch). Unset, a fault point costs one relaxed load.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::thread::{Scope, ScopedJoinHandle};

/// A stage that failed, and how.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StageFailure {
    pub stage: &'static str,
    pub cause: String,
}

/// Starts stage threads and records the first that fails.
pub struct Supervisor {
    stop: Arc<AtomicBool>,
    failure: Mutex<Option<StageFailure>>,
}

impl Supervisor {
    /// A supervisor that sets `stop` (the sources' stop flag) when a stage fails.
    pub fn new(stop: Arc<AtomicBool>) -> Self {
        Self {
            stop,
            failure: Mutex::new(None),
        }
    }

    /// Runs `f` on a thread named `stage` in `scope`; its result is `None` when it panicked.
    pub fn spawn<'scope, 'env, R: Send + 'scope>(
        &'scope self,
        scope: &'scope Scope<'scope, 'env>,
        stage: &'static str,
        f: impl FnOnce() -> R + Send + 'scope,
    ) -> std::io::Result<ScopedJoinHandle<'scope, Option<R>>> {
        std::thread::Builder::new()
            .name(stage.into())
            .spawn_scoped(scope, move || self.run(stage, f))
    }

    fn run<R>(&self, stage: &'static str, f: impl FnOnce() -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(payload) => {
                let cause = crate::runtime::panic_message(payload.as_ref());
                tracing::error!("the {stage} stage failed: {cause}; stopping the sources and draining the pipeline");
                self.stop.store(true, Ordering::Relaxed);
                let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
                first.get_or_insert(StageFailure { stage, cause });
                None
            }
        }
    }

    /// The first stage that failed, if one did.
    pub fn failure(&self) -> Option<StageFailure> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// The injected fault: stage and call number, from `REID_PIPE_PANIC_AT`.
fn injected() -> Option<&'static (String, u64)> {
    static FAULT: OnceLock<Option<(String, u64)>> = OnceLock::new();
    FAULT
        .get_or_init(|| {
            let v = std::env::var("REID_PIPE_PANIC_AT").ok()?;
            let (stage, n) = v.split_once(':')?;
            Some((stage.to_owned(), n.parse().ok()?))
        })
        .as_ref()
}

/// A place where a test may inject a panic (see the module documentation).
pub fn fault_point(stage: &str) {
    static CALLS: AtomicU64 = AtomicU64::new(0);
    if let Some((at, n)) = injected()
        && at == stage
        && CALLS.fetch_add(1, Ordering::Relaxed) + 1 == *n
    {
        panic!("fault injected by REID_PIPE_PANIC_AT={at}:{n}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_panicking_stage_is_named_and_stops_the_sources() {
        let stop = Arc::new(AtomicBool::new(false));
        let sup = Supervisor::new(Arc::clone(&stop));
        let (a, b) = std::thread::scope(|s| {
            let a = sup.spawn(s, "first", || 7).expect("spawn");
            let b = sup
                .spawn(s, "second", || -> u32 { panic!("boom {}", 3) })
                .expect("spawn");
            (a.join().expect("caught"), b.join().expect("caught"))
        });
        assert_eq!((a, b), (Some(7), None));
        assert!(stop.load(Ordering::Relaxed));
        assert_eq!(
            sup.failure(),
            Some(StageFailure {
                stage: "second",
                cause: "boom 3".to_owned()
            })
        );
    }
}
