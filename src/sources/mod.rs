//! Signal sources: webhook payload parsers and scheduled pollers.

/// Checks a cron expression with a seconds field, as the scheduler reads it.
pub fn validate_schedule(expr: &str) -> Result<(), String> {
    tokio_cron_scheduler::Job::new(expr, |_, _| {})
        .map(|_| ())
        .map_err(|e| e.to_string())
}
