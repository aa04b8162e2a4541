//! The `scheduler` service type: periodic jobs declared in config, run
//! once per period across every replica that shares the database.
//!
//! Each `[[scheduler.jobs]]` entry calls its URL every `every_ms`
//! milliseconds (see [`schedule`] for the timing rules). Each period is
//! claimed in the run table first ([`claims`]), so replicas on one
//! PostgreSQL run each period of each job once; the table keeps each run's
//! outcome, readable at `GET /runs?job=NAME` ([`history`]). To run
//! something other than an HTTP call, implement [`Action`] and start it
//! with [`schedule::run`] in [`start`].

pub mod claims;
mod history;
mod http_call;
pub mod runs;
pub mod schedule;

use std::{collections::HashSet, time::Duration};

use axum::Router;
use serde::{Deserialize, Serialize};

pub use self::{
    claims::{Claims, Delivery},
    http_call::HttpCall,
    runs::{MIGRATIONS, RunRecord, RunStore},
    schedule::{Action, Clock, Schedule},
};
use nebula_runtime::{
    Service, database,
    outbound::{self, HttpClient},
    settings::{Problems, Section},
    tasks::{BoxError, Context},
};

/// The `[scheduler]` settings.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Settings {
    /// How long finished runs stay in the history.
    pub history_retention_ms: u64,
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
    /// What happens to a period whose replica died mid-run.
    #[serde(default)]
    pub delivery: Delivery,
}

impl Default for Settings {
    fn default() -> Self {
        Self {
            history_retention_ms: 7 * 24 * 60 * 60 * 1_000,
            jobs: vec![JobSettings {
                name: "self-check".to_owned(),
                every_ms: 60_000,
                // Its call's own limit: the outbound HTTP rule.
                timeout_ms: <crate::App as Service>::TIMEOUTS.http_client_ms,
                url: format!("http://127.0.0.1:{}/healthz", crate::DEFAULT_PORT),
                delivery: Delivery::AtMostOnce,
            }],
        }
    }
}

impl Section for Settings {
    fn validate(&self, problems: &mut Problems) {
        problems.require_positive("scheduler.history_retention_ms", self.history_retention_ms);
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
            if let Err(reason) = outbound::parse_http_url(&job.url) {
                problems.add(key("url"), reason);
            }
        }
    }
}

/// Opens the database and starts its supervisor, then one task per
/// configured job once the run table is in place. The scheduler serves the
/// run history over HTTP.
///
/// # Errors
/// When the database URL is unusable or its data folder cannot be made, or
/// the HTTP client cannot be built.
pub fn start(context: &mut Context<'_, crate::App>) -> Result<Router, BoxError> {
    let settings = context.settings;
    schedule::describe_metrics();
    claims::describe_metrics();
    let database::Started {
        database,
        gate,
        connected,
    } = database::start(context)?;
    let store = RunStore::new(database, claims::replica_name());
    let client = HttpClient::new(settings.timeouts.http_client())?;
    let clock = Clock::system();
    for job in &settings.service.jobs {
        let schedule = Schedule {
            name: job.name.clone(),
            every: Duration::from_millis(job.every_ms),
            timeout: Duration::from_millis(job.timeout_ms),
        };
        let claims = Claims {
            store: store.clone(),
            delivery: job.delivery,
            lease: claims::lease(schedule.timeout, settings.timeouts.database()),
            retention: Duration::from_millis(settings.service.history_retention_ms),
        };
        let action = HttpCall::new(client.clone(), &job.url)?;
        let connected = connected.clone();
        let draining = context.draining.clone();
        let abandon = context.abandon.clone();
        context.tasks.spawn("scheduled job", async move {
            tokio::select! {
                biased;
                () = draining.cancelled() => return Ok(()),
                () = connected.wait() => {}
            }
            schedule::run(schedule, action, claims, clock, draining, abandon).await;
            Ok(())
        });
    }
    Ok(history::routes(history::History {
        store,
        gate,
        jobs: settings
            .service
            .jobs
            .iter()
            .map(|job| job.name.clone())
            .collect(),
        retry_after_secs: settings.http.retry_after_secs,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(jobs: Vec<JobSettings>) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        Settings {
            jobs,
            ..Settings::default()
        }
        .validate(&mut problems);
        problems.into_inner()
    }

    fn job(name: &str, url: &str) -> JobSettings {
        JobSettings {
            name: name.to_owned(),
            every_ms: 1_000,
            timeout_ms: 500,
            url: url.to_owned(),
            delivery: Delivery::AtMostOnce,
        }
    }

    #[test]
    fn the_default_job_is_valid() {
        assert!(problems(Settings::default().jobs).is_empty());
    }

    #[test]
    fn https_is_taken_and_other_schemes_and_malformed_urls_are_refused() {
        let found = problems(vec![
            job("a", "https://example.com/"),
            job("b", "ftp://example.com/"),
            job("c", "not a url"),
        ]);
        assert_eq!(found.len(), 2, "{found:?}");
        assert_eq!(
            found[0],
            (
                "scheduler.jobs[1].url".to_owned(),
                "must be an http:// or https:// URL, got ftp://".to_owned()
            )
        );
        assert_eq!(found[1].0, "scheduler.jobs[2].url");
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
