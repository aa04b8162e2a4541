//! The deployment files agree with the service: the `Dockerfile` and the
//! manifests in `deploy/kubernetes/` of the project under check are read
//! and held to the settings its binary loads from them (printed by
//! `--check-config`) and the routes it serves. Change one side only and a
//! check here fails.

use std::{net::SocketAddr, path::Path, process::Command, sync::Arc};

use serde_json::Value;

use nebula_checks::{
    deployment::{Dockerfile, configmap_env, container, manifest, pod_env, pod_spec},
    project,
    support::{bare, runtime, serial},
};
use nebula_runtime::{
    Exit,
    database::DatabaseUrl,
    healthcheck, prometheus,
    service::CANCEL_MARGIN,
    testing::{
        TestDatabase,
        process::{Launch, unpooled_client as client},
    },
};

/// The settings the pod runs with, as its binary prints them with
/// `--check-config`: only the image's `ENV` and the `ConfigMap` in the
/// environment, in an empty working folder (the image ships no config
/// file), so an unknown key or a bad value in the `ConfigMap` fails here
/// with the service's own message.
fn pod_settings() -> toml::Table {
    settings_with(pod_env())
}

fn settings_with(env: Vec<(String, String)>) -> toml::Table {
    let workdir = tempfile::tempdir().expect("an empty working folder");
    let output = Command::new(&project().binary)
        .arg("--check-config")
        .env_clear()
        .envs(env)
        .current_dir(workdir.path())
        .output()
        .expect("the binary runs");
    assert!(
        output.status.success(),
        "the pod's settings do not load ({}): {}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    String::from_utf8_lossy(&output.stdout)
        .parse()
        .unwrap_or_else(|error| {
            panic!("--check-config printed settings that do not parse: {error}")
        })
}

/// `settings[section][key]`, as the binary printed it.
fn setting<'a>(settings: &'a toml::Table, section: &str, key: &str) -> &'a toml::Value {
    settings
        .get(section)
        .and_then(|section| section.get(key))
        .unwrap_or_else(|| panic!("--check-config printed no {section}.{key}"))
}

fn listen(settings: &toml::Table, section: &str) -> SocketAddr {
    let value = setting(settings, section, "listen");
    value
        .as_str()
        .and_then(|text| text.parse().ok())
        .unwrap_or_else(|| panic!("{section}.listen is an address: {value}"))
}

fn millis(settings: &toml::Table, section: &str, key: &str) -> u64 {
    let value = setting(settings, section, key);
    value
        .as_integer()
        .and_then(|number| u64::try_from(number).ok())
        .unwrap_or_else(|| panic!("{section}.{key} is a whole number: {value}"))
}

fn database_url(settings: &toml::Table) -> DatabaseUrl {
    let value = setting(settings, "database", "url");
    DatabaseUrl::new(
        value
            .as_str()
            .unwrap_or_else(|| panic!("database.url is text: {value}")),
    )
}

fn seconds(value: &Value, what: &str) -> u64 {
    value
        .as_u64()
        .unwrap_or_else(|| panic!("{what} must be a whole number of seconds: {value}"))
}

#[test]
fn the_configmap_sets_only_this_service_s_settings() {
    let prefix = format!("{}_", project().env_prefix);
    for (key, _) in configmap_env() {
        assert!(
            key.starts_with(&prefix),
            "ConfigMap key {key} does not start with {prefix}, so the service ignores it"
        );
    }
    pod_settings();
}

/// Whether `listen` accepts connections from other hosts, and its port.
fn assert_reachable(what: &str, listen: SocketAddr, port: u16) {
    assert!(
        listen.ip().is_unspecified(),
        "{what} listens on {listen}: other hosts could not reach it"
    );
    assert_eq!(listen.port(), port, "{what}'s port");
}

fn image_address(dockerfile: &Dockerfile, key: &str) -> SocketAddr {
    let variable = project().var(key);
    dockerfile
        .env(&variable)
        .unwrap_or_else(|| panic!("the Dockerfile sets {variable}"))
        .parse()
        .unwrap_or_else(|error| panic!("the Dockerfile's {key} does not parse: {error}"))
}

#[test]
fn the_image_and_the_pod_listen_on_the_service_and_metrics_ports() {
    let dockerfile = Dockerfile::read();
    let pod = pod_settings();
    let service_port = project().default_port;
    let metrics_port = prometheus::DEFAULT_PORT;
    assert_reachable(
        "the image",
        image_address(&dockerfile, "HTTP__LISTEN"),
        service_port,
    );
    assert_reachable("the pod", listen(&pod, "http"), service_port);
    assert_reachable(
        "the image's metrics",
        image_address(&dockerfile, "METRICS__LISTEN"),
        metrics_port,
    );
    assert_reachable("the pod's metrics", listen(&pod, "metrics"), metrics_port);
    assert_eq!(dockerfile.expose, [service_port, metrics_port], "EXPOSE");

    let ports = container()["ports"].clone();
    let port = |name: &str| {
        ports
            .as_array()
            .and_then(|ports| ports.iter().find(|port| port["name"] == name))
            .and_then(|port| port["containerPort"].as_u64())
            .unwrap_or_else(|| panic!("the container declares a port named {name}: {ports}"))
    };
    assert_eq!(port("http"), u64::from(service_port), "containerPort http");
    assert_eq!(
        port("metrics"),
        u64::from(metrics_port),
        "containerPort metrics"
    );
    let annotations = &manifest("deployment")["spec"]["template"]["metadata"]["annotations"];
    assert_eq!(annotations["prometheus.io/port"], metrics_port.to_string());

    let service_port = &manifest("service")["spec"]["ports"][0];
    assert_eq!(
        service_port["targetPort"], "http",
        "the Service targets the named port"
    );
}

/// The binary with the pod's environment only, in an empty working folder
/// as the image's, but on loopback ports the system picks and a SQLite
/// database of its own.
fn pod_launch(workdir: &Path) -> Launch {
    let mut launch = bare().in_dir(workdir).only_given_env();
    for (key, value) in pod_env() {
        launch = launch.env(&key, &value);
    }
    launch
        .setting("HTTP__LISTEN", "127.0.0.1:0")
        .setting("METRICS__LISTEN", "127.0.0.1:0")
        // The drain is not what this check looks at: no wait for balancers.
        .setting("SHUTDOWN__READINESS_DELAY_MS", 0)
        .database(Arc::new(TestDatabase::sqlite()))
}

#[test]
fn probes_scrapes_and_the_image_health_check_use_paths_the_service_serves() {
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

    let _serial = serial();
    runtime().block_on(async {
        let workdir = tempfile::tempdir().expect("an empty working folder");
        let process = pod_launch(workdir.path()).start().await;
        let paths = [
            ("livenessProbe", &liveness["path"], process.address),
            ("readinessProbe", &readiness["path"], process.address),
            (
                "prometheus.io/path",
                &annotations["prometheus.io/path"],
                process.metrics_address,
            ),
        ];
        for (what, path, address) in paths {
            let path = path.as_str().unwrap_or_else(|| panic!("{what} has a path"));
            let response = client()
                .get(format!("http://{address}{path}"))
                .send()
                .await
                .unwrap_or_else(|error| panic!("{what} {path}: {error}"));
            assert_eq!(response.status(), 200, "{what} {path}");
        }
        process.signal("TERM");
        assert_eq!(
            process.exit().await.code,
            Some(i32::from(Exit::Clean.code()))
        );
    });

    let binary = format!("/usr/local/bin/{}", project().name);
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
    let docker_timeout = dockerfile
        .healthcheck_duration("timeout")
        .expect("HEALTHCHECK sets --timeout");
    assert!(
        healthcheck::TIMEOUT < docker_timeout,
        "the check's own timeout ({:?}) must be shorter than HEALTHCHECK --timeout ({docker_timeout:?}), or a slow answer is killed without a message",
        healthcheck::TIMEOUT
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
    let drain_ms = millis(&settings, "shutdown", "grace_ms")
        + u64::try_from(CANCEL_MARGIN.as_millis()).unwrap();
    assert!(
        termination_grace_ms > drain_ms,
        "terminationGracePeriodSeconds ({termination_grace_ms} ms) must exceed shutdown.grace_ms plus the cancel margin ({drain_ms} ms), or the pod is killed mid-drain"
    );

    // A balancer that polls /readyz notices the 503 within failureThreshold
    // periods plus one probe timeout; the listener must still be open then.
    let readiness = &container["readinessProbe"];
    let period = seconds(&readiness["periodSeconds"], "readinessProbe.periodSeconds");
    let failures = seconds(
        &readiness["failureThreshold"],
        "readinessProbe.failureThreshold",
    );
    let timeout = seconds(
        &readiness["timeoutSeconds"],
        "readinessProbe.timeoutSeconds",
    );
    let noticed_ms = (period * failures + timeout) * 1_000;
    let readiness_delay_ms = millis(&settings, "shutdown", "readiness_delay_ms");
    assert!(
        readiness_delay_ms >= noticed_ms,
        "shutdown.readiness_delay_ms ({readiness_delay_ms} ms) must cover the probes that notice the 503 ({failures} × {period} s + {timeout} s), or the listener closes while traffic still arrives"
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
            .filter(|selector| !selector.is_empty())
            .unwrap_or_else(|| panic!("{what} has a selector that is not empty"));
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

/// On a project generated with `database=sqlite` (the harness runs only
/// the `on_` check of the project's database): the state outlives the
/// pod. The default SQLite file's folder, resolved against the image's
/// `WORKDIR`, is a mounted volume backed by the claim in
/// `persistentvolumeclaim.yaml`, and one pod at a time uses it.
#[test]
fn on_sqlite_the_database_is_on_a_persistent_volume_used_by_one_pod() {
    let file = database_url(&pod_settings())
        .sqlite_file()
        .expect("the pod runs on the default SQLite database");
    let workdir = Dockerfile::read().workdir.expect("the image sets WORKDIR");
    let folder =
        std::path::Path::new(&workdir).join(file.parent().expect("the file is in a folder"));
    let container = container();
    let mounts = container["volumeMounts"].as_array().expect("volumeMounts");
    let mount = mounts
        .iter()
        .find(|mount| {
            std::path::Path::new(mount["mountPath"].as_str().unwrap_or_default()) == folder
        })
        .unwrap_or_else(|| panic!("no volume is mounted at {}: {mounts:?}", folder.display()));
    let spec = pod_spec();
    let volume = spec["volumes"]
        .as_array()
        .expect("volumes")
        .iter()
        .find(|volume| volume["name"] == mount["name"])
        .expect("the mounted volume is declared");
    let claim = &volume["persistentVolumeClaim"]["claimName"];
    assert_eq!(
        claim,
        &manifest("persistentvolumeclaim")["metadata"]["name"],
        "a claim, not an emptyDir"
    );
    assert_eq!(
        spec["securityContext"]["fsGroup"], 65532,
        "the image's group can write the volume"
    );
    let deployment = &manifest("deployment")["spec"];
    assert_eq!(deployment["replicas"], 1, "a SQLite file is for one pod");
    assert_eq!(
        deployment["strategy"]["type"], "Recreate",
        "never two pods on the file"
    );
    for (key, _) in configmap_env() {
        assert!(
            !key.ends_with("_DATABASE__URL"),
            "a database URL may hold a password: not in the ConfigMap"
        );
    }
}

/// On a project generated with `database=postgres`: replicas share the
/// state through PostgreSQL. Several pods, rolled with a surge (the
/// database keeps them consistent, so old and new pods may overlap), no
/// volume, and `database.url` from a Secret, since it holds a password,
/// under a variable the service's settings loader reads; never in the
/// `ConfigMap`.
#[test]
fn on_postgres_replicas_share_the_database_through_a_url_from_a_secret() {
    let deployment = &manifest("deployment")["spec"];
    let replicas = deployment["replicas"]
        .as_u64()
        .expect("replicas is a whole number");
    assert!(
        replicas >= 2,
        "replicas is {replicas}: PostgreSQL is there for several pods"
    );
    let strategy = &deployment["strategy"];
    assert_eq!(
        strategy["type"], "RollingUpdate",
        "old and new pods may share the database"
    );
    assert_eq!(
        strategy["rollingUpdate"]["maxUnavailable"], 0,
        "capacity never drops during a rollout"
    );

    let spec = pod_spec();
    let container = container();
    assert!(
        spec["volumes"].is_null() && container["volumeMounts"].is_null(),
        "the state is in PostgreSQL: no volume, and the root filesystem stays read-only"
    );
    assert!(
        spec["securityContext"]["fsGroup"].is_null(),
        "fsGroup is for a data volume, and there is none"
    );
    let claim = project()
        .dir
        .join("deploy/kubernetes/persistentvolumeclaim.yaml");
    assert!(
        !claim.exists(),
        "{} is for the SQLite file; nothing uses it here",
        claim.display()
    );

    let variable = project().var("DATABASE__URL");
    let env = container["env"]
        .as_array()
        .expect("the container has env entries");
    let url = env
        .iter()
        .find(|entry| entry["name"] == variable.as_str())
        .unwrap_or_else(|| panic!("the container sets {variable}: {env:?}"));
    assert!(
        url["value"].is_null(),
        "{variable} must not be written in the manifest: {url}"
    );
    let secret = &url["valueFrom"]["secretKeyRef"];
    for field in ["name", "key"] {
        assert!(
            secret[field].as_str().is_some_and(|text| !text.is_empty()),
            "{variable} comes from a Secret: secretKeyRef.{field} is set: {url}"
        );
    }
    for (key, _) in configmap_env() {
        assert!(
            !key.ends_with("_DATABASE__URL"),
            "a database URL may hold a password: not in the ConfigMap"
        );
    }

    // The Secret's value, through that variable, is the URL the pod runs on.
    let value = "postgres://app:s3cret@db.example:5432/jobs";
    let mut pod_env = pod_env();
    pod_env.push((variable.clone(), value.to_owned()));
    // --check-config prints it with the password hidden: user, host and
    // database are compared; the password's arrival is the driver's to show.
    assert_eq!(
        database_url(&settings_with(pod_env)).to_string(),
        DatabaseUrl::new(value).to_string(),
        "{variable} sets database.url"
    );
}

#[test]
fn the_deployment_runs_the_image_of_this_version() {
    let image = container()["image"]
        .as_str()
        .expect("the container has an image")
        .to_owned();
    let tag = image.rsplit_once(':').map(|(_, tag)| tag);
    assert_eq!(
        tag,
        Some(project().version.as_str()),
        "the image tag in deployment.yaml ({image}) is the package version; change both on a release"
    );
}

#[test]
fn the_image_builds_with_the_declared_rust_version() {
    assert_eq!(
        Dockerfile::read().arg("RUST_VERSION"),
        Some(project().rust_version.as_str()),
        "ARG RUST_VERSION in the Dockerfile and rust-version in Cargo.toml"
    );
}
