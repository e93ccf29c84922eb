//! Kubernetes Events for what the operator does to a cluster: every data-plane step it
//! executes (or that fails, or that the driver refuses) and every change of the
//! StatefulSet's size, so `kubectl describe kvc` tells the story of a reshard or a scale.
//!
//! Building them is pure ([`notes`]); [`publish`] sends them with kube's `Recorder`
//! (`events.k8s.io/v1`). The recorder folds repeats of one event into a series, keyed by
//! reason and action, so the action names the step itself: two different splits are
//! two events, a step retried ten times is one with a count. Publishing never fails a
//! pass: an Event is a report, and a missing RBAC rule is only logged.

use kube::runtime::events::{Event, EventType, Recorder};
use kube::Resource;

use crate::crd::KVCluster;
use crate::execute::DataOutcome;
use crate::step::{describe, list};

/// One Event to publish.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Note {
    pub warning: bool,
    /// CamelCase, as `kubectl describe` shows it.
    pub reason: &'static str,
    /// What was done; also what tells one event series from another.
    pub action: String,
    pub note: String,
}

fn step_reason(step: &ringkv_plan::Step) -> &'static str {
    use ringkv_plan::Step as P;
    match step {
        P::Split { .. } => "SplitShard",
        P::Merge { .. } => "MergeShards",
        P::AddReplica { .. } => "AddReplica",
        P::RemoveReplica { .. } => "RemoveReplica",
        P::TransferLeader { .. } => "TransferLeader",
    }
}

/// The Event for issuing the nodes' certificate (`why`: the reason, in words).
pub fn certificate_note(name: &str, why: &str) -> Note {
    Note {
        warning: false,
        reason: "CertificateIssued",
        action: "IssueCertificate".to_string(),
        note: format!(
            "issued the nodes' certificate (Secret {name}-tls) because {why}; the nodes load it without a restart"
        ),
    }
}

/// The Events for one pass: the StatefulSet going from `pods` to `layout_nodes` pods,
/// and the data-plane step's outcome.
pub fn notes(name: &str, pods: Option<u32>, layout_nodes: Option<u32>, data: Option<&DataOutcome>) -> Vec<Note> {
    let mut out = Vec::new();
    if let (Some(from), Some(to)) = (pods, layout_nodes) {
        if from != to {
            let why = if to > from {
                format!(
                    "nodes {} join holding nothing; replicas and leaders move onto them once they are ready",
                    list(from + 1..=to)
                )
            } else {
                format!("nodes {} hold no replica any more", list(to + 1..=from))
            };
            out.push(Note {
                warning: false,
                reason: if to > from { "ScalingUp" } else { "ScalingDown" },
                action: format!("Scale {from} → {to}"),
                note: format!("StatefulSet {name}: {from} → {to} pods: {why}"),
            });
        }
    }
    match data {
        Some(DataOutcome::Done(step)) => {
            out.push(Note { warning: false, reason: step_reason(step), action: describe(step), note: step.describe() })
        }
        Some(DataOutcome::Failed(step, why)) => out.push(Note {
            warning: true,
            reason: "StepFailed",
            action: describe(step),
            note: format!("{} failed (retried on the next pass): {why}", describe(step)),
        }),
        Some(outcome @ DataOutcome::Blocked(step, _)) => out.push(Note {
            warning: true,
            reason: "StepBlocked",
            action: describe(step),
            note: outcome.blocked().map_or_else(String::new, |b| b.message),
        }),
        None => {}
    }
    out
}

/// Publishes `notes` about `kvc`; failures are logged, not returned.
pub async fn publish(recorder: &Recorder, kvc: &KVCluster, notes: Vec<Note>) {
    let reference = kvc.object_ref(&());
    for n in notes {
        let event = Event {
            type_: if n.warning { EventType::Warning } else { EventType::Normal },
            reason: n.reason.to_string(),
            // The Events API caps both (1 kB note, 128-character action).
            note: Some(truncate(&n.note, 1000)),
            action: truncate(&n.action, 128),
            secondary: None,
        };
        if let Err(e) = recorder.publish(&event, &reference).await {
            tracing::warn!(cluster = ?kvc.meta().name, reason = n.reason, error = %e, "could not publish an Event");
        }
    }
}

fn truncate(s: &str, max: usize) -> String {
    if s.len() <= max {
        return s.to_string();
    }
    let mut end = max;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    s[..end].to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_plan::Step as P;

    /// Pods before and after, the step's outcome, and the (reason, warning, note) wanted.
    type Case = (Option<u32>, Option<u32>, Option<DataOutcome>, Vec<(&'static str, bool, &'static str)>);

    #[test]
    fn each_pass_reports_its_resize_and_its_step() {
        let split = P::Split { shard: 3, modulus: 8 };
        let cases: Vec<Case> = vec![
            (Some(3), Some(3), None, vec![]),
            (Some(3), Some(5), None, vec![("ScalingUp", false, "StatefulSet demo: 3 → 5 pods: nodes 4, 5 join")]),
            (Some(5), Some(3), None, vec![("ScalingDown", false, "nodes 4, 5 hold no replica")]),
            (Some(3), Some(3), Some(DataOutcome::Done(split.clone())), vec![("SplitShard", false, "split shard 3")]),
            (
                None,
                None,
                Some(DataOutcome::Failed(P::AddReplica { shard: 1, node: 4 }, "timed out".into())),
                vec![(
                    "StepFailed",
                    true,
                    "add a replica of shard 1 on node 4 failed (retried on the next pass): timed out",
                )],
            ),
            (
                None,
                None,
                Some(DataOutcome::Blocked(P::Merge { receiver: 0, donor: 2 }, "not implemented".into())),
                vec![("StepBlocked", true, "merge shard 2 into shard 0 (4 → 2), cannot be executed: not implemented")],
            ),
        ];
        for (pods, nodes, data, want) in cases {
            let got = notes("demo", pods, nodes, data.as_ref());
            assert_eq!(got.len(), want.len(), "{got:?}");
            for (n, (reason, warning, text)) in got.iter().zip(want) {
                assert_eq!((n.reason, n.warning), (reason, warning), "{n:?}");
                assert!(n.note.contains(text), "{:?} lacks {text:?}", n.note);
            }
        }
    }

    #[test]
    fn different_steps_are_different_series_and_a_retry_is_the_same() {
        let a = notes("demo", None, None, Some(&DataOutcome::Done(P::Split { shard: 0, modulus: 8 })));
        let b = notes("demo", None, None, Some(&DataOutcome::Done(P::Split { shard: 1, modulus: 8 })));
        let a2 = notes("demo", None, None, Some(&DataOutcome::Done(P::Split { shard: 0, modulus: 8 })));
        assert_ne!(a[0].action, b[0].action);
        assert_eq!(a[0].action, a2[0].action);
        assert_eq!(a[0].action, "split shard 0 (4 → 8)");
    }

    #[test]
    fn long_texts_are_cut_on_a_character_boundary() {
        assert_eq!(truncate("ab→cd", 3), "ab");
        assert_eq!(truncate("short", 128), "short");
    }
}
