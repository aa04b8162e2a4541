//! The service's own actions, by name: what a `[[scheduler.jobs]]` entry
//! with `action = "..."` runs.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;

use super::{Action, HttpCall, JobSettings};
use crate::{
    outbound::HttpClient,
    settings::{Problems, SettingsError},
    tasks::BoxError,
};

/// The registry of a service's actions. Register each under the name the
/// schedule gives it.
#[derive(Default, Clone)]
pub struct Actions {
    by_name: BTreeMap<&'static str, Arc<dyn DynAction>>,
}

impl Actions {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `action` under `name`, the name a job's `action` gives.
    ///
    /// # Panics
    /// When an action is already registered under `name`: two would be a
    /// mistake in the service's code, found by its first test.
    pub fn register<A: Action>(&mut self, name: &'static str, action: A) {
        let earlier = self.by_name.insert(name, Arc::new(action));
        assert!(
            earlier.is_none(),
            "two actions are registered as \"{name}\""
        );
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// Records each job of `jobs` that names an action not registered,
    /// naming the job's key and the actions there are. A service calls it
    /// from its `Service::check_settings`, so that the loader reports it
    /// with where the value came from; [`super::start`] checks again.
    pub fn check(&self, jobs: &[JobSettings], problems: &mut Problems) {
        for (index, job) in jobs.iter().enumerate() {
            let Some(name) = &job.action else { continue };
            if !self.by_name.contains_key(name.as_str()) {
                let known: Vec<&str> = self.names().collect();
                problems.add(
                    format!("scheduler.jobs[{index}].action"),
                    format!(
                        "no action is named \"{name}\"; this service has: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                );
            }
        }
    }

    /// [`Actions::check`] at start: the first problem, as a settings error.
    pub(super) fn check_at_start(&self, jobs: &[JobSettings]) -> Result<(), SettingsError> {
        let mut problems = Problems::default();
        self.check(jobs, &mut problems);
        match problems.into_inner().into_iter().next() {
            None => Ok(()),
            Some((key, reason)) => Err(SettingsError::Invalid {
                key,
                origin: "the settings the service started with".to_owned(),
                reason,
            }),
        }
    }

    /// What `job` runs: its registered action, or a call to its URL.
    pub(super) fn for_job(
        &self,
        job: &JobSettings,
        client: &HttpClient,
    ) -> Result<JobAction, BoxError> {
        match (&job.action, &job.url) {
            (Some(name), _) => self
                .by_name
                .get(name.as_str())
                .cloned()
                .map(JobAction::Registered)
                .ok_or_else(|| format!("no action is named \"{name}\"").into()),
            (None, Some(url)) => Ok(JobAction::Call(HttpCall::new(client.clone(), url)?)),
            (None, None) => Err(format!("job \"{}\" has neither url nor action", job.name).into()),
        }
    }
}

/// What one job runs.
pub(super) enum JobAction {
    /// A call to the job's URL.
    Call(HttpCall),
    /// One of the service's actions.
    Registered(Arc<dyn DynAction>),
}

impl Action for JobAction {
    async fn run(&self, key: &str) -> Result<(), BoxError> {
        match self {
            Self::Call(call) => call.run(key).await,
            Self::Registered(action) => action.run_boxed(key).await,
        }
    }
}

/// [`Action`] behind a pointer: its `run` returns a boxed future, which a
/// trait object needs.
pub(super) trait DynAction: Send + Sync + 'static {
    fn run_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BoxError>>;
}

impl<A: Action> DynAction for A {
    fn run_boxed<'a>(&'a self, key: &'a str) -> BoxFuture<'a, Result<(), BoxError>> {
        Box::pin(self.run(key))
    }
}
