//! Shared machinery of the template's test harness: generating a project (with
//! the cargo-generate library or binary), running cargo in it, and reading
//! what was generated.
//!
//! Every test crate under `tests/` includes this module and uses a different
//! part of it, hence the `dead_code` allowance.
#![allow(
    dead_code,
    reason = "each test crate uses a different part of this module"
)]

use std::{
    ffi::OsStr,
    fmt::Write as _,
    fs,
    io::{self, Write as _},
    os::unix::fs::PermissionsExt,
    path::{Path, PathBuf},
    process::{Command, Output, Stdio},
    sync::{Mutex, Once, PoisonError},
    time::Instant,
};

use cargo_generate::{GenerateArgs, TemplatePath, Vcs};
use tempfile::TempDir;

/// The service types the template offers (`service_type` placeholder).
pub const SERVICE_TYPES: [&str; 3] = ["api", "worker", "scheduler"];

/// Set to `1` (CI does) to fail, instead of skip, the tests that need the
/// `cargo-generate` binary when it is not installed.
pub const REQUIRE_CLI_VAR: &str = "NEBULA_TEMPLATE_REQUIRE_CLI";

/// Whether `var` is `1`: a tool the harness would skip without is required.
fn is_required(var: &str) -> bool {
    std::env::var(var).is_ok_and(|value| value == "1")
}

/// Lines of captured output shown when a command fails.
const TAIL_LINES: usize = 80;

/// The repository root: the template source given to cargo-generate.
pub fn repo_root() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The folder holding the generated project's files, unrendered.
pub fn raw_template_dir() -> PathBuf {
    repo_root().join("template")
}

/// One target directory for every generated project, whatever its service
/// type and however it was generated: the dependencies are compiled once and
/// reused, as long as the feature sets agree (which is why every build below
/// uses `--all-targets`).
pub fn shared_target_dir() -> PathBuf {
    repo_root().join("target").join("generated")
}

/// Writes a line to the real stderr, bypassing the test harness's capture, so
/// that progress and timing show up in a plain `cargo test` run.
pub fn note(line: &str) {
    let _ = writeln!(io::stderr().lock(), "{line}");
}

// ---------------------------------------------------------------------------
// Process-wide state used by the cargo-generate library
// ---------------------------------------------------------------------------

/// The cargo-generate library reads the current directory and the
/// environment (`USER`, `CARGO_GENERATE_VALUE_*`, ...) and keeps global UI
/// state; it is not documented as safe to call from several threads at once.
/// Test threads run in parallel, so every library call holds this lock.
static GENERATION: Mutex<()> = Mutex::new(());

/// Environment variables through which cargo-generate takes placeholder
/// values besides `--define`; a developer's shell must not change what the
/// tests generate.
fn is_ambient_template_value(key: &OsStr) -> bool {
    key.to_str().is_some_and(|key| {
        key.starts_with("CARGO_GENERATE_VALUE_") || key == "CARGO_GENERATE_TEMPLATE_VALUES_FILE"
    })
}

/// Makes the process environment fit for generation, once: cargo-generate
/// fails with "could not determine the current user" when it finds no author
/// (no `USER` and no git identity, as in a bare container), and ambient
/// placeholder values are dropped.
fn prepare_process_env() {
    static PREPARED: Once = Once::new();
    PREPARED.call_once(|| {
        let ambient: Vec<_> = std::env::vars_os()
            .map(|(key, _)| key)
            .filter(|key| is_ambient_template_value(key))
            .collect();
        // SAFETY: runs once, while holding `GENERATION`, before the first
        // generation. Other test threads only touch the environment through
        // std (reads, `Command::spawn`), which synchronizes with these writes;
        // nothing in this harness reads it through libc meanwhile.
        unsafe {
            if std::env::var_os("USER").is_none() {
                std::env::set_var("USER", "nebula-template-tests");
            }
            for key in ambient {
                std::env::remove_var(key);
            }
        }
    });
}

// ---------------------------------------------------------------------------
// Scratch space outside the repository
// ---------------------------------------------------------------------------

/// A temporary folder outside the repository holding an empty cargo-generate
/// configuration (so the user's `$CARGO_HOME/cargo-generate.toml` cannot
/// interfere) and an empty output folder to generate into.
///
/// Outside the repository because cargo-generate edits (or trips over) a
/// Cargo workspace found above the destination. Deleted on drop.
pub struct Scratch {
    dir: TempDir,
}

impl Scratch {
    pub fn new() -> Self {
        let dir = tempfile::Builder::new()
            .prefix("nebula-template-")
            .tempdir()
            .expect("cannot create a temporary folder");
        assert!(
            !dir.path().starts_with(repo_root()),
            "the temporary folder {} is inside the repository; point TMPDIR elsewhere",
            dir.path().display()
        );
        fs::write(dir.path().join("cargo-generate-config.toml"), "")
            .expect("cannot write the empty cargo-generate config");
        fs::create_dir(dir.path().join("out")).expect("cannot create the output folder");
        Self { dir }
    }

    /// The scratch folder itself.
    pub fn root(&self) -> &Path {
        self.dir.path()
    }

    /// The empty cargo-generate configuration file.
    pub fn config(&self) -> PathBuf {
        config_in(self.root())
    }

    /// The folder projects are generated into (empty before generation).
    pub fn out(&self) -> PathBuf {
        out_in(self.root())
    }

    /// Names of the entries in [`Self::out`], sorted.
    pub fn out_entries(&self) -> Vec<String> {
        let mut names: Vec<String> = fs::read_dir(self.out())
            .expect("cannot list the output folder")
            .map(|entry| {
                entry
                    .expect("cannot list the output folder")
                    .file_name()
                    .to_string_lossy()
                    .into_owned()
            })
            .collect();
        names.sort();
        names
    }

    /// A subfolder for anything else a test needs (created on demand).
    pub fn path(&self, name: &str) -> PathBuf {
        let path = self.dir.path().join(name);
        fs::create_dir_all(&path).expect("cannot create a scratch folder");
        path
    }
}

/// [`Scratch::config`] of the scratch folder `root`.
fn config_in(root: &Path) -> PathBuf {
    root.join("cargo-generate-config.toml")
}

/// [`Scratch::out`] of the scratch folder `root`.
fn out_in(root: &Path) -> PathBuf {
    root.join("out")
}

// ---------------------------------------------------------------------------
// Generation with the library (cargo-generate 0.26.0)
// ---------------------------------------------------------------------------

/// Generates `name` from the repository with the cargo-generate library into
/// `scratch.out()`, the way `cargo generate --path <repo> --name <name>
/// --silent --vcs none --no-workspace -d <defines>` would.
///
/// No `auto_path`/`subfolder`: the root `cargo-generate.toml` lists
/// `sub_templates = ["template"]`, and with `--silent` cargo-generate picks
/// the first one, exactly as a user's `--path`/`--git` run does.
/// `no_fmt`: cargo-generate 0.23 has no rustfmt step, so the template has to
/// render formatted code by itself, and `cargo fmt --check` has to see the
/// rendered code untouched.
///
/// Returns the project folder, or the error chain as text.
pub fn generate_with_library(
    scratch: &Scratch,
    name: &str,
    defines: &[String],
) -> Result<PathBuf, String> {
    generate_with_library_in(scratch.root(), name, defines)
}

/// [`generate_with_library`] in the scratch folder `root`.
fn generate_with_library_in(
    root: &Path,
    name: &str,
    defines: &[String],
) -> Result<PathBuf, String> {
    let _serialized = GENERATION.lock().unwrap_or_else(PoisonError::into_inner);
    prepare_process_env();
    let args = GenerateArgs {
        template_path: TemplatePath {
            path: Some(repo_root().to_string_lossy().into_owned()),
            ..TemplatePath::default()
        },
        name: Some(name.to_owned()),
        silent: true,
        vcs: Some(Vcs::None),
        no_workspace: true,
        no_fmt: true,
        bin: true,
        lib: false,
        define: defines.to_vec(),
        config: Some(config_in(root)),
        destination: Some(out_in(root)),
        ..GenerateArgs::default()
    };
    cargo_generate::generate(args).map_err(|error| strip_ansi(&format!("{error:#}")))
}

// What the library prints goes to this process's stderr, which the test
// harness captures out of reach. To read it, a test re-runs its own test
// binary with one ignored test selected, [`LIBRARY_CHILD_TEST`], that
// generates and exits (every crate using this declares it:
// `#[test] #[ignore = "..."] fn library_child() { common::library_child(); }`).

/// Name of the ignored test that [`generate_with_library_in_child`] runs.
pub const LIBRARY_CHILD_TEST: &str = "library_child";

/// The child's inputs, in its environment.
const CHILD_SCRATCH_VAR: &str = "NEBULA_TEMPLATE_CHILD_SCRATCH";
const CHILD_NAME_VAR: &str = "NEBULA_TEMPLATE_CHILD_NAME";
const CHILD_DEFINES_VAR: &str = "NEBULA_TEMPLATE_CHILD_DEFINES";
/// Separates the defines in [`CHILD_DEFINES_VAR`] (a unit separator, which
/// no test value holds).
const CHILD_DEFINES_SEPARATOR: char = '\u{1f}';
/// The child writes `ok\n<project>` or `err\n<message>` here, in the scratch folder.
const CHILD_RESULT_FILE: &str = "library-child-result";

/// A library generation run in a child process.
pub struct LibraryRun {
    pub result: Result<PathBuf, String>,
    /// Everything the child wrote to stderr (cargo-generate 0.26 writes its
    /// status lines, the hooks' `print` output and its error there), without
    /// colour codes.
    pub stderr: String,
}

/// [`generate_with_library`] in a child process, to read what it prints.
/// The calling test crate must declare the [`LIBRARY_CHILD_TEST`] test.
pub fn generate_with_library_in_child(
    scratch: &Scratch,
    name: &str,
    defines: &[String],
) -> LibraryRun {
    let exe = std::env::current_exe().expect("cannot find the test binary");
    let separator = CHILD_DEFINES_SEPARATOR.to_string();
    let output = Command::new(&exe)
        .args([LIBRARY_CHILD_TEST, "--exact", "--ignored", "--nocapture"])
        .env(CHILD_SCRATCH_VAR, scratch.root())
        .env(CHILD_NAME_VAR, name)
        .env(CHILD_DEFINES_VAR, defines.join(&separator))
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1")
        .stdin(Stdio::null())
        .output()
        .unwrap_or_else(|error| panic!("cannot run {}: {error}", exe.display()));
    assert!(
        output.status.success(),
        "the library child ({} {LIBRARY_CHILD_TEST}) failed ({}):\n{}",
        exe.display(),
        output.status,
        output_tail(&output)
    );
    let written =
        fs::read_to_string(scratch.root().join(CHILD_RESULT_FILE)).unwrap_or_else(|error| {
            panic!(
                "the library child wrote no result ({error}); was `{LIBRARY_CHILD_TEST}` declared \
                 in this test crate?\n{}",
                output_tail(&output)
            )
        });
    let result = match written.split_once('\n') {
        Some(("ok", project)) => Ok(PathBuf::from(project)),
        Some(("err", message)) => Err(message.to_owned()),
        _ => panic!("the library child wrote an unreadable result: {written:?}"),
    };
    LibraryRun {
        result,
        stderr: strip_ansi(&String::from_utf8_lossy(&output.stderr)),
    }
}

/// The body of the [`LIBRARY_CHILD_TEST`] test: generates what the parent
/// asked for and writes the outcome for it. Run without a parent (its
/// environment variables unset), it fails.
pub fn library_child() {
    let root = PathBuf::from(
        std::env::var_os(CHILD_SCRATCH_VAR)
            .expect("run by generate_with_library_in_child only, which sets the scratch folder"),
    );
    let name = std::env::var(CHILD_NAME_VAR).expect("the parent sets the project name");
    let defines: Vec<String> = std::env::var(CHILD_DEFINES_VAR)
        .expect("the parent sets the defines")
        .split(CHILD_DEFINES_SEPARATOR)
        .filter(|define| !define.is_empty())
        .map(str::to_owned)
        .collect();
    let outcome = match generate_with_library_in(&root, &name, &defines) {
        Ok(project) => format!("ok\n{}", project.display()),
        Err(message) => format!("err\n{message}"),
    };
    fs::write(root.join(CHILD_RESULT_FILE), outcome).expect("cannot write the child's result");
}

/// A project generated by the library for one service type, with the other
/// placeholders at their defaults unless given; deleted on drop.
pub struct Generated {
    pub service_type: &'static str,
    pub project: PathBuf,
    _scratch: Scratch,
}

impl Generated {
    /// Generates a project of `service_type`, named `<prefix>-<service_type>`
    /// so that projects of different types never share a binary name in the
    /// shared target directory. Panics with cargo-generate's message on error.
    pub fn new(prefix: &str, service_type: &'static str) -> Self {
        Self::named(&format!("{prefix}-{service_type}"), service_type)
    }

    /// Generates a project of `service_type` named `name`.
    pub fn named(name: &str, service_type: &'static str) -> Self {
        Self::with_options(name, service_type, &[])
    }

    /// Generates a project of `service_type` named `name`, with `options`
    /// (`key=value`) for the other placeholders.
    pub fn with_options(name: &str, service_type: &'static str, options: &[&str]) -> Self {
        let scratch = Scratch::new();
        let started = Instant::now();
        let mut defines = vec![format!("service_type={service_type}")];
        defines.extend(options.iter().map(|&option| option.to_owned()));
        let project = generate_with_library(&scratch, name, &defines).unwrap_or_else(|error| {
            panic!("[{service_type}] cargo-generate (library) failed for {name}:\n{error}")
        });
        note(&format!(
            "[{service_type}] generated {name} with the library in {:.1}s",
            started.elapsed().as_secs_f64()
        ));
        Self {
            service_type,
            project,
            _scratch: scratch,
        }
    }
}

// ---------------------------------------------------------------------------
// Generation with the binary (cargo-generate 0.23.x)
// ---------------------------------------------------------------------------

/// Outcome of one `cargo generate` run.
pub struct CliRun {
    pub command: String,
    pub output: Output,
}

impl CliRun {
    pub fn succeeded(&self) -> bool {
        self.output.status.success()
    }

    /// Both streams, without colour codes: 0.23 writes its status lines to
    /// stdout and its error to stderr, 0.26 writes both to stderr.
    pub fn text(&self) -> String {
        strip_ansi(&format!(
            "{}{}",
            String::from_utf8_lossy(&self.output.stdout),
            String::from_utf8_lossy(&self.output.stderr)
        ))
    }

    /// The error the run ended with: the text from the `Error:` line that a
    /// failing `main` prints, without the status lines before it (which
    /// echo the placeholder values, accepted ones included).
    pub fn error_text(&self) -> String {
        let text = self.text();
        match text.find("Error:") {
            Some(at) => text[at..].to_owned(),
            None => text,
        }
    }
}

impl CliRun {
    /// Panics with the command, its exit status and output unless it
    /// succeeded; `context` (such as "[api] (cargo-generate 0.23.14)") leads
    /// the message.
    pub fn assert_succeeded(&self, context: &str) {
        assert!(
            self.succeeded(),
            "{context} `{}` failed ({}):\n{}",
            self.command,
            self.output.status,
            self.text()
        );
    }
}

/// Panics unless `project` and `reference` hold the same files with the same
/// bytes, and returns how many there are. `what` says what generated the two
/// (such as "[api] the binary and the library").
pub fn assert_same_files(what: &str, project: &Path, reference: &Path) -> usize {
    let files = files_below(project);
    assert_eq!(
        files,
        files_below(reference),
        "{what} generate different file sets ({} and {})",
        project.display(),
        reference.display()
    );
    let differing: Vec<String> = files
        .iter()
        .filter(|relative| {
            fs::read(project.join(relative)).ok() != fs::read(reference.join(relative)).ok()
        })
        .map(|relative| relative.display().to_string())
        .collect();
    assert!(
        differing.is_empty(),
        "{what} render these files differently: {differing:?}\n(compare {} with {})",
        project.display(),
        reference.display()
    );
    files.len()
}

/// `cargo-generate <version>` of the installed binary, or `None` when it is
/// not installed. With `NEBULA_TEMPLATE_REQUIRE_CLI=1` a missing binary panics;
/// otherwise the caller should skip, and a note says so.
pub fn cli_version(skipped_test: &str) -> Option<String> {
    let probe = Command::new("cargo")
        .args(["generate", "--version"])
        .output();
    match probe {
        Ok(output) if output.status.success() => {
            // 0.23 prints "cargo generate-generate 0.23.14": keep the version.
            let text = String::from_utf8_lossy(&output.stdout);
            let version = text
                .split_whitespace()
                .last()
                .unwrap_or("(unknown version)");
            Some(format!("cargo-generate {version}"))
        }
        _ => {
            assert!(
                !is_required(REQUIRE_CLI_VAR),
                "`cargo generate` is not installed, and {REQUIRE_CLI_VAR}=1 requires it. \
                 Install it with: cargo install cargo-generate@~0.23 --locked"
            );
            note(&format!(
                "NOTE: skipping {skipped_test}: `cargo generate` is not installed \
                 (install it with `cargo install cargo-generate@~0.23 --locked`; \
                 {REQUIRE_CLI_VAR}=1 turns this skip into a failure)"
            ));
            None
        }
    }
}

/// Runs `cargo generate --path <template source> --name <name> --silent
/// --vcs none --no-workspace --config <empty> -d <defines>` in `scratch.out()`.
pub fn generate_with_cli(scratch: &Scratch, name: &str, defines: &[String]) -> CliRun {
    generate_with_cli_adjusted(scratch, name, defines, |_| {})
}

/// [`generate_with_cli`], with `adjust` applied to the command last (more
/// arguments, environment variables).
pub fn generate_with_cli_adjusted(
    scratch: &Scratch,
    name: &str,
    defines: &[String],
    adjust: impl FnOnce(&mut Command),
) -> CliRun {
    let source = template_source_snapshot(scratch);
    run_cli(
        scratch,
        &["--path".as_ref(), source.as_os_str()],
        name,
        defines,
        adjust,
    )
}

/// `cargo generate --git <url>`, otherwise as [`generate_with_cli`].
pub fn generate_with_cli_from_git(
    scratch: &Scratch,
    url: &str,
    name: &str,
    defines: &[String],
) -> CliRun {
    run_cli(
        scratch,
        &["--git".as_ref(), url.as_ref()],
        name,
        defines,
        |_| {},
    )
}

/// Runs `cargo generate <source> --name <name> --silent --vcs none
/// --no-workspace --config <empty> -d <defines>` in `scratch.out()`, with the
/// ambient placeholder values removed from its environment.
fn run_cli(
    scratch: &Scratch,
    source: &[&OsStr],
    name: &str,
    defines: &[String],
    adjust: impl FnOnce(&mut Command),
) -> CliRun {
    let mut command = Command::new("cargo");
    command
        .arg("generate")
        .args(source)
        .args([
            "--name",
            name,
            "--silent",
            "--vcs",
            "none",
            "--no-workspace",
        ])
        .arg("--config")
        .arg(scratch.config())
        .current_dir(scratch.out())
        .env("RUST_BACKTRACE", "0")
        .env("NO_COLOR", "1");
    for define in defines {
        command.arg("--define").arg(define);
    }
    for (key, _) in std::env::vars_os() {
        if is_ambient_template_value(&key) {
            command.env_remove(key);
        }
    }
    if std::env::var_os("USER").is_none() {
        command.env("USER", "nebula-template-tests");
    }
    adjust(&mut command);
    let shown = describe(&command);
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("cannot run `{shown}`: {error}"));
    CliRun {
        command: shown,
        output,
    }
}

/// A copy of the repository without `.git` and build folders, used as the
/// binary's `--path`.
///
/// cargo-generate 0.23 copies the whole `--path` folder, `target/` included
/// (0.26 skips folders tagged with `CACHEDIR.TAG`), and this harness fills
/// `target/` with gigabytes of build output. The copy holds what a `--git`
/// user gets: the same files minus build output.
fn template_source_snapshot(scratch: &Scratch) -> PathBuf {
    fn copy_tree(from: &Path, to: &Path) {
        fs::create_dir_all(to).expect("cannot create the template snapshot");
        for entry in fs::read_dir(from).expect("cannot read the repository") {
            let entry = entry.expect("cannot read the repository");
            let path = entry.path();
            let kind = entry.file_type().expect("cannot read the repository");
            if kind.is_dir() {
                let skip = entry.file_name() == ".git"
                    || (from == repo_root() && entry.file_name() == "target")
                    || path.join("CACHEDIR.TAG").exists();
                if !skip {
                    copy_tree(&path, &to.join(entry.file_name()));
                }
            } else if kind.is_file() {
                fs::copy(&path, to.join(entry.file_name()))
                    .expect("cannot copy into the template snapshot");
            }
        }
    }
    let snapshot = scratch.path("template-source");
    copy_tree(&repo_root(), &snapshot);
    snapshot
}

// ---------------------------------------------------------------------------
// Running cargo in a generated project
// ---------------------------------------------------------------------------

/// Runs `cargo <args>` in `project` with the shared target directory, prints
/// its duration, and panics with the command, the service type and the tail
/// of its output when it fails.
pub fn cargo_step(service_type: &str, project: &Path, args: &[&str]) -> Output {
    cargo_step_with_env(service_type, project, args, &[])
}

/// [`cargo_step`] with the `(name, value)` pairs of `env` added to cargo's
/// environment; the notes and the failure message show them before the
/// command. [`POSTGRES_URL_VAR`] reaches cargo only through `env`: one set in
/// the developer's shell is removed, so the generated tests use the server
/// the harness started or none.
pub fn cargo_step_with_env(
    service_type: &str,
    project: &Path,
    args: &[&str],
    env: &[(&str, &str)],
) -> Output {
    let mut command = Command::new("cargo");
    command
        .args(args)
        .current_dir(project)
        .env("CARGO_TARGET_DIR", shared_target_dir())
        .env("CARGO_TERM_COLOR", "never")
        // Disk, not speed: a full run builds some twenty generated projects
        // into the shared folder, and incremental caches with full debug info
        // grew it past the free disk of a CI machine. Each project is built
        // once, so incremental caches buy nothing; line tables keep file and
        // line in a failing test's backtrace.
        .env("CARGO_INCREMENTAL", "0")
        .env("CARGO_PROFILE_DEV_DEBUG", "line-tables-only")
        .env_remove(POSTGRES_URL_VAR)
        .env_remove(POSTGRES_CTL_VAR)
        .envs(env.iter().copied());
    let shown: String = env
        .iter()
        .map(|(name, value)| format!("{name}={value} "))
        .chain([describe(&command)])
        .collect();
    note(&format!("[{service_type}] {shown} ..."));
    let started = Instant::now();
    let output = command
        .output()
        .unwrap_or_else(|error| panic!("[{service_type}] cannot run `{shown}`: {error}"));
    let seconds = started.elapsed().as_secs_f64();
    if output.status.success() {
        note(&format!("[{service_type}] {shown}: ok in {seconds:.1}s"));
        return output;
    }
    note(&format!(
        "[{service_type}] {shown}: FAILED after {seconds:.1}s"
    ));
    panic!(
        "[{service_type}] `{shown}` failed ({}) in {}\n{}",
        output.status,
        project.display(),
        output_tail(&output)
    );
}

/// The last lines of a command's stderr and stdout, for failure messages.
pub fn output_tail(output: &Output) -> String {
    let mut text = String::new();
    for (name, bytes) in [("stderr", &output.stderr), ("stdout", &output.stdout)] {
        let stream = strip_ansi(&String::from_utf8_lossy(bytes));
        // Cargo's progress lines would push the errors out of the tail.
        let lines: Vec<&str> = stream
            .lines()
            .filter(|line| !is_cargo_progress(line))
            .collect();
        let start = lines.len().saturating_sub(TAIL_LINES);
        let _ = writeln!(
            text,
            "--- {name} (last {} of {} lines, cargo progress left out) ---",
            lines.len() - start,
            lines.len()
        );
        for line in &lines[start..] {
            let _ = writeln!(text, "{line}");
        }
    }
    text
}

/// A line of cargo's progress report ("   Compiling foo v1.0", "Blocking
/// waiting for file lock ...").
fn is_cargo_progress(line: &str) -> bool {
    const PROGRESS: [&str; 11] = [
        "Compiling ",
        "Checking ",
        "Blocking ",
        "Updating ",
        "Locking ",
        "Adding ",
        "Downloading ",
        "Downloaded ",
        "Fresh ",
        "Building ",
        "Running ",
    ];
    let line = line.trim_start();
    PROGRESS.iter().any(|word| line.starts_with(word))
}

/// The command as a person would type it (program, arguments, working
/// directory left out).
fn describe(command: &Command) -> String {
    std::iter::once(command.get_program())
        .chain(command.get_args())
        .map(OsStr::to_string_lossy)
        .collect::<Vec<_>>()
        .join(" ")
}

// ---------------------------------------------------------------------------
// Reading files
// ---------------------------------------------------------------------------

/// Every file below `root`, as paths relative to it, sorted.
pub fn files_below(root: &Path) -> Vec<PathBuf> {
    fn walk(root: &Path, dir: &Path, found: &mut Vec<PathBuf>) {
        let entries = fs::read_dir(dir)
            .unwrap_or_else(|error| panic!("cannot list {}: {error}", dir.display()));
        for entry in entries {
            let path = entry.expect("cannot list a folder").path();
            if path.is_dir() {
                walk(root, &path, found);
            } else {
                found.push(path.strip_prefix(root).expect("below root").to_path_buf());
            }
        }
    }
    let mut found = Vec::new();
    if root.is_dir() {
        walk(root, root, &mut found);
    }
    found.sort();
    found
}

/// The text of a file, with the path in the panic message.
pub fn read_text(path: &Path) -> String {
    fs::read_to_string(path)
        .unwrap_or_else(|error| panic!("cannot read {}: {error}", path.display()))
}

/// `text` without terminal escape sequences: cargo-generate colours its
/// messages and rustfmt its diffs when they think they write to a terminal
/// (rustfmt also emits `ESC ( B`, a character-set switch).
pub fn strip_ansi(text: &str) -> String {
    let mut plain = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\u{1b}' {
            plain.push(c);
            continue;
        }
        match chars.next() {
            // CSI: ESC [ parameters final-byte (0x40..=0x7e).
            Some('[') => {
                for c in chars.by_ref() {
                    if ('\u{40}'..='\u{7e}').contains(&c) {
                        break;
                    }
                }
            }
            // OSC: ESC ] ... terminated by BEL or ESC \.
            Some(']') => {
                for c in chars.by_ref() {
                    if c == '\u{7}' || c == '\\' {
                        break;
                    }
                }
            }
            // Character-set designation: ESC ( X and friends.
            Some('(' | ')' | '*' | '+') => {
                chars.next();
            }
            // Any other two-character sequence.
            _ => {}
        }
    }
    plain
}

/// Whether `phrase` occurs in `text` as whole words, ignoring ASCII case:
/// "api" matches "api, worker" but not "rapid" or a random temp-folder name.
pub fn mentions(text: &str, phrase: &str) -> bool {
    let text = text.to_ascii_lowercase();
    let phrase = phrase.to_ascii_lowercase();
    let is_word = |c: char| c.is_alphanumeric() || c == '_';
    text.match_indices(&phrase).any(|(at, _)| {
        let before = text[..at].chars().next_back();
        let after = text[at + phrase.len()..].chars().next();
        !before.is_some_and(is_word) && !after.is_some_and(is_word)
    })
}

// ---------------------------------------------------------------------------
// Dependency locks: the shipped lock, or the newest crates
// ---------------------------------------------------------------------------

/// Set to `newest` to ignore the shipped locks and build against the newest
/// compatible crates (what the nightly workflow does).
pub const DEPS_MODE_VAR: &str = "NEBULA_TEMPLATE_DEPS";

/// Whether builds use the lock shipped for the type, or the newest crates.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DepsMode {
    Locked,
    Newest,
}

impl DepsMode {
    /// From [`DEPS_MODE_VAR`]: `newest`, or `locked` (the default).
    pub fn from_env() -> Self {
        match std::env::var(DEPS_MODE_VAR).as_deref() {
            Ok("newest") => Self::Newest,
            Ok("locked") | Err(_) => Self::Locked,
            Ok(other) => panic!("{DEPS_MODE_VAR}={other}: accepted values are locked, newest"),
        }
    }
}

/// The `(name, version)` of every package in a lock file but the project's own.
fn locked_packages(
    lock: &Path,
    project_name: &str,
) -> std::collections::BTreeSet<(String, String)> {
    let text = read_text(lock);
    let parsed: toml::Table = toml::from_str(&text)
        .unwrap_or_else(|error| panic!("{} does not parse: {error}", lock.display()));
    parsed
        .get("package")
        .and_then(toml::Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|package| {
            let name = package.get("name")?.as_str()?;
            let version = package.get("version")?.as_str()?;
            (name != project_name).then(|| (name.to_owned(), version.to_owned()))
        })
        .collect()
}

/// Gets `project` ready to build in the current [`DepsMode`] and returns the
/// flag its cargo commands need (`--locked`, or nothing).
///
/// Locked: the project came with the lock shipped for its type. Cargo may
/// re-sort it (the project's own entry sorts by its name) but must not change
/// a single package; if it does, the shipped lock is stale and the test fails
/// naming the command that refreshes it. Newest: the lock is dropped and
/// resolved afresh.
pub fn prepare_dependencies(service_type: &str, project: &Path) -> &'static [&'static str] {
    let lock = project.join("Cargo.lock");
    let project_name = project
        .file_name()
        .and_then(OsStr::to_str)
        .unwrap_or_default()
        .to_owned();
    match DepsMode::from_env() {
        DepsMode::Locked => {
            assert!(
                lock.is_file(),
                "[{service_type}] the generated project has no Cargo.lock: template/locks/{service_type}.Cargo.lock \
                 is missing; create it with scripts/refresh-locks"
            );
            let shipped = locked_packages(&lock, &project_name);
            cargo_step(
                service_type,
                project,
                &["metadata", "--format-version", "1", "--quiet"],
            );
            let resolved = locked_packages(&lock, &project_name);
            let added: Vec<_> = resolved.difference(&shipped).collect();
            let dropped: Vec<_> = shipped.difference(&resolved).collect();
            assert!(
                added.is_empty() && dropped.is_empty(),
                "[{service_type}] template/locks/{service_type}.Cargo.lock no longer matches the \
                 dependencies in template/Cargo.toml.liquid and template/runtime/Cargo.toml \
                 (cargo added {added:?} and dropped {dropped:?}). \
                 Regenerate the locks with `scripts/refresh-locks`, run the tests, and commit them."
            );
            &["--locked"]
        }
        DepsMode::Newest => {
            let _ = fs::remove_file(&lock);
            cargo_step(service_type, project, &["update", "--quiet"]);
            &[]
        }
    }
}

// ---------------------------------------------------------------------------
// A throwaway PostgreSQL server for the generated projects' tests
// ---------------------------------------------------------------------------

/// The generated projects' tests read the admin URL of a PostgreSQL server
/// from this variable (each test creates its own database in it) and skip
/// their PostgreSQL tests without it.
pub const POSTGRES_URL_VAR: &str = "NEBULA_TEST_POSTGRES_URL";

/// The generated projects' restart test reads a program that stops and
/// starts the server here ([`TestPostgres::control`]).
pub const POSTGRES_CTL_VAR: &str = "NEBULA_TEST_POSTGRES_CTL";

/// Set to `1` (CI does) to fail, instead of skip, when no PostgreSQL server
/// can be started for the generated projects' tests.
pub const REQUIRE_POSTGRES_VAR: &str = "NEBULA_TEMPLATE_REQUIRE_POSTGRES";

/// Set to `1` (CI does, as root) to fail, instead of skip, the generated
/// tests that mount a tmpfs (the database on a full or read-only volume)
/// when this process cannot mount one.
pub const REQUIRE_MOUNT_VAR: &str = "NEBULA_TEMPLATE_REQUIRE_MOUNT";

/// Whether this process can mount a tmpfs, tried for real: root alone is
/// not enough in an unprivileged container.
pub fn can_mount() -> bool {
    let Ok(folder) = tempfile::tempdir() else {
        return false;
    };
    let mounted = Command::new("mount")
        .args(["-t", "tmpfs", "-o", "size=1m", "tmpfs"])
        .arg(folder.path())
        .stderr(Stdio::null())
        .status()
        .is_ok_and(|status| status.success());
    if mounted {
        let _ = Command::new("umount").arg(folder.path()).status();
    }
    mounted
}

/// Whether the tests that mount a tmpfs must run: they fail, instead of
/// being skipped, where they cannot.
pub fn mount_required() -> bool {
    is_required(REQUIRE_MOUNT_VAR)
}

/// The system user that runs the server when the harness runs as root:
/// `initdb` refuses to run as root.
const POSTGRES_USER: &str = "postgres";

/// How many free ports are tried when another process takes the one found
/// free before the server binds it.
const POSTGRES_PORT_ATTEMPTS: usize = 5;

/// Why no server could be started.
#[derive(Debug)]
pub enum PostgresUnavailable {
    /// `initdb`, `pg_ctl` and `postgres` are neither on `PATH` nor in
    /// `/usr/lib/postgresql/*/bin`.
    Missing,
    /// They are, but the server did not start: why.
    Failed(String),
}

/// The PostgreSQL programs, and whether they run as [`POSTGRES_USER`].
struct PostgresTools {
    bin: PathBuf,
    as_postgres_user: bool,
}

impl PostgresTools {
    /// The first folder on `PATH`, then in `/usr/lib/postgresql/*/bin`
    /// (newest major version first), holding `initdb`, `pg_ctl` and
    /// `postgres`.
    fn find() -> Option<PathBuf> {
        let on_path: Vec<PathBuf> = std::env::var_os("PATH")
            .map(|path| std::env::split_paths(&path).collect())
            .unwrap_or_default();
        let mut installed: Vec<PathBuf> = fs::read_dir("/usr/lib/postgresql")
            .into_iter()
            .flatten()
            .filter_map(|entry| Some(entry.ok()?.path().join("bin")))
            .collect();
        let major = |bin: &PathBuf| -> u32 {
            bin.parent()
                .and_then(Path::file_name)
                .and_then(OsStr::to_str)
                .and_then(|version| version.split('.').next()?.parse().ok())
                .unwrap_or(0)
        };
        installed.sort_by_key(|bin| std::cmp::Reverse(major(bin)));
        on_path.into_iter().chain(installed).find(|bin| {
            ["initdb", "pg_ctl", "postgres"]
                .iter()
                .all(|program| bin.join(program).is_file())
        })
    }

    /// `program` from [`Self::bin`], through `runuser -u postgres --` when
    /// running as root; stdin closed.
    fn command(&self, program: &str) -> Command {
        let path = self.bin.join(program);
        let mut command = if self.as_postgres_user {
            let mut command = Command::new("runuser");
            command.args(["-u", POSTGRES_USER, "--"]).arg(path);
            command
        } else {
            Command::new(path)
        };
        command.stdin(Stdio::null());
        command
    }
}

/// Runs `command` to completion; on failure, the command, its exit status
/// and the tail of its output.
fn run_quietly(command: &mut Command) -> Result<(), String> {
    let shown = describe(command);
    match command.output() {
        Ok(output) if output.status.success() => Ok(()),
        Ok(output) => Err(format!(
            "`{shown}` failed ({})\n{}",
            output.status,
            output_tail(&output)
        )),
        Err(error) => Err(format!("cannot run `{shown}`: {error}")),
    }
}

/// Whether this process runs as root (`id -u` is 0).
fn running_as_root() -> Result<bool, String> {
    let output = Command::new("id")
        .arg("-u")
        .output()
        .map_err(|error| format!("cannot run `id -u`: {error}"))?;
    Ok(String::from_utf8_lossy(&output.stdout).trim() == "0")
}

/// A loopback port nothing listens on right now.
fn free_loopback_port() -> Result<u16, String> {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|listener| listener.local_addr())
        .map(|address| address.port())
        .map_err(|error| format!("cannot find a free loopback port: {error}"))
}

/// A PostgreSQL server of its own: a fresh data folder in a temporary folder,
/// trust authentication, listening on a free loopback port (and a Unix
/// socket in the same temporary folder), durability off for speed. Stopped
/// (`pg_ctl -m immediate stop`) and deleted on drop, a panicking test's
/// unwind included; a test process killed outright leaves it running.
pub struct TestPostgres {
    control: String,
    tools: PostgresTools,
    data: PathBuf,
    url: String,
    /// Deleted after [`Drop::drop`] stopped the server.
    dir: TempDir,
}

impl TestPostgres {
    /// A server for the tests of `whose` (a generated project's type, or
    /// the runtime), or `None` after a note that their PostgreSQL tests are
    /// skipped, when PostgreSQL is not installed or does not start. With
    /// `NEBULA_TEMPLATE_REQUIRE_POSTGRES=1` that panics instead.
    pub fn for_tests(whose: &str) -> Option<Self> {
        let why = match Self::start() {
            Ok(server) => {
                note(&format!(
                    "[{whose}] PostgreSQL test server started: {}",
                    server.url
                ));
                return Some(server);
            }
            Err(PostgresUnavailable::Missing) => "PostgreSQL is not installed (no initdb, \
                pg_ctl and postgres on PATH or in /usr/lib/postgresql/*/bin); install it with \
                `apt-get install postgresql`"
                .to_owned(),
            Err(PostgresUnavailable::Failed(reason)) => {
                format!("the PostgreSQL test server did not start: {reason}")
            }
        };
        assert!(
            !is_required(REQUIRE_POSTGRES_VAR),
            "[{whose}] {REQUIRE_POSTGRES_VAR}=1 requires a PostgreSQL server for these tests, \
             and {why}"
        );
        note(&format!(
            "NOTE: [{whose}] the PostgreSQL tests are skipped: {why} \
             ({REQUIRE_POSTGRES_VAR}=1 turns this skip into a failure)"
        ));
        None
    }

    /// Creates and starts a server.
    pub fn start() -> Result<Self, PostgresUnavailable> {
        let bin = PostgresTools::find().ok_or(PostgresUnavailable::Missing)?;
        Self::start_with(bin).map_err(PostgresUnavailable::Failed)
    }

    fn start_with(bin: PathBuf) -> Result<Self, String> {
        let tools = PostgresTools {
            bin,
            as_postgres_user: running_as_root()?,
        };
        let dir = tempfile::Builder::new()
            .prefix("nebula-postgres-")
            .tempdir()
            .map_err(|error| format!("cannot create a temporary folder: {error}"))?;
        if tools.as_postgres_user {
            run_quietly(
                Command::new("chown")
                    .arg(format!("{POSTGRES_USER}:"))
                    .arg(dir.path()),
            )
            .map_err(|error| {
                format!(
                    "as root, the server runs as the `{POSTGRES_USER}` system user, \
                     which must own its folder: {error}"
                )
            })?;
            run_quietly(
                Command::new("runuser")
                    .args(["-u", POSTGRES_USER, "--", "test", "-w"])
                    .arg(dir.path()),
            )
            .map_err(|_| {
                format!(
                    "the `{POSTGRES_USER}` user cannot reach {}: a parent folder is closed \
                     to it; point TMPDIR to a folder it can traverse",
                    dir.path().display()
                )
            })?;
        }
        let data = dir.path().join("data");
        run_quietly(
            tools
                .command("initdb")
                .args(["-A", "trust", "--no-sync", "-U", POSTGRES_USER])
                .args(["-E", "UTF8", "--locale=C", "-D"])
                .arg(&data),
        )?;
        let log = dir.path().join("log");
        let mut attempt = 0;
        loop {
            attempt += 1;
            let port = free_loopback_port()?;
            let _ = fs::remove_file(&log);
            let options = format!(
                "-c listen_addresses=127.0.0.1 -p {port} -k '{}' -c fsync=off \
                 -c synchronous_commit=off -c full_page_writes=off -c max_connections=200",
                dir.path().display()
            );
            let started = run_quietly(
                tools
                    .command("pg_ctl")
                    .arg("-w")
                    .arg("-D")
                    .arg(&data)
                    .arg("-l")
                    .arg(&log)
                    .args(["-o", &options, "start"]),
            );
            match started {
                Ok(()) => {
                    let control = write_control_program(&tools, dir.path(), &data, &log, &options)?;
                    return Ok(Self {
                        tools,
                        data,
                        url: format!("postgres://{POSTGRES_USER}@127.0.0.1:{port}/postgres"),
                        control,
                        dir,
                    });
                }
                Err(error) => {
                    let log_text = fs::read_to_string(&log).unwrap_or_default();
                    if attempt < POSTGRES_PORT_ATTEMPTS
                        && log_text.contains("Address already in use")
                    {
                        continue;
                    }
                    return Err(format!("{error}--- server log ---\n{log_text}"));
                }
            }
        }
    }

    /// The superuser's URL, `postgres://postgres@127.0.0.1:PORT/postgres`.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The temporary folder holding the data folder, the log and the socket.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// A program that stops (`stop`, fast) or starts again (`start`, on the
    /// same port and settings) this server, for the generated tests'
    /// restart test ([`POSTGRES_CTL_VAR`]).
    pub fn control(&self) -> &str {
        &self.control
    }
}

/// Writes `dir/control`: `control stop` and `control start` for the server
/// on `data`, through `runuser` when the server runs as [`POSTGRES_USER`].
fn write_control_program(
    tools: &PostgresTools,
    dir: &Path,
    data: &Path,
    log: &Path,
    options: &str,
) -> Result<String, String> {
    let pg_ctl = tools.bin.join("pg_ctl");
    let run_as = if tools.as_postgres_user {
        format!("runuser -u {POSTGRES_USER} -- ")
    } else {
        String::new()
    };
    let script = format!(
        "#!/bin/sh\n\
         # Stops or starts the harness's PostgreSQL test server.\n\
         case \"$1\" in\n\
         stop) exec {run_as}'{pg_ctl}' -D '{data}' -m fast -w stop ;;\n\
         start) exec {run_as}'{pg_ctl}' -D '{data}' -l '{log}' -w -o \"{options}\" start ;;\n\
         *) echo \"usage: $0 stop|start\" >&2; exit 2 ;;\n\
         esac\n",
        pg_ctl = pg_ctl.display(),
        data = data.display(),
        log = log.display(),
    );
    let path = dir.join("control");
    fs::write(&path, script)
        .and_then(|()| fs::set_permissions(&path, fs::Permissions::from_mode(0o755)))
        .map_err(|error| format!("cannot write {}: {error}", path.display()))?;
    Ok(path.display().to_string())
}

impl Drop for TestPostgres {
    /// Immediate stop: the data is thrown away, so no checkpoint is needed.
    /// Never panics, since it also runs while a failing test unwinds.
    fn drop(&mut self) {
        let stopped = run_quietly(
            self.tools
                .command("pg_ctl")
                .arg("-D")
                .arg(&self.data)
                .args(["-m", "immediate", "-w", "stop"]),
        );
        if let Err(error) = stopped {
            note(&format!(
                "WARNING: the PostgreSQL test server at {} did not stop: {error}",
                self.url
            ));
        }
    }
}
