//! The poll schedule: one poll at a time, started every interval, until shutdown.

use std::future::Future;
use std::time::Duration;

use tokio::time::{sleep_until, Instant};

/// Something run on a schedule. It returns how long to wait, from its start, before the next
/// run: the period, or longer while backing off.
pub trait Job {
    fn run(&mut self) -> impl Future<Output = Duration>;
}

/// Runs `job` now and then again after the wait each run asks for. Runs never overlap: a run
/// that outlasts its wait delays the next one (which then starts at once) instead of queueing a
/// burst. Shutdown stops the loop between runs or in the middle of one: a poll dropped before
/// its commit loses nothing but that poll; one dropped during its commit (which runs on a
/// blocking thread, and which the runtime lets finish) has it stored, to be resumed from.
pub async fn every(shutdown: impl Future<Output = ()>, job: &mut impl Job) {
    tokio::pin!(shutdown);
    let mut next = Instant::now();
    loop {
        tokio::select! {
            _ = &mut shutdown => return,
            _ = sleep_until(next) => {}
        }
        let started = Instant::now();
        let wait = tokio::select! {
            _ = &mut shutdown => return,
            wait = job.run() => wait,
        };
        next = (started + wait).max(Instant::now());
    }
}

/// Runs `job` as [`every`] does, the first time at `first`, until `retire` is cancelled, which
/// is checked between runs only: a run in flight finishes (its commit lands) before this
/// returns. Returns when the next run was due, so that a job restarted in its place (a reload)
/// keeps the schedule instead of running at once.
pub async fn every_until(
    retire: tokio_util::sync::CancellationToken,
    job: &mut impl Job,
    first: Instant,
) -> Instant {
    let mut next = first;
    loop {
        tokio::select! {
            // A retired job runs no more, even when its next run is due too.
            biased;
            () = retire.cancelled() => return next,
            () = sleep_until(next) => {}
        }
        let started = Instant::now();
        let wait = job.run().await;
        next = (started + wait).max(Instant::now());
    }
}

/// The wait after `failures` consecutive failed polls: the interval doubled per failure after
/// the first, capped at `max`, with jitter (`unit` in `[0, 1)` picks a point in the upper half,
/// so that exporters failing together do not retry together), and never less than the interval.
pub fn backoff(interval: Duration, max: Duration, failures: u32, unit: f64) -> Duration {
    if failures == 0 {
        return interval;
    }
    let doubled = interval.saturating_mul(1u32 << failures.saturating_sub(1).min(20));
    let capped = doubled.min(max.max(interval));
    let jittered = capped.mul_f64(0.5 + 0.5 * unit.clamp(0.0, 1.0));
    jittered.max(interval)
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
        async fn run(&mut self) -> Duration {
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
            // The fourth run failed and asks for a longer wait.
            Duration::from_secs(if n == 4 { 70 } else { 30 })
        }
    }

    #[tokio::test(start_paused = true)]
    async fn polls_never_overlap_and_a_slow_poll_delays_the_next() {
        let mut job = Recorder {
            t0: Instant::now(),
            starts: Arc::new(Mutex::new(Vec::new())),
            running: Arc::new(Mutex::new(false)),
        };
        let shutdown = tokio::time::sleep(Duration::from_secs(200));
        every(shutdown, &mut job).await;
        assert_eq!(*job.starts.lock().unwrap(), vec![0, 30, 75, 105, 175]);
    }

    /// A job retired between runs says when its next run was due; one started in its place
    /// at that instant keeps the schedule.
    #[tokio::test(start_paused = true)]
    async fn a_retired_job_hands_on_its_schedule() {
        let t0 = Instant::now();
        let mut job = Recorder {
            t0,
            starts: Arc::new(Mutex::new(Vec::new())),
            running: Arc::new(Mutex::new(false)),
        };
        let retire = tokio_util::sync::CancellationToken::new();
        let stop = retire.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(10)).await;
            stop.cancel();
        });
        let next = every_until(retire, &mut job, t0).await;
        assert_eq!(next, t0 + Duration::from_secs(30));
        let retire = tokio_util::sync::CancellationToken::new();
        let stop = retire.clone();
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_secs(40)).await;
            stop.cancel();
        });
        every_until(retire, &mut job, next).await;
        assert_eq!(*job.starts.lock().unwrap(), vec![0, 30]);
    }

    #[test]
    fn backoff_doubles_with_jitter_up_to_the_cap() {
        let s = Duration::from_secs;
        let (i, max) = (s(30), s(300));
        assert_eq!(backoff(i, max, 0, 0.9), s(30));
        assert_eq!(backoff(i, max, 1, 0.0), s(30));
        assert_eq!(backoff(i, max, 2, 0.0), s(30));
        assert_eq!(backoff(i, max, 2, 1.0), s(60));
        assert_eq!(backoff(i, max, 3, 0.5), s(90));
        assert_eq!(backoff(i, max, 4, 1.0), s(240));
        assert_eq!(backoff(i, max, 5, 1.0), s(300));
        assert_eq!(backoff(i, max, 50, 1.0), s(300));
        assert_eq!(backoff(i, max, 50, 0.0), s(150));
        // A cap below the interval never makes polls faster than the interval.
        assert_eq!(backoff(i, s(10), 3, 1.0), s(30));
    }
}
