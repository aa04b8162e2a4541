//! The generated project under check: its binary, its folder, and what its
//! own code declares (name, version, kind, settings prefix, default port),
//! read from the files generation wrote rather than repeated here.

use std::{
    fs,
    path::{Path, PathBuf},
    sync::OnceLock,
};

/// The variable naming the binary to check: one a generated project built.
pub const BINARY_VAR: &str = "NEBULA_CHECK_BINARY";
/// The variable naming the generated project's folder (its `Cargo.toml`,
/// `src/lib.rs`, `Dockerfile` and `deploy/`).
pub const PROJECT_VAR: &str = "NEBULA_CHECK_PROJECT";

/// A generated project and the binary built from it.
#[derive(Debug)]
pub struct Project {
    /// The service's binary.
    pub binary: PathBuf,
    /// The project's root folder.
    pub dir: PathBuf,
    /// The package name, which is also the binary's name.
    pub name: String,
    /// The package version, which the image tag follows.
    pub version: String,
    /// The package's `rust-version`.
    pub rust_version: String,
    /// `api`, `worker` or `scheduler` (`SERVICE_KIND` in `src/lib.rs`).
    pub kind: String,
    /// The prefix of the settings' environment variables (`ENV_PREFIX`).
    pub env_prefix: String,
    /// The port of the default listen address (`DEFAULT_PORT`).
    pub default_port: u16,
}

/// The project named by [`PROJECT_VAR`] and [`BINARY_VAR`], read once.
///
/// # Panics
///
/// When either variable is missing or its files do not read: these checks
/// have nothing to run against.
pub fn project() -> &'static Project {
    static PROJECT: OnceLock<Project> = OnceLock::new();
    PROJECT.get_or_init(Project::from_env)
}

impl Project {
    fn from_env() -> Self {
        let path = |var: &str| {
            std::env::var_os(var).map_or_else(
                || {
                    panic!(
                        "{var} is not set: these checks run against a generated project's binary \
                     ({BINARY_VAR}) and folder ({PROJECT_VAR}); the template's harness \
                     (tests/cargo_checks.rs) sets both"
                    )
                },
                PathBuf::from,
            )
        };
        let binary = path(BINARY_VAR);
        let dir = path(PROJECT_VAR);
        assert!(
            binary.is_file(),
            "{BINARY_VAR} names {}, which is not a file",
            binary.display()
        );
        let manifest: toml::Table = read(&dir, "Cargo.toml")
            .parse()
            .unwrap_or_else(|error| panic!("the project's Cargo.toml does not parse: {error}"));
        let package = |key: &str| {
            manifest["package"][key]
                .as_str()
                .unwrap_or_else(|| panic!("the project's Cargo.toml has no package.{key}"))
                .to_owned()
        };
        let code = read(&dir, "src/lib.rs");
        let default_port = constant(&code, "DEFAULT_PORT");
        Self {
            binary,
            name: package("name"),
            version: package("version"),
            rust_version: package("rust-version"),
            kind: constant(&code, "SERVICE_KIND").trim_matches('"').to_owned(),
            env_prefix: constant(&code, "ENV_PREFIX").trim_matches('"').to_owned(),
            default_port: default_port
                .parse()
                .unwrap_or_else(|error| panic!("DEFAULT_PORT = {default_port}: {error}")),
            dir,
        }
    }

    /// A file of the project, read whole.
    ///
    /// # Panics
    ///
    /// When it does not read.
    #[must_use]
    pub fn file(&self, path: &str) -> String {
        read(&self.dir, path)
    }

    /// The environment variable for a settings key such as
    /// `HTTP__LISTEN`.
    #[must_use]
    pub fn var(&self, key: &str) -> String {
        format!("{}_{key}", self.env_prefix)
    }
}

fn read(dir: &Path, path: &str) -> String {
    let path = dir.join(path);
    fs::read_to_string(&path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// The value of `pub const NAME: Type = value;` in `code`, as written.
fn constant(code: &str, name: &str) -> String {
    let prefix = format!("pub const {name}: ");
    code.lines()
        .find_map(|line| line.strip_prefix(&prefix))
        .and_then(|rest| rest.split_once(" = "))
        .and_then(|(_, value)| value.strip_suffix(';'))
        .unwrap_or_else(|| panic!("src/lib.rs declares no `pub const {name}`"))
        .to_owned()
}
