//! How a session tells its connection that deliveries were queued: a flag and the
//! waker of the connection that owns the session, polled by its serve loop.
//!
//! A tokio `Notify` did this before, but waiting on one takes a `Notified` future (64
//! bytes, a node of its list of waiters) inside the waiting task, and every idle
//! connection waits on its session for all of its life (issue 14: bytes per idle
//! connection). A session has one owner at a time, so one waker slot is all it needs,
//! as long as a connection that was taken over cannot take the slot (or the wake-up)
//! back from its heir: the slot belongs to the newest connection that polled it.

use std::task::{Context, Poll, Waker};

use parking_lot::Mutex;

/// A wake-up for the task of one connection, kept until its next poll when it is not
/// waiting (as `Notify::notify_one` keeps a permit).
#[derive(Debug, Default)]
pub(crate) struct Wake {
    slot: Mutex<Slot>,
}

#[derive(Debug, Default)]
struct Slot {
    /// The newest connection that polled (connection ids only grow).
    connection: u64,
    woken: bool,
    waker: Option<Waker>,
}

impl Wake {
    /// Wakes the owning connection's task, or its next poll.
    pub(crate) fn notify(&self) {
        let waker = {
            let mut slot = self.slot.lock();
            slot.woken = true;
            slot.waker.take()
        };
        if let Some(waker) = waker {
            waker.wake();
        }
    }

    /// Ready once after each [`Wake::notify`] (several before one poll count once), for
    /// `connection` unless a newer connection has polled: the heir of a takeover gets
    /// every wake-up, the connection it took over (still closing) none.
    pub(crate) fn poll_woken(&self, cx: &mut Context<'_>, connection: u64) -> Poll<()> {
        let mut slot = self.slot.lock();
        if connection < slot.connection {
            return Poll::Pending;
        }
        slot.connection = connection;
        if std::mem::take(&mut slot.woken) {
            return Poll::Ready(());
        }
        if !slot.waker.as_ref().is_some_and(|w| w.will_wake(cx.waker())) {
            slot.waker = Some(cx.waker().clone());
        }
        Poll::Pending
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::future::poll_fn;
    use std::sync::Arc;
    use std::time::Duration;

    async fn polled(wake: &Wake, connection: u64) -> Poll<()> {
        poll_fn(|cx| Poll::Ready(wake.poll_woken(cx, connection))).await
    }

    #[tokio::test]
    async fn a_notify_before_the_wait_is_kept_and_counts_once() {
        let wake = Wake::default();
        wake.notify();
        wake.notify();
        assert!(polled(&wake, 1).await.is_ready());
        assert!(
            polled(&wake, 1).await.is_pending(),
            "two notifies, one wake-up"
        );
    }

    /// A task of `connection` waiting on `wake`, once it has polled.
    async fn waiting(wake: &Arc<Wake>, connection: u64) -> tokio::task::JoinHandle<()> {
        let wake = wake.clone();
        let waiter = tokio::spawn(async move {
            poll_fn(|cx| wake.poll_woken(cx, connection)).await;
        });
        tokio::task::yield_now().await;
        waiter
    }

    async fn woken(waiter: tokio::task::JoinHandle<()>) {
        tokio::time::timeout(Duration::from_secs(5), waiter)
            .await
            .expect("the waiting task was woken")
            .unwrap();
    }

    #[tokio::test]
    async fn a_notify_wakes_the_waiting_task() {
        let wake = Arc::new(Wake::default());
        let waiter = waiting(&wake, 1).await;
        wake.notify();
        woken(waiter).await;
    }

    #[tokio::test]
    async fn a_connection_taken_over_takes_neither_the_slot_nor_the_wake_up() {
        let wake = Arc::new(Wake::default());
        let heir = waiting(&wake, 2).await;
        // The old connection polls once more before it sees its kick.
        assert!(polled(&wake, 1).await.is_pending());
        wake.notify();
        let old = polled(&wake, 1).await;
        assert!(old.is_pending(), "the wake-up is the heir's");
        woken(heir).await;
    }
}
