//! The deployment files agree with the service: the `Dockerfile` and the
//! manifests in `deploy/kubernetes/` are read and held to the settings the
//! service loads and the routes it serves. Change one side only and a test
//! here fails.

#[path = "shared/deployment.rs"]
mod deployment;

use std::net::SocketAddr;

use axum::{Router, body::Body, http::Request};
use serde_json::Value;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

use self::deployment::{Dockerfile, configmap_env, container, manifest, pod_env, pod_spec};

use {{crate_name}}::{
    Settings, healthcheck, http, prometheus,
    service::CANCEL_MARGIN,
    settings::{DEFAULT_PORT, ENV_PREFIX, Overrides},
};

/// The settings the pod runs with: the image's `ENV` and the `ConfigMap`,
/// loaded by the service's own loader, so an unknown key or a bad value in
/// the `ConfigMap` fails here with the service's own message.
fn pod_settings() -> Settings {
    Settings::load_with_env(&Overrides::default(), pod_env())
        .unwrap_or_else(|error| panic!("the pod's settings do not load: {error}"))
}

fn seconds(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} must be a whole number of seconds: {value}"))
}

#[test]
fn the_configmap_sets_only_this_service_s_settings() {
    for (key, _) in configmap_env() {
        assert!(
            key.starts_with(&format!("{ENV_PREFIX}_")),
            "ConfigMap key {key} does not start with {ENV_PREFIX}_, so the service ignores it"
        );
    }
    pod_settings();
}

#[test]
fn the_image_and_the_pod_listen_on_the_service_port_on_every_interface() {
    let dockerfile = Dockerfile::read();
    let image_listen: SocketAddr = dockerfile
        .env(&format!("{ENV_PREFIX}_HTTP__LISTEN"))
        .expect("the Dockerfile sets the listen address")
        .parse()
        .expect("the Dockerfile's listen address parses");
    let pod_listen = pod_settings().http.listen;
    for (what, listen) in [("image", image_listen), ("pod", pod_listen)] {
        assert!(
            listen.ip().is_unspecified(),
            "the {what} listens on {listen}: other hosts could not reach it"
        );
        assert_eq!(listen.port(), DEFAULT_PORT, "the {what}'s port");
    }
    assert_eq!(dockerfile.expose, [DEFAULT_PORT], "EXPOSE");

    let port = &container()["ports"][0];
    assert_eq!(port["name"], "http");
    assert_eq!(
        port["containerPort"],
        u64::from(DEFAULT_PORT),
        "containerPort"
    );
    let annotations = &manifest("deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], DEFAULT_PORT.to_string());

    let service_port = &manifest("service")["spec"]["ports"][0];
    assert_eq!(
        service_port["targetPort"], "http",
        "the Service targets the named port"
    );
}

#[tokio::test]
async fn probes_scrapes_and_the_image_health_check_use_paths_the_service_serves() {
    let container = container();
    let liveness = &container["livenessProbe"]["httpGet"];
    let readiness = &container["readinessProbe"]["httpGet"];
    assert_eq!(liveness["port"], "http");
    assert_eq!(readiness["port"], "http");
    assert_eq!(
        liveness["path"],
        healthcheck::PATH,
        "liveness is what the image's health check asks"
    );
    let annotations = &manifest("deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/scrape"], "true");

    let paths = [
        ("livenessProbe", liveness["path"].clone()),
        ("readinessProbe", readiness["path"].clone()),
        (
            "prometheus.io/path",
            annotations["prometheus.io/path"].clone(),
        ),
    ];
    let app = http::router(
        Router::new(),
        &pod_settings(),
        CancellationToken::new(),
        prometheus::recorder().unwrap(),
    );
    for (what, path) in paths {
        let path = path.as_str().unwrap_or_else(|| panic!("{what} has a path"));
        let request = Request::get(path).body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        assert_eq!(response.status(), 200, "{what} {path}");
    }

    let binary = format!("/usr/local/bin/{}", env!("CARGO_PKG_NAME"));
    let dockerfile = Dockerfile::read();
    assert_eq!(
        dockerfile.entrypoint,
        std::slice::from_ref(&binary),
        "ENTRYPOINT runs the binary itself"
    );
    assert_eq!(
        dockerfile.healthcheck,
        [binary, "healthcheck".to_owned()],
        "HEALTHCHECK"
    );
}

#[test]
fn kubernetes_waits_for_the_whole_drain_before_it_kills_the_pod() {
    let settings = pod_settings();
    let spec = pod_spec();
    let container = container();
    assert!(
        container["lifecycle"]["preStop"].is_null(),
        "a preStop hook delays SIGTERM and would have to be added to the budget below"
    );
    let termination_grace_ms = seconds(
        &spec["terminationGracePeriodSeconds"],
        "terminationGracePeriodSeconds",
    ) * 1_000;
    // The readiness delay runs inside the grace; the cancel margin after it.
    let drain_ms = settings.shutdown.grace_ms + u64::try_from(CANCEL_MARGIN.as_millis()).unwrap();
    assert!(
        termination_grace_ms > drain_ms,
        "terminationGracePeriodSeconds ({termination_grace_ms} ms) must exceed shutdown.grace_ms plus the cancel margin ({drain_ms} ms), or the pod is killed mid-drain"
    );

    let readiness = &container["readinessProbe"];
    let period = seconds(&readiness["periodSeconds"], "readinessProbe.periodSeconds");
    let failures = seconds(
        &readiness["failureThreshold"],
        "readinessProbe.failureThreshold",
    );
    assert!(
        settings.shutdown.readiness_delay_ms >= period * failures * 1_000,
        "shutdown.readiness_delay_ms ({} ms) must cover the probes that notice the 503 ({failures} × {period} s), or the listener closes while traffic still arrives",
        settings.shutdown.readiness_delay_ms
    );
}

#[test]
fn the_pod_runs_as_the_image_user_without_root_or_a_writable_filesystem() {
    let spec = pod_spec();
    let pod = &spec["securityContext"];
    assert_eq!(pod["runAsNonRoot"], true);
    let user = Dockerfile::read().user.expect("the Dockerfile sets USER");
    assert_eq!(
        format!("{}:{}", pod["runAsUser"], pod["runAsGroup"]),
        user,
        "runAsUser:runAsGroup is the image's USER"
    );
    let container = container();
    let security = &container["securityContext"];
    assert_eq!(security["readOnlyRootFilesystem"], true);
    assert_eq!(security["allowPrivilegeEscalation"], false);
    assert_eq!(security["capabilities"]["drop"], serde_json::json!(["ALL"]));
    for kind in ["requests", "limits"] {
        for resource in ["cpu", "memory"] {
            assert!(
                container["resources"][kind][resource].is_string(),
                "resources.{kind}.{resource} is set"
            );
        }
    }
}

#[test]
fn selectors_and_references_find_their_objects() {
    let deployment = manifest("deployment");
    let pod_labels = &deployment["spec"]["template"]["metadata"]["labels"];
    let selects_the_pods = |selector: &Value, what: &str| {
        let selector = selector
            .as_object()
            .unwrap_or_else(|| panic!("{what} has a selector"));
        for (key, value) in selector {
            assert_eq!(&pod_labels[key], value, "{what} selects {key}={value}");
        }
    };
    selects_the_pods(
        &deployment["spec"]["selector"]["matchLabels"],
        "the Deployment",
    );
    selects_the_pods(&manifest("service")["spec"]["selector"], "the Service");
    selects_the_pods(
        &manifest("poddisruptionbudget")["spec"]["selector"]["matchLabels"],
        "the PodDisruptionBudget",
    );
    assert_eq!(
        container()["envFrom"][0]["configMapRef"]["name"],
        manifest("configmap")["metadata"]["name"],
        "the container reads the ConfigMap"
    );
}

#[test]
fn the_image_builds_with_the_declared_rust_version() {
    assert_eq!(
        Dockerfile::read().arg("RUST_VERSION"),
        Some(env!("CARGO_PKG_RUST_VERSION")),
        "ARG RUST_VERSION in the Dockerfile and rust-version in Cargo.toml"
    );
}
