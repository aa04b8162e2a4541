//! Load generation: concurrent clients that offer work until told to stop,
//! and a load-balancer stand-in that stops them once readiness fails.

use std::{
    sync::{
        Arc, Mutex, PoisonError,
        atomic::{AtomicBool, AtomicUsize, Ordering},
    },
    time::Duration,
};

use tokio::task::JoinSet;

use nebula_runtime::testing::{Answer, answer, process::unpooled_client as client};

use crate::support::Process;

/// What the clients saw, by kind of answer.
#[derive(Debug, Default, Clone)]
pub struct Tally {
    /// Bodies of 2xx answers.
    pub accepted: Vec<String>,
    pub refused_with_retry_after: usize,
    pub refused_without_retry_after: usize,
    pub connection_refused: usize,
    /// Other statuses and transport failures: outcomes a client cannot
    /// interpret, so the work may have been lost.
    pub broken: Vec<String>,
}

impl Tally {
    pub fn offered(&self) -> usize {
        self.accepted.len() + self.refused() + self.broken.len()
    }

    pub fn refused(&self) -> usize {
        self.refused_with_retry_after + self.refused_without_retry_after + self.connection_refused
    }
}

/// Sends one request built by `request` and sorts the answer into `tally`.
async fn send(request: reqwest::RequestBuilder, tally: &Mutex<Tally>) {
    let result = request.send().await;
    let outcome = match result {
        Ok(response) if response.status().is_success() => {
            Ok(response.text().await.unwrap_or_default())
        }
        Ok(response) if response.status() == 503 => {
            Err(if response.headers().contains_key("retry-after") {
                Kind::RetryAfter
            } else {
                Kind::NoRetryAfter
            })
        }
        other => Err(match answer(other) {
            Answer::Refused => Kind::ConnectionRefused,
            unexpected => Kind::Broken(format!("{unexpected:?}")),
        }),
    };
    let mut tally = tally.lock().unwrap_or_else(PoisonError::into_inner);
    match outcome {
        Ok(body) => tally.accepted.push(body),
        Err(Kind::RetryAfter) => tally.refused_with_retry_after += 1,
        Err(Kind::NoRetryAfter) => tally.refused_without_retry_after += 1,
        Err(Kind::ConnectionRefused) => tally.connection_refused += 1,
        Err(Kind::Broken(detail)) => tally.broken.push(detail),
    }
}

enum Kind {
    RetryAfter,
    NoRetryAfter,
    ConnectionRefused,
    Broken(String),
}

/// Clients sending requests concurrently in the background.
pub struct Load {
    tasks: JoinSet<()>,
    pub offered: Arc<AtomicUsize>,
    pub stop: Arc<AtomicBool>,
    tally: Arc<Mutex<Tally>>,
}

impl Load {
    /// Starts `clients` clients, each sending `make(client)` requests one
    /// after another until `stop` is set or `limit` requests were sent in all.
    pub fn start<F>(clients: usize, limit: usize, make: F) -> Self
    where
        F: Fn(&reqwest::Client) -> reqwest::RequestBuilder + Send + Sync + 'static,
    {
        let make = Arc::new(make);
        let offered = Arc::new(AtomicUsize::new(0));
        let stop = Arc::new(AtomicBool::new(false));
        let tally = Arc::new(Mutex::new(Tally::default()));
        let mut tasks = JoinSet::new();
        for _ in 0..clients {
            let (make, offered, stop, tally) =
                (make.clone(), offered.clone(), stop.clone(), tally.clone());
            tasks.spawn(async move {
                let http = client();
                while !stop.load(Ordering::SeqCst) && offered.fetch_add(1, Ordering::SeqCst) < limit
                {
                    send(make(&http), &tally).await;
                }
            });
        }
        Self {
            tasks,
            offered,
            stop,
            tally,
        }
    }

    /// The 2xx answers so far.
    pub fn accepted(&self) -> usize {
        self.tally().accepted.len()
    }

    /// The bodies of the 2xx answers so far.
    pub fn accepted_bodies(&self) -> Vec<String> {
        self.tally().accepted
    }

    /// The 503 answers with `Retry-After` so far.
    pub fn refused_with_retry_after(&self) -> usize {
        self.tally().refused_with_retry_after
    }

    fn tally(&self) -> Tally {
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Waits (bounded) until at least `count` requests were accepted.
    pub async fn wait_for_accepted(&self, count: usize) {
        self.wait_until(&format!("{count} accepted requests"), |tally| {
            tally.accepted.len() >= count
        })
        .await;
    }

    /// Waits (bounded) until at least `count` requests were refused with
    /// 503 and `Retry-After`.
    pub async fn wait_for_refusals(&self, count: usize) {
        self.wait_until(&format!("{count} refusals with Retry-After"), |tally| {
            tally.refused_with_retry_after >= count
        })
        .await;
    }

    async fn wait_until(&self, expected: &str, done: impl Fn(&Tally) -> bool) {
        let deadline = tokio::time::Instant::now() + crate::support::WAIT_LIMIT;
        loop {
            let tally = self.tally();
            if done(&tally) {
                return;
            }
            assert!(
                tokio::time::Instant::now() < deadline,
                "the load never saw {expected}: {} accepted, {} refused with Retry-After, {} refused otherwise, broken: {:?}",
                tally.accepted.len(),
                tally.refused_with_retry_after,
                tally.refused_without_retry_after + tally.connection_refused,
                tally.broken
            );
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    /// Waits until at least `count` requests were sent (bounded).
    pub async fn wait_for_offers(&self, count: usize) {
        let deadline = tokio::time::Instant::now() + crate::support::WAIT_LIMIT;
        while self.offered.load(Ordering::SeqCst) < count {
            assert!(
                tokio::time::Instant::now() < deadline,
                "load did not reach {count} requests"
            );
            tokio::time::sleep(Duration::from_millis(1)).await;
        }
    }

    /// Waits until `offers` requests were sent, sampling the process's
    /// resident memory meanwhile, then finishes. Returns what the clients
    /// saw and the highest reading (`None` where RSS cannot be read).
    pub async fn finish_watching_memory(
        self,
        process: &Process,
        offers: usize,
    ) -> (Tally, Option<u64>) {
        let mut peak = rss_kib(process);
        while self.offered.load(Ordering::SeqCst) < offers {
            peak = peak.max(rss_kib(process));
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
        let tally = self.finish().await;
        (tally, peak.max(rss_kib(process)))
    }

    /// Waits for every client to finish and returns what they saw.
    pub async fn finish(mut self) -> Tally {
        while let Some(result) =
            tokio::time::timeout(crate::support::WAIT_LIMIT, self.tasks.join_next())
                .await
                .expect("clients finish within the wait limit")
        {
            result.expect("client task does not panic");
        }
        self.tally
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Polls `/readyz` like a load balancer and sets `stop` once it fails, so
/// the clients stop sending before the listener closes.
pub fn balancer(readyz: String, stop: Arc<AtomicBool>) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let http = client();
        loop {
            let ready = matches!(answer(http.get(&readyz).send().await), Answer::Status(200));
            if !ready {
                stop.store(true, Ordering::SeqCst);
                return;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    })
}

/// Resident memory of `process` in KiB, from `/proc/<pid>/status`; `None`
/// where there is no such file (not Linux), and the memory checks are
/// skipped.
pub fn rss_kib(process: &Process) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{}/status", process.pid())).ok()?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|value| value.trim().trim_end_matches("kB").trim().parse().ok())
}

/// Resident memory a service stays under while refusing a flood of work,
/// as documented in the README.
pub const OVERLOAD_RSS_LIMIT_KIB: u64 = 64 * 1024;

/// Checks the peak memory under overload, where it could be read.
pub fn assert_overload_memory_bounded(peak_kib: Option<u64>) {
    if let Some(peak_kib) = peak_kib {
        assert!(
            peak_kib < OVERLOAD_RSS_LIMIT_KIB,
            "resident memory {peak_kib} KiB under overload"
        );
    }
}

/// A memory reading for the summary line.
pub fn kib(reading: Option<u64>) -> String {
    reading.map_or_else(|| "n/a".to_owned(), |kib| kib.to_string())
}
