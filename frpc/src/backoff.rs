//! Reconnect delays: exponential with jitter, capped, reset after a healthy
//! session so a flapping link does not climb to the cap for good.

use std::time::Duration;

use rand::Rng;

#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            current: base,
        }
    }

    /// The next delay: the current step ±20 % jitter (so a server restart
    /// does not bring every client back in the same instant), then doubles
    /// the step up to the cap.
    pub fn next_delay(&mut self) -> Duration {
        let step = self.current;
        self.current = (self.current * 2).min(self.max);
        let jitter = rand::thread_rng().gen_range(0.8..=1.2);
        step.mul_f64(jitter).min(self.max)
    }

    pub fn reset(&mut self) {
        self.current = self.base;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_and_resets() {
        let mut b = Backoff::new(Duration::from_secs(1), Duration::from_secs(20));
        let d: Vec<f64> = (0..8).map(|_| b.next_delay().as_secs_f64()).collect();
        assert!((0.8..=1.2).contains(&d[0]), "{d:?}");
        assert!((1.6..=2.4).contains(&d[1]), "{d:?}");
        assert!(d.iter().all(|x| *x <= 20.0), "{d:?}");
        assert!(d[7] >= 16.0, "{d:?}");
        b.reset();
        assert!(b.next_delay().as_secs_f64() <= 1.2);
    }
}
