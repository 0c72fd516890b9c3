//! The poll schedule: one poll at a time, started every interval, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::time::{interval, MissedTickBehavior};

/// Something run on a schedule.
pub trait Job {
    fn run(&mut self) -> impl Future<Output = ()>;
}

/// Runs `job` now and then every `period`. Runs never overlap: a run that outlasts the period
/// delays the next one (which then starts at once) instead of queueing a burst. Shutdown stops
/// the loop between runs or in the middle of one (a poll applies its result in one synchronous
/// step, so dropping it midway loses nothing but that poll).
pub async fn every(period: Duration, shutdown: impl Future<Output = ()>, job: &mut impl Job) {
    let mut ticker = interval(period);
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = ticker.tick() => {}
        }
        tokio::select! {
            _ = &mut shutdown => return,
            _ = job.run() => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};
    use tokio::time::Instant;

    struct Recorder {
        t0: Instant,
        starts: Arc<Mutex<Vec<u64>>>,
        running: Arc<Mutex<bool>>,
    }

    impl Job for Recorder {
        async fn run(&mut self) {
            let n = {
                let mut starts = self.starts.lock().unwrap();
                starts.push(self.t0.elapsed().as_secs());
                starts.len()
            };
            assert!(
                !std::mem::replace(&mut *self.running.lock().unwrap(), true),
                "overlap"
            );
            // The second run takes 45 s, longer than the interval.
            let busy = if n == 2 { 45 } else { 1 };
            tokio::time::sleep(Duration::from_secs(busy)).await;
            *self.running.lock().unwrap() = false;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polls_never_overlap_and_a_slow_poll_delays_the_next() {
        let mut job = Recorder {
            t0: Instant::now(),
            starts: Arc::new(Mutex::new(Vec::new())),
            running: Arc::new(Mutex::new(false)),
        };
        let shutdown = tokio::time::sleep(Duration::from_secs(100));
        every(Duration::from_secs(30), shutdown, &mut job).await;
        assert_eq!(*job.starts.lock().unwrap(), vec![0, 30, 75]);
    }
}
