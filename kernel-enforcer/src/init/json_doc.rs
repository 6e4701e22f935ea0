//! A JSON document that keeps its keys in the order they were written, so
//! that adding a hook to someone's settings file leaves everything else as
//! it was (`serde_json::Value` would sort the keys).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde::ser::{Serialize, SerializeMap, SerializeSeq, Serializer};

/// A JSON value; objects keep their keys in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Doc {
    /// `null`.
    Null,
    /// `true` or `false`.
    Bool(bool),
    /// A number.
    Number(serde_json::Number),
    /// A string.
    String(String),
    /// An array.
    Array(Vec<Doc>),
    /// An object, keys in order, no key twice.
    Object(Vec<(String, Doc)>),
}

impl Doc {
    /// Parses `text`; refuses anything that is not one JSON value, and
    /// objects with a key twice (readers disagree on which one counts).
    pub(crate) fn parse(text: &str) -> Result<Self, serde_json::Error> {
        serde_json::from_str(text)
    }

    /// The document as JSON text, indented by two spaces, with a final
    /// newline.
    pub(crate) fn to_pretty(&self) -> String {
        let mut text = serde_json::to_string_pretty(self).unwrap_or_default();
        text.push('\n');
        text
    }

    /// A string's text.
    pub(crate) fn as_str(&self) -> Option<&str> {
        match self {
            Self::String(text) => Some(text),
            _ => None,
        }
    }

    /// The value at `key` of an object.
    pub(crate) fn get(&self, key: &str) -> Option<&Doc> {
        match self {
            Self::Object(fields) => fields.iter().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at `key` of an object, for changing it.
    pub(crate) fn get_mut(&mut self, key: &str) -> Option<&mut Doc> {
        match self {
            Self::Object(fields) => fields.iter_mut().find(|(k, _)| k == key).map(|(_, v)| v),
            _ => None,
        }
    }

    /// The value at `key` of an object, added as `default()` at the end
    /// when missing. `None` when `self` is not an object.
    pub(crate) fn entry(&mut self, key: &str, default: impl FnOnce() -> Doc) -> Option<&mut Doc> {
        let Self::Object(fields) = self else {
            return None;
        };
        let at = match fields.iter().position(|(k, _)| k == key) {
            Some(at) => at,
            None => {
                fields.push((key.to_owned(), default()));
                fields.len().saturating_sub(1)
            }
        };
        fields.get_mut(at).map(|(_, value)| value)
    }

    /// An object from its fields.
    pub(crate) fn object<const N: usize>(fields: [(&str, Doc); N]) -> Self {
        Self::Object(
            fields
                .into_iter()
                .map(|(key, value)| (key.to_owned(), value))
                .collect(),
        )
    }

    /// A string.
    pub(crate) fn string(text: &str) -> Self {
        Self::String(text.to_owned())
    }
}

impl Serialize for Doc {
    fn serialize<S: Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        match self {
            Self::Null => serializer.serialize_unit(),
            Self::Bool(value) => serializer.serialize_bool(*value),
            Self::Number(number) => number.serialize(serializer),
            Self::String(text) => serializer.serialize_str(text),
            Self::Array(items) => {
                let mut seq = serializer.serialize_seq(Some(items.len()))?;
                for item in items {
                    seq.serialize_element(item)?;
                }
                seq.end()
            }
            Self::Object(fields) => {
                let mut map = serializer.serialize_map(Some(fields.len()))?;
                for (key, value) in fields {
                    map.serialize_entry(key, value)?;
                }
                map.end()
            }
        }
    }
}

impl<'de> Deserialize<'de> for Doc {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(DocVisitor)
    }
}

struct DocVisitor;

impl<'de> Visitor<'de> for DocVisitor {
    type Value = Doc;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value")
    }

    fn visit_unit<E>(self) -> Result<Doc, E> {
        Ok(Doc::Null)
    }

    fn visit_bool<E>(self, value: bool) -> Result<Doc, E> {
        Ok(Doc::Bool(value))
    }

    fn visit_i64<E>(self, value: i64) -> Result<Doc, E> {
        Ok(Doc::Number(value.into()))
    }

    fn visit_u64<E>(self, value: u64) -> Result<Doc, E> {
        Ok(Doc::Number(value.into()))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Doc, E> {
        serde_json::Number::from_f64(value)
            .map(Doc::Number)
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, value: &str) -> Result<Doc, E> {
        Ok(Doc::String(value.to_owned()))
    }

    fn visit_string<E>(self, value: String) -> Result<Doc, E> {
        Ok(Doc::String(value))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Doc, A::Error> {
        let mut items = Vec::new();
        while let Some(item) = seq.next_element()? {
            items.push(item);
        }
        Ok(Doc::Array(items))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Doc, A::Error> {
        let mut fields: Vec<(String, Doc)> = Vec::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.iter().any(|(k, _)| *k == key) {
                return Err(de::Error::custom(format!("the key `{key}` appears twice")));
            }
            let value = map.next_value()?;
            fields.push((key, value));
        }
        Ok(Doc::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn keys_keep_their_order_and_values_their_form() {
        let text = r#"{"zeta": 1, "alpha": {"y": [true, null, -2, 1.5, "s"], "b": {}}, "m": []}"#;
        let doc = Doc::parse(text).unwrap();
        assert_eq!(
            doc.to_pretty(),
            "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"y\": [\n      true,\n      null,\n      -2,\n      \
             1.5,\n      \"s\"\n    ],\n    \"b\": {}\n  },\n  \"m\": []\n}\n"
        );
        assert_eq!(Doc::parse(&doc.to_pretty()).unwrap(), doc);
    }

    #[test]
    fn duplicate_keys_and_trailing_text_are_refused() {
        assert!(Doc::parse(r#"{"a": 1, "a": 2}"#).is_err());
        assert!(Doc::parse(r#"{"a": {"b": 1, "b": 1}}"#).is_err());
        assert!(Doc::parse(r#"{"a": 1} x"#).is_err());
        assert!(Doc::parse("{\"a\": 1,}").is_err());
    }

    #[test]
    fn entry_adds_a_missing_key_at_the_end() {
        let mut doc = Doc::parse(r#"{"b": 1, "a": 2}"#).unwrap();
        *doc.entry("c", || Doc::Null).unwrap() = Doc::Bool(true);
        *doc.entry("b", || Doc::Null).unwrap() = Doc::Bool(false);
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"b":false,"a":2,"c":true}"#
        );
        assert!(Doc::Null.entry("x", || Doc::Null).is_none());
    }
}
