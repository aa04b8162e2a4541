//! The `scheduler` service type: periodic jobs declared in config.
//!
//! Each `[[scheduler.jobs]]` entry calls its URL every `every_ms`
//! milliseconds (see [`schedule`] for the timing rules). To run something
//! other than an HTTP call, implement [`Action`] and start it with
//! [`schedule::run`] in [`start`].

mod http_call;
pub mod schedule;

use std::{collections::HashSet, time::Duration};

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::{
    http_call::HttpCall,
    schedule::{Action, Schedule},
};
use crate::{
    settings::{DEFAULT_PORT, Problems},
    tasks::{BoxError, Context},
    timeouts,
};

/// The `[scheduler]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    pub jobs: Vec<JobSettings>,
}

/// One `[[scheduler.jobs]]` entry.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Unique name, used in logs.
    pub name: String,
    /// Period between the starts of two runs.
    pub every_ms: u64,
    /// Limit on one run.
    pub timeout_ms: u64,
    /// `http://` URL the run calls with GET; any 2xx answer is success.
    pub url: String,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            jobs: vec![JobSettings {
                name: "self-check".to_owned(),
                every_ms: 60_000,
                timeout_ms: crate::settings::duration_ms(timeouts::HTTP_CLIENT),
                url: format!("http://127.0.0.1:{DEFAULT_PORT}/healthz"),
            }],
        }
    }
}

impl Settings {
    pub(crate) fn validate(&self, problems: &mut Problems) {
        let mut names = HashSet::new();
        for (index, job) in self.jobs.iter().enumerate() {
            let key = |field: &str| format!("scheduler.jobs[{index}].{field}");
            if job.name.trim().is_empty() {
                problems.add(key("name"), "must not be empty");
            } else if !names.insert(job.name.as_str()) {
                problems.add(
                    key("name"),
                    format!(
                        "\"{}\" is used by another job; names must be unique",
                        job.name
                    ),
                );
            }
            problems.require_positive(&key("every_ms"), job.every_ms);
            problems.require_positive(&key("timeout_ms"), job.timeout_ms);
            if let Err(reason) = http_call::parse_url(&job.url) {
                problems.add(key("url"), reason);
            }
        }
    }
}

/// Starts one task per configured job. The scheduler serves only the
/// probes over HTTP.
///
/// # Errors
/// When the HTTP client cannot be built.
pub fn start(context: &mut Context<'_>) -> Result<Router, BoxError> {
    schedule::describe_metrics();
    let client = http_call::client(context.settings.timeouts.http_client())?;
    for job in &context.settings.scheduler.jobs {
        let schedule = Schedule {
            name: job.name.clone(),
            every: Duration::from_millis(job.every_ms),
            timeout: Duration::from_millis(job.timeout_ms),
        };
        let action = HttpCall::new(client.clone(), &job.url)?;
        let draining = context.draining.clone();
        let abandon = context.abandon.clone();
        context.tasks.spawn("scheduled job", async move {
            schedule::run(schedule, action, draining, abandon).await;
            Ok(())
        });
    }
    Ok(Router::new())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(jobs: Vec<JobSettings>) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        Settings { jobs }.validate(&mut problems);
        problems.into_inner()
    }

    fn job(name: &str, url: &str) -> JobSettings {
        JobSettings {
            name: name.to_owned(),
            every_ms: 1_000,
            timeout_ms: 500,
            url: url.to_owned(),
        }
    }

    #[test]
    fn the_default_job_is_valid() {
        assert!(problems(Settings::default().jobs).is_empty());
    }

    #[test]
    fn https_and_malformed_urls_are_refused_with_the_reason() {
        let found = problems(vec![
            job("a", "https://example.com/"),
            job("b", "not a url"),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(found[0].0, "scheduler.jobs[0].url");
        assert!(found[0].1.contains("http://"), "{found:?}");
        assert_eq!(found[1].0, "scheduler.jobs[1].url");
    }

    #[test]
    fn job_names_must_be_unique_and_periods_positive() {
        let mut zero = job("a", "http://127.0.0.1/");
        zero.every_ms = 0;
        let found = problems(vec![zero, job("a", "http://127.0.0.1/")]);
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(
            keys,
            ["scheduler.jobs[0].every_ms", "scheduler.jobs[1].name"]
        );
    }
}
