//! One watch per kind, shared: a reflector keeps the kind's in-memory
//! store (read by every reconcile, so no reconcile LISTs) and every event is
//! fanned out to the controllers that need it. kube-runtime's shared
//! streams do not carry deletions, and a deleted member must still reach the
//! servers that held it, hence this small fan-out. It also reports when the
//! first list is complete: kube-runtime's `Store::wait_until_ready` wakes only
//! its last waiter, and the controllers already wait on it.

use std::fmt::Debug;

use futures::StreamExt;
use kube::Api;
use kube::runtime::reflector::{self, Store};
use kube::runtime::{WatchStreamExt, watcher};
use serde::de::DeserializeOwned;
use tokio::sync::mpsc;
use tokio_stream::wrappers::ReceiverStream;

/// Events a subscriber receives: the object after a change (or the last
/// state of a deleted one).
pub type Events<K> = ReceiverStream<Result<K, watcher::Error>>;

/// Whether a subscriber wants deleted objects as well as changed ones.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Deletions {
    Include,
    Skip,
}

/// Room for events a slow subscriber has not taken yet; a full channel
/// slows the watch rather than dropping events.
const BUFFER: usize = 1024;

/// A watch as its consumers see it.
pub struct Watched<K: kube::Resource<DynamicType = ()> + 'static> {
    pub store: Store<K>,
    /// One stream per subscriber, in the order they were asked for.
    pub streams: Vec<Events<K>>,
    /// Turns true once the store holds the first complete list.
    pub filled: tokio::sync::watch::Receiver<bool>,
}

/// Passes one object to every subscriber that wants it.
async fn fan_out<K: Clone>(
    senders: &[(Deletions, mpsc::Sender<Result<K, watcher::Error>>)],
    object: K,
    deleted: bool,
) {
    for (deletions, tx) in senders {
        if deleted && *deletions == Deletions::Skip {
            continue;
        }
        // A closed channel means that controller has stopped; the others
        // still get their events.
        let _ = tx.send(Ok(object.clone())).await;
    }
}

/// Starts the watch (of the objects `config` selects) on the current
/// runtime.
pub fn shared<K>(api: Api<K>, config: watcher::Config, subscribers: &[Deletions]) -> Watched<K>
where
    K: kube::Resource<DynamicType = ()> + Clone + Debug + DeserializeOwned + Send + Sync + 'static,
{
    let (reader, writer) = reflector::store();
    let (senders, streams): (Vec<_>, Vec<_>) = subscribers
        .iter()
        .map(|deletions| {
            let (tx, rx) = mpsc::channel(BUFFER);
            ((*deletions, tx), ReceiverStream::new(rx))
        })
        .unzip();
    let (filled_tx, filled) = tokio::sync::watch::channel(false);
    let driver = async move {
        // managedFields are a large share of every object and no reconcile
        // reads them; the stores hold one copy of every watched object.
        let events = watcher(api, config)
            .default_backoff()
            .modify(|object| object.meta_mut().managed_fields = None)
            .reflect(writer);
        let mut events = std::pin::pin!(events);
        // During a (re)list the reflector swaps its store only at
        // InitDone: an object passed on earlier would be reconciled from
        // the old store, and a generation filter would then drop the
        // event that could fix that. So a list's objects are held back
        // until the store has them.
        let mut listed = Vec::new();
        while let Some(event) = events.next().await {
            let (object, deleted) = match event {
                Ok(watcher::Event::Apply(object)) => (object, false),
                Ok(watcher::Event::Delete(object)) => (object, true),
                Ok(watcher::Event::Init) => {
                    listed.clear();
                    continue;
                }
                Ok(watcher::Event::InitApply(object)) => {
                    listed.push(object);
                    continue;
                }
                Ok(watcher::Event::InitDone) => {
                    for object in listed.drain(..) {
                        fan_out(&senders, object, false).await;
                    }
                    filled_tx.send_replace(true);
                    continue;
                }
                Err(error) => {
                    tracing::warn!(%error, kind = %K::kind(&()), "watch failed; retrying with backoff");
                    continue;
                }
            };
            fan_out(&senders, object, deleted).await;
        }
    };
    tokio::spawn(driver);
    Watched {
        store: reader,
        streams,
        filled,
    }
}
