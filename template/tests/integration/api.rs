//! The `api` type: the example resource, load shedding, and requests that
//! finish during the drain.

use serde_json::{Value, json};

#[path = "../shared/held_request.rs"]
mod held_request;

use self::held_request::hold_every_permit;
use crate::{
    metrics_text::{count, series},
    support::{Answer, answer, settings, start},
};

use {{crate_name}}::Stopped;

#[tokio::test]
async fn items_can_be_created_read_and_deleted() {
    let service = start(settings()).await;

    let created = service
        .post_json("/v1/items", &json!({"name": "first"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let item: Value = created.json().await.unwrap();
    assert_eq!(item["name"], "first");
    let path = format!("/v1/items/{}", item["id"].as_str().unwrap());

    let read = service.get(&path).await.unwrap();
    assert_eq!(read.status(), 200);
    assert_eq!(read.json::<Value>().await.unwrap(), item);

    let deleted = service
        .client
        .delete(service.url(&path))
        .send()
        .await
        .unwrap();
    assert_eq!(deleted.status(), 204);
    assert_eq!(service.get(&path).await.unwrap().status(), 404);

    service.stop().await.unwrap();
}

#[tokio::test]
async fn item_requests_are_counted_under_their_route_template() {
    let service = start(settings()).await;
    let created = service
        .post_json("/v1/items", &json!({"name": "counted"}))
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let id = created.json::<Value>().await.unwrap()["id"]
        .as_str()
        .unwrap()
        .to_owned();
    let read = service.get(&format!("/v1/items/{id}")).await.unwrap();
    assert_eq!(read.status(), 200);

    let text = service.metrics().await;
    // Other tests in this process count into the same series: at least.
    for (method, route, status) in [
        ("POST", "/v1/items", "201"),
        ("GET", "/v1/items/{id}", "200"),
    ] {
        let answered = series(
            "nebula_http_requests_total",
            &[("method", method), ("route", route), ("status", status)],
        );
        assert!(count(&text, &answered) >= 1, "{answered}");
    }
    assert!(!text.contains(&id), "the item id became a label value");

    assert_eq!(service.stop().await.unwrap(), Stopped::Drained);
}

#[tokio::test]
async fn invalid_items_are_refused_with_a_json_error() {
    let service = start(settings()).await;

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

    service.stop().await.unwrap();
}

#[tokio::test]
async fn a_full_store_refuses_new_items() {
    let mut settings = settings();
    settings.api.max_items = 1;
    let service = start(settings).await;

    let first = service
        .post_json("/v1/items", &json!({"name": "a"}))
        .await
        .unwrap();
    assert_eq!(first.status(), 201);
    let second = service
        .post_json("/v1/items", &json!({"name": "b"}))
        .await
        .unwrap();
    assert_eq!(second.status(), 507);

    service.stop().await.unwrap();
}

/// One request is held in flight by sending its body slowly. While it
/// holds the only concurrency permit, other requests are shed with 503 and
/// `Retry-After`; after shutdown is requested it still completes, and later
/// connections are refused.
#[tokio::test]
async fn excess_requests_are_shed_and_in_flight_requests_finish_during_the_drain() {
    let mut settings = settings();
    settings.http.max_concurrent_requests = 1;
    let service = start(settings).await;

    let slow = hold_every_permit(service.address, "/v1/items", r#"{"name": "slow"}"#, 1)
        .await
        .remove(0);

    service.shutdown.request();
    let response = slow.finish().await;
    assert!(
        response.starts_with("HTTP/1.1 201"),
        "in-flight request should complete: {response}"
    );

    let address = service.address;
    assert_eq!(service.finished().await.unwrap(), Stopped::Drained);
    let late = reqwest::Client::new()
        .get(format!("http://{address}/v1/items/x"))
        .send()
        .await;
    assert_eq!(answer(late), Answer::Refused);
}
