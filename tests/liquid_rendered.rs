//! Every generated file is fully rendered: no Liquid is left behind.
//!
//! The failure this guards against is silent: when Liquid cannot render a
//! file (an unknown filter, `${{ ... }}` from a CI workflow outside
//! `{% raw %}`), cargo-generate copies the WHOLE file unrendered and still
//! exits 0.
//!
//! Searching the output for `{{` would not do: Rust format strings escape
//! braces as `{{`/`}}` (the template has to wrap them in `{% raw %}`), and so
//! do other formats. Instead, for each file of `template/`, the Liquid tags
//! that Liquid should have consumed (everything outside `{% raw %}` blocks,
//! including the raw tags themselves) are collected from the RAW file, and
//! none may appear in the rendered file more often than the raw file's
//! `{% raw %}` blocks contain it verbatim. On top of that, in files that are
//! not Rust, `{{` and `{%` may only appear as often as raw blocks hold them.

mod common;

use std::path::{Path, PathBuf};

use common::{Generated, files_below, raw_template_dir, read_text};

/// The Liquid tags of a raw template file: those Liquid consumes when
/// rendering, and the text kept verbatim inside `{% raw %}` blocks.
struct LiquidSource {
    consumed: Vec<String>,
    verbatim: String,
}

/// Splits `text` into Liquid tags (`{{ ... }}`, `{% ... %}`) and raw-block
/// contents. An unterminated tag ends the scan (Liquid would have failed the
/// whole generation on it).
fn liquid_source(text: &str) -> LiquidSource {
    let mut consumed = Vec::new();
    let mut verbatim = String::new();
    let mut rest = text;
    while let Some(start) = [rest.find("{{"), rest.find("{%")]
        .into_iter()
        .flatten()
        .min()
    {
        let closing = if rest[start..].starts_with("{{") {
            "}}"
        } else {
            "%}"
        };
        let Some(length) = rest[start + 2..].find(closing) else {
            break;
        };
        let end = start + 2 + length + 2;
        let tag = &rest[start..end];
        consumed.push(tag.to_owned());
        rest = &rest[end..];
        if closing == "%}" && tag_name(tag) == "raw" {
            // Everything up to the matching `{% endraw %}` is kept verbatim.
            let mut search = 0;
            let end_of_raw = loop {
                let Some(open) = rest[search..].find("{%").map(|at| search + at) else {
                    break None;
                };
                let Some(length) = rest[open + 2..].find("%}") else {
                    break None;
                };
                let close = open + 2 + length + 2;
                if tag_name(&rest[open..close]) == "endraw" {
                    break Some((open, close));
                }
                search = open + 2;
            };
            let Some((open, close)) = end_of_raw else {
                break;
            };
            verbatim.push_str(&rest[..open]);
            consumed.push(rest[open..close].to_owned());
            rest = &rest[close..];
        }
    }
    LiquidSource { consumed, verbatim }
}

/// The first word inside `{%- name ... -%}`.
fn tag_name(tag: &str) -> &str {
    tag.trim_start_matches("{%")
        .trim_end_matches("%}")
        .trim_matches(|c: char| c == '-' || c.is_whitespace())
        .split_whitespace()
        .next()
        .unwrap_or("")
}

/// Where a raw template file lands in the project: same path, minus a
/// `.liquid` suffix. `None` when the project has no such file (the hooks
/// remove the other service types' files).
fn rendered_counterpart(project: &Path, raw_relative: &Path) -> Option<PathBuf> {
    let text = raw_relative.to_string_lossy();
    let relative = text.strip_suffix(".liquid").unwrap_or(&text);
    let path = project.join(relative);
    path.is_file().then_some(path)
}

/// Problems found in one rendered file, given its raw source.
fn leftovers(raw_relative: &Path, raw: &str, rendered: &str) -> Vec<String> {
    let source = liquid_source(raw);
    let mut problems = Vec::new();
    let mut seen = Vec::new();
    for tag in &source.consumed {
        if seen.contains(tag) {
            continue;
        }
        seen.push(tag.clone());
        let allowed = source.verbatim.matches(tag.as_str()).count();
        let left = rendered.matches(tag.as_str()).count();
        if left > allowed {
            problems.push(format!(
                "{}: `{tag}` is still there ({left}x) after rendering",
                raw_relative.display()
            ));
        }
    }
    if raw_relative.extension().is_none_or(|ext| ext != "rs") {
        for marker in ["{{", "{%"] {
            let allowed = source.verbatim.matches(marker).count();
            let left = rendered.matches(marker).count();
            if left > allowed {
                problems.push(format!(
                    "{}: `{marker}` appears {left}x after rendering, but only {allowed}x inside {{% raw %}} blocks",
                    raw_relative.display()
                ));
            }
        }
    }
    problems
}

/// One entry of `exclude` in cargo-generate.toml: a folder's files
/// (`dir/**`) or one file.
enum Excluded {
    Below(PathBuf),
    File(PathBuf),
}

impl Excluded {
    fn matches(&self, path: &Path) -> bool {
        match self {
            Self::Below(folder) => path.starts_with(folder),
            Self::File(file) => path == file,
        }
    }
}

/// The files cargo-generate copies without rendering, as
/// cargo-generate.toml's `[template] exclude` names them.
fn excluded_from_rendering() -> Vec<Excluded> {
    let config: toml::Table = read_text(&common::repo_root().join("cargo-generate.toml"))
        .parse()
        .expect("cargo-generate.toml parses");
    config["template"]["exclude"]
        .as_array()
        .expect("[template] exclude is a list")
        .iter()
        .map(|pattern| {
            let pattern = pattern.as_str().expect("an exclude pattern is text");
            match pattern.strip_suffix("/**") {
                Some(folder) => Excluded::Below(PathBuf::from(folder)),
                None => Excluded::File(PathBuf::from(pattern)),
            }
        })
        .collect()
}

fn is_fully_rendered(service_type: &'static str) {
    has_no_liquid_left(&Generated::new("liquid", service_type));
}

fn has_no_liquid_left(generated: &Generated) {
    let service_type = generated.service_type;
    let raw_root = raw_template_dir();
    let mut problems = Vec::new();
    for relative in files_below(&generated.project) {
        let name = relative.to_string_lossy();
        if name.contains("{{") || name.contains("{%") {
            problems.push(format!("{name}: Liquid left in the file name"));
        }
    }
    let mut checked = 0;
    let excluded = excluded_from_rendering();
    for raw_relative in files_below(&raw_root) {
        // Copied, never rendered (cargo-generate.toml excludes them, the
        // runtime crate among them): braces there are Rust's.
        if excluded
            .iter()
            .any(|pattern| pattern.matches(&raw_relative))
        {
            continue;
        }
        let Some(rendered_path) = rendered_counterpart(&generated.project, &raw_relative) else {
            continue;
        };
        checked += 1;
        let raw = read_text(&raw_root.join(&raw_relative));
        let rendered = read_text(&rendered_path);
        problems.extend(leftovers(&raw_relative, &raw, &rendered));
    }
    assert!(
        checked > 0,
        "[{service_type}] no generated file matched a file of template/"
    );
    assert!(
        problems.is_empty(),
        "[{service_type}] unrendered Liquid in {}:\n  {}",
        generated.project.display(),
        problems.join("\n  ")
    );
}

#[test]
fn api() {
    is_fully_rendered("api");
}

#[test]
fn worker() {
    is_fully_rendered("worker");
}

#[test]
fn scheduler() {
    is_fully_rendered("scheduler");
}

/// The other branch of the deployment files.
#[test]
fn every_type_on_postgres() {
    for service_type in ["api", "worker", "scheduler"] {
        has_no_liquid_left(&Generated::with_options(
            &format!("liquid-pg-{service_type}"),
            service_type,
            &["database=postgres"],
        ));
    }
}

/// The checker itself: an unrendered file is caught, rendered output and
/// raw blocks (Rust's `{{` escapes, CI `${{ }}`) are not.
#[test]
fn checker_tells_rendered_from_unrendered() {
    let rs = Path::new("src/lib.rs");
    let raw = "//! {{description}}\npub mod {{service_type}};\n{% raw %}let s = format!(\"{{}}\", 1);{% endraw %}\n";
    let rendered = "//! A service\npub mod api;\nlet s = format!(\"{{}}\", 1);\n";
    assert!(
        leftovers(rs, raw, rendered).is_empty(),
        "{:?}",
        leftovers(rs, raw, rendered)
    );
    assert_eq!(
        leftovers(rs, raw, raw).len(),
        4,
        "{:?}",
        leftovers(rs, raw, raw)
    );

    let yml = Path::new(".github/workflows/ci.yml");
    let raw = "name: {{project-name}}\n{% raw %}os: ${{ matrix.os }}{% endraw %}\n";
    let rendered = "name: demo\nos: ${{ matrix.os }}\n";
    assert!(
        leftovers(yml, raw, rendered).is_empty(),
        "{:?}",
        leftovers(yml, raw, rendered)
    );
    assert!(!leftovers(yml, raw, raw).is_empty());
    // A stray marker that no tag explains.
    assert!(!leftovers(yml, raw, "name: demo\nos: ${{ matrix.os }}\nx: {{ y }}\n").is_empty());

    let toml = Path::new("Cargo.toml");
    let raw = "{%- if service_type == \"scheduler\" %}\nreqwest = \"0.13\"\n{%- endif %}\n";
    assert!(leftovers(toml, raw, "\n").is_empty());
    assert!(!leftovers(toml, raw, raw).is_empty());
}
