//! The [`Clock`] adapter: the system's wall clock and tokio's timer.

use std::time::Duration;

use antifraud_domain::Clock;
use async_trait::async_trait;
use time::OffsetDateTime;

/// Wall-clock time and tokio timers. Needs a tokio runtime with time enabled, which actix-web's
/// workers have.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct SystemClock {
    /// Added to the system's time: zero, except in fault-injection runs that make two instances'
    /// clocks disagree (`--clock-offset-ms`).
    pub(crate) offset: time::Duration,
}

impl SystemClock {
    /// The clock the settings ask for: the system's, shifted by `--clock-offset-ms`.
    pub(crate) fn of(settings: &crate::Settings) -> Self {
        SystemClock {
            offset: settings.clock_offset,
        }
    }
}

#[async_trait]
impl Clock for SystemClock {
    fn now(&self) -> OffsetDateTime {
        OffsetDateTime::now_utc() + self.offset
    }

    async fn sleep(&self, duration: Duration) {
        tokio::time::sleep(duration).await;
    }
}
