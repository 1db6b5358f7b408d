//! The faults of a chaos run, on a fixed schedule: what happens when, and how it is done to the
//! processes the run started (by pid, on loopback).

use std::time::Duration;

/// One fault.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Fault {
    /// `CLIENT PAUSE` for this long: every command waits, longer than the command timeout and
    /// the deadline, then runs.
    PauseRedis(Duration),
    /// SIGKILL to redis-server, down for this long, then started again on its port (its AOF
    /// brings the data back).
    KillRedis(Duration),
    /// SIGKILL to one instance, down for this long, then started again.
    KillInstance(usize, Duration),
}

impl Fault {
    pub(crate) fn name(self) -> &'static str {
        match self {
            Fault::PauseRedis(_) => "redis paused",
            Fault::KillRedis(_) => "redis killed",
            Fault::KillInstance(..) => "instance killed",
        }
    }

    /// How long the fault lasts once injected.
    pub(crate) fn length(self) -> Duration {
        match self {
            Fault::PauseRedis(d) | Fault::KillRedis(d) | Fault::KillInstance(_, d) => d,
        }
    }
}

/// One cycle of faults, each this long after the previous one began. The instance killed
/// alternates between the two.
const CYCLE: [(Duration, Fault); 4] = [
    (
        Duration::from_millis(1_500),
        Fault::PauseRedis(Duration::from_millis(700)),
    ),
    (
        Duration::from_millis(1_500),
        Fault::KillRedis(Duration::from_millis(800)),
    ),
    (
        Duration::from_millis(1_500),
        Fault::PauseRedis(Duration::from_millis(350)),
    ),
    (
        Duration::from_millis(1_500),
        Fault::KillInstance(1, Duration::from_millis(600)),
    ),
];

/// The faults of a run of `duration`, as offsets from its start: the first after a quiet second,
/// and none that would still be active in the last `heal` of the run, so that the run ends with
/// the system whole.
pub(crate) fn schedule(duration: Duration, heal: Duration) -> Vec<(Duration, Fault)> {
    let mut faults = Vec::new();
    let mut at = Duration::from_secs(1);
    for round in 0.. {
        for (gap, fault) in CYCLE {
            let fault = match fault {
                Fault::KillInstance(_, d) => Fault::KillInstance(round % 2, d),
                other => other,
            };
            if at + fault.length() + heal > duration {
                return faults;
            }
            faults.push((at, fault));
            at += gap;
        }
    }
    faults
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_run_gets_every_kind_of_fault_and_ends_healed() {
        let faults = schedule(Duration::from_secs(30), Duration::from_secs(3));
        for kind in ["redis paused", "redis killed", "instance killed"] {
            assert!(faults.iter().any(|(_, f)| f.name() == kind), "{kind}");
        }
        assert!(faults.contains(&(
            Duration::from_millis(5_500),
            Fault::KillInstance(0, Duration::from_millis(600))
        )));
        assert!(
            faults
                .iter()
                .any(|(_, f)| *f == Fault::KillInstance(1, Duration::from_millis(600)))
        );
        for (at, fault) in &faults {
            assert!(*at + fault.length() + Duration::from_secs(3) <= Duration::from_secs(30));
        }
        assert!(faults.windows(2).all(|pair| pair[0].0 < pair[1].0));
        assert!(schedule(Duration::from_secs(2), Duration::from_secs(3)).is_empty());
    }
}
