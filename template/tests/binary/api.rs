//! SIGTERM in the middle of a write load: every item the service answered
//! 201 for is stored, every other request is refused before it reached the
//! service, and the process exits 0.

use std::sync::{
    Arc,
    atomic::{AtomicUsize, Ordering},
};

use nebula_runtime::{
    Exit,
    testing::{
        Answer, answer, eventually,
        process::{Launch, unpooled_client as client},
    },
};
use serde_json::{Value, json};
use tokio::task::JoinSet;

use {{crate_name}}::ENV_PREFIX;

const BINARY: &str = env!("CARGO_BIN_EXE_{{project-name}}");

/// What one client saw: the ids of the items created, and any answer that
/// was neither a 201 nor a refused connection.
#[derive(Default)]
struct Seen {
    created: Vec<String>,
    unexpected: Vec<String>,
}

/// Creates items named `client-n` one request at a time until the service
/// stops taking connections, or answers otherwise than 201.
async fn create_until_refused(url: String, client_id: usize, answered: Arc<AtomicUsize>) -> Seen {
    let http = client();
    let mut seen = Seen::default();
    for n in 0.. {
        let item = json!({"name": format!("{client_id}-{n}")});
        match http.post(&url).json(&item).send().await {
            Ok(response) if response.status() == 201 => {
                let item: Value = response.json().await.expect("a 201 carries the item");
                seen.created
                    .push(item["id"].as_str().expect("id").to_owned());
                answered.fetch_add(1, Ordering::Relaxed);
            }
            other => match answer(other) {
                Answer::Refused => break,
                unexpected => {
                    seen.unexpected.push(format!("{unexpected:?}"));
                    break;
                }
            },
        }
    }
    seen
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_mid_load_keeps_every_created_item_and_exits_0() {
    let launch = Launch::new(BINARY, ENV_PREFIX);
    let process = launch.start().await;
    let answered = Arc::new(AtomicUsize::new(0));
    let mut clients = JoinSet::new();
    for client_id in 0..8 {
        clients.spawn(create_until_refused(
            process.url("/v1/items"),
            client_id,
            Arc::clone(&answered),
        ));
    }
    eventually("the load to get 200 items created", || async {
        (answered.load(Ordering::Relaxed) >= 200).then_some(())
    })
    .await;
    process.signal("TERM");
    let exited = process.exit().await;
    assert_eq!(exited.code, Some(i32::from(Exit::Clean.code())));

    let mut created = Vec::new();
    while let Some(seen) = clients.join_next().await {
        let seen = seen.expect("client task");
        assert!(seen.unexpected.is_empty(), "{:?}", seen.unexpected);
        created.extend(seen.created);
    }
    // The same database, a new process: every acknowledged item is there.
    let process = launch.start().await;
    let http = client();
    for id in &created {
        let read = http
            .get(process.url(&format!("/v1/items/{id}")))
            .send()
            .await;
        assert_eq!(answer(read), Answer::Status(200), "item {id}");
    }
    process.signal("TERM");
    assert_eq!(
        process.exit().await.code,
        Some(i32::from(Exit::Clean.code()))
    );
}
