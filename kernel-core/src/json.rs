//! Strict JSON: one reading for every document, or none.
//!
//! `serde_json` keeps the last of two equal keys in an object, while other
//! parsers keep the first, and some (Go's `encoding/json`) match keys
//! without regard to letter case. A document with such keys means one
//! thing to the kernel and another to whoever acts on it. [`parse_strict`]
//! refuses it instead: an object may not hold two keys that are equal, or
//! equal once letter case is folded (`"path"` and `"PATH"`, `"k"` and the
//! Kelvin sign `"\u212A"`, `"file"` and `"f\u0130le"`, whose dotted capital
//! I Go's reader folds to `i`), at any depth; and no string or key may hold
//! U+0000, which C-based readers take as the end of the text.
//!
//! Everything else is `serde_json`'s own strict grammar (RFC 8259): no
//! trailing commas, comments, `NaN`, leading zeros, raw control characters
//! in strings, lone surrogate escapes, trailing characters, or nesting
//! deeper than 128. Numbers are read as 64-bit integers or, when they have
//! a fraction or exponent or do not fit 64 bits, as binary64 floats.

use serde::de::{self, Deserialize, Deserializer, MapAccess, SeqAccess, Visitor};
use serde_json::{Map, Number, Value};
use std::collections::HashSet;
use std::fmt;

/// Parses `text` as one JSON value, refusing duplicate keys (exact or
/// differing only in letter case) at any depth and U+0000 in any string or
/// key. The error names what was refused and where.
pub fn parse_strict(text: &str) -> Result<Value, serde_json::Error> {
    serde_json::from_str::<Strict>(text).map(|strict| strict.0)
}

/// `key` with letter case folded by the full Unicode mappings (upper, then
/// lower case): `"ß"` meets `"ss"`, `"ſ"` meets `"s"`. Wider than what most
/// readers fold, which only refuses more; see also [`simple_fold_key`].
pub fn fold_key(key: &str) -> String {
    if key.is_ascii() {
        return key.to_ascii_lowercase();
    }
    key.chars()
        .flat_map(char::to_uppercase)
        .flat_map(char::to_lowercase)
        .collect()
}

/// `key` folded character by character as Go's `encoding/json` matches
/// object keys to fields: the simple (one-character) lower case, then the
/// simple upper case. It meets keys that [`fold_key`] keeps apart because
/// their full mappings grow: `"İ"` (simple lower case `i`) meets `"i"`, and
/// `"ẞ"` meets `"ß"`.
pub fn simple_fold_key(key: &str) -> String {
    if key.is_ascii() {
        return key.to_ascii_uppercase();
    }
    key.chars().map(|c| simple_upper(simple_lower(c))).collect()
}

/// The one-character lower case of `c`: its full mapping when that is one
/// character; U+0130 (whose full mapping adds a combining dot) is `i`;
/// else `c`.
fn simple_lower(c: char) -> char {
    if c == '\u{130}' {
        return 'i';
    }
    let mut lower = c.to_lowercase();
    match (lower.next(), lower.next()) {
        (Some(only), None) => only,
        _ => c,
    }
}

/// The one-character upper case of `c`: its full mapping when that is one
/// character, else `c` (`"ß"` has no one-character upper case).
fn simple_upper(c: char) -> char {
    let mut upper = c.to_uppercase();
    match (upper.next(), upper.next()) {
        (Some(only), None) => only,
        _ => c,
    }
}

/// A JSON value read by [`parse_strict`]'s rules.
struct Strict(Value);

impl<'de> Deserialize<'de> for Strict {
    fn deserialize<D: Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_any(StrictVisitor)
    }
}

struct StrictVisitor;

fn no_nul<E: de::Error>(text: &str, what: &str) -> Result<(), E> {
    if text.contains('\0') {
        Err(E::custom(format!("a {what} holds U+0000")))
    } else {
        Ok(())
    }
}

impl<'de> Visitor<'de> for StrictVisitor {
    type Value = Strict;

    fn expecting(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str("a JSON value without duplicate keys")
    }

    fn visit_bool<E: de::Error>(self, value: bool) -> Result<Strict, E> {
        Ok(Strict(Value::Bool(value)))
    }

    fn visit_i64<E: de::Error>(self, value: i64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(value.into())))
    }

    fn visit_u64<E: de::Error>(self, value: u64) -> Result<Strict, E> {
        Ok(Strict(Value::Number(value.into())))
    }

    fn visit_f64<E: de::Error>(self, value: f64) -> Result<Strict, E> {
        Number::from_f64(value)
            .map(|n| Strict(Value::Number(n)))
            .ok_or_else(|| E::custom("a number that is not finite"))
    }

    fn visit_str<E: de::Error>(self, value: &str) -> Result<Strict, E> {
        no_nul(value, "string")?;
        Ok(Strict(Value::String(value.to_owned())))
    }

    fn visit_string<E: de::Error>(self, value: String) -> Result<Strict, E> {
        no_nul(&value, "string")?;
        Ok(Strict(Value::String(value)))
    }

    fn visit_unit<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_none<E: de::Error>(self) -> Result<Strict, E> {
        Ok(Strict(Value::Null))
    }

    fn visit_seq<A: SeqAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut items = Vec::new();
        while let Some(Strict(item)) = access.next_element::<Strict>()? {
            items.push(item);
        }
        Ok(Strict(Value::Array(items)))
    }

    fn visit_map<A: MapAccess<'de>>(self, mut access: A) -> Result<Strict, A::Error> {
        let mut map = Map::new();
        let mut folded = HashSet::new();
        let mut simply_folded = HashSet::new();
        while let Some(key) = access.next_key::<String>()? {
            no_nul::<A::Error>(&key, "key")?;
            if map.contains_key(&key) {
                return Err(de::Error::custom(format!(
                    "the key `{key}` appears twice in one object"
                )));
            }
            let full = folded.insert(fold_key(&key));
            let simple = simply_folded.insert(simple_fold_key(&key));
            if !(full && simple) {
                let other = map
                    .keys()
                    .find(|k| {
                        fold_key(k) == fold_key(&key) || simple_fold_key(k) == simple_fold_key(&key)
                    })
                    .cloned()
                    .unwrap_or_default();
                return Err(de::Error::custom(format!(
                    "the keys `{other}` and `{key}` differ only in letter case"
                )));
            }
            let Strict(value) = access.next_value::<Strict>()?;
            map.insert(key, value);
        }
        Ok(Strict(Value::Object(map)))
    }
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn duplicate_keys_are_refused_at_any_depth() {
        for text in [
            r#"{"a":1,"a":2}"#,
            r#"{"method":"tools/call","method":"tools/list"}"#,
            r#"{"params":{"name":"danger","name":"search_docs"}}"#,
            r#"[{"x":{"y":[{"k":1,"k":1}]}}]"#,
            r#"{"na\u006de":"a","name":"b"}"#,
            r#"{"path":"a","PATH":"b"}"#,
            r#"{"kind":"a","\u212Aind":"b"}"#,
            r#"{"\u017F":"long s","s":"s"}"#,
            // Equal to Go's reader, though not under the full mappings.
            r#"{"file":"a","f\u0130le":"b"}"#,
            r#"{"\u00DF":"a","\u1E9E":"b"}"#,
        ] {
            let error = parse_strict(text).unwrap_err().to_string();
            assert!(
                error.contains("twice") || error.contains("letter case"),
                "{text}: {error}"
            );
            // serde_json alone takes one of the readings.
            assert!(serde_json::from_str::<Value>(text).is_ok(), "{text}");
        }
    }

    #[test]
    fn nul_anywhere_in_text_is_refused() {
        for text in [r#"{"a":"x\u0000y"}"#, r#"{"a\u0000":1}"#, r#"["\u0000"]"#] {
            assert!(
                parse_strict(text)
                    .unwrap_err()
                    .to_string()
                    .contains("U+0000"),
                "{text}"
            );
        }
    }

    #[test]
    fn what_serde_json_refuses_stays_refused() {
        for text in [
            r#"{"a":"\ud800"}"#,
            r#"{"a":"\udc00"}"#,
            "1e400",
            "NaN",
            "[1,]",
            "{\"a\":\"line\nbreak\"}",
            "{} {}",
            "\u{feff}{}",
            "",
        ] {
            assert!(parse_strict(text).is_err(), "{text:?}");
        }
        let deep = format!("{}{}", "[".repeat(200), "]".repeat(200));
        assert!(parse_strict(&deep).is_err());
    }

    #[test]
    fn ordinary_documents_read_as_serde_json_reads_them() {
        for text in [
            r#"{"a":[1,-2,3.5,true,null,"x"],"b":{"c":{}},"A1":18446744073709551615}"#,
            r#"{"ß":1,"s":2,"\ud83d\ude00":"😀"}"#,
            "123456789012345678901234567890",
            "-0",
            "[]",
        ] {
            assert_eq!(
                parse_strict(text).unwrap(),
                serde_json::from_str::<Value>(text).unwrap(),
                "{text}"
            );
        }
    }
}
