//! One clock for the decision path: the wall clock in the daemon, a clock the
//! caller moves in `quotawatch simulate` (SPEC section 2, "one clock"), so the
//! same clearer and policy decide in both.

use std::sync::{Arc, Mutex};

use chrono::{DateTime, Utc};

#[derive(Debug, Clone, Default)]
pub enum Clock {
    #[default]
    System,
    /// Reads what [`Clock::set`] last put there.
    Manual(Arc<Mutex<DateTime<Utc>>>),
}

impl Clock {
    pub fn manual(start: DateTime<Utc>) -> Self {
        Clock::Manual(Arc::new(Mutex::new(start)))
    }

    pub fn now(&self) -> DateTime<Utc> {
        match self {
            Clock::System => Utc::now(),
            Clock::Manual(t) => *t.lock().unwrap_or_else(|e| e.into_inner()),
        }
    }

    /// Moves a manual clock; the system clock cannot be moved.
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
}
