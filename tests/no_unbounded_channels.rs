//! No generated project queues work in an unbounded channel: every queue in a
//! Nebula service has a capacity, so that overload turns into refusals (503)
//! instead of memory growth.
//!
//! A textual scan of the generated `src/`, `tests/` and `runtime/src/` (comment lines are
//! skipped). It looks for:
//! - Tokio: `unbounded_channel`, `UnboundedSender`, `UnboundedReceiver`;
//! - std: `mpsc::channel()` (std's `channel` takes no capacity; Tokio's
//!   `mpsc::channel(n)` does, and `oneshot::channel()` holds one value);
//! - crossbeam, flume, async-channel and the like: a function named
//!   `unbounded`, called or imported (`crossbeam_channel::unbounded()`,
//!   `flume::unbounded::<T>()`, `use crossbeam::channel::unbounded`).

mod common;

use std::path::Path;

use common::{Generated, files_below, read_text};

/// Names whose mere presence means an unbounded Tokio channel.
const TOKIO_UNBOUNDED: [&str; 3] = ["unbounded_channel", "UnboundedSender", "UnboundedReceiver"];

fn is_ident_char(c: char) -> bool {
    c.is_alphanumeric() || c == '_'
}

/// Byte offsets where `ident` occurs as a whole identifier in `code`.
fn ident_positions<'a>(code: &'a str, ident: &'a str) -> impl Iterator<Item = usize> + 'a {
    code.match_indices(ident).filter_map(move |(at, _)| {
        let before = code[..at].chars().next_back();
        let after = code[at + ident.len()..].chars().next();
        (!before.is_some_and(is_ident_char) && !after.is_some_and(is_ident_char)).then_some(at)
    })
}

/// For the text following an identifier: `None` when it is not a call,
/// otherwise whether the argument list is empty. Skips a turbofish.
fn call_without_arguments(rest: &str) -> Option<bool> {
    let mut rest = rest.trim_start();
    if let Some(generics) = rest.strip_prefix("::<") {
        let mut depth = 1;
        let end = generics.char_indices().find_map(|(at, c)| {
            match c {
                '<' => depth += 1,
                '>' => depth -= 1,
                _ => {}
            }
            (depth == 0).then_some(at)
        })?;
        rest = generics[end + 1..].trim_start();
    }
    let arguments = rest.strip_prefix('(')?;
    Some(arguments.trim_start().starts_with(')'))
}

/// The unbounded-channel uses on one line of code, described.
fn findings_in_line(code: &str) -> Vec<String> {
    let mut found = Vec::new();
    for name in TOKIO_UNBOUNDED {
        if code.contains(name) {
            found.push(format!("Tokio `{name}`"));
        }
    }
    for at in ident_positions(code, "unbounded") {
        let statement = code.trim_start();
        let imported = ["use ", "pub use ", "pub(crate) use "]
            .iter()
            .any(|prefix| statement.starts_with(prefix));
        let imported_or_qualified = imported || code[..at].ends_with("::");
        if imported_or_qualified
            || call_without_arguments(&code[at + "unbounded".len()..]).is_some()
        {
            found.push(
                "a channel constructor named `unbounded` (crossbeam, flume, async-channel...)"
                    .to_owned(),
            );
        }
    }
    for at in ident_positions(code, "channel") {
        let oneshot = code[..at].ends_with("oneshot::");
        if !oneshot && call_without_arguments(&code[at + "channel".len()..]) == Some(true) {
            found.push("`channel()` without a capacity (std::sync::mpsc)".to_owned());
        }
    }
    found
}

/// Every finding in the `.rs` files below `project/src`, `project/tests`
/// and `project/runtime/src`, as `path:line: what`.
fn unbounded_channels_in(project: &Path) -> Vec<String> {
    let mut findings = Vec::new();
    for folder in ["src", "tests", "runtime/src"] {
        let root = project.join(folder);
        for relative in files_below(&root) {
            if relative.extension().is_none_or(|ext| ext != "rs") {
                continue;
            }
            let text = read_text(&root.join(&relative));
            for (number, line) in text.lines().enumerate() {
                if line.trim_start().starts_with("//") {
                    continue;
                }
                for what in findings_in_line(line) {
                    findings.push(format!(
                        "{folder}/{}:{}: {what}\n      {}",
                        relative.display(),
                        number + 1,
                        line.trim()
                    ));
                }
            }
        }
    }
    findings
}

fn has_no_unbounded_channel(service_type: &'static str) {
    let generated = Generated::new("channels", service_type);
    let findings = unbounded_channels_in(&generated.project);
    assert!(
        findings.is_empty(),
        "[{service_type}] unbounded channels in the generated project:\n  {}",
        findings.join("\n  ")
    );
}

#[test]
fn api() {
    has_no_unbounded_channel("api");
}

#[test]
fn worker() {
    has_no_unbounded_channel("worker");
}

#[test]
fn scheduler() {
    has_no_unbounded_channel("scheduler");
}

/// The scanner itself: it must see each kind of unbounded channel and leave
/// bounded ones alone, or the tests above prove nothing.
#[test]
fn scanner_recognizes_unbounded_channels() {
    let unbounded = [
        "let (tx, rx) = tokio::sync::mpsc::unbounded_channel();",
        "tx: UnboundedSender<Job>,",
        "rx: mpsc::UnboundedReceiver<Job>,",
        "let (tx, rx) = std::sync::mpsc::channel();",
        "let (tx, rx) = mpsc::channel::<Job>();",
        "let (tx, rx) = crossbeam_channel::unbounded();",
        "let (tx, rx) = crossbeam::channel::unbounded::<Job>();",
        "let (tx, rx) = flume::unbounded();",
        "use crossbeam_channel::{bounded, unbounded};",
        "use flume::unbounded;",
    ];
    for line in unbounded {
        assert!(!findings_in_line(line).is_empty(), "missed: {line}");
    }
    let bounded = [
        "let (tx, rx) = tokio::sync::mpsc::channel(capacity);",
        "let (tx, rx) = mpsc::channel::<Job>(settings.queue_capacity);",
        "let (tx, rx) = oneshot::channel();",
        "let (tx, rx) = flume::bounded(8);",
        "let (tx, rx) = std::sync::mpsc::sync_channel(8);",
        "let (tx, rx) = watch::channel(State::Starting);",
        "let text = \"the queue is never unbounded\";",
    ];
    for line in bounded {
        assert!(
            findings_in_line(line).is_empty(),
            "false alarm: {line}: {:?}",
            findings_in_line(line)
        );
    }
}
