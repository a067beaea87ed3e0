//! Coalescing the member events that trigger server reconciles. A burst of
//! member changes (a deploy of many tools, a cold start) should become one
//! reconcile per server, so a server waits until its members have been
//! quiet for a while; but a server whose members never stop changing must
//! still publish, so none waits longer than a bound after its first pending
//! trigger. kube-runtime's debounce has only the first half: it restarts
//! its timer at every event, and such a server would never be reconciled.

use std::collections::HashMap;
use std::hash::Hash;
use std::time::Duration;

use futures::{Stream, StreamExt};
use tokio::time::Instant;
use tokio_stream::wrappers::UnboundedReceiverStream;

/// When to let a trigger through.
#[derive(Clone, Copy, Debug)]
pub struct Window {
    /// Quiet time after an object's last trigger.
    pub quiet: Duration,
    /// Longest an object waits after its first pending trigger.
    pub max: Duration,
}

/// Triggers waiting for their window, by object.
struct Pending<T> {
    window: Window,
    /// First and last trigger of each waiting object.
    waiting: HashMap<T, (Instant, Instant)>,
}

impl<T: Clone + Eq + Hash> Pending<T> {
    fn new(window: Window) -> Self {
        Self {
            window,
            waiting: HashMap::new(),
        }
    }

    fn add(&mut self, object: T, now: Instant) {
        self.waiting
            .entry(object)
            .and_modify(|(_, last)| *last = now)
            .or_insert((now, now));
    }

    /// The objects whose window closed by `now`, removed from waiting.
    fn due(&mut self, now: Instant) -> Vec<T> {
        let Window { quiet, max } = self.window;
        let mut due = Vec::new();
        self.waiting.retain(|object, (first, last)| {
            let ready = now >= *last + quiet || now >= *first + max;
            if ready {
                due.push(object.clone());
            }
            !ready
        });
        due
    }
}

/// Passes each object of `triggers` on once its window closes; many
/// triggers of one object within a window become one. Checks every quarter
/// of the quiet time, so an object goes at most that much late.
pub fn coalesce<T, S>(triggers: S, window: Window) -> UnboundedReceiverStream<T>
where
    T: Clone + Eq + Hash + Send + 'static,
    S: Stream<Item = T> + Send + 'static,
{
    let (tx, rx) = tokio::sync::mpsc::unbounded_channel();
    tokio::spawn(async move {
        let mut pending = Pending::new(window);
        let mut triggers = std::pin::pin!(triggers);
        let mut ticks = tokio::time::interval((window.quiet / 4).max(Duration::from_millis(10)));
        ticks.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                trigger = triggers.next() => match trigger {
                    Some(object) => pending.add(object, Instant::now()),
                    None => break,
                },
                _ = ticks.tick() => {
                    for object in pending.due(Instant::now()) {
                        if tx.send(object).is_err() {
                            return;
                        }
                    }
                }
            }
        }
    });
    UnboundedReceiverStream::new(rx)
}

#[cfg(test)]
mod tests {
    use super::*;

    const WINDOW: Window = Window {
        quiet: Duration::from_millis(200),
        max: Duration::from_secs(1),
    };

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn a_burst_goes_once_after_it_quiets_down() {
        let start = Instant::now();
        let mut pending = Pending::new(WINDOW);
        for t in [0, 50, 100, 150] {
            pending.add("s", start + ms(t));
        }
        assert!(pending.due(start + ms(300)).is_empty(), "150 + 200 not yet");
        assert_eq!(pending.due(start + ms(350)), vec!["s"]);
        assert!(
            pending.due(start + ms(2000)).is_empty(),
            "gone once passed on"
        );
    }

    #[test]
    fn endless_triggers_still_go_after_the_bound() {
        let start = Instant::now();
        let mut pending = Pending::new(WINDOW);
        let mut passed = Vec::new();
        // A trigger every 100 ms for 3 s: never quiet for 200 ms.
        for t in (0..3000).step_by(100) {
            pending.add("busy", start + ms(t));
            passed.extend(pending.due(start + ms(t + 50)).into_iter().map(|_| t));
        }
        // First pending at 0, then at 1100 (the first trigger after 1000).
        assert_eq!(passed, vec![1000, 2100], "once per bound");
    }

    #[test]
    fn objects_have_their_own_windows() {
        let start = Instant::now();
        let mut pending = Pending::new(WINDOW);
        pending.add("a", start);
        pending.add("b", start + ms(150));
        assert_eq!(pending.due(start + ms(200)), vec!["a"]);
        assert_eq!(pending.due(start + ms(350)), vec!["b"]);
    }
}
