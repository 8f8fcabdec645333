use chrono::{DateTime, Utc};

/// The source of "now". Handlers and the store never read the system clock directly, so tests
/// can pin time.
pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> DateTime<Utc>;
}

/// The system's clock.
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> DateTime<Utc> {
        Utc::now()
    }
}
