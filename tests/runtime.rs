//! The runtime crate (`template/runtime/`), checked where it lives, once:
//! the generated services carry it unchanged and lint only their own code.
//! Its unit tests run in this workspace's `cargo test` (it is a default
//! member); this holds it to the generated code's lints and formatting, with
//! without features and with all of them (`otel`, `outbound`).

mod common;

use common::{cargo_step, raw_template_dir};

#[test]
fn the_runtime_is_clippy_clean_and_formatted() {
    let runtime = raw_template_dir().join("runtime");
    cargo_step("runtime", &runtime, &["fmt", "--check"]);
    for features in [&[][..], &["--all-features"]] {
        let mut args = vec!["clippy", "--locked", "--all-targets"];
        args.extend_from_slice(features);
        args.extend_from_slice(&["--", "-D", "warnings"]);
        cargo_step("runtime", &runtime, &args);
    }
}
