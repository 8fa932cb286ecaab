//! Where a node's applied events go: a channel the caller drains ([`crate::RaftNode::start`])
//! or a handler the state machine calls itself, right after each apply
//! ([`crate::RaftNode::start_with_handler`]), which saves a task hand-off per entry.

use std::sync::Arc;

use tokio::sync::mpsc;

use crate::types::Applied;

/// Receives a node's applied events, in log order, from the state machine's task.
pub trait AppliedHandler: Send + Sync + 'static {
    /// The events of the entries just applied (and written). Called before the next apply
    /// starts, so it must be quick and must not block: hand slow work to a task.
    fn applied(&self, events: Vec<Applied>);
}

/// Where the state machine sends its events.
pub(crate) enum EventOut {
    /// A bounded channel: the apply waits for room in it.
    Channel(mpsc::Sender<Applied>),
    /// A handler called in the apply itself.
    Handler(Arc<dyn AppliedHandler>),
}

impl EventOut {
    /// Hands `events` on; `false` when the channel's receiver is gone.
    pub(crate) async fn send(&self, events: Vec<Applied>) -> bool {
        match self {
            EventOut::Channel(tx) => {
                for ev in events {
                    if tx.send(ev).await.is_err() {
                        return false;
                    }
                }
                true
            }
            EventOut::Handler(h) => {
                if !events.is_empty() {
                    h.applied(events);
                }
                true
            }
        }
    }
}
