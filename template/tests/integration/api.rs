//! The `api` type: the example resource, its errors, and the database
//! faults its routes answer.

use serde_json::{Value, json};

use crate::support::settings;

use nebula_runtime::{
    Stopped,
    testing::{Engine, Logs, Running, TestDatabase, eventually, start},
};

use {{crate_name}}::Settings;

/// Settings that keep the items in `database`.
fn on(database: &TestDatabase) -> Settings {
    let mut settings = settings();
    settings.database.url = database.url.clone();
    settings
}

/// Creates an item named `name`; returns it.
async fn create(service: &Running, name: &str) -> Value {
    let created = service
        .post_json("/v1/items", &json!({ "name": name }))
        .await
        .unwrap();
    assert_eq!(created.status(), 201, "creating {name}");
    created.json().await.unwrap()
}

#[tokio::test]
async fn items_are_stored_read_listed_and_deleted_on_sqlite() {
    items_are_stored_read_listed_and_deleted(Engine::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
async fn items_are_stored_read_listed_and_deleted_on_postgres() {
    items_are_stored_read_listed_and_deleted(Engine::Postgres).await;
}

async fn items_are_stored_read_listed_and_deleted(engine: Engine) {
    let database = TestDatabase::create(engine, "items_crud").await;
    let service = start(on(&database)).await;
    let item = create(&service, "first").await;
    let path = format!("/v1/items/{}", item["id"].as_str().unwrap());
    assert_eq!(
        service
            .get(&path)
            .await
            .unwrap()
            .json::<Value>()
            .await
            .unwrap(),
        item
    );

    let taken = service
        .post_json("/v1/items", &json!({"name": "first"}))
        .await
        .unwrap();
    assert_eq!(taken.status(), 409, "a name in use is a conflict");
    let listed: Value = service
        .get("/v1/items")
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(listed, json!({"items": [item], "next_cursor": null}));

    let delete = || service.client.delete(service.url(&path)).send();
    assert_eq!(delete().await.unwrap().status(), 204);
    assert_eq!(delete().await.unwrap().status(), 404);
    assert_eq!(service.get(&path).await.unwrap().status(), 404);
    assert_eq!(
        service.get("/v1/items/not-an-id").await.unwrap().status(),
        404
    );
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn lists_are_paged_in_creation_order_with_an_opaque_cursor_on_sqlite() {
    lists_are_paged_in_creation_order_with_an_opaque_cursor(Engine::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
async fn lists_are_paged_in_creation_order_with_an_opaque_cursor_on_postgres() {
    lists_are_paged_in_creation_order_with_an_opaque_cursor(Engine::Postgres).await;
}

async fn lists_are_paged_in_creation_order_with_an_opaque_cursor(engine: Engine) {
    let database = TestDatabase::create(engine, "items_pages").await;
    let mut settings = on(&database);
    settings.service.max_page_size = 10;
    let service = start(settings).await;
    let mut created = Vec::new();
    for n in 0..23 {
        created.push(create(&service, &format!("item {n}")).await);
    }

    let mut pages = Vec::new();
    let mut path = "/v1/items?limit=10".to_owned();
    loop {
        let page: Value = service.get(&path).await.unwrap().json().await.unwrap();
        pages.push(page["items"].as_array().unwrap().len());
        // An item created while paging lands after the last page read.
        if pages.len() == 1 {
            created.push(create(&service, "created while paging").await);
        }
        let Some(cursor) = page["next_cursor"].as_str() else {
            break;
        };
        path = format!("/v1/items?limit=10&cursor={cursor}");
        assert!(pages.len() <= 5, "the pages never end");
    }
    assert_eq!(pages, [10, 10, 4]);
    let mut listed = Vec::new();
    let mut cursor = String::new();
    loop {
        let page: Value = service
            .get(&format!("/v1/items{cursor}"))
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        listed.extend(page["items"].as_array().unwrap().iter().cloned());
        match page["next_cursor"].as_str() {
            Some(next) => cursor = format!("?cursor={next}"),
            None => break,
        }
    }
    assert_eq!(listed, created, "every item once, in creation order");

    for (query, status) in [
        ("?limit=0", 400),
        ("?limit=11", 400),
        ("?limit=ten", 400),
        ("?cursor=not-a-cursor", 400),
        ("?limit=10", 200),
    ] {
        let answered = service.get(&format!("/v1/items{query}")).await.unwrap();
        assert_eq!(answered.status(), status, "{query}");
    }
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

/// A write that waits for a lock past the database's limit: on PostgreSQL
/// its `lock_timeout` cuts the statement and the answer is 504 (the
/// database timeout), logged with the request id and the operation. On
/// SQLite the lock held past `busy_timeout` means nothing was written: a
/// `locked` write fault, 503 with `Retry-After`, logged once; reads still
/// work and the service stays ready. Either way it serves writes again once
/// the lock is gone.
#[tokio::test]
async fn a_write_lock_held_elsewhere_answers_503_on_sqlite() {
    a_write_lock_held_elsewhere(Engine::Sqlite).await;
}

#[tokio::test]
#[ignore = "needs PostgreSQL: set NEBULA_TEST_POSTGRES_URL and run with --include-ignored"]
async fn a_write_lock_held_elsewhere_answers_504_on_postgres() {
    a_write_lock_held_elsewhere(Engine::Postgres).await;
}

async fn a_write_lock_held_elsewhere(engine: Engine) {
    let database = TestDatabase::create(engine, "items_timeout").await;
    let (logs, _guard) = Logs::capture();
    let mut settings = on(&database);
    // The engines' limit is a tenth below it: room for SQLite's busy
    // answer to come before the call's own deadline.
    settings.timeouts.database_ms = 1_000;
    settings.database.health_check_interval_ms = 50;
    let service = start(settings).await;
    let kept = create(&service, "before the lock").await;
    let mut holder = database.connect().await;
    let lock = match engine {
        Engine::Sqlite => "BEGIN IMMEDIATE",
        Engine::Postgres => "BEGIN; LOCK TABLE items IN ACCESS EXCLUSIVE MODE",
    };
    sqlx::raw_sql(lock).execute(&mut holder).await.unwrap();

    let refused = service
        .client
        .post(service.url("/v1/items"))
        .header("x-request-id", "locked-out")
        .json(&json!({"name": "waits"}))
        .send()
        .await
        .unwrap();
    match engine {
        Engine::Postgres => {
            assert_eq!(refused.status(), 504);
            let logged = logs.events("request failed on the database");
            assert!(
                logged
                    .iter()
                    .any(|event| event["db.operation"] == "insert_item"
                        && event["error.kind"] == "timeout"
                        && event["span"]["request.id"] == "locked-out"),
                "{logged:?}"
            );
        }
        Engine::Sqlite => {
            assert_eq!(refused.status(), 503);
            assert_eq!(refused.headers()["retry-after"], "1");
            let fault = logs.events("database refuses writes");
            assert_eq!(fault.len(), 1, "{fault:?}");
            assert_eq!(fault[0]["db.fault"], "locked");
            assert_eq!(fault[0]["db.operation"], "insert_item");
            let again = service
                .client
                .delete(service.url(&format!("/v1/items/{}", kept["id"].as_str().unwrap())))
                .send()
                .await
                .unwrap();
            assert_eq!(again.status(), 503, "writes are refused while it lasts");
            assert_eq!(
                logs.events("database refuses writes").len(),
                1,
                "logged once"
            );
            let read = service
                .get(&format!("/v1/items/{}", kept["id"].as_str().unwrap()))
                .await
                .unwrap();
            assert_eq!(read.status(), 200, "reads still work");
            let ready = service.get("/readyz").await.unwrap();
            assert_eq!(ready.status(), 200);
            let body: Value = ready.json().await.unwrap();
            assert_eq!(body["degraded"]["database_writes"], "locked", "{body}");
        }
    }

    sqlx::raw_sql("ROLLBACK")
        .execute(&mut holder)
        .await
        .unwrap();
    eventually("writes to work again", || async {
        let answer = service
            .post_json("/v1/items", &json!({"name": "after the lock"}))
            .await
            .unwrap();
        (answer.status() == 201).then_some(())
    })
    .await;
    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn invalid_items_are_refused_with_a_json_error_naming_the_field() {
    let database = TestDatabase::sqlite();
    let service = start(on(&database)).await;

    let empty = service
        .post_json("/v1/items", &json!({"name": "  "}))
        .await
        .unwrap();
    assert_eq!(empty.status(), 422);
    assert!(empty.json::<Value>().await.unwrap()["error"].is_string());

    let unknown_field = service
        .post_json("/v1/items", &json!({"name": "x", "colour": "red"}))
        .await
        .unwrap();
    assert_eq!(unknown_field.status(), 422);
    let message = unknown_field.json::<Value>().await.unwrap()["error"].to_string();
    assert!(message.contains("colour"), "{message}");

    service.stop().await.unwrap();
}
