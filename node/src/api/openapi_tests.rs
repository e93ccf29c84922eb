//! Tests of the OpenAPI document: every route documented, references resolving, and
//! the patterns it promises accepted by the server.

use super::*;

/// Every route of `api::router` (method, OpenAPI path). Add a line here with each new
/// route; the compat routes are documented in the README instead.
pub const ROUTES: &[(&str, &str)] = &[
    ("put", "/v1/kv/{key}"),
    ("get", "/v1/kv/{key}"),
    ("delete", "/v1/kv/{key}"),
    ("get", "/v1/kv"),
    ("post", "/v1/batch"),
    ("get", "/v1/watch"),
    ("get", "/v1/cluster"),
    ("get", "/v1/openapi.json"),
    ("get", "/metrics"),
    ("get", "/healthz"),
    ("get", "/readyz"),
];

fn json() -> serde_json::Value {
    serde_json::from_str(&document().to_json().expect("serializes")).expect("JSON")
}

#[test]
fn every_route_is_documented() {
    let doc = json();
    let missing: Vec<_> = ROUTES.iter().filter(|(m, p)| doc["paths"][p][m].get("responses").is_none()).collect();
    assert!(missing.is_empty(), "routes missing from the OpenAPI document: {missing:?}");
    let documented: usize =
        doc["paths"].as_object().expect("paths").values().map(|p| p.as_object().map_or(0, |o| o.len())).sum();
    assert_eq!(documented, ROUTES.len(), "documented operations that are not routes");
}

#[test]
fn the_document_parses_as_openapi_3_1_and_every_reference_resolves() {
    let text = document().to_json().expect("serializes");
    let spec = oas3::from_json(&text).expect("a valid OpenAPI 3.1 document");
    assert!(spec.openapi.starts_with("3."), "{}", spec.openapi);
    let doc = json();
    let mut refs = Vec::new();
    collect_refs(&doc, &mut refs);
    assert!(!refs.is_empty());
    for r in refs {
        let name = r.strip_prefix("#/components/schemas/").unwrap_or_else(|| panic!("unexpected $ref {r}"));
        assert!(doc["components"]["schemas"].get(name).is_some(), "$ref {r} does not resolve");
    }
}

fn collect_refs(v: &serde_json::Value, out: &mut Vec<String>) {
    match v {
        serde_json::Value::Object(m) => {
            if let Some(serde_json::Value::String(r)) = m.get("$ref") {
                out.push(r.clone());
            }
            m.values().for_each(|v| collect_refs(v, out));
        }
        serde_json::Value::Array(a) => a.iter().for_each(|v| collect_refs(v, out)),
        _ => {}
    }
}

/// The edges of every form `TTL_PATTERN` promises are accepted by the server.
#[test]
fn every_promised_ttl_form_is_accepted() {
    for t in [
        "1",
        "9999",
        "1ms",
        "9999ms",
        "1s",
        "9999m",
        "9999h",
        "1.",
        "9999.999999",
        "0.5",
        ".5",
        "0.000001",
        "0.0000019999",
    ] {
        assert!(params::ttl(t).is_ok(), "{t}");
    }
}

#[test]
fn errors_and_conflicts_have_the_documented_shape() {
    let doc = json();
    let put = &doc["paths"]["/v1/kv/{key}"]["put"];
    let conflict = &put["responses"]["409"]["content"]["application/json"]["schema"]["$ref"];
    assert_eq!(conflict, "#/components/schemas/ErrorBody");
    let detail = &doc["components"]["schemas"]["ErrorDetail"];
    for field in ["code", "message", "current_revision"] {
        assert!(detail["properties"].get(field).is_some(), "ErrorDetail lacks {field}");
    }
    let params: Vec<&str> =
        put["parameters"].as_array().expect("params").iter().filter_map(|p| p["name"].as_str()).collect();
    assert_eq!(params, ["key", "db", "ttl", "prev_revision"]);
    let ttl = put["parameters"].as_array().expect("params").iter().find(|p| p["name"] == "ttl").expect("ttl");
    assert_eq!(ttl["schema"]["pattern"], TTL_PATTERN, "the query's ttl and the body's Ttl promise the same forms");
    assert!(doc["paths"]["/v1/watch"]["get"]["responses"]["200"]["content"].get("text/event-stream").is_some());
}

/// Routes that need a principal but whose handlers ask it nothing more: any role may use
/// them, so they never answer 403. Every other route that needs a principal can.
const NEVER_FORBIDDEN: &[(&str, &str)] = &[("get", "/v1/openapi.json"), ("get", "/metrics")];

/// Each operation's `security` and its 401 and 403 follow what the auth middleware asks
/// of its route ([`crate::api::auth::route_needs`], with and without `--metrics-auth`):
/// a route that needs a principal requires `bearerAuth` and documents 401 (with
/// `WWW-Authenticate`) and, unless it is in [`NEVER_FORBIDDEN`], 403; one that needs a
/// principal only with `--metrics-auth` has optional security (`{}` or `bearerAuth`) and
/// a 401; an open one has an empty `security` list and neither. A route added to
/// [`ROUTES`] without its auth documented fails here.
#[test]
fn every_authenticated_route_documents_its_security_and_401() {
    use crate::api::auth::route_needs;
    let doc = json();
    let scheme = &doc["components"]["securitySchemes"][BEARER_AUTH];
    assert_eq!(scheme["type"], "http", "{scheme}");
    assert_eq!(scheme["scheme"], "bearer", "{scheme}");
    let bearer = serde_json::json!({ BEARER_AUTH: [] });
    let error_body = serde_json::json!("#/components/schemas/ErrorBody");
    let mut wrong = Vec::new();
    for &(method, path) in ROUTES {
        let op = &doc["paths"][path][method];
        let route = path.replace("{key}", "{*key}");
        let m = axum::http::Method::from_bytes(method.to_ascii_uppercase().as_bytes()).expect("a method");
        let always = route_needs(Some(&route), &m, false).is_some();
        let sometimes = route_needs(Some(&route), &m, true).is_some();
        let want = match (always, sometimes) {
            (true, _) => serde_json::json!([bearer]),
            (false, true) => serde_json::json!([{}, bearer]),
            (false, false) => serde_json::json!([]),
        };
        let responses = &op["responses"];
        let schema = |status: &str| &responses[status]["content"]["application/json"]["schema"]["$ref"];
        let mut fault = |what: &str| wrong.push(format!("{method} {path}: {what}"));
        if op["security"] != want {
            fault(&format!("its security is {}, want {want}", op["security"]));
        }
        if sometimes {
            if *schema("401") != error_body {
                fault("can answer 401 but does not document it as an ErrorBody");
            }
            if responses["401"]["headers"].get("WWW-Authenticate").is_none() {
                fault("documents 401 without its WWW-Authenticate header");
            }
            let never_forbidden = NEVER_FORBIDDEN.contains(&(method, path));
            if !never_forbidden && *schema("403") != error_body {
                fault("can answer 403 but does not document it as an ErrorBody");
            }
            if never_forbidden && responses.get("403").is_some() {
                fault("documents a 403 it never answers");
            }
        } else if responses.get("401").is_some() || responses.get("403").is_some() {
            fault("is open but documents 401 or 403");
        }
    }
    assert!(wrong.is_empty(), "auth not documented as routed:\n{}", wrong.join("\n"));
    let info = doc["info"]["description"].as_str().expect("info.description");
    for needle in ["--auth-tokens", "client certificate", "--metrics-auth"] {
        assert!(info.contains(needle), "info.description does not mention {needle}");
    }
}

/// The base64 values' pattern is written out in each schema attribute (utoipa takes only
/// literals there): every copy in the document is [`BASE64_PATTERN`].
#[test]
fn every_base64_value_has_the_one_pattern() {
    let doc = json();
    let schemas = &doc["components"]["schemas"];
    for name in ["Base64Value", "PutBase64Op"] {
        assert_eq!(schemas[name]["properties"]["value"]["pattern"], BASE64_PATTERN, "{name}");
    }
}
