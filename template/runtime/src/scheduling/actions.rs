//! The service's own actions, by name: what a `[[scheduler.jobs]]` entry
//! with `action = "..."` runs.

use std::{collections::BTreeMap, sync::Arc};

use futures_util::future::BoxFuture;

use super::{Action, HttpCall, JobSettings};
use crate::{outbound::HttpClient, settings::SettingsError, tasks::BoxError};

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

    /// Registers `action` under `name`, replacing one registered before.
    pub fn register<A: Action>(&mut self, name: &'static str, action: A) {
        self.by_name.insert(name, Arc::new(action));
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    /// Fails on the first job that names an action not registered, naming
    /// the job's key and the actions there are.
    pub(super) fn check(&self, jobs: &[JobSettings]) -> Result<(), SettingsError> {
        for (index, job) in jobs.iter().enumerate() {
            let Some(name) = &job.action else { continue };
            if !self.by_name.contains_key(name.as_str()) {
                let known: Vec<&str> = self.names().collect();
                return Err(SettingsError::Invalid {
                    key: format!("scheduler.jobs[{index}].action"),
                    origin: "the loaded settings".to_owned(),
                    reason: format!(
                        "no action is named \"{name}\"; this service has: {}",
                        if known.is_empty() {
                            "none".to_owned()
                        } else {
                            known.join(", ")
                        }
                    ),
                });
            }
        }
        Ok(())
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
