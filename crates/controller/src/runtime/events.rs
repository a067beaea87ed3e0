//! Kubernetes Events, so that `kubectl describe` tells an object's story:
//! one for each condition whose status changes, and one for each failed
//! reconcile. kube-runtime's recorder folds repeats of the same Event into
//! one with a count, so a retrying object does not flood the apiserver.

use k8s_openapi::api::core::v1::ObjectReference;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::Condition;
use kube::runtime::events::{Event, EventType, Recorder};

use crate::error::Error;

/// Reasons of a False condition that mean "not yet" rather than "wrong":
/// every new server's routers start Unavailable, which is no news.
const IN_PROGRESS: &[&str] = &["Unavailable", "DeploymentUnavailable"];

/// The apiserver refuses an Event note longer than this.
const NOTE_LIMIT: usize = 1024;

/// Records an Event for every condition of `after` that is news against
/// `before` ([`changes`]).
pub async fn conditions_changed(
    recorder: &Recorder,
    object: &ObjectReference,
    before: &[Condition],
    after: &[Condition],
    action: &str,
) {
    for condition in changes(before, after) {
        let event = Event {
            type_: if condition.status == "True" {
                EventType::Normal
            } else {
                EventType::Warning
            },
            reason: condition.reason.clone(),
            note: Some(note(&format!("{}: {}", condition.type_, condition.message))),
            action: action.to_owned(),
            secondary: None,
        };
        publish(recorder, object, &event).await;
    }
}

/// Records a Warning for a reconcile that failed. A conflict (this
/// replica's copy was behind) and a fenced write (the shard moved) are the
/// operator's own business, not the object's, and get none.
pub async fn reconcile_failed(recorder: &Recorder, object: &ObjectReference, error: &Error) {
    if error.is_conflict() || error.is_fenced() {
        return;
    }
    let event = Event {
        type_: EventType::Warning,
        reason: "ReconcileFailed".to_owned(),
        note: Some(note(&error.to_string())),
        action: "Reconcile".to_owned(),
        secondary: None,
    };
    publish(recorder, object, &event).await;
}

async fn publish(recorder: &Recorder, object: &ObjectReference, event: &Event) {
    // An Event is a courtesy: failing to record one never fails a reconcile.
    if let Err(error) = recorder.publish(event, object).await {
        tracing::warn!(%error, reason = %event.reason, "could not record an event");
    }
}

/// The conditions of `after` worth an Event: those whose status differs
/// from the same type in `before`, and new ones that are False for a
/// reason other than waiting. A new True condition is no news (the status
/// says it), and announcing it would double a cold start's requests. Of
/// conditions that say the same (`Ready` repeats the failing check's reason
/// and message), only the first is announced.
pub fn changes<'a>(before: &[Condition], after: &'a [Condition]) -> Vec<&'a Condition> {
    let mut news: Vec<&Condition> = Vec::new();
    for condition in after {
        let changed = match before.iter().find(|b| b.type_ == condition.type_) {
            Some(previous) => previous.status != condition.status,
            None => condition.status != "True" && !IN_PROGRESS.contains(&condition.reason.as_str()),
        };
        let said = news.iter().any(|n| {
            n.status == condition.status
                && n.reason == condition.reason
                && n.message == condition.message
        });
        if changed && !said {
            news.push(condition);
        }
    }
    news
}

/// `text` cut to what an Event note may hold, on a character boundary.
fn note(text: &str) -> String {
    if text.len() <= NOTE_LIMIT {
        return text.to_owned();
    }
    let mut end = NOTE_LIMIT - '…'.len_utf8();
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &text[..end])
}

#[cfg(test)]
mod tests {
    use super::*;
    use k8s_openapi::apimachinery::pkg::apis::meta::v1::Time;
    use k8s_openapi::jiff::Timestamp;

    fn condition(type_: &str, status: &str, reason: &str) -> Condition {
        Condition {
            type_: type_.to_owned(),
            status: status.to_owned(),
            reason: reason.to_owned(),
            message: String::new(),
            last_transition_time: Time(Timestamp::UNIX_EPOCH),
            observed_generation: None,
        }
    }

    fn news(before: &[Condition], after: &[Condition]) -> Vec<String> {
        changes(before, after)
            .into_iter()
            .map(|c| format!("{}={}", c.type_, c.status))
            .collect()
    }

    #[test]
    fn which_conditions_are_news() {
        let ready = || condition("Ready", "True", "Ready");
        let broken = || condition("Ready", "False", "SchemaInvalid");
        let waiting = || condition("DeploymentAvailable", "False", "Unavailable");
        let available = || condition("DeploymentAvailable", "True", "Available");
        let cases = vec![
            ("born ready", vec![], vec![ready()], vec![]),
            ("born broken", vec![], vec![broken()], vec!["Ready=False"]),
            ("born waiting", vec![], vec![waiting()], vec![]),
            ("breaks", vec![ready()], vec![broken()], vec!["Ready=False"]),
            (
                "recovers",
                vec![broken()],
                vec![ready()],
                vec!["Ready=True"],
            ),
            (
                "routers come up",
                vec![waiting()],
                vec![available()],
                vec!["DeploymentAvailable=True"],
            ),
            (
                "routers go down",
                vec![available()],
                vec![waiting()],
                vec!["DeploymentAvailable=False"],
            ),
            (
                "same status, new reason",
                vec![broken()],
                vec![condition("Ready", "False", "Other")],
                vec![],
            ),
            (
                "Ready repeats the failing check",
                vec![],
                vec![
                    condition("BackendResolved", "False", "PortNotFound"),
                    condition("Ready", "False", "PortNotFound"),
                ],
                vec!["BackendResolved=False"],
            ),
            (
                "unchanged",
                vec![ready(), available()],
                vec![ready(), available()],
                vec![],
            ),
        ];
        for (name, before, after, expected) in cases {
            assert_eq!(news(&before, &after), expected, "{name}");
        }
    }

    #[test]
    fn long_notes_are_cut_on_a_character_boundary() {
        assert_eq!(note("short"), "short");
        let long = "é".repeat(NOTE_LIMIT);
        let cut = note(&long);
        assert!(cut.len() <= NOTE_LIMIT, "{}", cut.len());
        assert!(cut.ends_with('…'));
    }
}
