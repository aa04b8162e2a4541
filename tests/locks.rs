//! Each service type is generated with the dependency lock tested for it,
//! and a lock that no longer matches the template fails the harness with
//! the command that refreshes it.

mod common;

use std::{fs, panic};

use common::{
    DepsMode, Generated, SERVICE_TYPES, note, prepare_dependencies, raw_template_dir, read_text,
};

#[test]
fn each_type_is_generated_with_its_shipped_lock() {
    for service_type in SERVICE_TYPES {
        let generated = Generated::new("lock", service_type);
        let name = generated
            .project
            .file_name()
            .unwrap()
            .to_string_lossy()
            .into_owned();
        let shipped =
            read_text(&raw_template_dir().join(format!("locks/{service_type}.Cargo.lock")));
        let rendered = read_text(&generated.project.join("Cargo.lock"));
        assert_eq!(
            rendered,
            shipped.replace("{{project-name}}", &name),
            "[{service_type}] the generated Cargo.lock is not template/locks/{service_type}.Cargo.lock"
        );
        assert!(
            !generated.project.join("locks").exists(),
            "[{service_type}] the locks folder is left in the project"
        );
    }
}

#[test]
fn a_stale_lock_fails_naming_the_command_that_refreshes_it() {
    if DepsMode::from_env() == DepsMode::Newest {
        note(
            "locks::a_stale_lock_fails_naming_the_command_that_refreshes_it: skipped, the shipped locks are ignored in newest mode",
        );
        return;
    }
    let generated = Generated::new("stale-lock", "api");
    // Someone adds a dependency to the template and forgets the lock (one
    // no type's dependencies pull in: `glob`).
    let manifest = generated.project.join("Cargo.toml");
    let with_new_dependency =
        read_text(&manifest).replace("[dependencies]\n", "[dependencies]\nglob = \"0.3\"\n");
    fs::write(&manifest, with_new_dependency).expect("Cargo.toml written");

    let failure = panic::catch_unwind(|| prepare_dependencies("api", &generated.project))
        .expect_err("a lock without the new dependency must fail");
    let message = failure
        .downcast_ref::<String>()
        .cloned()
        .or_else(|| {
            failure
                .downcast_ref::<&str>()
                .map(|text| (*text).to_owned())
        })
        .unwrap_or_default();
    assert!(message.contains("scripts/refresh-locks"), "{message}");
    assert!(
        message.contains("glob"),
        "the message names what changed: {message}"
    );
}
