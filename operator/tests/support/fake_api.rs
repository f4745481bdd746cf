//! A fake Kubernetes API server for the operator's tests: the kube-rs "ApiServerVerifier"
//! pattern (a `tower-test` mock service behind a real `kube::Client`), grown into a small
//! in-memory store so that whole reconciles and the whole process can run against it.
//!
//! The real control plane (`tests/control_plane.rs`) shows what the operator does to a cluster;
//! this one records every request, so tests assert the exact calls, fail any request on demand,
//! and run in milliseconds. It stands in only for what the operator uses:
//! - GET, POST, PUT, DELETE and PATCH (server-side apply and merge) of namespaced objects and
//!   of the `status` subresource, with uids, resourceVersions, `AlreadyExists`, `NotFound`,
//!   resourceVersion conflicts and delete preconditions;
//! - list and watch of collections (a watch stays open and sends nothing);
//! - discovery of one API group version (`/apis/<group>/<version>`) and `/version`; the
//!   optional group `monitoring.coreos.com/v1` is served only after [`FakeApi::serve_group`],
//!   and until then every path of it answers as a real kube-apiserver does: a plain-text 404;
//! - Deployments and StatefulSets that report their desired replicas ready, or none;
//! - injected failures.
//!
//! Every request is recorded, with its verb as RBAC sees it, so tests assert the exact calls
//! and the RBAC completeness test compares them with the ClusterRole.
//!
//! What it does not do: admission, schema validation, field-ownership tracking (an apply
//! replaces the stored object), garbage collection, or watch events.

use std::collections::BTreeMap;
use std::convert::Infallible;
use std::sync::{Arc, Mutex};

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, StreamBody};
use kube::Client;
use kube::client::Body;
use serde_json::{Value, json};

type ResponseBody = BoxBody<Bytes, Infallible>;

/// API group versions that exist only where their CRDs are installed (the prometheus-operator's):
/// not served until [`FakeApi::serve_group`] serves them.
const OPTIONAL_GROUPS: [&str; 1] = ["monitoring.coreos.com/v1"];

/// One request as the fake saw it.
#[derive(Debug, Clone)]
pub struct Recorded {
    /// HTTP method.
    pub method: Method,
    /// Path without the query.
    pub path: String,
    /// The query string, `""` when absent.
    pub query: String,
    /// The request's content type.
    pub content_type: String,
    /// The JSON body, `Null` when empty.
    pub body: Value,
    /// What RBAC authorizes: `(apiGroup, resource[/subresource], verb)`; `None` for
    /// discovery and `/version`, which every authenticated client may read.
    pub rbac: Option<(String, String, String)>,
}

impl Recorded {
    /// `"METHOD path"`, the form the tests compare.
    pub fn line(&self) -> String {
        format!("{} {}", self.method, self.path)
    }

    /// Whether this is a server-side apply patch.
    pub fn is_apply(&self) -> bool {
        self.method == Method::PATCH && self.content_type == "application/apply-patch+yaml"
    }

    /// Whether the apply was forced.
    pub fn is_forced(&self) -> bool {
        self.query.split('&').any(|p| p == "force=true")
    }
}

/// A failure to inject: requests with this method whose path ends with `path_suffix` get
/// `code` and `message`, `times` times (then behave normally).
#[derive(Debug, Clone)]
pub struct Failure {
    pub method: Method,
    pub path_suffix: String,
    pub code: u16,
    pub message: String,
    pub times: usize,
}

#[derive(Default)]
struct State {
    objects: BTreeMap<String, Value>,
    requests: Vec<Recorded>,
    failures: Vec<Failure>,
    served_groups: Vec<(String, Vec<String>)>,
    workloads_ready: bool,
    next_uid: u64,
    next_version: u64,
}

/// The fake API server; cheap to clone (shared state).
#[derive(Clone, Default)]
pub struct FakeApi {
    state: Arc<Mutex<State>>,
}

impl FakeApi {
    /// An empty API server.
    pub fn new() -> Self {
        Self::default()
    }

    /// A `kube::Client` whose every request this fake answers, with `namespace` as the
    /// client's default namespace.
    pub fn client(&self, namespace: &str) -> Client {
        let (service, mut handle) =
            tower_test::mock::pair::<Request<Body>, Response<ResponseBody>>();
        let fake = self.clone();
        tokio::spawn(async move {
            while let Some((request, send)) = handle.next_request().await {
                let (parts, body) = request.into_parts();
                let bytes = body
                    .collect()
                    .await
                    .map(|b| b.to_bytes())
                    .unwrap_or_default();
                let response = fake.handle(parts.method, &parts.uri, &parts.headers, &bytes);
                send.send_response(response);
            }
        });
        Client::new(service, namespace)
    }

    /// Makes applied Deployments and StatefulSets report all desired replicas ready (or none).
    pub fn set_workloads_ready(&self, ready: bool) {
        self.lock().workloads_ready = ready;
    }

    /// Serves the API group version `group/version` with these resources in discovery.
    pub fn serve_group(&self, group_version: &str, resources: &[&str]) {
        self.lock().served_groups.push((
            group_version.to_owned(),
            resources.iter().map(|r| (*r).to_owned()).collect(),
        ));
    }

    /// Injects a failure.
    pub fn fail(&self, failure: Failure) {
        self.lock().failures.push(failure);
    }

    /// Stores `object` at `path` (an item path such as `/api/v1/namespaces/a/services/b`),
    /// adding a uid and resourceVersion when it has none. Returns the stored object.
    pub fn insert(&self, path: &str, mut object: Value) -> Value {
        let mut state = self.lock();
        stamp(&mut state, &mut object, None);
        state.objects.insert(path.to_owned(), object.clone());
        object
    }

    /// The object at `path`, if any.
    pub fn get(&self, path: &str) -> Option<Value> {
        self.lock().objects.get(path).cloned()
    }

    /// Every request so far.
    pub fn requests(&self) -> Vec<Recorded> {
        self.lock().requests.clone()
    }

    /// Forgets the recorded requests (not the objects).
    pub fn clear_requests(&self) {
        self.lock().requests.clear();
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn handle(
        &self,
        method: Method,
        uri: &http::Uri,
        headers: &http::HeaderMap,
        body: &[u8],
    ) -> Response<ResponseBody> {
        let path = uri.path().to_owned();
        let query = uri.query().unwrap_or_default().to_owned();
        let content_type = headers
            .get(http::header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .unwrap_or_default()
            .to_owned();
        let body: Value = if body.is_empty() {
            Value::Null
        } else {
            serde_json::from_slice(body)
                .or_else(|_| serde_norway::from_slice(body))
                .unwrap_or(Value::Null)
        };
        let target = Target::parse(&path);
        let watch = query
            .split('&')
            .any(|p| p == "watch=true" || p == "watch=1");
        let recorded = Recorded {
            method: method.clone(),
            path: path.clone(),
            query: query.clone(),
            content_type: content_type.clone(),
            body: body.clone(),
            rbac: target.as_ref().map(|t| t.rbac(&method, watch)),
        };
        let mut state = self.lock();
        state.requests.push(recorded);

        if let Some(failure) = state
            .failures
            .iter_mut()
            .find(|f| f.method == method && path.ends_with(&f.path_suffix) && f.times > 0)
        {
            failure.times -= 1;
            return status_response(failure.code, &failure.message.clone());
        }

        if let Some(target) = &target {
            let group_version = format!("{}/{}", target.group, target.version);
            if OPTIONAL_GROUPS.contains(&group_version.as_str())
                && !state
                    .served_groups
                    .iter()
                    .any(|(gv, _)| *gv == group_version)
            {
                return plain_not_found();
            }
        }
        if path == "/version" {
            return json_response(
                StatusCode::OK,
                &json!({"major": "1", "minor": "35", "gitVersion": "v1.35.0", "platform": "linux/amd64"}),
            );
        }
        let Some(target) = target else {
            return discovery(&state, &path);
        };
        match (&method, &target.name) {
            (&Method::GET, None) if watch => watch_response(),
            (&Method::GET, None) => list(&state, &target),
            (&Method::GET, Some(_)) => match state.objects.get(&target.object_path()) {
                Some(object) => json_response(StatusCode::OK, object),
                None => not_found(&target),
            },
            (&Method::POST, None) => {
                let Some(name) = body.pointer("/metadata/name").and_then(Value::as_str) else {
                    return status_response(422, "metadata.name is required");
                };
                let item = Target {
                    name: Some(name.to_owned()),
                    ..target.clone()
                };
                let key = item.object_path();
                if state.objects.contains_key(&key) {
                    return status_response(
                        409,
                        &format!("{} \"{name}\" already exists", target.resource),
                    )
                    .map(|b| b);
                }
                let mut object = body;
                stamp(&mut state, &mut object, None);
                state.objects.insert(key, object.clone());
                json_response(StatusCode::CREATED, &object)
            }
            (&Method::PUT, Some(_)) => {
                let key = target.object_path();
                let Some(existing) = state.objects.get(&key).cloned() else {
                    return not_found(&target);
                };
                let sent_version = body
                    .pointer("/metadata/resourceVersion")
                    .and_then(Value::as_str);
                if sent_version.is_some_and(|v| {
                    Some(v)
                        != existing
                            .pointer("/metadata/resourceVersion")
                            .and_then(Value::as_str)
                }) {
                    return status_response(
                        409,
                        "the object has been modified; please apply your changes to the latest version",
                    );
                }
                let mut object = body;
                stamp(&mut state, &mut object, Some(&existing));
                state.objects.insert(key, object.clone());
                json_response(StatusCode::OK, &object)
            }
            (&Method::PATCH, Some(_)) => patch(&mut state, &target, &content_type, body),
            (&Method::DELETE, Some(_)) => {
                let key = target.object_path();
                let Some(existing) = state.objects.get(&key) else {
                    return not_found(&target);
                };
                if let Some(uid) = body.pointer("/preconditions/uid").and_then(Value::as_str)
                    && Some(uid) != existing.pointer("/metadata/uid").and_then(Value::as_str)
                {
                    return status_response(
                        409,
                        "Precondition failed: UID in precondition does not match",
                    );
                }
                state.objects.remove(&key);
                json_response(
                    StatusCode::OK,
                    &json!({"kind": "Status", "apiVersion": "v1", "status": "Success", "code": 200}),
                )
            }
            _ => status_response(405, "method not allowed by the fake API server"),
        }
    }
}

/// Adds a uid (kept from `existing`), a new resourceVersion, a creation time and a generation
/// (bumped when `spec` changed).
fn stamp(state: &mut State, object: &mut Value, existing: Option<&Value>) {
    state.next_version += 1;
    let uid = match existing.and_then(|e| e.pointer("/metadata/uid")).cloned() {
        Some(uid) => uid,
        None => match object.pointer("/metadata/uid").cloned() {
            Some(uid) => uid,
            None => {
                state.next_uid += 1;
                json!(format!("uid-{}", state.next_uid))
            }
        },
    };
    // As on a real API server, only a change of `spec` makes a new generation.
    let previous_generation = existing
        .and_then(|e| e.pointer("/metadata/generation"))
        .and_then(Value::as_i64);
    let generation = match (existing, previous_generation) {
        (Some(existing), Some(generation)) if existing.get("spec") == object.get("spec") => {
            generation
        }
        (_, generation) => generation.unwrap_or(0) + 1,
    };
    if !object.is_object() {
        *object = json!({});
    }
    let metadata = object
        .as_object_mut()
        .expect("an object")
        .entry("metadata")
        .or_insert_with(|| json!({}));
    metadata["uid"] = uid;
    metadata["resourceVersion"] = json!(state.next_version.to_string());
    metadata["generation"] = json!(generation);
    metadata["creationTimestamp"] = json!("2026-11-25T00:00:00Z");
}

fn patch(
    state: &mut State,
    target: &Target,
    content_type: &str,
    body: Value,
) -> Response<ResponseBody> {
    let key = target.object_path();
    let existing = state.objects.get(&key).cloned();
    let mut object = match (target.subresource.as_deref(), existing.clone()) {
        (Some("status"), Some(mut existing)) => {
            existing["status"] = body.get("status").cloned().unwrap_or(Value::Null);
            existing
        }
        (Some(_), None) => return not_found(target),
        (Some(sub), Some(_)) => return status_response(404, &format!("no subresource {sub}")),
        (None, existing) if content_type == "application/apply-patch+yaml" => {
            // Apply: the sent object replaces the stored one (no field ownership here).
            let mut object = body;
            if let Some(status) = existing.as_ref().and_then(|e| e.get("status")) {
                object["status"] = status.clone();
            }
            object
        }
        (None, Some(mut existing)) => {
            merge(&mut existing, &body);
            existing
        }
        (None, None) => return not_found(target),
    };
    stamp(state, &mut object, existing.as_ref());
    if target.subresource.is_none() {
        workload_status(state.workloads_ready, target, &mut object);
    }
    let code = if existing.is_some() {
        StatusCode::OK
    } else {
        StatusCode::CREATED
    };
    state.objects.insert(key, object.clone());
    json_response(code, &object)
}

/// Gives Deployments and StatefulSets the status their controllers would report.
fn workload_status(ready: bool, target: &Target, object: &mut Value) {
    if target.resource != "deployments" && target.resource != "statefulsets" {
        return;
    }
    let desired = object
        .pointer("/spec/replicas")
        .and_then(Value::as_i64)
        .unwrap_or(1);
    if object.pointer("/spec/replicas").is_none() {
        // As if an HPA or the defaulting had set it.
        object["spec"]["replicas"] = json!(desired);
    }
    let ready = if ready { desired } else { 0 };
    object["status"] = json!({
        "observedGeneration": object.pointer("/metadata/generation").cloned().unwrap_or(json!(1)),
        "replicas": desired,
        "readyReplicas": ready,
        "updatedReplicas": ready,
        "availableReplicas": ready,
    });
}

fn merge(target: &mut Value, patch: &Value) {
    match (target, patch) {
        (Value::Object(target), Value::Object(patch)) => {
            for (key, value) in patch {
                if value.is_null() {
                    target.remove(key);
                } else {
                    merge(target.entry(key.clone()).or_insert(Value::Null), value);
                }
            }
        }
        (target, patch) => *target = patch.clone(),
    }
}

fn list(state: &State, target: &Target) -> Response<ResponseBody> {
    let items: Vec<Value> = state
        .objects
        .iter()
        .filter(|(path, _)| Target::parse(path).is_some_and(|t| t.in_collection(target)))
        .map(|(_, object)| object.clone())
        .collect();
    json_response(
        StatusCode::OK,
        &json!({
            "kind": "List",
            "apiVersion": "v1",
            "metadata": {"resourceVersion": state.next_version.to_string()},
            "items": items,
        }),
    )
}

fn discovery(state: &State, path: &str) -> Response<ResponseBody> {
    let group_version = path.trim_start_matches("/apis/");
    match state
        .served_groups
        .iter()
        .find(|(gv, _)| gv == group_version)
    {
        Some((gv, resources)) => json_response(
            StatusCode::OK,
            &json!({
                "kind": "APIResourceList",
                "apiVersion": "v1",
                "groupVersion": gv,
                "resources": resources.iter().map(|r| json!({
                    "name": r, "singularName": "", "namespaced": true, "kind": "", "verbs": ["get"]
                })).collect::<Vec<_>>(),
            }),
        ),
        None => plain_not_found(),
    }
}

/// What a real kube-apiserver answers for any path of a group it does not serve: plain text,
/// not a Status object.
fn plain_not_found() -> Response<ResponseBody> {
    Response::builder()
        .status(StatusCode::NOT_FOUND)
        .header(http::header::CONTENT_TYPE, "text/plain; charset=utf-8")
        .body(BodyExt::boxed(Full::new(Bytes::from_static(
            b"404 page not found\n",
        ))))
        .expect("a valid response")
}

fn watch_response() -> Response<ResponseBody> {
    let stream = futures::stream::pending::<Result<http_body::Frame<Bytes>, Infallible>>();
    Response::builder()
        .status(StatusCode::OK)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(StreamBody::new(stream)))
        .expect("a valid response")
}

fn not_found(target: &Target) -> Response<ResponseBody> {
    status_response(
        404,
        &format!(
            "{} \"{}\" not found",
            target.resource,
            target.name.as_deref().unwrap_or_default()
        ),
    )
}

fn status_response(code: u16, message: &str) -> Response<ResponseBody> {
    let reason = match code {
        404 => "NotFound",
        409 if message.contains("already exists") => "AlreadyExists",
        409 => "Conflict",
        422 => "Invalid",
        500 => "InternalError",
        503 => "ServiceUnavailable",
        _ => "Unknown",
    };
    json_response(
        StatusCode::from_u16(code).expect("a valid status code"),
        &json!({
            "kind": "Status", "apiVersion": "v1", "metadata": {},
            "status": "Failure", "message": message, "reason": reason, "code": code,
        }),
    )
}

fn json_response(code: StatusCode, value: &Value) -> Response<ResponseBody> {
    Response::builder()
        .status(code)
        .header(http::header::CONTENT_TYPE, "application/json")
        .body(BodyExt::boxed(Full::new(Bytes::from(
            serde_json::to_vec(value).expect("JSON"),
        ))))
        .expect("a valid response")
}

/// A parsed resource path.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Target {
    /// `""` for the core group.
    group: String,
    version: String,
    namespace: Option<String>,
    resource: String,
    name: Option<String>,
    subresource: Option<String>,
}

impl Target {
    /// Parses `/api/v1/...` and `/apis/<group>/<version>/...`; `None` for discovery paths.
    fn parse(path: &str) -> Option<Self> {
        let segments: Vec<&str> = path.trim_matches('/').split('/').collect();
        let (group, version, rest) = match segments.as_slice() {
            ["api", version, rest @ ..] => (String::new(), (*version).to_owned(), rest),
            ["apis", group, version, rest @ ..] => {
                ((*group).to_owned(), (*version).to_owned(), rest)
            }
            _ => return None,
        };
        let (namespace, rest) = match rest {
            ["namespaces", ns, rest @ ..] if !rest.is_empty() => (Some((*ns).to_owned()), rest),
            rest => (None, rest),
        };
        let (resource, name, subresource) = match rest {
            [resource] => (*resource, None, None),
            [resource, name] => (*resource, Some(*name), None),
            [resource, name, sub] => (*resource, Some(*name), Some(*sub)),
            _ => return None,
        };
        Some(Self {
            group,
            version,
            namespace,
            resource: resource.to_owned(),
            name: name.map(str::to_owned),
            subresource: subresource.map(str::to_owned),
        })
    }

    fn object_path(&self) -> String {
        let prefix = if self.group.is_empty() {
            format!("/api/{}", self.version)
        } else {
            format!("/apis/{}/{}", self.group, self.version)
        };
        let ns = self
            .namespace
            .as_ref()
            .map(|ns| format!("/namespaces/{ns}"))
            .unwrap_or_default();
        format!(
            "{prefix}{ns}/{}/{}",
            self.resource,
            self.name.as_deref().unwrap_or_default()
        )
    }

    /// Whether this item belongs to the `collection` (same resource; same namespace unless
    /// the collection spans all namespaces).
    fn in_collection(&self, collection: &Self) -> bool {
        self.group == collection.group
            && self.resource == collection.resource
            && self.name.is_some()
            && self.subresource.is_none()
            && (collection.namespace.is_none() || collection.namespace == self.namespace)
    }

    fn rbac(&self, method: &Method, watch: bool) -> (String, String, String) {
        let verb = match (method, &self.name) {
            (&Method::GET, None) if watch => "watch",
            (&Method::GET, None) => "list",
            (&Method::GET, Some(_)) => "get",
            (&Method::POST, _) => "create",
            (&Method::PUT, _) => "update",
            (&Method::PATCH, _) => "patch",
            (&Method::DELETE, None) => "deletecollection",
            (&Method::DELETE, Some(_)) => "delete",
            _ => "unknown",
        };
        let resource = match &self.subresource {
            Some(sub) => format!("{}/{sub}", self.resource),
            None => self.resource.clone(),
        };
        (self.group.clone(), resource, verb.to_owned())
    }
}
