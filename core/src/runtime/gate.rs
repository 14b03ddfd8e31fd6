//! A sink's gate: its circuit breaker, rate and concurrency, asked before every call to the
//! destination.
//!
//! - **Circuit.** `failures` retryable failures in a row open it: deliveries that reach the
//!   sink are then *held* — parked in the journal without an attempt, out of the poller's
//!   way — until the cooldown has passed and one delivery, the probe, has gone through. A
//!   probe that fails opens it again for twice the cooldown (up to `max_cooldown`); it
//!   tested the destination for the circuit, so it costs its delivery no attempt either, and
//!   the next probe is another held delivery (the journal lets the longest-waiting go). A
//!   fatal error is the event's fault, not the destination's: it counts as an answer.
//! - **Concurrency.** At most `concurrency` calls in flight.
//! - **Rate.** Calls spaced evenly, `rate` per period at most, counted as they start.
//!
//! A delivery that would wait longer than [`MAX_WAIT`] for a call slot or for the rate does
//! not hold a run slot meanwhile: it goes back to the journal, due when the wait is over,
//! without using up an attempt.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use governor::clock::Clock;
use hookline_plugin_api::StageError;
use jiff::Timestamp;
use serde::Serialize;
use tokio::sync::{OwnedSemaphorePermit, Semaphore};
use tokio::time::Instant;

use crate::config::{Rate, SinkLimits};
use crate::internal_events::{CircuitClosed, CircuitGauge, CircuitOpened, HeldBy, SinkTelemetry};

/// The longest a run waits in memory for a call slot or for the rate.
const MAX_WAIT: Duration = Duration::from_secs(1);

#[derive(Debug)]
pub(crate) struct SinkGate {
    limits: SinkLimits,
    circuit: Mutex<Circuit>,
    slots: Option<Arc<Semaphore>>,
    rate: Option<governor::DefaultDirectRateLimiter>,
    pub(crate) telemetry: SinkTelemetry,
    /// Set when a probe closes the circuit, taken by the poller, which then lets every
    /// delivery the circuit held go.
    closed: AtomicBool,
}

#[derive(Debug, Clone)]
enum Circuit {
    Closed {
        failures: u32,
    },
    Open {
        until: Instant,
        /// The cooldown this opening waits; a failed probe doubles it.
        cooldown: Duration,
        since: Timestamp,
        error: String,
    },
    HalfOpen {
        /// Whether the probe is out.
        probing: bool,
        cooldown: Duration,
        since: Timestamp,
        error: String,
    },
}

/// What the gate says to a delivery that reached its sink.
#[derive(Debug)]
pub(crate) enum Admission {
    /// Call the destination; report the result with [`SinkGate::record`].
    Go(Permit),
    /// The circuit is open: park the delivery until the circuit lets it through.
    Hold { until: Timestamp, error: String },
    /// No call slot or no rate within [`MAX_WAIT`]: try again after this long.
    Later { wait: Duration },
}

/// Leave to call the destination once.
#[derive(Debug)]
pub(crate) struct Permit {
    probe: bool,
    _slot: Option<OwnedSemaphorePermit>,
}

impl Permit {
    /// Whether this call is the probe of a half-open circuit.
    pub(crate) fn is_probe(&self) -> bool {
        self.probe
    }
}

/// A circuit as the admin API shows it.
#[derive(Debug, Clone, Serialize)]
pub(crate) struct CircuitView {
    /// `closed`, `open`, `half_open`, or `off` (`circuit = false`).
    pub(crate) state: &'static str,
    /// Retryable failures in a row (closed).
    pub(crate) failures: u32,
    /// Open or half-open since.
    pub(crate) since: Option<Timestamp>,
    /// When an open circuit lets a probe through.
    pub(crate) probe_at: Option<Timestamp>,
    pub(crate) last_error: Option<String>,
}

impl SinkGate {
    pub(crate) fn new(limits: SinkLimits, telemetry: SinkTelemetry) -> Self {
        let rate = limits.rate.and_then(|Rate { calls, per }| {
            // Evenly spaced calls: one every `per / calls`, no burst on top.
            governor::Quota::with_period(per / calls.get()).map(governor::RateLimiter::direct)
        });
        SinkGate {
            slots: limits
                .concurrency
                .map(|n| Arc::new(Semaphore::new(n.get() as usize))),
            rate,
            circuit: Mutex::new(Circuit::Closed { failures: 0 }),
            closed: AtomicBool::new(false),
            limits,
            telemetry,
        }
    }

    pub(crate) fn limits(&self) -> &SinkLimits {
        &self.limits
    }

    fn circuit(&self) -> MutexGuard<'_, Circuit> {
        self.circuit.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// Ask to call the destination now.
    pub(crate) async fn admit(&self) -> Admission {
        let probe = match self.enter_circuit() {
            Ok(probe) => probe,
            Err(hold) => {
                self.telemetry.held(HeldBy::Circuit);
                return hold;
            }
        };
        let slot = match &self.slots {
            None => None,
            Some(slots) => {
                match tokio::time::timeout(MAX_WAIT, slots.clone().acquire_owned()).await {
                    Ok(Ok(slot)) => Some(slot),
                    _ => return self.later(probe, MAX_WAIT, HeldBy::Concurrency),
                }
            }
        };
        if let Some(rate) = &self.rate {
            loop {
                match rate.check() {
                    Ok(()) => break,
                    Err(not_until) => {
                        let wait = not_until.wait_time_from(rate.clock().now());
                        if wait > MAX_WAIT {
                            return self.later(probe, wait, HeldBy::Rate);
                        }
                        tokio::time::sleep(wait).await;
                    }
                }
            }
        }
        Admission::Go(Permit { probe, _slot: slot })
    }

    /// Whether the circuit lets a call through, and if so whether it is the probe.
    fn enter_circuit(&self) -> Result<bool, Admission> {
        let Some(_) = self.limits.circuit else {
            return Ok(false);
        };
        let mut c = self.circuit();
        match &*c {
            Circuit::Closed { .. } => Ok(false),
            Circuit::Open {
                until,
                cooldown,
                since,
                error,
            } => {
                if Instant::now() >= *until {
                    *c = Circuit::HalfOpen {
                        probing: true,
                        cooldown: *cooldown,
                        since: *since,
                        error: error.clone(),
                    };
                    self.telemetry.circuit(CircuitGauge::HalfOpen);
                    Ok(true)
                } else {
                    Err(Admission::Hold {
                        until: timestamp_at(*until),
                        error: error.clone(),
                    })
                }
            }
            Circuit::HalfOpen {
                probing: false,
                cooldown,
                since,
                error,
            } => {
                *c = Circuit::HalfOpen {
                    probing: true,
                    cooldown: *cooldown,
                    since: *since,
                    error: error.clone(),
                };
                Ok(true)
            }
            Circuit::HalfOpen {
                probing: true,
                cooldown,
                error,
                ..
            } => Err(Admission::Hold {
                until: timestamp_at(Instant::now() + *cooldown),
                error: error.clone(),
            }),
        }
    }

    /// Give up a call that found no slot or no rate; a probe is handed back.
    fn later(&self, probe: bool, wait: Duration, by: HeldBy) -> Admission {
        if probe {
            let mut c = self.circuit();
            if let Circuit::HalfOpen { probing, .. } = &mut *c {
                *probing = false;
            }
        }
        self.telemetry.held(by);
        Admission::Later { wait }
    }

    /// How the call went. Returns whether the circuit just closed (held deliveries may run
    /// again).
    pub(crate) fn record(&self, permit: Permit, result: &Result<(), StageError>) -> bool {
        let Some(policy) = self.limits.circuit else {
            return false;
        };
        let failed = matches!(result, Err(StageError::Retryable { .. }));
        let mut c = self.circuit();
        match (&mut *c, failed) {
            (Circuit::Closed { failures }, false) => {
                *failures = 0;
                false
            }
            (Circuit::Closed { failures }, true) => {
                *failures += 1;
                if *failures >= policy.failures {
                    let failures = *failures;
                    *c = open(policy.cooldown, Timestamp::now(), result);
                    CircuitOpened {
                        sink: &self.telemetry,
                        failures,
                        cooldown: policy.cooldown,
                        error: &message(result),
                    }
                    .emit();
                }
                false
            }
            (Circuit::HalfOpen { .. }, false) if permit.probe => {
                *c = Circuit::Closed { failures: 0 };
                self.closed.store(true, Ordering::Release);
                CircuitClosed {
                    sink: &self.telemetry,
                }
                .emit();
                true
            }
            (
                Circuit::HalfOpen {
                    cooldown, since, ..
                },
                true,
            ) if permit.probe => {
                let next = cooldown.saturating_mul(2).min(policy.max_cooldown);
                let since = *since;
                *c = open(next, since, result);
                CircuitOpened {
                    sink: &self.telemetry,
                    failures: 1,
                    cooldown: next,
                    error: &message(result),
                }
                .emit();
                false
            }
            // A call that started before the circuit opened: its answer changes nothing.
            _ => false,
        }
    }

    /// Whether a probe closed the circuit since the last call.
    pub(crate) fn take_closed(&self) -> bool {
        self.closed.swap(false, Ordering::AcqRel)
    }

    /// Whether the circuit is open with its cooldown over and no probe out: the poller then
    /// lets one held delivery go to be the probe.
    pub(crate) fn wants_probe(&self) -> bool {
        matches!(&*self.circuit(), Circuit::Open { until, .. } if Instant::now() >= *until)
    }

    pub(crate) fn view(&self) -> CircuitView {
        if self.limits.circuit.is_none() {
            return CircuitView {
                state: "off",
                failures: 0,
                since: None,
                probe_at: None,
                last_error: None,
            };
        }
        match &*self.circuit() {
            Circuit::Closed { failures } => CircuitView {
                state: "closed",
                failures: *failures,
                since: None,
                probe_at: None,
                last_error: None,
            },
            Circuit::Open {
                until,
                since,
                error,
                ..
            } => CircuitView {
                state: "open",
                failures: 0,
                since: Some(*since),
                probe_at: Some(timestamp_at(*until)),
                last_error: Some(error.clone()),
            },
            Circuit::HalfOpen { since, error, .. } => CircuitView {
                state: "half_open",
                failures: 0,
                since: Some(*since),
                probe_at: None,
                last_error: Some(error.clone()),
            },
        }
    }
}

fn open(cooldown: Duration, since: Timestamp, result: &Result<(), StageError>) -> Circuit {
    Circuit::Open {
        until: Instant::now() + cooldown,
        cooldown,
        since,
        error: message(result),
    }
}

fn message(result: &Result<(), StageError>) -> String {
    match result {
        Ok(()) => String::new(),
        Err(StageError::Retryable { message, .. } | StageError::Fatal { message }) => {
            message.clone()
        }
    }
}

/// The wall-clock time of a monotonic instant.
fn timestamp_at(at: Instant) -> Timestamp {
    let left = at.saturating_duration_since(Instant::now());
    crate::time::later(Timestamp::now(), left)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::CircuitPolicy;

    fn gate(limits: SinkLimits) -> SinkGate {
        SinkGate::new(limits, SinkTelemetry::new("p", "s"))
    }

    fn down() -> Result<(), StageError> {
        Err(StageError::retryable("connection refused"))
    }

    async fn go(g: &SinkGate) -> Permit {
        match g.admit().await {
            Admission::Go(p) => p,
            other => panic!("expected Go, got {other:?}"),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn a_circuit_opens_holds_then_one_probe_closes_it() {
        let g = gate(SinkLimits {
            circuit: Some(CircuitPolicy {
                failures: 3,
                cooldown: Duration::from_secs(10),
                max_cooldown: Duration::from_secs(60),
            }),
            ..SinkLimits::default()
        });
        for _ in 0..2 {
            let p = go(&g).await;
            assert!(!g.record(p, &down()));
        }
        // A success in between resets the count.
        let p = go(&g).await;
        g.record(p, &Ok(()));
        for _ in 0..3 {
            let p = go(&g).await;
            g.record(p, &down());
        }
        assert_eq!(g.view().state, "open");
        assert!(matches!(g.admit().await, Admission::Hold { .. }));
        assert!(!g.wants_probe());
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(g.wants_probe());
        // One probe; the others are held while it is out.
        let probe = go(&g).await;
        assert_eq!(g.view().state, "half_open");
        assert!(matches!(g.admit().await, Admission::Hold { .. }));
        // It fails: open again, for twice as long.
        assert!(!g.record(probe, &down()));
        tokio::time::advance(Duration::from_secs(10)).await;
        assert!(matches!(g.admit().await, Admission::Hold { .. }));
        tokio::time::advance(Duration::from_secs(10)).await;
        let probe = go(&g).await;
        assert!(g.record(probe, &Ok(())), "a delivered probe closes it");
        assert_eq!(g.view().state, "closed");
        let p = go(&g).await;
        g.record(p, &Ok(()));
    }

    #[tokio::test(start_paused = true)]
    async fn fatal_errors_do_not_open_the_circuit_and_off_means_off() {
        let g = gate(SinkLimits::defaults());
        for _ in 0..20 {
            let p = go(&g).await;
            g.record(p, &Err(StageError::fatal("400 bad request")));
        }
        assert_eq!(g.view().state, "closed");
        let off = gate(SinkLimits::default());
        for _ in 0..20 {
            let p = go(&off).await;
            off.record(p, &down());
        }
        assert_eq!(off.view().state, "off");
        assert!(matches!(off.admit().await, Admission::Go(_)));
    }

    #[tokio::test(start_paused = true)]
    async fn concurrency_beyond_the_wait_goes_back_to_the_journal() {
        let g = gate(SinkLimits {
            concurrency: std::num::NonZeroU32::new(1),
            ..SinkLimits::default()
        });
        let first = go(&g).await;
        match g.admit().await {
            Admission::Later { wait } => assert_eq!(wait, MAX_WAIT),
            other => panic!("expected Later, got {other:?}"),
        }
        drop(first);
        let _second = go(&g).await;
    }
}
