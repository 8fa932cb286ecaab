//! The wake-up of a connection's writer: a permit and one registered waker.
//!
//! Smaller than `tokio::sync::Notify` and pollable without holding a future, so the
//! WebSocket connection loop can be a plain `poll` function (every idle connection keeps
//! its loop's state; a `Notified` future in it costs more than this whole signal). Only
//! one task waits at a time: the pending long-poll of a polling connection, or the
//! WebSocket task once the connection is upgraded (a poll after the upgrade never waits).

use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll};

use futures_util::task::AtomicWaker;

/// A wake-up with a stored permit: a `notify` with no waiter is kept for the next wait.
#[derive(Default)]
pub(crate) struct Signal {
    permit: AtomicBool,
    waker: AtomicWaker,
}

impl Signal {
    /// Sets the permit and wakes the waiting task, if any.
    pub(crate) fn notify(&self) {
        self.permit.store(true, Ordering::Release);
        self.waker.wake();
    }

    /// Takes the permit, or registers `cx`'s waker to be woken by the next `notify`.
    /// Ready leaves no waker registered: a poll loop calls it until Pending.
    pub(crate) fn poll_notified(&self, cx: &mut Context<'_>) -> Poll<()> {
        if self.permit.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        self.waker.register(cx.waker());
        // A notify between the first check and the registration left its permit.
        if self.permit.swap(false, Ordering::AcqRel) {
            return Poll::Ready(());
        }
        Poll::Pending
    }

    /// Waits for the permit.
    pub(crate) async fn notified(&self) {
        std::future::poll_fn(|cx| self.poll_notified(cx)).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::time::Duration;

    #[tokio::test]
    async fn a_notify_before_the_wait_is_kept() {
        let s = Signal::default();
        s.notify();
        tokio::time::timeout(Duration::from_secs(1), s.notified())
            .await
            .expect("the stored permit ends the wait at once");
    }

    #[tokio::test]
    async fn a_notify_wakes_the_waiter_and_is_consumed() {
        let s = Arc::new(Signal::default());
        let waiter = tokio::spawn({
            let s = s.clone();
            async move { s.notified().await }
        });
        // Bounded: notify until the waiter ends (it may not have registered yet).
        let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
        while !waiter.is_finished() && tokio::time::Instant::now() < deadline {
            s.notify();
            tokio::task::yield_now().await;
        }
        assert!(waiter.is_finished(), "the waiter was not woken");
        // Drain any permit left by the extra notifies, then a wait blocks.
        let _ = tokio::time::timeout(Duration::from_millis(1), s.notified()).await;
        assert!(
            tokio::time::timeout(Duration::from_millis(50), s.notified())
                .await
                .is_err(),
            "a wait with no notify returned"
        );
    }
}
