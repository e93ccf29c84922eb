//! Data-plane steps in flight: at most one per `KVCluster`, each run in its own task so
//! that a reconcile pass never waits on a slow step (adding a replica waits for the
//! learner to catch up, which can take the driver's full minute).
//!
//! A pass that plans a step [`InFlight::start`]s it and waits a short grace: a leader
//! transfer or a split usually ends within it and is reported by the pass that started
//! it. A step still running after the grace stays with its task; the pass records it in
//! `status.stepInFlight` and requeues soon, and a later pass [`InFlight::poll`]s its
//! outcome, reports it, and plans the next step from a fresh observation.
//!
//! One step per cluster at a time, whatever the generation: a spec change made while a
//! step runs waits for it (the step was safe when planned and is idempotent; a second
//! membership change on top of it would not be). Entries are keyed by namespace/name and
//! checked against the object's uid, so a cluster deleted and created again under the
//! same name never inherits its predecessor's step.
//!
//! Nothing here survives an operator restart, on purpose: the new leader finds no step in
//! flight, observes the ring, and the planning library plans again (a step cut off
//! halfway is re-planned, e.g. a learner left behind by an interrupted add is promoted).

use parking_lot::Mutex;
use std::collections::HashMap;
use std::future::Future;
use std::time::Duration;

use futures::FutureExt;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
use tokio::task::JoinHandle;

use crate::execute::DataOutcome;
use crate::resources::Names;

/// Which cluster a step belongs to.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct Key {
    pub namespace: String,
    pub name: String,
}

impl Key {
    /// The key of the cluster `names` belong to.
    pub fn of(names: &Names) -> Self {
        Key { namespace: names.namespace.clone(), name: names.cluster.clone() }
    }
}

/// A step that outlived the pass that started it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Running {
    pub step: ringkv_plan::Step,
    /// When the pass that started it began the step.
    pub since: Time,
}

/// What [`InFlight::poll`] found for a cluster.
#[derive(Debug, PartialEq, Eq)]
pub enum Poll {
    /// No step in flight: the pass may plan and start one.
    Idle,
    /// A step is still running: the pass must not start another.
    Running(Running),
    /// A step ended since the last pass; this is its outcome (handed out once).
    Finished(DataOutcome),
}

struct Task {
    uid: String,
    running: Running,
    handle: JoinHandle<DataOutcome>,
}

/// The steps in flight, shared by all reconcile passes of one operator.
#[derive(Default)]
pub struct InFlight {
    tasks: Mutex<HashMap<Key, Task>>,
    /// Outcomes a failed pass could not report, by cluster (with its uid): the next
    /// pass reports them.
    handed_back: Mutex<HashMap<Key, (String, DataOutcome)>>,
}

impl InFlight {
    /// An empty tracker.
    pub fn new() -> Self {
        Self::default()
    }

    fn tasks(&self) -> parking_lot::MutexGuard<'_, HashMap<Key, Task>> {
        self.tasks.lock()
    }

    /// The step in flight for the cluster `key` whose uid is `uid`, or its outcome once
    /// it ended (then the entry is gone). A step of another object of the same name is
    /// stopped and forgotten.
    pub fn poll(&self, key: &Key, uid: &str) -> Poll {
        let back = self.handed_back.lock().remove(key);
        if let Some((owner, outcome)) = back {
            if owner == uid {
                return Poll::Finished(outcome);
            }
        }
        let mut tasks = self.tasks();
        let Some(task) = tasks.get(key) else { return Poll::Idle };
        if task.uid != uid {
            if let Some(stale) = tasks.remove(key) {
                stale.handle.abort();
            }
            return Poll::Idle;
        }
        if !task.handle.is_finished() {
            return Poll::Running(task.running.clone());
        }
        let Some(task) = tasks.remove(key) else { return Poll::Idle };
        Poll::Finished(outcome(task.running.step, task.handle.now_or_never()))
    }

    /// Whether the step in flight for `key` has ended (its outcome not yet polled).
    pub fn has_finished(&self, key: &Key) -> bool {
        self.tasks().get(key).is_some_and(|t| t.handle.is_finished())
    }

    /// Runs `step` (the future `run`) for the cluster `key`; waits up to `grace` for it.
    /// Returns its outcome if it ended by then, else leaves it in flight and says so.
    /// The caller polled [`Poll::Idle`] first: a cluster has one step in flight at most.
    pub async fn start<F>(
        &self,
        key: Key,
        uid: &str,
        running: Running,
        grace: Duration,
        run: F,
    ) -> Result<DataOutcome, Running>
    where
        F: Future<Output = DataOutcome> + Send + 'static,
    {
        let mut handle = tokio::spawn(run);
        match tokio::time::timeout(grace, &mut handle).await {
            Ok(done) => Ok(outcome(running.step, Some(done))),
            Err(_) => {
                let task = Task { uid: uid.to_string(), running: running.clone(), handle };
                if let Some(old) = self.tasks().insert(key, task) {
                    old.handle.abort();
                }
                Err(running)
            }
        }
    }

    /// Keeps a step's outcome that a pass took but could not report (its status patch
    /// failed, say), so that the next pass reports it: a step's Event is never lost.
    pub fn hand_back(&self, key: Key, uid: &str, outcome: DataOutcome) {
        self.handed_back.lock().insert(key, (uid.to_string(), outcome));
    }

    /// Stops and forgets the cluster's step (the cluster is being deleted).
    pub fn forget(&self, key: &Key) {
        self.handed_back.lock().remove(key);
        if let Some(task) = self.tasks().remove(key) {
            task.handle.abort();
        }
    }
}

fn outcome(step: ringkv_plan::Step, joined: Option<Result<DataOutcome, tokio::task::JoinError>>) -> DataOutcome {
    match joined {
        Some(Ok(outcome)) => outcome,
        Some(Err(e)) => DataOutcome::Failed(step, format!("the step's task ended abnormally: {e}")),
        None => DataOutcome::Failed(step, "the step's task ended without an outcome".to_string()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_plan::Step as P;

    fn key() -> Key {
        Key { namespace: "prod".into(), name: "demo".into() }
    }

    fn running(step: &P) -> Running {
        Running { step: step.clone(), since: crate::reconcile::now() }
    }

    #[tokio::test]
    async fn a_quick_step_is_reported_by_the_pass_that_started_it() {
        let t = InFlight::new();
        let step = P::TransferLeader { shard: 1, to: 2 };
        let done = DataOutcome::Done(step.clone());
        let got = t.start(key(), "u1", running(&step), Duration::from_secs(5), async move { done }).await;
        assert_eq!(got, Ok(DataOutcome::Done(step)));
        assert!(matches!(t.poll(&key(), "u1"), Poll::Idle));
    }

    #[tokio::test]
    async fn an_outcome_handed_back_by_a_failed_pass_is_reported_by_the_next_one_only() {
        let t = InFlight::new();
        let step = P::TransferLeader { shard: 1, to: 2 };
        t.hand_back(key(), "u1", DataOutcome::Done(step.clone()));
        assert_eq!(t.poll(&key(), "u1"), Poll::Finished(DataOutcome::Done(step.clone())));
        assert!(matches!(t.poll(&key(), "u1"), Poll::Idle), "reported once");
        t.hand_back(key(), "u1", DataOutcome::Done(step));
        assert!(matches!(t.poll(&key(), "u2"), Poll::Idle), "not by a new object of the same name");
        assert!(matches!(t.poll(&key(), "u1"), Poll::Idle), "and then gone");
    }

    #[tokio::test]
    async fn a_slow_step_stays_in_flight_and_its_outcome_is_handed_out_once() {
        let t = InFlight::new();
        let step = P::AddReplica { shard: 0, node: 4 };
        let (tx, rx) = tokio::sync::oneshot::channel::<()>();
        let out = DataOutcome::Done(step.clone());
        let run = async move {
            let _ = rx.await;
            out
        };
        let got = t.start(key(), "u1", running(&step), Duration::from_millis(20), run).await;
        assert_eq!(got.map_err(|r| r.step), Err(step.clone()));
        assert!(matches!(t.poll(&key(), "u1"), Poll::Running(r) if r.step == step));

        tx.send(()).expect("the task waits");
        while !t.has_finished(&key()) {
            tokio::task::yield_now().await;
        }
        assert!(matches!(t.poll(&key(), "u1"), Poll::Finished(DataOutcome::Done(s)) if s == step));
        assert!(matches!(t.poll(&key(), "u1"), Poll::Idle), "handed out once");
    }

    #[tokio::test]
    async fn a_new_object_with_the_same_name_does_not_inherit_the_step() {
        let t = InFlight::new();
        let step = P::Split { shard: 0, modulus: 8 };
        let never = futures::future::pending::<DataOutcome>();
        let _ = t.start(key(), "old-uid", running(&step), Duration::from_millis(1), never).await;
        assert!(matches!(t.poll(&key(), "new-uid"), Poll::Idle));
        assert!(matches!(t.poll(&key(), "old-uid"), Poll::Idle), "the old step is gone");
    }

    #[tokio::test]
    async fn a_panicking_step_is_a_failure_to_retry() {
        let t = InFlight::new();
        let step = P::Split { shard: 0, modulus: 8 };
        fn boom() -> DataOutcome {
            panic!("a driver bug")
        }
        let got = t.start(key(), "u1", running(&step), Duration::from_secs(5), async { boom() }).await;
        assert!(matches!(got, Ok(DataOutcome::Failed(s, why)) if s == step && why.contains("abnormally")));
    }
}
