//! The events stream: every container and image action is published here and
//! `GET /events` subscribers get it as a JSON line. A bounded in-memory history answers
//! `since` for recent events, as dockerd keeps its last events in memory.

use std::collections::{BTreeMap, VecDeque};
use std::sync::Mutex;
use std::time::{SystemTime, UNIX_EPOCH};

use berth_api::stream::{EventActor, EventMessage};
use tokio::sync::broadcast;

/// dockerd keeps 256 events for `since`.
const HISTORY: usize = 256;

pub struct EventBus {
    tx: broadcast::Sender<EventMessage>,
    history: Mutex<VecDeque<EventMessage>>,
}

impl Default for EventBus {
    fn default() -> Self {
        Self::new()
    }
}

impl EventBus {
    pub fn new() -> Self {
        let (tx, _) = broadcast::channel(HISTORY);
        Self {
            tx,
            history: Mutex::new(VecDeque::with_capacity(HISTORY)),
        }
    }

    /// Publishes `kind` (`container`, `image`, ...) `action` on object `id`.
    pub fn publish(
        &self,
        kind: &str,
        action: &str,
        id: &str,
        attributes: BTreeMap<String, String>,
    ) {
        let now = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .unwrap_or_default();
        let from = attributes.get("image").cloned().unwrap_or_default();
        let msg = EventMessage {
            kind: kind.to_owned(),
            action: action.to_owned(),
            actor: EventActor {
                id: id.to_owned(),
                attributes,
            },
            scope: "local".to_owned(),
            time: now.as_secs() as i64,
            time_nano: now.as_nanos() as i64,
            status: action.to_owned(),
            id: id.to_owned(),
            from,
        };
        if let Ok(mut history) = self.history.lock() {
            if history.len() == HISTORY {
                history.pop_front();
            }
            history.push_back(msg.clone());
        }
        // No subscriber is not an error.
        let _ = self.tx.send(msg);
    }

    /// The live stream, and the kept events at or after `since_nanos` (for `since`).
    pub fn subscribe(
        &self,
        since_nanos: Option<i64>,
    ) -> (Vec<EventMessage>, broadcast::Receiver<EventMessage>) {
        // Subscribe under the history lock, so no event falls between the two.
        let history = self.history.lock();
        let rx = self.tx.subscribe();
        let past = match (since_nanos, history) {
            (Some(since), Ok(h)) => h.iter().filter(|m| m.time_nano >= since).cloned().collect(),
            _ => Vec::new(),
        };
        (past, rx)
    }
}
