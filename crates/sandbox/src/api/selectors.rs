//! Label and field selectors, parsed as k8s.io/apimachinery/pkg/labels and pkg/fields do.

use serde_json::Value;

/// One label requirement.
#[derive(Debug, Clone, PartialEq, Eq)]
enum LabelReq {
    Equals(String, String),
    NotEquals(String, String),
    In(String, Vec<String>),
    NotIn(String, Vec<String>),
    Exists(String),
    NotExists(String),
}

/// A parsed `labelSelector` (requirements joined by AND).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LabelSelector(Vec<LabelReq>);

/// Splits on commas that are not inside parentheses.
fn split_top_level(s: &str) -> Vec<&str> {
    let mut parts = Vec::new();
    let (mut depth, mut start) = (0i32, 0usize);
    for (i, c) in s.char_indices() {
        match c {
            '(' => depth += 1,
            ')' => depth -= 1,
            ',' if depth == 0 => {
                parts.push(&s[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&s[start..]);
    parts
}

fn parse_set(rest: &str, whole: &str) -> Result<Vec<String>, String> {
    let rest = rest.trim();
    let inner = rest
        .strip_prefix('(')
        .and_then(|r| r.strip_suffix(')'))
        .ok_or_else(|| {
            format!("unable to parse requirement: found '{rest}', expected: '(' in {whole}")
        })?;
    Ok(inner
        .split(',')
        .map(|v| v.trim().to_string())
        .filter(|v| !v.is_empty())
        .collect())
}

fn check_key(key: &str) -> Result<String, String> {
    let key = key.trim();
    if key.is_empty() || key.contains(char::is_whitespace) {
        return Err(format!(
            "unable to parse requirement: invalid label key {key:?}"
        ));
    }
    Ok(key.to_string())
}

fn parse_requirement(raw: &str) -> Result<LabelReq, String> {
    let r = raw.trim();
    if let Some(key) = r.strip_prefix('!') {
        return Ok(LabelReq::NotExists(check_key(key)?));
    }
    if let Some((k, v)) = r.split_once("!=") {
        return Ok(LabelReq::NotEquals(check_key(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = r.split_once("==") {
        return Ok(LabelReq::Equals(check_key(k)?, v.trim().to_string()));
    }
    if let Some((k, v)) = r.split_once('=') {
        return Ok(LabelReq::Equals(check_key(k)?, v.trim().to_string()));
    }
    let mut words = r.splitn(2, char::is_whitespace);
    let key = words.next().unwrap_or_default();
    let rest = words.next().unwrap_or_default().trim_start();
    if let Some(set) = rest.strip_prefix("notin") {
        return Ok(LabelReq::NotIn(check_key(key)?, parse_set(set, r)?));
    }
    if let Some(set) = rest.strip_prefix("in") {
        return Ok(LabelReq::In(check_key(key)?, parse_set(set, r)?));
    }
    if rest.is_empty() {
        return Ok(LabelReq::Exists(check_key(key)?));
    }
    Err(format!("unable to parse requirement: {r:?}"))
}

impl LabelSelector {
    /// Parses a selector; the empty string selects everything.
    pub fn parse(s: &str) -> Result<Self, String> {
        if s.trim().is_empty() {
            return Ok(Self::default());
        }
        split_top_level(s)
            .into_iter()
            .map(parse_requirement)
            .collect::<Result<Vec<_>, _>>()
            .map(LabelSelector)
    }

    /// Whether an object's `metadata.labels` satisfy every requirement.
    pub fn matches(&self, obj: &Value) -> bool {
        let labels = obj.pointer("/metadata/labels");
        let get = |k: &str| labels.and_then(|l| l.get(k)).and_then(Value::as_str);
        self.0.iter().all(|req| match req {
            LabelReq::Equals(k, v) => get(k) == Some(v.as_str()),
            LabelReq::NotEquals(k, v) => get(k) != Some(v.as_str()),
            LabelReq::In(k, vs) => get(k).is_some_and(|x| vs.iter().any(|v| v == x)),
            LabelReq::NotIn(k, vs) => get(k).is_none_or(|x| vs.iter().all(|v| v != x)),
            LabelReq::Exists(k) => get(k).is_some(),
            LabelReq::NotExists(k) => get(k).is_none(),
        })
    }
}

/// A parsed `fieldSelector`: `path=value` / `path==value` / `path!=value` joined by commas.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FieldSelector(Vec<(String, bool, String)>);

/// Fields every kind supports.
const COMMON_FIELDS: &[&str] = &["metadata.name", "metadata.namespace"];

/// Extra fields a kind supports, as its registry strategy declares them.
fn kind_fields(plural: &str) -> &'static [&'static str] {
    match plural {
        "pods" => &[
            "spec.nodeName",
            "spec.restartPolicy",
            "spec.schedulerName",
            "spec.serviceAccountName",
            "spec.hostNetwork",
            "status.phase",
            "status.podIP",
            "status.nominatedNodeName",
        ],
        "events" => &[
            "involvedObject.kind",
            "involvedObject.namespace",
            "involvedObject.name",
            "involvedObject.uid",
            "involvedObject.apiVersion",
            "involvedObject.resourceVersion",
            "involvedObject.fieldPath",
            "reason",
            "reportingComponent",
            "source",
            "type",
            "regarding.kind",
            "regarding.name",
            "regarding.namespace",
        ],
        "secrets" => &["type"],
        "namespaces" => &["status.phase"],
        "nodes" => &["spec.unschedulable"],
        "jobs" => &["status.successful"],
        _ => &[],
    }
}

impl FieldSelector {
    /// Parses a selector for a resource; unsupported fields are a 400 as on the real server.
    pub fn parse(s: &str, plural: &str) -> Result<Self, String> {
        let mut reqs = Vec::new();
        for raw in s.split(',').map(str::trim).filter(|r| !r.is_empty()) {
            let (field, equal, value) = if let Some((f, v)) = raw.split_once("!=") {
                (f, false, v)
            } else if let Some((f, v)) = raw.split_once("==") {
                (f, true, v)
            } else if let Some((f, v)) = raw.split_once('=') {
                (f, true, v)
            } else {
                return Err(format!("invalid selector: '{s}'; can't understand '{raw}'"));
            };
            let field = field.trim();
            if !COMMON_FIELDS.contains(&field) && !kind_fields(plural).contains(&field) {
                return Err(format!("field label not supported: {field}"));
            }
            reqs.push((field.to_string(), equal, value.trim().to_string()));
        }
        Ok(FieldSelector(reqs))
    }

    /// Whether the object's fields satisfy every requirement (absent fields read as `""`).
    pub fn matches(&self, obj: &Value) -> bool {
        self.0.iter().all(|(field, equal, want)| {
            let pointer = format!("/{}", field.replace('.', "/"));
            let got = match obj.pointer(&pointer) {
                Some(Value::String(s)) => s.clone(),
                Some(Value::Null) | None => String::new(),
                Some(other) => other.to_string(),
            };
            (got == *want) == *equal
        })
    }
}

/// The label and field selectors of one list or watch.
#[derive(Debug, Clone, Default)]
pub struct Selectors {
    /// `labelSelector`.
    pub labels: LabelSelector,
    /// `fieldSelector`.
    pub fields: FieldSelector,
}

impl Selectors {
    /// Whether the object passes both.
    pub fn matches(&self, obj: &Value) -> bool {
        self.labels.matches(obj) && self.fields.matches(obj)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn obj(labels: Value) -> Value {
        json!({"metadata": {"name": "a", "namespace": "ns", "labels": labels}, "status": {"phase": "Running"}})
    }

    #[test]
    fn label_operators() {
        let o = obj(json!({"app": "web", "tier": "front"}));
        let m = |s: &str| LabelSelector::parse(s).unwrap().matches(&o);
        assert!(m(""));
        assert!(m("app=web"));
        assert!(m("app==web,tier"));
        assert!(m("app!=db"));
        assert!(m("app in (web, db)"));
        assert!(m("app notin (db)"));
        assert!(m("!missing"));
        assert!(m("missing notin (x)"));
        assert!(!m("app in (db)"));
        assert!(!m("!app"));
        assert!(!m("app=web,tier=back"));
        assert!(LabelSelector::parse("app in db").is_err());
    }

    #[test]
    fn field_selectors() {
        let o = obj(json!({}));
        let m = |s: &str, p: &str| FieldSelector::parse(s, p).unwrap().matches(&o);
        assert!(m("metadata.name=a", "configmaps"));
        assert!(m("metadata.name!=b,metadata.namespace==ns", "configmaps"));
        assert!(m("status.phase=Running", "pods"));
        assert!(!m("metadata.name=b", "configmaps"));
        assert_eq!(
            FieldSelector::parse("spec.foo=1", "configmaps").unwrap_err(),
            "field label not supported: spec.foo"
        );
    }
}
