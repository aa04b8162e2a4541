//! Reads the deployment files, the `Dockerfile` and `deploy/kubernetes/`,
//! of the project under check, so that checks can hold them to what its
//! binary loads and serves.

use std::time::Duration;

use serde_json::Value;

use crate::project;

fn project_file(path: &str) -> String {
    project().file(path)
}

/// What the runtime stage of the `Dockerfile` sets, plus its global `ARG`s.
#[derive(Debug, Default)]
pub struct Dockerfile {
    /// `ARG` defaults declared before the first `FROM`.
    pub args: Vec<(String, String)>,
    /// `ENV` of the last stage, in order.
    pub env: Vec<(String, String)>,
    pub expose: Vec<u16>,
    pub user: Option<String>,
    /// `WORKDIR` of the last stage, if it sets one.
    pub workdir: Option<String>,
    pub entrypoint: Vec<String>,
    /// The command of `HEALTHCHECK ... CMD [...]`.
    pub healthcheck: Vec<String>,
    /// The options of `HEALTHCHECK`, such as `("timeout", "3s")`.
    pub healthcheck_options: Vec<(String, String)>,
}

impl Dockerfile {
    pub fn read() -> Self {
        let text = project_file("Dockerfile");
        // Continuation lines join their instruction; comments go.
        let joined = text
            .lines()
            .filter(|line| !line.trim_start().starts_with('#'))
            .collect::<Vec<_>>()
            .join("\n")
            .replace("\\\n", " ");
        let mut file = Self::default();
        let mut stages = 0;
        for line in joined
            .lines()
            .map(str::trim)
            .filter(|line| !line.is_empty())
        {
            let (instruction, rest) = line.split_once(char::is_whitespace).unwrap_or((line, ""));
            let rest = rest.trim();
            match instruction.to_ascii_uppercase().as_str() {
                "FROM" => {
                    stages += 1;
                    file.env.clear();
                    file.expose.clear();
                    file.user = None;
                    file.workdir = None;
                    file.entrypoint.clear();
                    file.healthcheck.clear();
                    file.healthcheck_options.clear();
                }
                "ARG" if stages == 0 => file.args.push(pair(rest)),
                "ENV" => file.env.extend(rest.split_whitespace().map(pair)),
                "EXPOSE" => file.expose.extend(rest.split_whitespace().map(|port| {
                    port.trim_end_matches("/tcp")
                        .parse::<u16>()
                        .unwrap_or_else(|_| panic!("EXPOSE {port} is not a TCP port"))
                })),
                "USER" => file.user = Some(rest.to_owned()),
                "WORKDIR" => file.workdir = Some(rest.to_owned()),
                "ENTRYPOINT" => file.entrypoint = exec_form("ENTRYPOINT", rest),
                "HEALTHCHECK" => {
                    let (options, command) = rest
                        .split_once("CMD ")
                        .unwrap_or_else(|| panic!("HEALTHCHECK without CMD: {rest}"));
                    file.healthcheck = exec_form("HEALTHCHECK CMD", command);
                    file.healthcheck_options = options
                        .split_whitespace()
                        .map(|option| pair(option.trim_start_matches("--")))
                        .collect();
                }
                _ => {}
            }
        }
        file
    }

    pub fn arg(&self, name: &str) -> Option<&str> {
        lookup(&self.args, name)
    }

    pub fn env(&self, name: &str) -> Option<&str> {
        lookup(&self.env, name)
    }

    /// A `HEALTHCHECK` option given as whole seconds or milliseconds
    /// (`3s`, `500ms`).
    pub fn healthcheck_duration(&self, option: &str) -> Option<Duration> {
        let value = lookup(&self.healthcheck_options, option)?;
        let parsed = match value.strip_suffix("ms") {
            Some(millis) => millis.parse().ok().map(Duration::from_millis),
            None => value
                .strip_suffix('s')
                .and_then(|secs| secs.parse().ok())
                .map(Duration::from_secs),
        };
        Some(parsed.unwrap_or_else(|| {
            panic!("HEALTHCHECK --{option}={value}: expected whole seconds or ms")
        }))
    }
}

fn lookup<'a>(pairs: &'a [(String, String)], name: &str) -> Option<&'a str> {
    pairs
        .iter()
        .rev()
        .find(|(key, _)| key == name)
        .map(|(_, value)| value.as_str())
}

/// `KEY=VALUE` (the only form the Dockerfile uses).
fn pair(text: &str) -> (String, String) {
    let (key, value) = text
        .split_once('=')
        .unwrap_or_else(|| panic!("expected KEY=VALUE, found {text:?}"));
    (key.to_owned(), value.to_owned())
}

/// An exec-form (JSON array) command: a shell form would put `sh -c` in
/// between, and the image has no shell.
fn exec_form(instruction: &str, text: &str) -> Vec<String> {
    serde_json::from_str(text.trim()).unwrap_or_else(|error| {
        panic!("{instruction} must be exec form (a JSON array): {text} ({error})")
    })
}

/// One manifest of `deploy/kubernetes/`, by file stem.
pub fn manifest(name: &str) -> Value {
    let path = format!("deploy/kubernetes/{name}.yaml");
    serde_saphyr::from_str(&project_file(&path))
        .unwrap_or_else(|error| panic!("{path} is not valid YAML: {error}"))
}

/// The `ConfigMap`'s entries: the environment variables the pod gets.
pub fn configmap_env() -> Vec<(String, String)> {
    let configmap = manifest("configmap");
    configmap["data"]
        .as_object()
        .expect("the ConfigMap has data")
        .iter()
        .map(|(key, value)| {
            let value = value
                .as_str()
                .unwrap_or_else(|| panic!("ConfigMap value of {key} must be a string: {value}"));
            (key.clone(), value.to_owned())
        })
        .collect()
}

/// The environment of the container in the pod: the image's `ENV`, then
/// the `ConfigMap`, which wins on a shared name (as Kubernetes does).
pub fn pod_env() -> Vec<(String, String)> {
    let mut env = Dockerfile::read().env;
    env.extend(configmap_env());
    env
}

/// The Deployment's pod spec.
pub fn pod_spec() -> Value {
    manifest("deployment")["spec"]["template"]["spec"].clone()
}

/// The service's container in the Deployment.
pub fn container() -> Value {
    let spec = pod_spec();
    let containers = spec["containers"]
        .as_array()
        .expect("the pod has containers");
    assert_eq!(containers.len(), 1, "one container per pod: {containers:?}");
    containers[0].clone()
}
