//! Injected time. The store, the server and the agents read time only through a [`Clock`], so
//! that tests and demos can run on a clock they control.

use jiff::Timestamp;
use std::sync::Mutex;

pub trait Clock: Send + Sync + 'static {
    fn now(&self) -> Timestamp;

    /// How long to wait in real time for this clock to move on by `span`.
    fn real_wait(&self, span: jiff::SignedDuration) -> std::time::Duration {
        span.unsigned_abs()
    }
}

/// The real clock.
#[derive(Debug, Default, Clone, Copy)]
pub struct SystemClock;

impl Clock for SystemClock {
    fn now(&self) -> Timestamp {
        Timestamp::now()
    }
}

/// A clock that moves only when told to; for tests.
#[derive(Debug)]
pub struct ManualClock(Mutex<Timestamp>);

impl ManualClock {
    pub fn new(start: Timestamp) -> Self {
        Self(Mutex::new(start))
    }

    pub fn advance(&self, by: jiff::SignedDuration) {
        let mut now = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        *now = now.saturating_add(by).unwrap_or(*now);
    }
}

impl Clock for ManualClock {
    fn now(&self) -> Timestamp {
        *self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// A clock that starts at a chosen instant and runs `speed` times as fast as real time, so that
/// demos and tests reach a scheduled instant (24:00, say) without waiting for it.
#[derive(Debug)]
pub struct SimulatedClock {
    start: Timestamp,
    speed: f64,
    began: std::time::Instant,
}

impl SimulatedClock {
    pub fn new(start: Timestamp, speed: f64) -> Result<Self, String> {
        if !(speed.is_finite() && speed > 0.0 && speed <= 1_000_000.0) {
            return Err(format!("bad clock speed {speed}: expected a factor above 0 and at most 1000000"));
        }
        Ok(Self { start, speed, began: std::time::Instant::now() })
    }
}

impl Clock for SimulatedClock {
    fn now(&self) -> Timestamp {
        let elapsed = self.began.elapsed().as_secs_f64() * self.speed;
        let run = jiff::SignedDuration::try_from_secs_f64(elapsed).unwrap_or(jiff::SignedDuration::MAX);
        self.start.saturating_add(run).unwrap_or(Timestamp::MAX)
    }

    fn real_wait(&self, span: jiff::SignedDuration) -> std::time::Duration {
        span.unsigned_abs().div_f64(self.speed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_simulated_clock_starts_where_told_and_runs_at_its_speed() {
        let start: Timestamp = "2026-11-25T23:59:50+01:00".parse().expect("an instant");
        let clock = SimulatedClock::new(start, 1000.0).expect("a clock");
        let first = clock.now();
        assert!(first >= start && first < start + jiff::SignedDuration::from_secs(5), "{first}");
        std::thread::sleep(std::time::Duration::from_millis(20));
        assert!(clock.now() >= start + jiff::SignedDuration::from_secs(20), "20 ms at 1000× is 20 s");
        assert_eq!(clock.real_wait(jiff::SignedDuration::from_secs(10)), std::time::Duration::from_millis(10));
        for speed in [0.0, -1.0, f64::NAN, f64::INFINITY] {
            assert!(SimulatedClock::new(start, speed).is_err(), "{speed}");
        }
    }
}
