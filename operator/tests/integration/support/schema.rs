//! Validates an object against a CRD's `openAPIV3Schema` the way the API server does
//! with strict field validation: defaults first, then structure (types, enums, ranges,
//! lengths, patterns, required and unknown fields), then the CEL rules (`kube-cel`).
//! Messages follow the API server's wording (`spec.shards: Unsupported value: 3`).

use serde_json::Value;

/// Every error, structural then CEL, as `path: message`, of creating `object`.
pub fn validate(schema: &Value, object: &Value) -> Vec<String> {
    validate_update(schema, object, None)
}

/// The same for an update from `old` (transition rules, which use `oldSelf`, run only
/// then, as on the API server).
pub fn validate_update(schema: &Value, object: &Value, old: Option<&Value>) -> Vec<String> {
    let defaulted = kube_cel::apply_defaults(schema, object);
    let old = old.map(|o| kube_cel::apply_defaults(schema, o));
    let mut errors = Vec::new();
    check(schema, &defaulted, "", true, &mut errors);
    if let Err(cel) = kube_cel::Validator::new().validate(schema, &defaulted, old.as_ref()) {
        for e in cel.iter() {
            errors.push(format!("{}: Invalid value: {}", e.field_path, e.message));
        }
    }
    errors
}

fn join(path: &str, key: &str) -> String {
    if path.is_empty() {
        key.to_string()
    } else {
        format!("{path}.{key}")
    }
}

fn type_ok(ty: &str, v: &Value) -> bool {
    match ty {
        "object" => v.is_object(),
        "array" => v.is_array(),
        "string" => v.is_string(),
        "integer" => v.is_i64() || v.is_u64(),
        "number" => v.is_number(),
        "boolean" => v.is_boolean(),
        _ => false,
    }
}

fn check(schema: &Value, v: &Value, path: &str, root: bool, errors: &mut Vec<String>) {
    if v.is_null() {
        if schema["nullable"] != Value::Bool(true) {
            errors.push(format!("{path}: Invalid value: null"));
        }
        return;
    }
    if schema["x-kubernetes-int-or-string"] == Value::Bool(true) {
        if !(v.is_string() || v.is_i64() || v.is_u64()) {
            errors.push(format!("{path}: Invalid value: must be an integer or a string"));
        }
        return;
    }
    if let Some(ty) = schema["type"].as_str() {
        if !type_ok(ty, v) {
            errors.push(format!("{path}: Invalid value: {v}: must be of type {ty}"));
            return;
        }
    }
    if let Some(allowed) = schema["enum"].as_array() {
        if !allowed.contains(v) {
            let list: Vec<String> =
                allowed.iter().map(|a| format!("\"{}\"", a.as_str().map_or(a.to_string(), str::to_string))).collect();
            errors.push(format!("{path}: Unsupported value: {v}: supported values: {}", list.join(", ")));
        }
    }
    if let Some(n) = v.as_f64() {
        if schema["minimum"].as_f64().is_some_and(|m| n < m) {
            errors
                .push(format!("{path}: Invalid value: {v}: should be greater than or equal to {}", schema["minimum"]));
        }
        if schema["maximum"].as_f64().is_some_and(|m| n > m) {
            errors.push(format!("{path}: Invalid value: {v}: should be less than or equal to {}", schema["maximum"]));
        }
    }
    if let Some(s) = v.as_str() {
        let len = u64::try_from(s.chars().count()).unwrap_or(u64::MAX);
        if schema["minLength"].as_u64().is_some_and(|m| len < m) {
            errors.push(format!("{path}: Invalid value: {v}: should be at least {} chars long", schema["minLength"]));
        }
        if let Some(p) = schema["pattern"].as_str() {
            let re = regex::Regex::new(p).unwrap_or_else(|e| panic!("pattern {p} at {path} compiles: {e}"));
            if !re.is_match(s) {
                errors.push(format!("{path}: Invalid value: {v}: should match '{p}'"));
            }
        }
    }
    if let Some(items) = v.as_array() {
        for (i, item) in items.iter().enumerate() {
            check(&schema["items"], item, &format!("{path}[{i}]"), false, errors);
        }
    }
    if let Some(map) = v.as_object() {
        for required in schema["required"].as_array().into_iter().flatten().filter_map(Value::as_str) {
            if !map.contains_key(required) {
                errors.push(format!("{}: Required value", join(path, required)));
            }
        }
        let preserve = schema["x-kubernetes-preserve-unknown-fields"] == Value::Bool(true);
        for (key, value) in map {
            // apiVersion, kind and metadata are validated by the API server itself.
            if root && matches!(key.as_str(), "apiVersion" | "kind" | "metadata") {
                continue;
            }
            let child = join(path, key);
            if let Some(prop) = schema["properties"].get(key) {
                check(prop, value, &child, false, errors);
            } else if schema["additionalProperties"].is_object() {
                check(&schema["additionalProperties"], value, &child, false, errors);
            } else if !preserve {
                errors.push(format!("{child}: unknown field \"{key}\""));
            }
        }
    }
}
