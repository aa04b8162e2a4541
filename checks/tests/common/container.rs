//! The binary run the way the image and the Kubernetes manifests run it:
//! - the environment holds only the Dockerfile's `ENV` and the `ConfigMap`;
//! - the working directory is empty and read-only, as
//!   `readOnlyRootFilesystem` makes the container's, but for the `data`
//!   folder the data volume is mounted on (on a project generated for
//!   PostgreSQL, the folder of the binary's default SQLite file: the URL
//!   the manifests take from a Secret is not here);
//! - the process runs as the image's user (uid 65532) when the tests run
//!   as root, as they do in CI containers; otherwise as the current user,
//!   who is not root either.
//!
//! It must start, report ready, pass its own health check, serve
//! `/metrics` and drain on SIGTERM. What only a real image and cluster can
//! show is listed in the README.

use std::{
    fs,
    os::unix::fs::{MetadataExt, PermissionsExt},
    path::PathBuf,
    process::ExitStatus,
};

use crate::support::{Counts, Launch, bare, runtime, serial, summary};

use nebula_runtime::{
    Exit,
    testing::{
        metrics::{assert_all_prefixed, count, series},
        process::unpooled_client as client,
    },
};

use nebula_checks::{
    deployment::{Dockerfile, pod_env},
    project,
};

/// The image's layout in a scratch folder: the binary in a `bin/` anyone may
/// read (this build's target folder may not be), and an empty working
/// folder nobody may write to.
struct ImageLayout {
    root: PathBuf,
}

impl ImageLayout {
    fn new() -> Self {
        let root =
            std::env::temp_dir().join(format!("{}-image-{}", project().name, std::process::id()));
        let layout = Self { root };
        layout.remove();
        assert!(
            !layout.root.exists(),
            "a leftover {} is removed",
            layout.root.display()
        );
        fs::create_dir_all(layout.binary().parent().expect("bin/ has a parent"))
            .expect("scratch bin/ is created");
        fs::copy(&project().binary, layout.binary()).expect("the binary is copied");
        fs::create_dir(layout.workdir()).expect("scratch working folder is created");
        // The volume the manifests mount at WORKDIR/data, writable by the
        // image's user: the only place the service may write.
        let data = layout.workdir().join("data");
        fs::create_dir(&data).expect("scratch data folder is created");
        if let Some((uid, gid)) = image_user() {
            std::os::unix::fs::chown(&data, Some(uid), Some(gid)).expect("data folder is chowned");
        }
        for (path, mode) in [
            (layout.root.as_path(), 0o755),
            (layout.binary().parent().expect("bin/"), 0o755),
            (layout.binary().as_path(), 0o755),
            (layout.workdir().as_path(), 0o555),
        ] {
            fs::set_permissions(path, fs::Permissions::from_mode(mode))
                .expect("permissions are set");
        }
        layout
    }

    fn binary(&self) -> PathBuf {
        self.root.join("bin").join(&project().name)
    }

    fn workdir(&self) -> PathBuf {
        self.root.join("app")
    }

    /// Best effort: a panic here, while a failed test unwinds, would abort
    /// the whole test binary.
    fn remove(&self) {
        if self.root.exists() {
            let _ = fs::set_permissions(self.workdir(), fs::Permissions::from_mode(0o755));
            let _ = fs::remove_dir_all(&self.root);
        }
    }
}

impl Drop for ImageLayout {
    fn drop(&mut self) {
        self.remove();
    }
}

/// The uid and gid to run as: the image's `USER` when this test runs as
/// root, `None` when it already runs as another user.
fn image_user() -> Option<(u32, u32)> {
    let running_as = fs::metadata("/proc/self").map_or(u32::MAX, |proc| proc.uid());
    if running_as != 0 {
        return None;
    }
    let user = Dockerfile::read().user.expect("the Dockerfile sets USER");
    let (uid, gid) = user
        .split_once(':')
        .unwrap_or_else(|| panic!("USER {user} is uid:gid"));
    let id = |text: &str| {
        text.parse::<u32>()
            .unwrap_or_else(|_| panic!("USER {user} is numeric, as runAsNonRoot requires"))
    };
    Some((id(uid), id(gid)))
}

/// The image's command in the layout, with the pod's environment only.
/// The listen addresses keep every interface but let the system pick the
/// ports, which may be taken on this machine.
fn launch(layout: &ImageLayout, listen_port: u16) -> Launch {
    let mut launch = bare()
        .binary(layout.binary())
        .in_dir(layout.workdir())
        .only_given_env();
    for (key, value) in pod_env() {
        launch = launch.env(&key, &value);
    }
    launch = launch
        .setting("HTTP__LISTEN", format!("0.0.0.0:{listen_port}"))
        .setting("METRICS__LISTEN", "0.0.0.0:0");
    match image_user() {
        Some((uid, gid)) => launch.user(uid, gid),
        None => launch,
    }
}

/// Runs the image's `HEALTHCHECK` command against the service on `port`.
async fn healthcheck(layout: &ImageLayout, port: u16) -> (ExitStatus, String) {
    let (status, _, stderr) = launch(layout, port)
        .args(&["healthcheck"])
        .run_to_exit()
        .await;
    (status, stderr)
}

#[test]
fn the_binary_runs_as_the_image_runs_it_and_drains_on_sigterm() {
    let _serial = serial();
    runtime().block_on(async {
        let layout = ImageLayout::new();
        let process = launch(&layout, 0).start().await;
        let port = process.address.port();

        let ready = client()
            .get(process.url("/readyz"))
            .send()
            .await
            .expect("readyz answers");
        assert_eq!(ready.status(), 200);

        let (status, stderr) = healthcheck(&layout, port).await;
        assert!(
            status.success(),
            "the image's health check passes: {stderr}"
        );

        let text = process.metrics().await;
        assert_all_prefixed(&text);
        let info = series(
            "nebula_service_info",
            &[
                ("kind", project().kind.as_str()),
                ("version", project().version.as_str()),
            ],
        );
        assert_eq!(count(&text, &info), 1);
        // `/readyz` answered 200 twice: the start's wait for readiness,
        // which stops at the first 200, and the probe above; `/healthz`
        // once, for the health check.
        for (route, times) in [("/readyz", 2), ("/healthz", 1)] {
            let answered = series(
                "nebula_http_requests_total",
                &[("method", "GET"), ("route", route), ("status", "200")],
            );
            assert_eq!(count(&text, &answered), times, "{answered}");
        }

        process.signal("TERM");
        let exited = process.exit().await;
        assert_eq!(
            exited.code,
            Some(i32::from(Exit::Clean.code())),
            "logs: {:#?}",
            exited.logs.all()
        );
        assert_eq!(exited.logs.with_message("drain complete").len(), 1);

        let (status, stderr) = healthcheck(&layout, port).await;
        assert_eq!(
            status.code(),
            Some(i32::from(Exit::RuntimeFailure.code())),
            "{stderr}"
        );
        assert!(
            stderr.contains("cannot connect"),
            "the failed check says why: {stderr}"
        );

        summary(
            "as-the-image-runs",
            Counts::default(),
            exited.code,
            &format!("user={:?}", image_user()),
        );
    });
}
