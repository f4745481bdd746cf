//! The HTTP side of the tests: a client with bounded timeouts, JSON requests, `/metrics` reads
//! and the error-envelope and answer-time assertions.

use super::*;

/// A client with bounded timeouts; nothing in a test may hang.
pub fn client() -> reqwest::Client {
    static CLIENT: std::sync::OnceLock<reqwest::Client> = std::sync::OnceLock::new();
    CLIENT
        .get_or_init(|| {
            reqwest::Client::builder()
                .timeout(Duration::from_secs(10))
                .pool_max_idle_per_host(64)
                // Below the server's header-read and idle timeouts, as a client's should be:
                // a pooled connection is never reused just as the server closes it.
                .pool_idle_timeout(Duration::from_secs(5))
                .build()
                .expect("HTTP client")
        })
        .clone()
}

pub async fn post_json(url: &str, body: &Value) -> (u16, Value) {
    let r = client()
        .post(url)
        .json(body)
        .send()
        .await
        .expect("request sent");
    read(r).await
}

pub async fn post_raw(
    url: &str,
    content_type: Option<&str>,
    body: impl Into<reqwest::Body>,
) -> (u16, Value) {
    let mut req = client().post(url).body(body);
    if let Some(ct) = content_type {
        req = req.header("content-type", ct);
    }
    read(req.send().await.expect("request sent")).await
}

/// `body` without its answer times (`data.timestamp`, `data.updated_at` and each batch
/// result's `updated_at`), after checking that each is the current Unix time in seconds (within
/// a minute, for a loaded machine), so the rest can be compared exactly.
pub fn without_times(mut body: Value) -> Value {
    fn take_time(object: &mut Value, field: &str) {
        let Some(map) = object.as_object_mut() else {
            return;
        };
        if let Some(t) = map.remove(field) {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .expect("after 1970")
                .as_secs() as i64;
            let t = t
                .as_i64()
                .unwrap_or_else(|| panic!("{field} {t} is an integer"));
            assert!(
                (now - 60..=now + 60).contains(&t),
                "{field} {t} is now ({now})"
            );
        }
    }
    let data = &mut body["data"];
    take_time(data, "timestamp");
    take_time(data, "updated_at");
    if let Some(results) = data.get_mut("results").and_then(Value::as_array_mut) {
        for result in results {
            take_time(result, "updated_at");
        }
    }
    body
}

pub async fn get_json(url: &str) -> (u16, Value) {
    read(client().get(url).send().await.expect("request sent")).await
}

async fn read(r: reqwest::Response) -> (u16, Value) {
    let status = r.status().as_u16();
    let text = r.text().await.expect("body");
    let value = serde_json::from_str(&text).unwrap_or(Value::String(text));
    (status, value)
}

/// The value of an unlabelled metric (`name value` line) at a `/metrics` URL, 0 if absent.
pub async fn metric(url: &str, name: &str) -> u64 {
    metric_with(&client(), url, name).await
}

/// [`metric`], read with `client`.
pub async fn metric_with(client: &reqwest::Client, url: &str, name: &str) -> u64 {
    let text = client
        .get(url)
        .send()
        .await
        .expect("metrics")
        .text()
        .await
        .expect("body");
    let prefix = format!("{name} ");
    text.lines()
        .find_map(|l| l.strip_prefix(&prefix))
        .map_or(0, |v| v.parse::<f64>().expect("a number") as u64)
}

/// The `current_value`s of a batch answer, in order.
pub fn batch_values(body: &Value) -> Vec<i64> {
    body["data"]["results"]
        .as_array()
        .expect("results")
        .iter()
        .map(|r| r["current_value"].as_i64().expect("current_value"))
        .collect()
}

/// Asserts the error envelope: status, code and (optionally) the field named.
pub fn assert_error(got: &(u16, Value), status: u16, code: &str, field: Option<&str>) {
    let (s, body) = got;
    assert_eq!(*s, status, "{body}");
    assert_eq!(body["status"], "error", "{body}");
    assert_eq!(body["error"]["code"], code, "{body}");
    assert!(
        body["error"]["message"]
            .as_str()
            .is_some_and(|m| !m.is_empty()),
        "{body}"
    );
    match field {
        Some(f) => assert_eq!(body["error"]["field"], f, "{body}"),
        None => assert!(body["error"].get("field").is_none(), "{body}"),
    }
}
