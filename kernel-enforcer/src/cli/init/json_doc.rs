//! Reading and writing a JSON settings file so that adding a hook to it
//! leaves everything else as it was: objects keep their keys in the order
//! they were written (`serde_json::Value` with the `preserve_order`
//! feature, which this crate's manifest asks for), and an object with a
//! key twice is refused rather than losing one of them on the way back.
//!
//! Not [`kernel_core::json::parse_strict`]: that one also refuses keys
//! equal but for letter case, which a settings file may rightly hold
//! (`HTTP_PROXY` and `http_proxy` in Claude Code's `env`).

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};

/// Parses `text`; refuses anything that is not one JSON value, and
/// objects with a key twice (readers disagree on which one counts).
pub(crate) fn parse(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<UniqueKeys>(text).map(|doc| doc.0)
}

/// `value` as JSON text, indented by two spaces, with a final newline.
pub(crate) fn to_pretty(value: &Value) -> Result<String, serde_json::Error> {
    let mut text = serde_json::to_string_pretty(value)?;
    text.push('\n');
    Ok(text)
}

/// A JSON value whose objects hold no key twice.
struct UniqueKeys(Value);

impl<'de> Deserialize<'de> for UniqueKeys {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(UniqueKeysVisitor)
    }
}

struct UniqueKeysVisitor;

impl<'de> Visitor<'de> for UniqueKeysVisitor {
    type Value = UniqueKeys;

    fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("a JSON value without duplicate keys")
    }

    fn visit_unit<E>(self) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Null))
    }

    fn visit_bool<E>(self, value: bool) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Bool(value)))
    }

    fn visit_i64<E>(self, value: i64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Number(value.into())))
    }

    fn visit_u64<E>(self, value: u64) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::Number(value.into())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<UniqueKeys, E> {
        Number::from_f64(value)
            .map(|number| UniqueKeys(Value::Number(number)))
            .ok_or_else(|| E::custom("a number JSON cannot hold"))
    }

    fn visit_str<E>(self, value: &str) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::String(value.to_owned())))
    }

    fn visit_string<E>(self, value: String) -> Result<UniqueKeys, E> {
        Ok(UniqueKeys(Value::String(value)))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<UniqueKeys, A::Error> {
        let mut items = Vec::new();
        while let Some(UniqueKeys(item)) = seq.next_element()? {
            items.push(item);
        }
        Ok(UniqueKeys(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<UniqueKeys, A::Error> {
        let mut fields = Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if fields.contains_key(&key) {
                return Err(de::Error::custom(format!("the key `{key}` appears twice")));
            }
            let UniqueKeys(value) = map.next_value()?;
            fields.insert(key, value);
        }
        Ok(UniqueKeys(Value::Object(fields)))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn keys_keep_their_order_and_values_their_form() {
        let text = r#"{"zeta": 1, "alpha": {"y": [true, null, -2, 1.5, "s"], "b": {}}, "m": []}"#;
        let doc = parse(text).unwrap();
        let pretty = to_pretty(&doc).unwrap();
        assert_eq!(
            pretty,
            "{\n  \"zeta\": 1,\n  \"alpha\": {\n    \"y\": [\n      true,\n      null,\n      -2,\n      \
             1.5,\n      \"s\"\n    ],\n    \"b\": {}\n  },\n  \"m\": []\n}\n"
        );
        assert_eq!(parse(&pretty).unwrap(), doc);
    }

    #[test]
    fn duplicate_keys_and_trailing_text_are_refused() {
        assert!(parse(r#"{"a": 1, "a": 2}"#).is_err());
        assert!(parse(r#"{"a": {"b": 1, "b": 1}}"#).is_err());
        assert!(parse(r#"[{"b": 1, "b": 1}]"#).is_err());
        assert!(parse(r#"{"a": 1} x"#).is_err());
        assert!(parse("{\"a\": 1,}").is_err());
        // Keys equal but for letter case are two keys.
        assert!(parse(r#"{"env": {"HTTP_PROXY": "a", "http_proxy": "a"}}"#).is_ok());
    }

    #[test]
    fn a_missing_key_is_added_at_the_end() {
        let mut doc = parse(r#"{"b": 1, "a": 2}"#).unwrap();
        let fields = doc.as_object_mut().unwrap();
        *fields.entry("c").or_insert(Value::Null) = Value::Bool(true);
        *fields.entry("b").or_insert(Value::Null) = Value::Bool(false);
        assert_eq!(
            serde_json::to_string(&doc).unwrap(),
            r#"{"b":false,"a":2,"c":true}"#
        );
    }
}
