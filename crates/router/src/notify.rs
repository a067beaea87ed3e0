//! Notifications to open streams: for every new catalog version,
//! `notifications/{tools,prompts,resources}/list_changed` for each list that
//! differs, and `notifications/resources/updated` for each subscribed URI
//! whose entry differs (or is gone). Session clients (2025-era) get them on
//! their standalone GET stream, 2026-07-28 clients on a
//! `subscriptions/listen` stream.

use crate::catalog::CatalogState;
use crate::metrics;

/// One notification.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Note {
    ToolsChanged,
    PromptsChanged,
    ResourcesChanged,
    ResourceUpdated(String),
}

/// Sends the notes of every new version through `send` until it reports the
/// peer gone (`false`) or `stop` completes. `subscribed` gives the resource
/// URIs the stream follows at that moment.
pub async fn follow<Deliver, Delivered>(
    state: &CatalogState,
    subscribed: impl Fn() -> Vec<String>,
    send: Deliver,
    stop: impl Future<Output = ()>,
) where
    Deliver: Fn(Note) -> Delivered,
    Delivered: Future<Output = bool>,
{
    let mut versions = state.subscribe();
    let mut last = state.current();
    metrics::streams(1.0);
    tokio::pin!(stop);
    loop {
        tokio::select! {
            () = &mut stop => break,
            changed = versions.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(now) = versions.borrow_and_update().clone() else {
                    continue;
                };
                let changes = now.changes_from(last.as_deref());
                let lists = [
                    (changes.tools, Note::ToolsChanged),
                    (changes.prompts, Note::PromptsChanged),
                    (changes.resources, Note::ResourcesChanged),
                ];
                let mut notes: Vec<Note> =
                    lists.into_iter().filter(|(changed, _)| *changed).map(|(_, note)| note).collect();
                notes.extend(
                    subscribed()
                        .into_iter()
                        .filter(|uri| last.as_ref().and_then(|l| l.resource(uri)) != now.resource(uri))
                        .map(Note::ResourceUpdated),
                );
                last = Some(now);
                let mut gone = false;
                for note in notes {
                    if !send(note).await {
                        gone = true;
                        break;
                    }
                }
                if gone {
                    break;
                }
            }
        }
    }
    metrics::streams(-1.0);
}
