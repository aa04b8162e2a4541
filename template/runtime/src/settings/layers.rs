//! Reading the settings layers and turning failures into errors that say
//! which key, in which layer, and what would be valid.

use std::{fmt, path::PathBuf};

use config::{Config, ConfigError, Environment, File, FileFormat, Map, Source, Value, ValueKind};

use super::{DEFAULT_CONFIG_FILE, Overrides, Problems, Section, Settings};
use crate::{Service, telemetry::LogFormat};

/// Where a setting's value came from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Origin {
    /// The service's built-in defaults.
    Default,
    /// A config file.
    File(PathBuf),
    /// The service's environment variables, with this prefix.
    Environment(&'static str),
    /// `RUST_LOG`, which replaces `log.level`.
    RustLog,
    /// A command-line flag.
    Flag(&'static str),
}

impl Origin {
    /// Describes where `key` was set in this layer, down to the variable name.
    fn describe(&self, key: &str) -> String {
        match self {
            Self::Default => "built-in default".to_owned(),
            Self::File(path) => format!("config file {}", path.display()),
            Self::Environment(prefix) => {
                // An item of a list (`hosts[0]`) comes from the list's
                // one variable.
                let list = key.split_once('[').map_or(key, |(list, _)| list);
                format!("environment variable {}", env_var_for(prefix, list))
            }
            Self::RustLog => "environment variable RUST_LOG".to_owned(),
            Self::Flag(flag) => format!("command-line flag {flag}"),
        }
    }
}

/// The environment variable that sets `key` for a service whose variables
/// start with `prefix`, e.g. `http.listen` -> `PREFIX_HTTP__LISTEN`.
#[must_use]
pub fn env_var_for(prefix: &str, key: &str) -> String {
    format!("{prefix}_{}", key.replace('.', "__").to_uppercase())
}

/// Why the settings could not be loaded; each names the key, where its
/// value came from, and what would be valid.
#[derive(Debug, thiserror::Error)]
pub enum SettingsError {
    /// A key no section knows.
    #[error("unknown setting `{key}` (from {origin}); valid keys here: {valid}")]
    UnknownKey {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: String,
        /// The keys known at that level.
        valid: String,
    },
    /// `{PREFIX}_HTTP_LISTEN` where `{PREFIX}_HTTP__LISTEN` was meant.
    #[error(
        "environment variable {name} starts like a setting but has no `__` between section and key; did you mean {suggestion}?"
    )]
    MisspeltVariable {
        /// The variable as given.
        name: String,
        /// The variable it likely means.
        suggestion: String,
    },
    /// A value of the wrong type or out of range.
    #[error("invalid setting `{key}` (from {origin}): {reason}")]
    Invalid {
        /// The dotted key.
        key: String,
        /// Where it was set.
        origin: String,
        /// What would be valid.
        reason: String,
    },
    /// More than one of the above, all reported at once.
    #[error("{}", list(.0))]
    Several(Vec<SettingsError>),
    /// A config file that could not be read or parsed.
    #[error("config file {path} could not be read: {reason}")]
    File {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        reason: String,
    },
    /// Anything else the `config` crate reports.
    #[error("settings could not be loaded: {0}")]
    Other(String),
}

fn list(errors: &[SettingsError]) -> String {
    let lines: Vec<String> = errors.iter().map(|error| format!("  - {error}")).collect();
    format!("{} invalid settings:\n{}", errors.len(), lines.join("\n"))
}

struct Layer {
    origin: Origin,
    config: Config,
}

pub(super) fn load<S: Service>(
    overrides: &Overrides,
    env: impl IntoIterator<Item = (String, String)>,
) -> Result<Settings<S>, SettingsError> {
    let env: Map<String, String> = env.into_iter().collect();
    let layers = read_layers::<S>(overrides, &env)?;
    reject_unknown_keys(&layers)?;

    let mut merged = Config::builder();
    for layer in &layers {
        merged = merged.add_source(layer.config.clone());
    }
    let merged = merged
        .build()
        .map_err(|error| SettingsError::Other(error.to_string()))?;
    let settings: Settings<S> = merged
        .try_deserialize()
        .map_err(|error| deserialize_error(&layers, error))?;

    let mut problems = Problems::default();
    settings.validate(&mut problems);
    let mut errors: Vec<SettingsError> = problems
        .into_inner()
        .into_iter()
        .map(|(key, reason)| SettingsError::Invalid {
            origin: origin_of(&layers, &key),
            key,
            reason,
        })
        .collect();
    match errors.len() {
        0 => Ok(settings),
        1 => Err(errors.remove(0)),
        _ => Err(SettingsError::Several(errors)),
    }
}

fn read_layers<S: Service>(
    overrides: &Overrides,
    env: &Map<String, String>,
) -> Result<Vec<Layer>, SettingsError> {
    // config's own serializer drops an empty list (then "missing"), and
    // TOML leaves out a `None` (then an unknown key): both, TOML on top.
    let settings = Settings::<S>::default();
    let defaults = toml::to_string(&settings)
        .map_err(|error| SettingsError::Other(error.to_string()))
        .and_then(|text| {
            let serialized = Config::try_from(&settings)
                .map_err(|error| SettingsError::Other(error.to_string()))?;
            Config::builder()
                .add_source(serialized)
                .add_source(File::from_str(&text, FileFormat::Toml))
                .build()
                .map_err(|error| SettingsError::Other(error.to_string()))
        })?;
    let mut layers = vec![Layer {
        origin: Origin::Default,
        config: defaults,
    }];

    let (path, required) = match &overrides.config_file {
        Some(path) => (path.clone(), true),
        None => (PathBuf::from(DEFAULT_CONFIG_FILE), false),
    };
    let file = Config::builder()
        .add_source(
            File::from(path.as_path())
                .format(FileFormat::Toml)
                .required(required),
        )
        .build()
        .map_err(|error| SettingsError::File {
            path: path.clone(),
            reason: file_error_reason(error),
        })?;
    layers.push(Layer {
        origin: Origin::File(path),
        config: file,
    });

    let sections: Vec<String> = table(&layers[0].config).into_keys().collect();
    let mut service_env = service_variables(S::ENV_PREFIX, env, &sections)?;
    // A list's items are trimmed and empty ones dropped (`a, b,` is
    // `["a", "b"]`), before config splits the value at its commas.
    for key in S::Settings::ENVIRONMENT_LISTS {
        let variable = env_var_for(S::ENV_PREFIX, key);
        for (name, value) in &mut service_env {
            if name.eq_ignore_ascii_case(&variable) {
                *value = value
                    .split(',')
                    .map(str::trim)
                    .filter(|item| !item.is_empty())
                    .collect::<Vec<_>>()
                    .join(",");
            }
        }
    }
    let mut variables = Environment::with_prefix(S::ENV_PREFIX)
        .prefix_separator("_")
        .separator("__")
        .try_parsing(true)
        .source(Some(service_env));
    if !S::Settings::ENVIRONMENT_LISTS.is_empty() {
        // Only the keys named are split at commas; every other value stays
        // a string.
        variables = variables.list_separator(",");
        for key in S::Settings::ENVIRONMENT_LISTS {
            variables = variables.with_list_parse_key(key);
        }
    }
    let environment = Config::builder()
        .add_source(variables)
        .build()
        .map_err(|error| SettingsError::Other(error.to_string()))?;
    layers.push(Layer {
        origin: Origin::Environment(S::ENV_PREFIX),
        config: environment,
    });

    if let Some(level) = env.get("RUST_LOG") {
        layers.push(single_key_layer(
            Origin::RustLog,
            "log.level",
            level.clone(),
        )?);
    }
    if let Some(listen) = overrides.listen {
        layers.push(single_key_layer(
            Origin::Flag("--listen"),
            "http.listen",
            listen.to_string(),
        )?);
    }
    if let Some(format) = overrides.log_format {
        let format = match format {
            LogFormat::Text => "text",
            LogFormat::Json => "json",
        };
        layers.push(single_key_layer(
            Origin::Flag("--log-format"),
            "log.format",
            format.to_owned(),
        )?);
    }
    Ok(layers)
}

/// The environment variables that are settings: `{PREFIX}_SECTION__KEY`.
///
/// Others that merely share the prefix are left alone: Kubernetes, for one,
/// injects `{PREFIX}_SERVICE_HOST` and `{PREFIX}_PORT` for a Service
/// named like this one. A variable that names a known section with a single
/// underscore (`{PREFIX}_HTTP_LISTEN`) is a typo, and an error.
fn service_variables(
    env_prefix: &str,
    env: &Map<String, String>,
    sections: &[String],
) -> Result<Map<String, String>, SettingsError> {
    let prefix = format!("{env_prefix}_");
    let mut settings = Map::new();
    for (name, value) in env {
        let Some(rest) = name
            .to_uppercase()
            .strip_prefix(&prefix)
            .map(str::to_lowercase)
        else {
            continue;
        };
        if rest.contains("__") {
            settings.insert(name.clone(), value.clone());
        } else if let Some(section) = sections
            .iter()
            .find(|section| rest.starts_with(&format!("{section}_")))
        {
            let key = format!("{section}.{}", &rest[section.len() + 1..]);
            return Err(SettingsError::MisspeltVariable {
                name: name.clone(),
                suggestion: env_var_for(env_prefix, &key),
            });
        }
    }
    Ok(settings)
}

fn single_key_layer(origin: Origin, key: &str, value: String) -> Result<Layer, SettingsError> {
    let config = Config::builder()
        .set_override(key, value)
        .and_then(config::ConfigBuilder::<config::builder::DefaultState>::build)
        .map_err(|error| SettingsError::Other(error.to_string()))?;
    Ok(Layer { origin, config })
}

fn file_error_reason(error: ConfigError) -> String {
    match error {
        ConfigError::FileParse { cause, .. } | ConfigError::Foreign(cause) => cause.to_string(),
        other => other.to_string(),
    }
}

/// Fails on the first key that no part of [`Settings`] knows, naming the
/// layer it came from. The defaults layer holds every known key, so it is the
/// schema the other layers are checked against. Arrays are left to serde,
/// which rejects unknown fields inside their elements.
fn reject_unknown_keys(layers: &[Layer]) -> Result<(), SettingsError> {
    let Some((schema, rest)) = layers.split_first() else {
        return Ok(());
    };
    let schema = table(&schema.config);
    for layer in rest {
        check_table(&schema, &table(&layer.config), "", &layer.origin)?;
    }
    Ok(())
}

fn table(config: &Config) -> Map<String, Value> {
    config.collect().unwrap_or_default()
}

fn check_table(
    schema: &Map<String, Value>,
    given: &Map<String, Value>,
    prefix: &str,
    origin: &Origin,
) -> Result<(), SettingsError> {
    for (name, value) in given {
        let key = if prefix.is_empty() {
            name.clone()
        } else {
            format!("{prefix}.{name}")
        };
        let Some(known) = schema.get(name) else {
            let mut valid: Vec<&str> = schema.keys().map(String::as_str).collect();
            valid.sort_unstable();
            return Err(SettingsError::UnknownKey {
                origin: origin.describe(&key),
                key,
                valid: valid.join(", "),
            });
        };
        if let (ValueKind::Table(known), ValueKind::Table(value)) = (&known.kind, &value.kind) {
            check_table(known, value, &key, origin)?;
        }
    }
    Ok(())
}

/// The most specific layer that sets `key` (or one of its parents).
fn origin_of(layers: &[Layer], key: &str) -> String {
    let mut candidate = key;
    loop {
        if let Some(layer) = layers
            .iter()
            .rev()
            .find(|layer| layer.config.get::<Value>(candidate).is_ok())
        {
            return layer.origin.describe(candidate);
        }
        match candidate.rfind(['.', '[']) {
            Some(end) => candidate = &candidate[..end],
            None => return Origin::Default.describe(key),
        }
    }
}

fn deserialize_error(layers: &[Layer], error: ConfigError) -> SettingsError {
    match error {
        ConfigError::Type {
            key: Some(key),
            unexpected,
            expected,
            ..
        } => SettingsError::Invalid {
            origin: origin_of(layers, &key),
            key,
            reason: format!("expected {expected}, found {unexpected}"),
        },
        ConfigError::At {
            error,
            key: Some(key),
            ..
        } => SettingsError::Invalid {
            origin: origin_of(layers, &key),
            key,
            reason: error.to_string(),
        },
        other => SettingsError::Other(other.to_string()),
    }
}

impl fmt::Display for Origin {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Environment(prefix) => write!(f, "environment variables {prefix}_*"),
            other => f.write_str(&other.describe("")),
        }
    }
}
