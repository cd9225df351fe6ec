//! The query string: Docker's booleans (`1`, `true`, `True`), integers, and the `filters`
//! parameter (a JSON map of name to values).

use std::collections::BTreeMap;

use crate::response::ApiError;

/// Decoded `key=value` pairs; a repeated key keeps its last value, as Go's `Form.Get`
/// returns the first — the clients never repeat keys we read.
#[derive(Debug, Default, Clone)]
pub struct Query {
    pairs: BTreeMap<String, String>,
}

impl Query {
    pub fn parse(query: Option<&str>) -> Self {
        let pairs = form_urlencoded::parse(query.unwrap_or("").as_bytes())
            .map(|(k, v)| (k.into_owned(), v.into_owned()))
            .collect();
        Self { pairs }
    }

    pub fn get(&self, key: &str) -> Option<&str> {
        self.pairs.get(key).map(String::as_str)
    }

    /// Go's `httputils.BoolValue`: anything but empty, `0`, `no`, `false`, `none` is true.
    pub fn bool(&self, key: &str) -> bool {
        match self.get(key) {
            None => false,
            Some(v) => !matches!(
                v.trim().to_ascii_lowercase().as_str(),
                "" | "0" | "no" | "false" | "none"
            ),
        }
    }

    pub fn int(&self, key: &str) -> Result<Option<i64>, ApiError> {
        match self.get(key) {
            None | Some("") => Ok(None),
            Some(v) => v.parse().map(Some).map_err(|_| {
                ApiError::bad_request(format!("invalid value for {key}: {v:?} is not an integer"))
            }),
        }
    }

    /// `filters={"status":["exited"],"label":{"a=b":true}}`: both the list form and the
    /// older map-of-bools form.
    pub fn filters(&self) -> Result<BTreeMap<String, Vec<String>>, ApiError> {
        let Some(raw) = self.get("filters").filter(|s| !s.is_empty()) else {
            return Ok(BTreeMap::new());
        };
        let value: serde_json::Value = serde_json::from_str(raw)
            .map_err(|err| ApiError::bad_request(format!("invalid filter: {err}")))?;
        let obj = value
            .as_object()
            .ok_or_else(|| ApiError::bad_request("invalid filter: not a JSON object"))?;
        let mut out = BTreeMap::new();
        for (name, values) in obj {
            let list: Vec<String> = match values {
                serde_json::Value::Array(items) => items
                    .iter()
                    .filter_map(|v| v.as_str().map(str::to_owned))
                    .collect(),
                serde_json::Value::Object(map) => map
                    .iter()
                    .filter(|(_, on)| on.as_bool() == Some(true))
                    .map(|(k, _)| k.clone())
                    .collect(),
                _ => return Err(ApiError::bad_request(format!("invalid filter {name:?}"))),
            };
            out.insert(name.clone(), list);
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn booleans_as_docker_reads_them() {
        let q = Query::parse(Some("a=1&b=true&c=0&d=False&e="));
        assert!(q.bool("a") && q.bool("b"));
        assert!(!q.bool("c") && !q.bool("d") && !q.bool("e") && !q.bool("missing"));
    }

    #[test]
    fn filters_in_both_forms() {
        let q = Query::parse(Some(
            "filters=%7B%22status%22%3A%5B%22exited%22%5D%2C%22label%22%3A%7B%22a%3Db%22%3Atrue%7D%7D",
        ));
        let f = q.filters().expect("parses");
        assert_eq!(f["status"], vec!["exited"]);
        assert_eq!(f["label"], vec!["a=b"]);
        assert!(Query::parse(Some("filters=nope")).filters().is_err());
        assert!(Query::parse(Some("t=x")).int("t").is_err());
        assert_eq!(Query::parse(Some("t=10")).int("t").expect("int"), Some(10));
    }
}
