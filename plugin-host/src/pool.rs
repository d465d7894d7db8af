//! The idle warm instances of one plugin: a slot per calling thread, then a
//! shared list.
//!
//! With one shared list, two worker threads calling the same plugin handed its
//! instances back and forth on every call: each call took the list's lock (a
//! cache line both threads write) twice, and the instance it got had last run
//! on the other core, its store and the guest's hot memory in that core's cache.
//! A thread now gives an instance back to a slot of its own and takes it from
//! there next time; the shared list holds what the slots cannot (more
//! concurrency than threads, threads sharing a slot).

use std::sync::atomic::{AtomicUsize, Ordering};

use parking_lot::Mutex;

/// Idle instances, at most `idle_max` in all (slots and list together).
pub(crate) struct Pool<T> {
    slots: Box<[Slot<T>]>,
    shared: Mutex<Vec<T>>,
    shared_max: usize,
}

/// One thread's instance, on a cache line of its own so that threads using
/// neighbouring slots do not write to each other's line.
#[repr(align(128))]
struct Slot<T>(Mutex<Option<T>>);

impl<T> Pool<T> {
    /// A pool keeping at most `idle_max` idle instances: one slot per CPU (at
    /// most `idle_max`), the rest in the shared list.
    pub fn new(idle_max: usize) -> Self {
        let cpus = std::thread::available_parallelism().map_or(1, |n| n.get());
        let slots = idle_max.min(cpus);
        Pool {
            slots: (0..slots).map(|_| Slot(Mutex::new(None))).collect(),
            shared: Mutex::new(Vec::new()),
            shared_max: idle_max - slots,
        }
    }

    /// An idle instance, if there is one: this thread's own first, then the
    /// list's, then another thread's.
    pub fn take(&self) -> Option<T> {
        let own = self.own_slot();
        if let Some(idle) = self.slots.get(own).and_then(Slot::try_take) {
            return Some(idle);
        }
        if let Some(idle) = self.shared.lock().pop() {
            return Some(idle);
        }
        self.slots.iter().find_map(Slot::try_take)
    }

    /// Keeps `idle` for the next call (this thread's slot first, then any
    /// free slot, then the list), or drops it when the pool is full.
    pub fn give(&self, idle: T) {
        let own = self.own_slot();
        let mut idle = match self.slots.get(own) {
            Some(slot) => match slot.try_put(idle) {
                Ok(()) => return,
                Err(idle) => idle,
            },
            None => idle,
        };
        for slot in &self.slots {
            idle = match slot.try_put(idle) {
                Ok(()) => return,
                Err(idle) => idle,
            };
        }
        let mut shared = self.shared.lock();
        if shared.len() < self.shared_max {
            shared.push(idle);
        }
    }

    /// Drops every idle instance.
    pub fn clear(&self) {
        for slot in &self.slots {
            slot.0.lock().take();
        }
        self.shared.lock().clear();
    }

    /// This thread's slot index (out of range when there are no slots).
    fn own_slot(&self) -> usize {
        thread_index() % self.slots.len().max(1)
    }
}

impl<T> Slot<T> {
    fn try_take(&self) -> Option<T> {
        self.0.try_lock()?.take()
    }

    /// Puts `idle` in the slot if it is free and not locked; gives it back otherwise.
    fn try_put(&self, idle: T) -> Result<(), T> {
        match self.0.try_lock() {
            Some(mut slot) if slot.is_none() => {
                *slot = Some(idle);
                Ok(())
            }
            _ => Err(idle),
        }
    }
}

/// A small number per thread, handed out in the order threads first call a
/// plugin: the runtime's workers get distinct slots.
fn thread_index() -> usize {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    thread_local! {
        static INDEX: usize = NEXT.fetch_add(1, Ordering::Relaxed);
    }
    INDEX.with(|index| *index)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_at_most_idle_max() {
        let pool = Pool::new(3);
        for i in 0..5 {
            pool.give(i);
        }
        let mut taken = Vec::new();
        while let Some(i) = pool.take() {
            taken.push(i);
        }
        taken.sort();
        assert_eq!(taken, vec![0, 1, 2]);
    }

    #[test]
    fn a_thread_gets_back_what_it_gave() {
        let pool = Pool::new(4);
        pool.give("first");
        pool.give("second");
        // The first went to this thread's slot, the second elsewhere; this
        // thread's slot is taken first.
        assert_eq!(pool.take(), Some("first"));
        assert_eq!(pool.take(), Some("second"));
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn zero_keeps_nothing() {
        let pool = Pool::new(0);
        pool.give(1);
        assert_eq!(pool.take(), None);
    }

    #[test]
    fn clear_empties_slots_and_list() {
        let pool = Pool::new(4);
        pool.give(1);
        pool.give(2);
        pool.clear();
        assert_eq!(pool.take(), None);
    }
}
