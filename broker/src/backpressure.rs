//! Flow control between publishers and subscribers: a publisher whose messages fill an
//! online subscriber's queue stops reading its socket until that queue drains, so TCP
//! slows the publisher down instead of the broker reading messages it would then drop.
//!
//! Measured with publishers writing as fast as their sockets take (issue 16): without
//! it, the subscribers' queues overflowed and acknowledged QoS 1 messages were dropped;
//! a message the broker acknowledged must reach an online subscriber that keeps up.
//!
//! - A session's queue has three marks ([`QueueMarks`]): past `high` (half of
//!   `limits.max_queued_messages`) it is congested and each publisher that adds to it
//!   is held back after that message; at `low` (a quarter) they go on; `max` is the hard
//!   bound, past which the newest message is dropped and counted (as before).
//! - A held publisher's connection still writes, reads its kick and shutdown signals,
//!   and keeps no keep-alive deadline (it is the broker that does not read).
//! - Waiting must not become a trap. A session is not waited for when it is the
//!   publisher's own (it drains only as its client's acknowledgements are read, from
//!   the very socket that is not being read), when its own connection is held back
//!   (two connections waiting for each other would never go on: [`Session::set_held`]
//!   tells the waiters to look again), or when it is slow: a session that has not
//!   drained to `low` within `limits.backpressure_max_ms` of a publisher starting to
//!   wait is marked slow and not waited for until it has caught up. So a client that
//!   stops reading costs each publisher at most that long, once, and then has its
//!   messages dropped past `max` as any broker does, while subscribers that keep up
//!   lose nothing.

use std::sync::Arc;
use std::time::Duration;

use tokio::time::Instant;

use crate::config::Limits;
use crate::session::Session;

/// The marks of a session's queue.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct QueueMarks {
    /// At or past it, the queue of an online session holds its publishers back.
    pub high: usize,
    /// At or under it, held publishers go on.
    pub low: usize,
    /// The queue's bound; past it the newest message is dropped.
    pub max: usize,
}

impl QueueMarks {
    /// The marks for `limits.max_queued_messages`.
    pub fn new(limits: &Limits) -> QueueMarks {
        let max = limits.max_queued_messages.max(1);
        QueueMarks {
            high: max.div_ceil(2),
            low: max / 4,
            max,
        }
    }
}

/// A publisher's connection held back by a congested session.
#[derive(Debug)]
pub(crate) struct Hold {
    /// The session whose queue is past its high mark.
    pub(crate) target: Arc<Session>,
    /// When the target counts as slow if it has not drained.
    give_up_at: Instant,
    started: Instant,
}

impl Hold {
    /// A hold on `target`, which has `max_wait` to drain.
    pub(crate) fn new(target: Arc<Session>, max_wait: Duration) -> Hold {
        let started = Instant::now();
        Hold {
            target,
            give_up_at: started + max_wait,
            started,
        }
    }

    /// Waits until the publisher may read again: the target drained to `low`, or need
    /// not be waited for (see the module doc). True when this hold found the target
    /// slow. Cancel safe: the deadline is kept in the hold, not in the future.
    pub(crate) async fn released(&self, low: usize) -> bool {
        loop {
            let room = self.target.room.notified();
            tokio::pin!(room);
            // Registered before the check, so a drain between the two is not missed.
            room.as_mut().enable();
            if self.target.has_room(low) {
                return false;
            }
            tokio::select! {
                _ = room => {}
                _ = tokio::time::sleep_until(self.give_up_at) => {
                    return self.target.mark_slow(self.started.into_std());
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn marks_are_half_and_a_quarter_of_the_queue() {
        let marks = |max_queued_messages| {
            QueueMarks::new(&Limits {
                max_queued_messages,
                ..Limits::default()
            })
        };
        assert_eq!(
            marks(1000),
            QueueMarks {
                high: 500,
                low: 250,
                max: 1000
            }
        );
        // Tiny queues still have a high mark a message can reach and a low one a queue
        // can fall to.
        assert_eq!(
            marks(3),
            QueueMarks {
                high: 2,
                low: 0,
                max: 3
            }
        );
        assert_eq!(
            marks(1),
            QueueMarks {
                high: 1,
                low: 0,
                max: 1
            }
        );
    }
}
