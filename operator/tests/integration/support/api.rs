//! A scripted Kubernetes API server behind kube's client (`tower_test::mock`).
//!
//! A scenario is the exact list of calls a reconcile pass must make, in order, with the
//! reply to each. A call out of order, a call not in the script, or a script call that
//! never comes fails the test. Every request is recorded so tests can assert on what was
//! sent (the applied StatefulSet, the status patch).

use std::time::Duration;

use http::{Method, Request, Response, StatusCode};
use kube::client::Body;
use kube::Client;
use serde_json::{json, Value};
use tokio::task::JoinHandle;
use tower_test::mock::{self, Handle};

/// How the mock answers one call.
pub enum Reply {
    /// 200 with this JSON.
    Json(Value),
    /// 200 with the request body itself (what an apply returns, near enough).
    Echo,
    /// 200 with this object, its top-level fields overridden by the request body's
    /// (a status patch returns the whole object with the new status).
    Merge(Value),
    /// An API error with this HTTP status (a `Status` object, as the API server sends).
    Error(u16),
}

/// One expected call and its reply.
pub struct Exchange {
    pub method: Method,
    pub path: String,
    pub reply: Reply,
}

impl Exchange {
    pub fn new(method: Method, path: impl Into<String>, reply: Reply) -> Self {
        Exchange { method, path: path.into(), reply }
    }
}

/// A call as the mock received it.
#[derive(Debug, Clone)]
pub struct Recorded {
    pub method: Method,
    pub path: String,
    pub query: String,
    pub body: Value,
}

/// The API server side of a mocked client.
pub struct ApiServer(Handle<Request<Body>, Response<Body>>);

/// A kube client whose every call goes to the returned [`ApiServer`].
pub fn mock_client() -> (Client, ApiServer) {
    let (service, handle) = mock::pair::<Request<Body>, Response<Body>>();
    (Client::new(service, "default"), ApiServer(handle))
}

fn status_body(code: u16) -> Value {
    let reason = match code {
        404 => "NotFound",
        409 => "Conflict",
        422 => "Invalid",
        _ => "InternalError",
    };
    json!({"kind": "Status", "apiVersion": "v1", "metadata": {}, "status": "Failure",
           "message": format!("mock API server: {reason}"), "reason": reason, "code": code})
}

impl ApiServer {
    /// Plays `script` in order, then fails on any further call. Resolves to every call
    /// received once the client is dropped.
    pub fn run(self, script: Vec<Exchange>) -> JoinHandle<Vec<Recorded>> {
        let mut handle = self.0;
        tokio::spawn(async move {
            let mut recorded = Vec::new();
            let mut script = script.into_iter();
            loop {
                let next = tokio::time::timeout(Duration::from_secs(10), handle.next_request()).await;
                let Ok(Some((request, send))) = next else {
                    if let Some(missing) = script.next() {
                        panic!(
                            "expected {} {}, but no call came; calls so far: {recorded:#?}",
                            missing.method, missing.path
                        );
                    }
                    return recorded;
                };
                let method = request.method().clone();
                let path = request.uri().path().to_string();
                let query = request.uri().query().unwrap_or("").to_string();
                let bytes = request.into_body().collect_bytes().await.expect("request body");
                let body: Value =
                    if bytes.is_empty() { Value::Null } else { serde_json::from_slice(&bytes).expect("JSON body") };
                let call = Recorded { method: method.clone(), path: path.clone(), query, body: body.clone() };
                let Some(expected) = script.next() else {
                    panic!("unexpected call {method} {path} after the scenario ended; body: {body}");
                };
                assert_eq!(
                    (&method, path.as_str()),
                    (&expected.method, expected.path.as_str()),
                    "call #{} differs from the scenario; calls so far: {recorded:#?}",
                    recorded.len() + 1
                );
                recorded.push(call);
                let (code, reply) = match expected.reply {
                    Reply::Json(v) => (200, v),
                    Reply::Echo => (200, body),
                    Reply::Merge(mut base) => {
                        if let (Some(b), Some(patch)) = (base.as_object_mut(), body.as_object()) {
                            b.extend(patch.clone());
                        }
                        (200, base)
                    }
                    Reply::Error(code) => (code, status_body(code)),
                };
                let response = Response::builder()
                    .status(StatusCode::from_u16(code).expect("valid status"))
                    .body(Body::from(serde_json::to_vec(&reply).expect("reply serializes")))
                    .expect("response builds");
                send.send_response(response);
            }
        })
    }
}
