//! One clock for the decision path: the wall clock in the daemon, a clock the
//! caller moves in `quotawatch simulate` (SPEC section 2, "one clock"), so the
//! same clearer and policy decide in both; and, for tests of the whole daemon
//! on tokio's paused clock, a clock that follows tokio's time.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Reads what [`Clock::set`] last put there.
    Manual(Arc<Mutex<DateTime<Utc>>>),
    /// `start` plus the tokio time elapsed since `at`: moved by
    /// `tokio::time::advance` when a test pauses the runtime's clock, so the
    /// daemon's timers and its rules (cooldowns, windows) agree.
    Tokio {
        start: DateTime<Utc>,
        at: tokio::time::Instant,
    },
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    /// Starts at `start` and follows tokio's clock from now on.
    pub fn tokio(start: DateTime<Utc>) -> Self {
        Clock::Tokio {
            start,
            at: tokio::time::Instant::now(),
        }
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
            Clock::Tokio { start, at } => {
                let elapsed = chrono::Duration::from_std(at.elapsed()).unwrap_or_default();
                *start + elapsed
            }
        }
    }

    /// Moves a manual clock; the others cannot be moved this way.
    pub fn set(&self, now: DateTime<Utc>) {
        if let Clock::Manual(t) = self {
            *t.lock().unwrap_or_else(|e| e.into_inner()) = now;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_manual_clock_reads_what_was_set_and_the_system_clock_moves_on() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let manual = Clock::manual(t);
        let copy = manual.clone();
        assert_eq!(copy.now(), t);
        manual.set(t + chrono::Duration::minutes(1));
        assert_eq!(copy.now(), t + chrono::Duration::minutes(1));
        let system = Clock::System;
        system.set(t);
        assert!(system.now() > t);
    }

    #[tokio::test(start_paused = true)]
    async fn a_tokio_clock_moves_with_paused_time_only() {
        let t = DateTime::parse_from_rfc3339("2026-11-28T10:00:00+08:00")
            .unwrap()
            .with_timezone(&Utc);
        let clock = Clock::tokio(t);
        assert_eq!(clock.now(), t);
        tokio::time::advance(std::time::Duration::from_secs(1800)).await;
        assert_eq!(clock.now(), t + chrono::Duration::minutes(30));
        clock.set(t);
        assert_eq!(clock.now(), t + chrono::Duration::minutes(30));
    }
}
