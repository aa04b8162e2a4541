//! The `[scheduler]` section: the engine's settings and the schedule, and
//! under `actions` the settings of the service's own actions.

use std::collections::HashSet;

use serde::{Deserialize, Serialize};

use super::Delivery;
use crate::{
    outbound,
    settings::{NoSettings, Problems, Section},
};

/// The service's part of `[scheduler]`: the settings of its own actions,
/// read from `[scheduler.actions]`, and the schedule it ships with.
pub trait ServiceSchedule: Section {
    /// The jobs of the built-in defaults; a config file or the environment
    /// replaces the list whole.
    fn default_jobs() -> Vec<JobSettings>;
}

/// The `[scheduler]` settings. `A` is the service's own section for its
/// actions, `[scheduler.actions]`, apart from the engine's keys, so that a
/// later engine key cannot clash with one of the service's.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields, bound = "A: ServiceSchedule")]
pub struct Settings<A> {
    /// How long finished runs stay in the history.
    pub history_retention_ms: u64,
    /// The schedule: `[[scheduler.jobs]]`.
    pub jobs: Vec<JobSettings>,
    /// `[scheduler.actions]`: the settings of the service's own actions.
    pub actions: A,
}

/// One `[[scheduler.jobs]]` entry: when it runs, and what. Exactly one of
/// `url` and `action` is set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JobSettings {
    /// Unique name, used in logs, metrics and `GET /runs?job=`.
    pub name: String,
    /// Period between the starts of two runs.
    pub every_ms: u64,
    /// Limit on one run.
    pub timeout_ms: u64,
    /// An `http://` or `https://` URL the run calls with GET; any 2xx
    /// answer is success.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub url: Option<String>,
    /// The name of one of the service's own actions, run instead of a call.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub action: Option<String>,
    /// What happens to a period whose replica died mid-run.
    #[serde(default)]
    pub delivery: Delivery,
}

/// No actions of the service's own, and no jobs unless configured.
impl ServiceSchedule for NoSettings {
    fn default_jobs() -> Vec<JobSettings> {
        Vec::new()
    }
}

impl<A: ServiceSchedule> Default for Settings<A> {
    fn default() -> Self {
        Self {
            history_retention_ms: 7 * 24 * 60 * 60 * 1_000,
            jobs: A::default_jobs(),
            actions: A::default(),
        }
    }
}

impl<A: ServiceSchedule> Section for Settings<A> {
    const ENVIRONMENT_LISTS: &'static [&'static str] = A::ENVIRONMENT_LISTS;

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
            match (&job.url, &job.action) {
                (Some(url), None) => {
                    if let Err(reason) = outbound::parse_http_url(url) {
                        problems.add(key("url"), reason);
                    }
                }
                (None, Some(_)) => {}
                (Some(_), Some(_)) => problems.add(
                    key("action"),
                    "must not be set beside url: a job either calls a URL or runs an action",
                ),
                (None, None) => problems.add(
                    key("url"),
                    "is missing: a job calls a URL (url) or runs one of the service's actions (action)",
                ),
            }
        }
        self.actions.validate(problems);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn problems(jobs: Vec<JobSettings>) -> Vec<(String, String)> {
        let mut problems = Problems::default();
        Settings {
            jobs,
            ..Settings::<NoSettings>::default()
        }
        .validate(&mut problems);
        problems.into_inner()
    }

    fn job(name: &str, url: &str) -> JobSettings {
        JobSettings {
            name: name.to_owned(),
            every_ms: 1_000,
            timeout_ms: 500,
            url: Some(url.to_owned()),
            action: None,
            delivery: Delivery::AtMostOnce,
        }
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

    #[test]
    fn a_job_calls_a_url_or_runs_an_action_not_both_nor_neither() {
        let mut both = job("a", "http://127.0.0.1/");
        both.action = Some("report".to_owned());
        let mut neither = job("b", "http://127.0.0.1/");
        neither.url = None;
        let mut action = job("c", "http://127.0.0.1/");
        action.url = None;
        action.action = Some("report".to_owned());
        let found = problems(vec![both, neither, action]);
        let keys: Vec<&str> = found.iter().map(|(key, _)| key.as_str()).collect();
        assert_eq!(keys, ["scheduler.jobs[0].action", "scheduler.jobs[1].url"]);
        assert!(
            found[1].1.starts_with("is missing: a job calls a URL"),
            "{found:?}"
        );
    }
}
