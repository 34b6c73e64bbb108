//! Supervised stages: every stage thread of `run` is started through [`Supervisor::spawn`]. A
//! stage that panics is caught, named and recorded (the first failure wins), and the sources
//! are told to stop, so the rest of the pipeline drains in order — queues emptied, tracks
//! ended, events flushed, the index snapshotted — and `run` then fails naming the stage.
//!
//! A stage may also end with an error ([`Supervisor::spawn_fallible`]), recorded the same way.
//!
//! Fault injection for tests of this path: `REID_PIPE_PANIC_AT=<stage>:<n>` makes
//! [`fault_point`] panic on its n-th call in that stage, and `REID_PIPE_FAIL_FROM=<stage>:<n>`
//! makes it return an error from its n-th call on (the embedding stage calls it once per batch).
//! Unset, a fault point costs one relaxed load.

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

    /// Like [`Supervisor::spawn`] for a stage that can fail: an `Err` is recorded as the stage's
    /// failure (with its causes) and stops the sources, as a panic does.
    pub fn spawn_fallible<'scope, 'env, R: Send + 'scope, E: std::error::Error>(
        &'scope self,
        scope: &'scope Scope<'scope, 'env>,
        stage: &'static str,
        f: impl FnOnce() -> Result<R, E> + Send + 'scope,
    ) -> std::io::Result<ScopedJoinHandle<'scope, Option<R>>> {
        std::thread::Builder::new()
            .name(stage.into())
            .spawn_scoped(scope, move || match self.run(stage, f)? {
                Ok(r) => Some(r),
                Err(e) => {
                    self.fail(stage, crate::base::Chain(&e).to_string());
                    None
                }
            })
    }

    fn fail(&self, stage: &'static str, cause: String) {
        tracing::error!("the {stage} stage failed: {cause}; stopping the sources and draining the pipeline");
        self.stop.store(true, Ordering::Relaxed);
        let mut first = self.failure.lock().unwrap_or_else(|e| e.into_inner());
        first.get_or_insert(StageFailure { stage, cause });
    }

    fn run<R>(&self, stage: &'static str, f: impl FnOnce() -> R) -> Option<R> {
        match std::panic::catch_unwind(std::panic::AssertUnwindSafe(f)) {
            Ok(r) => Some(r),
            Err(payload) => {
                self.fail(stage, crate::runtime::panic_message(payload.as_ref()));
                None
            }
        }
    }

    /// The first stage that failed, if one did.
    pub fn failure(&self) -> Option<StageFailure> {
        self.failure.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }
}

/// An injected fault: stage and call number, from an environment variable.
fn injected(var: &'static str, cell: &'static OnceLock<Option<(String, u64)>>) -> Option<&'static (String, u64)> {
    cell.get_or_init(|| {
        let v = std::env::var(var).ok()?;
        let (stage, n) = v.split_once(':')?;
        Some((stage.to_owned(), n.parse().ok()?))
    })
    .as_ref()
}

/// An error injected by `REID_PIPE_FAIL_FROM`.
#[derive(Debug, thiserror::Error)]
#[error("fault injected by REID_PIPE_FAIL_FROM={stage}:{from}")]
pub struct InjectedFault {
    stage: String,
    from: u64,
}

/// A place where a test may inject a panic or an error (see the module documentation).
pub fn fault_point(stage: &str) -> Result<(), InjectedFault> {
    static PANIC: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static FAIL: OnceLock<Option<(String, u64)>> = OnceLock::new();
    static CALLS: AtomicU64 = AtomicU64::new(0);
    let (panic_at, fail_from) = (
        injected("REID_PIPE_PANIC_AT", &PANIC),
        injected("REID_PIPE_FAIL_FROM", &FAIL),
    );
    if panic_at.is_none() && fail_from.is_none() {
        return Ok(());
    }
    let call = CALLS.fetch_add(1, Ordering::Relaxed) + 1;
    if let Some((at, n)) = panic_at
        && at == stage
        && call == *n
    {
        panic!("fault injected by REID_PIPE_PANIC_AT={at}:{n}");
    }
    match fail_from {
        Some((at, from)) if at == stage && call >= *from => Err(InjectedFault {
            stage: at.clone(),
            from: *from,
        }),
        _ => Ok(()),
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
