//! Just enough of Kubernetes' protobuf encoding to read what kubectl's typed helpers send
//! (`kubectl create namespace|configmap|secret|serviceaccount|token`,
//! `kubectl auth can-i|whoami`): the `k8s\0`
//! envelope around a `runtime.Unknown`, and the fields of those few kinds, by the field
//! numbers of k8s.io/api's generated.proto. Other kinds answer 415.

use base64::Engine;
use serde_json::{Map, Value, json};

/// The magic prefix of a protobuf-encoded Kubernetes object.
const MAGIC: &[u8] = b"k8s\0";

/// How one protobuf field becomes JSON.
enum Field {
    Str(&'static str),
    Bool(&'static str),
    /// `int64` (and the other varint integers)
    Int(&'static str),
    /// `map<string, string>`
    StrMap(&'static str),
    /// `map<string, bytes>`, as JSON's base64 strings.
    BytesMap(&'static str),
    /// `repeated string`
    StrList(&'static str),
    Msg(&'static str, Schema),
}

type Schema = &'static [(u64, Field)];

const OBJECT_META: Schema = &[
    (1, Field::Str("name")),
    (2, Field::Str("generateName")),
    (3, Field::Str("namespace")),
    (11, Field::StrMap("labels")),
    (12, Field::StrMap("annotations")),
    (14, Field::StrList("finalizers")),
];
const NAMESPACE: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::Msg("spec", &[(1, Field::StrList("finalizers"))])),
];
const CONFIG_MAP: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::StrMap("data")),
    (3, Field::BytesMap("binaryData")),
    (4, Field::Bool("immutable")),
];
const SECRET: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (2, Field::BytesMap("data")),
    (3, Field::Str("type")),
    (4, Field::StrMap("stringData")),
    (5, Field::Bool("immutable")),
];
const RESOURCE_ATTRIBUTES: Schema = &[
    (1, Field::Str("namespace")),
    (2, Field::Str("verb")),
    (3, Field::Str("group")),
    (4, Field::Str("version")),
    (5, Field::Str("resource")),
    (6, Field::Str("subresource")),
    (7, Field::Str("name")),
];
const SELF_SUBJECT_ACCESS_REVIEW: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (
        2,
        Field::Msg(
            "spec",
            &[
                (1, Field::Msg("resourceAttributes", RESOURCE_ATTRIBUTES)),
                (
                    2,
                    Field::Msg(
                        "nonResourceAttributes",
                        &[(1, Field::Str("path")), (2, Field::Str("verb"))],
                    ),
                ),
            ],
        ),
    ),
];
const SERVICE_ACCOUNT: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (4, Field::Bool("automountServiceAccountToken")),
];
const TOKEN_REQUEST: Schema = &[
    (1, Field::Msg("metadata", OBJECT_META)),
    (
        2,
        Field::Msg(
            "spec",
            &[
                (1, Field::StrList("audiences")),
                (
                    3,
                    Field::Msg(
                        "boundObjectRef",
                        &[
                            (1, Field::Str("kind")),
                            (2, Field::Str("apiVersion")),
                            (3, Field::Str("name")),
                            (4, Field::Str("uid")),
                        ],
                    ),
                ),
                (4, Field::Int("expirationSeconds")),
            ],
        ),
    ),
];
const SELF_SUBJECT_REVIEW: Schema = &[(1, Field::Msg("metadata", OBJECT_META))];

fn schema_for(group: &str, kind: &str) -> Option<Schema> {
    match (group, kind) {
        ("", "Namespace") => Some(NAMESPACE),
        ("", "ConfigMap") => Some(CONFIG_MAP),
        ("", "Secret") => Some(SECRET),
        ("", "ServiceAccount") => Some(SERVICE_ACCOUNT),
        ("authentication.k8s.io", "TokenRequest") => Some(TOKEN_REQUEST),
        ("authorization.k8s.io", "SelfSubjectAccessReview") => Some(SELF_SUBJECT_ACCESS_REVIEW),
        ("authentication.k8s.io", "SelfSubjectReview") => Some(SELF_SUBJECT_REVIEW),
        _ => None,
    }
}

/// A reader over protobuf wire format.
struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn varint(&mut self) -> Result<u64, String> {
        let mut out = 0u64;
        for shift in (0..64).step_by(7) {
            let (&b, rest) = self.0.split_first().ok_or("truncated varint")?;
            self.0 = rest;
            out |= u64::from(b & 0x7f) << shift;
            if b & 0x80 == 0 {
                return Ok(out);
            }
        }
        Err("varint too long".into())
    }

    fn bytes(&mut self) -> Result<&'a [u8], String> {
        let len = usize::try_from(self.varint()?).map_err(|_| "length too large")?;
        if len > self.0.len() {
            return Err("truncated field".into());
        }
        let (head, rest) = self.0.split_at(len);
        self.0 = rest;
        Ok(head)
    }

    /// The next `(field number, value)`; varints come back as their value, length-delimited
    /// fields as their bytes; fixed-width fields are skipped.
    fn next(&mut self) -> Result<Option<(u64, Wire<'a>)>, String> {
        while !self.0.is_empty() {
            let key = self.varint()?;
            let value = match key & 7 {
                0 => Wire::Varint(self.varint()?),
                2 => Wire::Bytes(self.bytes()?),
                1 => {
                    self.skip(8)?;
                    continue;
                }
                5 => {
                    self.skip(4)?;
                    continue;
                }
                other => return Err(format!("unsupported wire type {other}")),
            };
            return Ok(Some((key >> 3, value)));
        }
        Ok(None)
    }

    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.0.len() {
            return Err("truncated field".into());
        }
        self.0 = &self.0[n..];
        Ok(())
    }
}

enum Wire<'a> {
    Varint(u64),
    Bytes(&'a [u8]),
}

fn text(b: &[u8]) -> Result<String, String> {
    String::from_utf8(b.to_vec()).map_err(|_| "string field is not UTF-8".to_string())
}

/// A map entry message: key = 1, value = 2.
fn entry(b: &[u8]) -> Result<(String, &[u8]), String> {
    let mut r = Reader(b);
    let (mut key, mut value) = (String::new(), &b[..0]);
    while let Some((n, w)) = r.next()? {
        match (n, w) {
            (1, Wire::Bytes(k)) => key = text(k)?,
            (2, Wire::Bytes(v)) => value = v,
            _ => {}
        }
    }
    Ok((key, value))
}

fn decode_message(schema: Schema, b: &[u8]) -> Result<Value, String> {
    let mut out = Map::new();
    let mut r = Reader(b);
    while let Some((n, wire)) = r.next()? {
        let Some((_, field)) = schema.iter().find(|(num, _)| *num == n) else {
            continue;
        };
        match (field, wire) {
            // Go's encoder writes empty strings; JSON omits them.
            (Field::Str(_), Wire::Bytes([])) => {}
            (Field::Str(name), Wire::Bytes(v)) => {
                out.insert((*name).into(), json!(text(v)?));
            }
            (Field::Bool(name), Wire::Varint(v)) => {
                out.insert((*name).into(), json!(v != 0));
            }
            // Two's complement, as Go writes a negative int64.
            (Field::Int(name), Wire::Varint(v)) => {
                out.insert((*name).into(), json!(v as i64));
            }
            (Field::StrMap(name), Wire::Bytes(v)) => {
                let (k, val) = entry(v)?;
                let m = out.entry(*name).or_insert_with(|| json!({}));
                m[k] = json!(text(val)?);
            }
            (Field::BytesMap(name), Wire::Bytes(v)) => {
                let (k, val) = entry(v)?;
                let m = out.entry(*name).or_insert_with(|| json!({}));
                m[k] = json!(base64::engine::general_purpose::STANDARD.encode(val));
            }
            (Field::StrList(name), Wire::Bytes(v)) => {
                let list = out.entry(*name).or_insert_with(|| json!([]));
                if let Some(list) = list.as_array_mut() {
                    list.push(json!(text(v)?));
                }
            }
            (Field::Msg(name, inner), Wire::Bytes(v)) => {
                out.insert((*name).into(), decode_message(inner, v)?);
            }
            _ => return Err(format!("field {n} has an unexpected wire type")),
        }
    }
    Ok(Value::Object(out))
}

/// Decodes a protobuf request body of `kind`; `Ok(None)` when the kind is not one the sandbox
/// reads as protobuf.
pub fn decode(group: &str, kind: &str, body: &[u8]) -> Result<Option<Value>, String> {
    let Some(schema) = schema_for(group, kind) else {
        return Ok(None);
    };
    let unknown = body
        .strip_prefix(MAGIC)
        .ok_or("protobuf body without the k8s envelope")?;
    let mut r = Reader(unknown);
    let mut raw = None;
    while let Some((n, w)) = r.next()? {
        if let (2, Wire::Bytes(b)) = (n, w) {
            raw = Some(b);
        }
    }
    let raw = raw.ok_or("protobuf envelope without an object")?;
    decode_message(schema, raw).map(Some)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn field(n: u64, payload: &[u8]) -> Vec<u8> {
        let mut out = vec![((n << 3) | 2) as u8, payload.len() as u8];
        out.extend_from_slice(payload);
        out
    }

    fn map_entry(n: u64, k: &str, v: &[u8]) -> Vec<u8> {
        let mut e = field(1, k.as_bytes());
        e.extend(field(2, v));
        field(n, &e)
    }

    #[test]
    fn reads_a_configmap_like_kubectl_create_sends() {
        let mut meta = field(1, b"cfg");
        meta.extend(field(2, b""));
        meta.extend(field(3, b"ns"));
        meta.extend(map_entry(11, "app", b"x"));
        let mut cm = field(1, &meta);
        cm.extend(map_entry(2, "k", b"v"));
        cm.extend([4 << 3, 1]);
        let mut body = MAGIC.to_vec();
        body.extend(field(1, &[]));
        body.extend(field(2, &cm));
        let v = decode("", "ConfigMap", &body).unwrap().unwrap();
        assert_eq!(
            v,
            json!({"metadata": {"name": "cfg", "namespace": "ns", "labels": {"app": "x"}}, "data": {"k": "v"}, "immutable": true})
        );
        assert!(decode("batch", "Job", &body).unwrap().is_none());
        // `kubectl create token sa --duration 1m`: spec.expirationSeconds (4) is a varint.
        let mut spec = field(1, b"aud");
        spec.extend([4 << 3, 60]);
        let mut request = MAGIC.to_vec();
        request.extend(field(2, &field(2, &spec)));
        assert_eq!(
            decode("authentication.k8s.io", "TokenRequest", &request)
                .unwrap()
                .unwrap(),
            json!({"spec": {"audiences": ["aud"], "expirationSeconds": 60}})
        );
        assert!(decode("", "ConfigMap", b"nope").is_err());
    }
}
