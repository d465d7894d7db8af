//! [`InFlight`]: at most one question in flight per key. A caller asking a question that
//! is being answered already waits for that answer instead of asking again.
//!
//! Why: the connections' caches keep answers, but not the ones made blind (the database
//! failed, a plugin faulted), by design; without this, a burst of identical questions
//! (a flood of messages, clients that reconnect together) during a database outage
//! would be one plugin call, and one query, each.
//!
//! Bounded by the questions being asked: an entry is removed when its answer arrives,
//! or when the caller asking it is dropped (a disconnect cancels a connection's task in
//! the middle of a question). Its waiters then do not hang: they ask again, and one of
//! them asks in its place.

use std::collections::HashMap;
use std::future::Future;
use std::hash::Hash;
use std::sync::atomic::{AtomicU64, Ordering};

use parking_lot::Mutex;
use tokio::sync::watch;

/// Questions in flight, by key, and how many callers were answered by another's.
pub struct InFlight<K, V> {
    /// The answer of each question in flight, `None` until it arrives.
    asking: Mutex<HashMap<K, watch::Receiver<Option<V>>>>,
    joined: AtomicU64,
}

impl<K, V> Default for InFlight<K, V> {
    fn default() -> Self {
        InFlight {
            asking: Mutex::new(HashMap::new()),
            joined: AtomicU64::new(0),
        }
    }
}

impl<K: Hash + Eq + Clone, V: Clone> InFlight<K, V> {
    /// The answer to `key`: the answer of the question in flight if there is one, else
    /// what `ask` answers (the callers that come meanwhile get it too).
    pub async fn answer<F, Fut>(&self, key: K, ask: F) -> V
    where
        F: FnOnce() -> Fut,
        Fut: Future<Output = V>,
    {
        let mut ask = Some(ask);
        loop {
            let asked = {
                let mut asking = self.asking.lock();
                match asking.get(&key) {
                    Some(answer) => Err(answer.clone()),
                    None => {
                        let (sender, answer) = watch::channel(None);
                        asking.insert(key.clone(), answer);
                        Ok(sender)
                    }
                }
            };
            match asked {
                Ok(sender) => {
                    let asking = Asking {
                        in_flight: self,
                        key: &key,
                        sender: Some(sender),
                    };
                    // Only the first pass can lead: a leader returns.
                    let ask = ask.take().expect("asked at most once");
                    let answer = ask().await;
                    asking.answered(answer.clone());
                    return answer;
                }
                Err(mut answer) => {
                    // `Err`: whoever was asking was dropped without an answer.
                    let got = answer
                        .wait_for(Option::is_some)
                        .await
                        .ok()
                        .and_then(|a| a.clone());
                    if let Some(answer) = got {
                        self.joined.fetch_add(1, Ordering::Relaxed);
                        return answer;
                    }
                }
            }
        }
    }

    /// Callers answered by a question already in flight instead of asking.
    pub fn joined(&self) -> u64 {
        self.joined.load(Ordering::Relaxed)
    }

    /// Questions in flight now.
    pub fn len(&self) -> usize {
        self.asking.lock().len()
    }

    /// Whether no question is in flight.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The question one caller is asking; dropped unanswered, it leaves the map so that
/// the waiters ask again.
struct Asking<'a, K: Hash + Eq, V> {
    in_flight: &'a InFlight<K, V>,
    key: &'a K,
    sender: Option<watch::Sender<Option<V>>>,
}

impl<K: Hash + Eq, V> Asking<'_, K, V> {
    fn answered(mut self, answer: V) {
        self.in_flight.asking.lock().remove(self.key);
        // Out of the map first: a caller coming after this asks afresh, one already
        // waiting gets this answer.
        if let Some(sender) = self.sender.take() {
            sender.send_replace(Some(answer));
        }
    }
}

impl<K: Hash + Eq, V> Drop for Asking<'_, K, V> {
    fn drop(&mut self) {
        if self.sender.is_some() {
            // Cancelled: the entry is still this question's (no other can be inserted
            // under the key while it is there). The sender drops after, closing it.
            self.in_flight.asking.lock().remove(self.key);
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::AtomicUsize;

    use tokio::sync::Notify;

    use super::*;

    /// A question whose answer comes when `release` is notified; counts how often it
    /// is asked.
    async fn slow_answer(asked: &AtomicUsize, release: &Notify, answer: u32) -> u32 {
        asked.fetch_add(1, Ordering::SeqCst);
        release.notified().await;
        answer
    }

    #[tokio::test]
    async fn identical_questions_are_asked_once() {
        let in_flight = Arc::new(InFlight::<&str, u32>::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let release = Arc::new(Notify::new());
        let callers: Vec<_> = (0..10)
            .map(|_| {
                let (in_flight, asked, release) =
                    (in_flight.clone(), asked.clone(), release.clone());
                tokio::spawn(async move {
                    in_flight
                        .answer("a", || slow_answer(&asked, &release, 7))
                        .await
                })
            })
            .collect();
        // On this one-thread runtime every caller runs up to its first wait here: one
        // asking, nine waiting for its answer.
        tokio::task::yield_now().await;
        assert_eq!((asked.load(Ordering::SeqCst), in_flight.len()), (1, 1));
        release.notify_one();
        for caller in callers {
            assert_eq!(caller.await.unwrap(), 7);
        }
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert_eq!(in_flight.joined(), 9);
        assert!(in_flight.is_empty(), "answered questions leave");
        // Answered and gone: the next caller asks again.
        let again = in_flight.answer("a", || async { 8 }).await;
        assert_eq!(again, 8);
    }

    #[tokio::test]
    async fn different_questions_do_not_wait_for_each_other() {
        let in_flight = InFlight::<&str, u32>::default();
        let asked = AtomicUsize::new(0);
        let release = Notify::new();
        let slow = in_flight.answer("slow", || slow_answer(&asked, &release, 1));
        let fast = in_flight.answer("fast", || async { 2 });
        tokio::pin!(slow);
        tokio::select! {
            // The slow one first, so that it is in flight when the fast one is asked.
            biased;
            _ = &mut slow => panic!("the slow question was answered"),
            fast = fast => assert_eq!(fast, 2),
        }
        assert_eq!(in_flight.len(), 1);
        release.notify_one();
        assert_eq!(slow.await, 1);
        assert_eq!(in_flight.joined(), 0);
    }

    #[tokio::test]
    async fn a_waiter_whose_asker_is_dropped_asks_itself() {
        let in_flight = Arc::new(InFlight::<&str, u32>::default());
        let asked = Arc::new(AtomicUsize::new(0));
        let never = Arc::new(Notify::new());
        let leader = {
            let (in_flight, asked, never) = (in_flight.clone(), asked.clone(), never.clone());
            tokio::spawn(async move {
                in_flight
                    .answer("q", || slow_answer(&asked, &never, 1))
                    .await
            })
        };
        while asked.load(Ordering::SeqCst) == 0 {
            tokio::task::yield_now().await;
        }
        let waiter = {
            let in_flight = in_flight.clone();
            tokio::spawn(async move { in_flight.answer("q", || async { 2 }).await })
        };
        tokio::task::yield_now().await;
        assert!(
            !waiter.is_finished(),
            "the waiter waits for the question in flight"
        );
        leader.abort();
        assert!(leader.await.unwrap_err().is_cancelled());
        assert_eq!(waiter.await.unwrap(), 2, "the waiter asked itself");
        assert_eq!(asked.load(Ordering::SeqCst), 1);
        assert!(in_flight.is_empty());
    }
}
