//! Job kinds: what a service's jobs do. A kind is a type with a stable name,
//! serde arguments and an async `run`; the service registers its kinds in
//! one [`Kinds`] registry, intake refuses a job whose kind or arguments the
//! registry does not know, and the dispatcher runs each claimed job with the
//! kind stored beside it.
//!
//! A kind's state (an HTTP client, settings, a pool) lives in the value that
//! is registered: `run` gets `&self`, shared by every job of that kind.

use std::{collections::BTreeMap, future::Future, pin::Pin, sync::Arc, time::Duration};

use serde::de::DeserializeOwned;
use tokio_util::sync::CancellationToken;

use super::JobId;

/// One kind of job. Implement it on a type holding what the jobs need, and
/// register a value of it with [`Kinds::register`].
pub trait JobKind: Send + Sync + 'static {
    /// The name stored with each job and given in `POST /jobs`. Keep it
    /// stable: jobs queued under a name that is no longer registered fail.
    const NAME: &'static str;

    /// The job's arguments, decoded from the request's `args` at intake
    /// (a job whose arguments do not decode is refused with 400) and again
    /// from the stored job before each attempt.
    type Args: DeserializeOwned + Send + 'static;

    /// Checks decoded arguments before the job is accepted; the message is
    /// the 400 answer's `error`, so name the field.
    ///
    /// # Errors
    /// What is wrong with the arguments.
    fn validate(&self, _args: &Self::Args) -> Result<(), String> {
        Ok(())
    }

    /// Attempts for this kind's jobs, the first included; `None` takes
    /// `worker.max_attempts`. A job keeps the limit it was accepted with.
    fn max_attempts(&self) -> Option<u32> {
        None
    }

    /// Limit on each attempt; `None` takes `timeouts.default_ms` (the
    /// Nebula 30 s rule).
    fn timeout(&self) -> Option<Duration> {
        None
    }

    /// Runs one attempt. An error is retried (with backoff) until the
    /// attempts run out, unless it is [`JobError::permanent`]; a panic
    /// counts as a failed attempt. Execution is at least once: an attempt
    /// may run again after a crash, so make it idempotent on [`JobContext::id`].
    fn run(
        &self,
        args: Self::Args,
        job: JobContext,
    ) -> impl Future<Output = Result<(), JobError>> + Send;
}

/// What a running attempt knows about its job.
#[derive(Debug, Clone)]
pub struct JobContext {
    /// The job's id, the same in every attempt: an idempotency key for the
    /// job's effects.
    pub id: JobId,
    /// This attempt's number, from 1.
    pub attempt: u32,
    /// Cancelled once the attempt ended or was dropped (its timeout, a
    /// lost lease, the drain deadline), for work that does not stop at an
    /// `.await`, such as a loop on the blocking pool.
    pub cancelled: CancellationToken,
}

/// Why an attempt failed. Any error converts into a retryable one with `?`.
#[derive(Debug)]
pub struct JobError {
    source: Box<dyn std::error::Error + Send + Sync>,
    permanent: bool,
}

impl JobError {
    /// A failure another attempt may fix, from any error, `anyhow`'s and
    /// boxed ones included (`?` converts the others).
    pub fn retryable(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            permanent: false,
        }
    }

    /// A failure that another attempt cannot fix (a 4xx answer, arguments a
    /// peer refuses): the job fails now, whatever attempts are left.
    pub fn permanent(source: impl Into<Box<dyn std::error::Error + Send + Sync>>) -> Self {
        Self {
            source: source.into(),
            permanent: true,
        }
    }

    /// Whether another attempt is pointless.
    #[must_use]
    pub const fn is_permanent(&self) -> bool {
        self.permanent
    }
}

impl<E: std::error::Error + Send + Sync + 'static> From<E> for JobError {
    fn from(source: E) -> Self {
        Self {
            source: Box::new(source),
            permanent: false,
        }
    }
}

/// The error and its causes, `: `-separated: the job's `last_error`.
impl std::fmt::Display for JobError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let mut text = self.source.to_string();
        let mut cause = self.source.source();
        while let Some(current) = cause {
            let part = current.to_string();
            // Some errors repeat their cause in their own message.
            if !text.ends_with(&part) {
                text.push_str(": ");
                text.push_str(&part);
            }
            cause = current.source();
        }
        f.write_str(&text)
    }
}

/// A boxed attempt, as the dispatcher runs it.
pub type Attempt = Pin<Box<dyn Future<Output = Result<(), JobError>> + Send>>;

/// The job kinds a service runs, by name.
#[derive(Clone, Default)]
pub struct Kinds {
    by_name: BTreeMap<&'static str, Arc<dyn Registered>>,
}

impl std::fmt::Debug for Kinds {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_list().entries(self.by_name.keys()).finish()
    }
}

/// A registered kind with its types erased, so that one map holds them all.
trait Registered: Send + Sync {
    fn check(&self, args: &str) -> Result<(), String>;
    fn attempt(&self, args: &str, job: JobContext) -> Result<Attempt, String>;
    fn max_attempts(&self) -> Option<u32>;
    fn timeout(&self) -> Option<Duration>;
}

impl<K: JobKind> Registered for Arc<K> {
    fn check(&self, args: &str) -> Result<(), String> {
        let decoded = decode::<K>(args)?;
        self.validate(&decoded)
            .map_err(|error| format!("args of job kind \"{}\": {error}", K::NAME))
    }

    fn attempt(&self, args: &str, job: JobContext) -> Result<Attempt, String> {
        let decoded = decode::<K>(args)?;
        let kind = Arc::clone(self);
        Ok(Box::pin(async move { kind.run(decoded, job).await }))
    }

    fn max_attempts(&self) -> Option<u32> {
        K::max_attempts(self)
    }

    fn timeout(&self) -> Option<Duration> {
        K::timeout(self)
    }
}

fn decode<K: JobKind>(args: &str) -> Result<K::Args, String> {
    serde_json::from_str(args)
        .map_err(|error| format!("args of job kind \"{}\" do not decode: {error}", K::NAME))
}

/// Why a job is refused at intake or failed before its attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    /// No kind of that name is registered.
    UnknownKind(String),
    /// The arguments do not decode or do not validate.
    Args(String),
}

impl std::fmt::Display for Refused {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::UnknownKind(message) | Self::Args(message) => f.write_str(message),
        }
    }
}

/// How one stored job is to be run: its attempt and its time limit.
pub struct Prepared {
    pub attempt: Attempt,
    pub timeout: Option<Duration>,
}

impl Kinds {
    /// An empty registry.
    #[must_use]
    pub fn new() -> Self {
        Self::default()
    }

    /// Registers `kind` under [`JobKind::NAME`].
    ///
    /// # Panics
    /// When a kind of that name is already registered (two kinds cannot
    /// share the jobs stored under one name), or the kind allows no
    /// attempt at all.
    pub fn register<K: JobKind>(&mut self, kind: K) -> &mut Self {
        assert!(
            kind.max_attempts() != Some(0),
            "job kind \"{}\" allows 0 attempts; it needs at least 1",
            K::NAME
        );
        let previous = self.by_name.insert(K::NAME, Arc::new(Arc::new(kind)));
        assert!(
            previous.is_none(),
            "job kind \"{}\" is registered twice",
            K::NAME
        );
        self
    }

    /// The registered names, sorted.
    pub fn names(&self) -> impl Iterator<Item = &'static str> + '_ {
        self.by_name.keys().copied()
    }

    fn get(&self, name: &str) -> Result<&dyn Registered, Refused> {
        self.by_name
            .get(name)
            .map(|kind| &**kind as &dyn Registered)
            .ok_or_else(|| {
                let known: Vec<&str> = self.names().collect();
                Refused::UnknownKind(format!(
                    "unknown job kind \"{name}\"; this service runs: {}",
                    if known.is_empty() {
                        "no kinds".to_owned()
                    } else {
                        known.join(", ")
                    }
                ))
            })
    }

    /// Checks a submitted job and returns its attempt limit: the kind's,
    /// or `default_max_attempts`.
    ///
    /// # Errors
    /// [`Refused`], with a message naming the kind or the field.
    pub(crate) fn check(
        &self,
        kind: &str,
        args: &str,
        default_max_attempts: u32,
    ) -> Result<u32, Refused> {
        let registered = self.get(kind)?;
        registered.check(args).map_err(Refused::Args)?;
        Ok(registered.max_attempts().unwrap_or(default_max_attempts))
    }

    /// Prepares one attempt of a stored job.
    ///
    /// # Errors
    /// [`Refused`] when its kind is no longer registered or its stored
    /// arguments no longer decode: the job fails without another attempt.
    pub(crate) fn prepare(
        &self,
        kind: &str,
        args: &str,
        job: JobContext,
    ) -> Result<Prepared, Refused> {
        let registered = self.get(kind)?;
        let attempt = registered.attempt(args, job).map_err(Refused::Args)?;
        Ok(Prepared {
            attempt,
            timeout: registered.timeout(),
        })
    }
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    struct Echo;

    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct EchoArgs {
        times: u32,
    }

    impl JobKind for Echo {
        const NAME: &'static str = "test.echo";
        type Args = EchoArgs;

        fn validate(&self, args: &EchoArgs) -> Result<(), String> {
            if args.times > 3 {
                return Err("times must be at most 3".to_owned());
            }
            Ok(())
        }

        fn max_attempts(&self) -> Option<u32> {
            Some(2)
        }

        async fn run(&self, args: EchoArgs, _job: JobContext) -> Result<(), JobError> {
            if args.times == 0 {
                return Err(JobError::permanent("nothing to echo"));
            }
            Ok(())
        }
    }

    fn kinds() -> Kinds {
        let mut kinds = Kinds::new();
        kinds.register(Echo);
        kinds
    }

    fn context() -> JobContext {
        JobContext {
            id: JobId::new(),
            attempt: 1,
            cancelled: CancellationToken::new(),
        }
    }

    #[test]
    fn a_job_is_checked_against_its_kind() {
        let kinds = kinds();
        assert_eq!(kinds.check("test.echo", r#"{"times": 1}"#, 5), Ok(2));
        let Err(Refused::UnknownKind(message)) = kinds.check("echo", "{}", 5) else {
            panic!("an unknown kind is refused");
        };
        assert_eq!(
            message,
            "unknown job kind \"echo\"; this service runs: test.echo"
        );
        let Err(Refused::Args(message)) = kinds.check("test.echo", r#"{"times": "x"}"#, 5) else {
            panic!("arguments that do not decode are refused");
        };
        assert!(
            message.starts_with("args of job kind \"test.echo\" do not decode: invalid type"),
            "{message}"
        );
        let Err(Refused::Args(message)) = kinds.check("test.echo", r#"{"time": 1}"#, 5) else {
            panic!("an unknown field is refused");
        };
        assert!(message.contains("unknown field `time`"), "{message}");
        assert_eq!(
            kinds.check("test.echo", r#"{"times": 4}"#, 5),
            Err(Refused::Args(
                "args of job kind \"test.echo\": times must be at most 3".to_owned()
            ))
        );
    }

    #[tokio::test]
    async fn a_prepared_attempt_runs_the_kind() {
        let kinds = kinds();
        let prepared = kinds
            .prepare("test.echo", r#"{"times": 1}"#, context())
            .unwrap();
        assert!(prepared.attempt.await.is_ok());
        let failing = kinds
            .prepare("test.echo", r#"{"times": 0}"#, context())
            .unwrap();
        let error = failing.attempt.await.unwrap_err();
        assert!(error.is_permanent());
        assert_eq!(error.to_string(), "nothing to echo");
    }

    #[test]
    fn a_stored_job_of_an_unregistered_kind_is_refused() {
        let Err(Refused::UnknownKind(message)) = Kinds::new().prepare("gone", "{}", context())
        else {
            panic!("an unregistered kind cannot run");
        };
        assert_eq!(
            message,
            "unknown job kind \"gone\"; this service runs: no kinds"
        );
    }

    #[test]
    #[should_panic(expected = "job kind \"test.echo\" is registered twice")]
    fn a_name_is_registered_once() {
        kinds().register(Echo);
    }

    #[test]
    fn an_errors_causes_are_part_of_its_message() {
        #[derive(Debug, thiserror::Error)]
        #[error("the call failed")]
        struct Call(#[source] std::io::Error);
        #[derive(Debug, thiserror::Error)]
        #[error("the call failed: {0}")]
        struct Repeating(#[source] std::io::Error);

        let error = JobError::from(Call(std::io::Error::other("connection refused")));
        assert_eq!(error.to_string(), "the call failed: connection refused");
        let error = JobError::from(Repeating(std::io::Error::other("connection refused")));
        assert_eq!(error.to_string(), "the call failed: connection refused");
    }

    #[test]
    fn any_error_converts_into_a_retryable_one() {
        fn parse() -> Result<u32, JobError> {
            Ok("x".parse::<u32>()?)
        }
        let error = parse().unwrap_err();
        assert!(!error.is_permanent());
        assert_eq!(error.to_string(), "invalid digit found in string");
    }
}
