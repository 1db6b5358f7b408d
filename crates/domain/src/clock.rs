//! The clock port: the current time and a timer.

use std::time::Duration;

use async_trait::async_trait;
use time::OffsetDateTime;

/// Time as the use case sees it. Behind a port so that the domain needs no runtime and tests can
/// fix "now".
#[cfg_attr(feature = "mock", mockall::automock)]
#[async_trait]
pub trait Clock: Send + Sync {
    /// The current wall-clock time, UTC.
    fn now(&self) -> OffsetDateTime;

    /// Completes after `duration`. Used to bound the model's time; it must not block a thread.
    async fn sleep(&self, duration: Duration);
}

/// The composition root may share one clock: `Arc<dyn Clock>`.
#[async_trait]
impl<T: Clock + ?Sized> Clock for std::sync::Arc<T> {
    fn now(&self) -> OffsetDateTime {
        (**self).now()
    }

    async fn sleep(&self, duration: Duration) {
        (**self).sleep(duration).await;
    }
}
