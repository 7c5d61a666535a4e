//! Docker's `filters` query parameter: JSON mapping each key to its values,
//! either as `{"name":{"foo":true}}` (what the docker CLI sends) or as
//! `{"name":["foo"]}` (the older form, still accepted by Docker and handy
//! with curl). Keys Docker does not accept for an endpoint are rejected with
//! Docker's message, so typos do not silently match everything.

use std::collections::BTreeMap;

use serde_json::Value;

use super::errors::ApiError;
use crate::engine::spec::NetworkFilters;

/// Key → values, in the order they were given.
pub type Filters = BTreeMap<String, Vec<String>>;

/// Parses the raw (already percent-decoded) `filters` value; absent or
/// empty means no filter.
pub fn parse(raw: Option<&str>) -> Result<Filters, ApiError> {
    let raw = match raw.map(str::trim) {
        None | Some("") => return Ok(Filters::new()),
        Some(r) => r,
    };
    let value: Value = serde_json::from_str(raw)
        .map_err(|e| ApiError::bad_request(format!("invalid filter: {e}")))?;
    let Value::Object(map) = value else {
        return Err(ApiError::bad_request(
            "invalid filter: expected a JSON object mapping keys to values",
        ));
    };
    let mut out = Filters::new();
    for (key, v) in map {
        let values = match v {
            Value::Array(items) => items
                .into_iter()
                .map(|i| match i {
                    Value::String(s) => Ok(s),
                    other => Err(other),
                })
                .collect::<Result<Vec<_>, _>>()
                .map_err(|_| invalid_value(&key))?,
            // Docker reads only the keys of the inner map; the booleans are
            // always `true` in practice.
            Value::Object(inner) => inner.into_iter().map(|(k, _)| k).collect(),
            Value::Null => Vec::new(),
            _ => return Err(invalid_value(&key)),
        };
        out.insert(key, values);
    }
    Ok(out)
}

fn invalid_value(key: &str) -> ApiError {
    ApiError::bad_request(format!(
        "invalid filter '{key}': values must be a list of strings or a map of strings to true"
    ))
}

/// Filters of `GET /networks`: what the engine filters, plus the two keys
/// Docker accepts that the engine does not know (`scope`, `dangling`),
/// which the API applies to the engine's answer.
#[derive(Debug, Clone, Default)]
pub struct ListFilters {
    pub engine: NetworkFilters,
    pub scope: Vec<String>,
    /// `Some(true)`: only custom networks without endpoints.
    pub dangling: Option<bool>,
}

/// Docker's accepted keys for `GET /networks`.
pub fn list_filters(f: &Filters) -> Result<ListFilters, ApiError> {
    let mut out = ListFilters::default();
    for (key, values) in f {
        match key.as_str() {
            "name" => out.engine.name.extend(values.iter().cloned()),
            "id" => out.engine.id.extend(values.iter().cloned()),
            "driver" => out.engine.driver.extend(values.iter().cloned()),
            "label" => out.engine.label.extend(values.iter().cloned()),
            "type" => {
                for v in values {
                    if v != "custom" && v != "builtin" {
                        return Err(ApiError::bad_request(format!(
                            "Invalid filter: 'type'='{v}'"
                        )));
                    }
                }
                out.engine.kind.extend(values.iter().cloned());
            }
            "scope" => out.scope.extend(values.iter().cloned()),
            "dangling" => {
                let mut wanted = None;
                for v in values {
                    let b = match v.as_str() {
                        "true" | "1" => true,
                        "false" | "0" => false,
                        _ => {
                            return Err(ApiError::bad_request(format!(
                                "invalid filter 'dangling={v}'"
                            )));
                        }
                    };
                    if wanted.is_some_and(|w| w != b) {
                        return Err(ApiError::bad_request(
                            "invalid filter 'dangling': give either true or false, not both",
                        ));
                    }
                    wanted = Some(b);
                }
                out.dangling = wanted;
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    Ok(out)
}

/// Filters of `POST /networks/prune`. Docker accepts `label`, `label!` and
/// `until`; netd has the first and says so for the others rather than
/// pruning more than asked.
pub fn prune_filters(f: &Filters) -> Result<NetworkFilters, ApiError> {
    let mut out = NetworkFilters::default();
    for (key, values) in f {
        match key.as_str() {
            "label" => out.label.extend(values.iter().cloned()),
            "until" | "label!" => {
                return Err(ApiError::bad_request(format!(
                    "the '{key}' prune filter is not supported by netd yet"
                )));
            }
            other => return Err(ApiError::bad_request(format!("invalid filter '{other}'"))),
        }
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_json_shapes_parse() {
        let map = parse(Some(r#"{"name":{"foo":true},"driver":{"bridge":true}}"#)).unwrap();
        assert_eq!(map["name"], vec!["foo"]);
        assert_eq!(map["driver"], vec!["bridge"]);
        let list = parse(Some(r#"{"name":["foo","bar"]}"#)).unwrap();
        assert_eq!(list["name"], vec!["foo", "bar"]);
    }

    #[test]
    fn absent_or_empty_means_no_filter() {
        assert!(parse(None).unwrap().is_empty());
        assert!(parse(Some("")).unwrap().is_empty());
        assert!(parse(Some("{}")).unwrap().is_empty());
    }

    #[test]
    fn malformed_filters_are_400() {
        for raw in ["{", "[1]", r#"{"name":5}"#, r#"{"name":[1]}"#] {
            let e = parse(Some(raw)).unwrap_err();
            assert_eq!(e.status, 400, "{raw}");
            assert!(
                e.message.starts_with("invalid filter"),
                "{raw}: {}",
                e.message
            );
        }
    }

    #[test]
    fn list_keys_map_to_engine_filters() {
        let f = parse(Some(
            r#"{"name":["a"],"id":["12"],"driver":["bridge"],"label":["k=v"],"type":["custom"],"scope":["local"],"dangling":["true"]}"#,
        ))
        .unwrap();
        let l = list_filters(&f).unwrap();
        assert_eq!(l.engine.name, vec!["a"]);
        assert_eq!(l.engine.id, vec!["12"]);
        assert_eq!(l.engine.driver, vec!["bridge"]);
        assert_eq!(l.engine.label, vec!["k=v"]);
        assert_eq!(l.engine.kind, vec!["custom"]);
        assert_eq!(l.scope, vec!["local"]);
        assert_eq!(l.dangling, Some(true));
    }

    #[test]
    fn unknown_keys_and_values_use_dockers_messages() {
        let e = list_filters(&parse(Some(r#"{"nmae":["a"]}"#)).unwrap()).unwrap_err();
        assert_eq!(e.message, "invalid filter 'nmae'");
        let e = list_filters(&parse(Some(r#"{"type":["weird"]}"#)).unwrap()).unwrap_err();
        assert_eq!(e.message, "Invalid filter: 'type'='weird'");
        let e = list_filters(&parse(Some(r#"{"dangling":["maybe"]}"#)).unwrap()).unwrap_err();
        assert_eq!(e.message, "invalid filter 'dangling=maybe'");
    }

    #[test]
    fn prune_accepts_labels_only() {
        let f = prune_filters(&parse(Some(r#"{"label":{"a=b":true}}"#)).unwrap()).unwrap();
        assert_eq!(f.label, vec!["a=b"]);
        let e = prune_filters(&parse(Some(r#"{"until":["24h"]}"#)).unwrap()).unwrap_err();
        assert_eq!(e.status, 400);
        assert!(e.message.contains("not supported"));
        let e = prune_filters(&parse(Some(r#"{"name":["x"]}"#)).unwrap()).unwrap_err();
        assert_eq!(e.message, "invalid filter 'name'");
    }
}
