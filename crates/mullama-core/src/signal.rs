//! `RoomSignal`: how one loop that pushes into many streams sleeps until one of them can take
//! a push again.
//!
//! A batch scheduler must not block in one stream's `push` (the other streams would stall
//! behind it), so it pushes only into streams whose `room()` is above zero and leaves the full
//! ones out. When nothing is left to do it waits on a `RoomSignal` shared by its streams:
//! every stream attached to it notifies the signal when its consumer frees room in a full
//! buffer or when the stream ends (consumer gone, cancelled, failed, finished). Anyone else
//! with news for the loop (a new request) calls `notify` too.
//!
//! The signal counts notifications (an epoch) instead of holding a flag, so a notification
//! that arrives between the loop's last look at its streams and its wait is never lost: the
//! loop reads `epoch()` before looking and waits for the epoch to move past it.

use std::sync::{Condvar, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

#[derive(Default)]
pub struct RoomSignal {
    epoch: Mutex<u64>,
    changed: Condvar,
}

fn lock(mutex: &Mutex<u64>) -> MutexGuard<'_, u64> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl RoomSignal {
    pub fn new() -> Self {
        Self::default()
    }

    /// How many notifications have happened so far.
    pub fn epoch(&self) -> u64 {
        *lock(&self.epoch)
    }

    /// Wakes every waiter. Cheap and never blocks for long (one short mutex); streams call it
    /// while holding their channel lock, so it must never take a stream's lock.
    pub fn notify(&self) {
        let mut epoch = lock(&self.epoch);
        *epoch = epoch.wrapping_add(1);
        drop(epoch);
        self.changed.notify_all();
    }

    /// Waits until the epoch differs from `seen` or `timeout` elapsed; returns the epoch then.
    pub fn wait_past(&self, seen: u64, timeout: Duration) -> u64 {
        let until = Instant::now().checked_add(timeout);
        let mut epoch = lock(&self.epoch);
        while *epoch == seen {
            let left = match until {
                Some(until) => until.saturating_duration_since(Instant::now()),
                None => Duration::MAX,
            };
            if left.is_zero() {
                break;
            }
            epoch = self
                .changed
                .wait_timeout(epoch, left)
                .unwrap_or_else(PoisonError::into_inner)
                .0;
        }
        *epoch
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::Arc;
    use std::thread;

    #[test]
    fn a_notification_before_the_wait_is_not_lost() {
        let signal = RoomSignal::new();
        let seen = signal.epoch();
        signal.notify();
        let started = Instant::now();
        assert_eq!(signal.wait_past(seen, Duration::from_secs(10)), seen + 1);
        assert!(started.elapsed() < Duration::from_secs(5));
    }

    #[test]
    fn the_wait_ends_at_its_timeout_without_news() {
        let signal = RoomSignal::new();
        let seen = signal.epoch();
        assert_eq!(signal.wait_past(seen, Duration::from_millis(20)), seen);
    }

    #[test]
    fn another_thread_wakes_the_waiter() {
        let signal = Arc::new(RoomSignal::new());
        let seen = signal.epoch();
        let notifier = Arc::clone(&signal);
        let handle = thread::spawn(move || {
            thread::sleep(Duration::from_millis(20));
            notifier.notify();
        });
        assert_ne!(signal.wait_past(seen, Duration::from_secs(10)), seen);
        handle.join().unwrap();
    }
}
