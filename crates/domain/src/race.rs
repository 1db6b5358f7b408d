//! Bounding a future's time without a runtime: race it against the clock's timer.

use std::future::Future;
use std::panic::{AssertUnwindSafe, catch_unwind};
use std::pin::pin;
use std::task::Poll;

/// How a bounded future ended.
pub(crate) enum Bounded<T> {
    /// It completed first.
    Done(T),
    /// The timer completed first; the future was dropped.
    TimedOut,
    /// It panicked; the panic was contained.
    Panicked,
}

/// Polls `work` and `timer` together and returns whichever completes first. `work` is polled first,
/// so a result that is ready wins over a timer that is ready too. A panic in `work` is caught:
/// a failing model must never take a request down with it.
pub(crate) async fn bounded<T>(
    work: impl Future<Output = T>,
    timer: impl Future<Output = ()>,
) -> Bounded<T> {
    let mut work = pin!(work);
    let mut timer = pin!(timer);
    std::future::poll_fn(move |cx| {
        match catch_unwind(AssertUnwindSafe(|| work.as_mut().poll(cx))) {
            Ok(Poll::Ready(value)) => return Poll::Ready(Bounded::Done(value)),
            Ok(Poll::Pending) => {}
            Err(_) => return Poll::Ready(Bounded::Panicked),
        }
        match timer.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Bounded::TimedOut),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}
