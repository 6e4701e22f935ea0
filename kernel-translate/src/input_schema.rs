//! Checking a tool call's arguments against the JSON Schema its MCP server
//! declared for them (`inputSchema` in the server's `tools/list` answer).
//!
//! The check is about shape and type, so that what a policy reads in
//! `context.args` has the types the server will read it with: `type`
//! (with `integer` meaning a number without a fraction), `properties`,
//! `required`, `additionalProperties`, `items` (one schema or, as in draft
//! 4, one per position), `prefixItems`, `enum`, `const`, `allOf`, `anyOf`,
//! `oneOf`, `not`, and `$ref` to a place inside the same schema (`#/...`).
//! Keywords that only bound values (`minimum`, `maxLength`, `pattern`,
//! `format`, ...) and annotations (`description`, `default`, ...) are
//! left to the server, which checks them again.
//!
//! Fail closed: a `$ref` that cannot be resolved, a schema that is not an
//! object or a boolean, or one nested or referring deeper than
//! [`MAX_DEPTH`], makes the arguments not conform. With
//! `additionalProperties: false` a key outside `properties` does not
//! conform, even if `patternProperties` might have matched it.

use serde_json::Value;

/// How deep schemas and references may nest.
pub const MAX_DEPTH: usize = 64;

/// Why arguments do not conform to a schema ([`check`]): the first place
/// that does not, and what is wrong there.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{}: {problem}", at(pointer))]
pub struct SchemaMismatch {
    /// The place, as a JSON pointer (`/meta/path`; empty for the
    /// arguments as a whole).
    pub pointer: String,
    /// What is wrong there.
    pub problem: Mismatch,
}

/// What does not conform at one place ([`SchemaMismatch`]).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Mismatch {
    /// Schemas or references nest deeper than [`MAX_DEPTH`].
    #[error("the schema nests deeper than {MAX_DEPTH}")]
    TooDeep,
    /// The schema here is `false`.
    #[error("not allowed by the schema")]
    NotAllowed,
    /// The schema here is neither an object nor a boolean.
    #[error("the schema is not a JSON Schema")]
    NotASchema,
    /// A `$ref` that does not lead to a place inside the schema.
    #[error("cannot resolve `$ref` {0}")]
    UnresolvedRef(Value),
    /// The value is of another `type`.
    #[error("is {found}, the schema wants {wanted}")]
    WrongType {
        /// The value's type.
        found: &'static str,
        /// The schema's `type`.
        wanted: Value,
    },
    /// The value is not in the `enum`.
    #[error("not one of {0}")]
    NotInEnum(Value),
    /// The value is not the `const`.
    #[error("is not {0}")]
    NotConst(Value),
    /// A `required` property is missing.
    #[error("lacks the required `{0}`")]
    MissingRequired(String),
    /// No branch of `anyOf` matches.
    #[error("matches none of `anyOf`")]
    NoneOfAnyOf,
    /// Not exactly one branch of `oneOf` matches.
    #[error("does not match exactly one of `oneOf`")]
    NotExactlyOneOf,
    /// The `not` schema matches.
    #[error("matches `not`")]
    MatchesNot,
    /// A keyword that takes a list has something else.
    #[error("the schema's `{0}` is not a list")]
    NotAList(&'static str),
}

/// Whether `value` conforms to `schema`; the error names the first place
/// that does not, as a JSON pointer (`/meta/path`), and why.
pub fn check(schema: &Value, value: &Value) -> Result<(), SchemaMismatch> {
    conforms(schema, value, schema, &mut String::new(), 0)
}

fn mismatch(path: &str, problem: Mismatch) -> Result<(), SchemaMismatch> {
    Err(SchemaMismatch {
        pointer: path.to_owned(),
        problem,
    })
}

fn type_name(value: &Value) -> &'static str {
    match value {
        Value::Null => "null",
        Value::Bool(_) => "boolean",
        Value::Number(_) => "number",
        Value::String(_) => "string",
        Value::Array(_) => "array",
        Value::Object(_) => "object",
    }
}

fn is_type(value: &Value, name: &str) -> bool {
    match name {
        "integer" => match value {
            Value::Number(n) => {
                n.is_i64() || n.is_u64() || n.as_f64().is_some_and(|f| f.fract() == 0.0)
            }
            _ => false,
        },
        other => type_name(value) == other,
    }
}

fn at(path: &str) -> &str {
    if path.is_empty() {
        "the arguments"
    } else {
        path
    }
}

fn conforms(
    schema: &Value,
    value: &Value,
    root: &Value,
    path: &mut String,
    depth: usize,
) -> Result<(), SchemaMismatch> {
    if depth > MAX_DEPTH {
        return mismatch(path, Mismatch::TooDeep);
    }
    let schema = match schema {
        Value::Bool(true) => return Ok(()),
        Value::Bool(false) => return mismatch(path, Mismatch::NotAllowed),
        Value::Object(schema) => schema,
        _ => return mismatch(path, Mismatch::NotASchema),
    };
    if let Some(reference) = schema.get("$ref") {
        let Some(target) = reference
            .as_str()
            .and_then(|r| r.strip_prefix('#'))
            .and_then(|pointer| root.pointer(pointer))
        else {
            return mismatch(path, Mismatch::UnresolvedRef(reference.clone()));
        };
        conforms(target, value, root, path, depth + 1)?;
    }
    if let Some(types) = schema.get("type") {
        let names: Vec<&str> = match types {
            Value::String(name) => vec![name.as_str()],
            Value::Array(names) => names.iter().filter_map(Value::as_str).collect(),
            _ => Vec::new(),
        };
        if !names.iter().any(|name| is_type(value, name)) {
            return mismatch(
                path,
                Mismatch::WrongType {
                    found: type_name(value),
                    wanted: types.clone(),
                },
            );
        }
    }
    if let Some(options) = schema.get("enum") {
        let listed = options
            .as_array()
            .is_some_and(|options| options.contains(value));
        if !listed {
            return mismatch(path, Mismatch::NotInEnum(options.clone()));
        }
    }
    if let Some(constant) = schema.get("const")
        && constant != value
    {
        return mismatch(path, Mismatch::NotConst(constant.clone()));
    }
    if let Value::Object(object) = value {
        let properties = schema.get("properties").and_then(Value::as_object);
        if let Some(required) = schema.get("required").and_then(Value::as_array) {
            for name in required.iter().filter_map(Value::as_str) {
                if !object.contains_key(name) {
                    return mismatch(path, Mismatch::MissingRequired(name.to_owned()));
                }
            }
        }
        for (key, item) in object {
            let declared = properties.and_then(|p| p.get(key));
            let sub = match (declared, schema.get("additionalProperties")) {
                (Some(sub), _) | (None, Some(sub)) => sub,
                (None, None) => continue,
            };
            let len = path.len();
            path.push('/');
            path.push_str(&key.replace('~', "~0").replace('/', "~1"));
            let result = conforms(sub, item, root, path, depth + 1);
            path.truncate(len);
            result?;
        }
    }
    if let Value::Array(items) = value {
        let prefix = schema
            .get("prefixItems")
            .or_else(|| schema.get("items").filter(|i| i.is_array()))
            .and_then(Value::as_array);
        let rest = schema.get("items").filter(|i| !i.is_array());
        for (index, item) in items.iter().enumerate() {
            let sub = match prefix.and_then(|p| p.get(index)) {
                Some(sub) => sub,
                None => match rest.or_else(|| schema.get("additionalItems")) {
                    Some(sub) => sub,
                    None => continue,
                },
            };
            let len = path.len();
            path.push('/');
            path.push_str(&index.to_string());
            let result = conforms(sub, item, root, path, depth + 1);
            path.truncate(len);
            result?;
        }
    }
    if let Some(all) = schema.get("allOf").and_then(Value::as_array) {
        for sub in all {
            conforms(sub, value, root, path, depth + 1)?;
        }
    }
    let matching = |subs: &Vec<Value>| {
        subs.iter()
            .filter(|sub| conforms(sub, value, root, &mut path.clone(), depth + 1).is_ok())
            .count()
    };
    if let Some(any) = schema.get("anyOf").and_then(Value::as_array)
        && matching(any) == 0
    {
        return mismatch(path, Mismatch::NoneOfAnyOf);
    }
    if let Some(one) = schema.get("oneOf").and_then(Value::as_array)
        && matching(one) != 1
    {
        return mismatch(path, Mismatch::NotExactlyOneOf);
    }
    if let Some(not) = schema.get("not")
        && conforms(not, value, root, &mut path.clone(), depth + 1).is_ok()
    {
        return mismatch(path, Mismatch::MatchesNot);
    }
    for keyword in ["anyOf", "oneOf", "allOf", "enum", "required"] {
        if schema.get(keyword).is_some_and(|v| !v.is_array()) {
            return mismatch(path, Mismatch::NotAList(keyword));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;
    use serde_json::json;

    /// The shape of the MCP filesystem server's `write_file`.
    fn write_file() -> Value {
        json!({
            "$schema": "http://json-schema.org/draft-07/schema#",
            "type": "object",
            "properties": {
                "path": {"type": "string"},
                "content": {"type": "string"},
                "mode": {"type": "string", "enum": ["overwrite", "append"]},
                "lines": {"type": "array", "items": {"type": "integer", "minimum": 0}},
                "meta": {"$ref": "#/$defs/meta"}
            },
            "required": ["path", "content"],
            "additionalProperties": false,
            "$defs": {"meta": {"type": "object", "properties": {"tag": {"type": ["string", "null"]}}}}
        })
    }

    #[test]
    fn conforming_arguments_pass() {
        for args in [
            json!({"path": "notes.md", "content": "x"}),
            json!({"path": "a", "content": "", "mode": "append", "lines": [1, 2.0]}),
            json!({"path": "a", "content": "", "meta": {"tag": null}}),
        ] {
            assert_eq!(check(&write_file(), &args), Ok(()), "{args}");
        }
    }

    #[test]
    fn arguments_of_another_shape_are_refused_with_the_place() {
        let wrong_type = |found| Mismatch::WrongType {
            found,
            wanted: json!("string"),
        };
        for (args, place, problem) in [
            (
                json!({"path": ["notes.md"], "content": "x"}),
                "/path",
                wrong_type("array"),
            ),
            (
                json!({"content": "x"}),
                "",
                Mismatch::MissingRequired("path".into()),
            ),
            (
                json!({"path": "a", "content": "x", "meta2": 1}),
                "/meta2",
                Mismatch::NotAllowed,
            ),
            (
                json!({"path": "a", "content": "x", "mode": "truncate"}),
                "/mode",
                Mismatch::NotInEnum(json!(["overwrite", "append"])),
            ),
            (
                json!({"path": "a", "content": "x", "lines": [1.5]}),
                "/lines/0",
                Mismatch::WrongType {
                    found: "number",
                    wanted: json!("integer"),
                },
            ),
            (
                json!({"path": "a", "content": "x", "meta": {"tag": 3}}),
                "/meta/tag",
                Mismatch::WrongType {
                    found: "number",
                    wanted: json!(["string", "null"]),
                },
            ),
            (
                json!("notes.md"),
                "",
                Mismatch::WrongType {
                    found: "string",
                    wanted: json!("object"),
                },
            ),
        ] {
            let error = check(&write_file(), &args);
            let expected = SchemaMismatch {
                pointer: place.to_owned(),
                problem,
            };
            assert_eq!(error, Err(expected), "{args}");
        }
        // The message names the place as before.
        let error = check(&write_file(), &json!("notes.md")).unwrap_err();
        assert_eq!(
            error.to_string(),
            "the arguments: is string, the schema wants \"object\""
        );
    }

    #[test]
    fn what_cannot_be_checked_does_not_conform() {
        let args = json!({"a": 1});
        for (schema, problem) in [
            (
                json!({"$ref": "#/nowhere"}),
                Mismatch::UnresolvedRef(json!("#/nowhere")),
            ),
            (
                json!({"$ref": "https://example.com/schema.json"}),
                Mismatch::UnresolvedRef(json!("https://example.com/schema.json")),
            ),
            (json!({"$ref": "#"}), Mismatch::TooDeep),
            (json!("object"), Mismatch::NotASchema),
            (
                json!({"anyOf": {"type": "object"}}),
                Mismatch::NotAList("anyOf"),
            ),
            (json!(false), Mismatch::NotAllowed),
        ] {
            let error = check(&schema, &args).map_err(|e| e.problem);
            assert_eq!(error, Err(problem), "{schema}");
        }
    }

    #[test]
    fn combinators_are_checked() {
        let schema = json!({"type": "object", "properties": {
            "n": {"oneOf": [{"type": "integer"}, {"type": "number", "minimum": 0}]},
            "s": {"anyOf": [{"type": "string"}, {"type": "null"}]},
            "x": {"not": {"type": "string"}}
        }});
        assert!(check(&schema, &json!({"s": null, "x": 1})).is_ok());
        assert!(check(&schema, &json!({"s": 1})).is_err());
        assert!(check(&schema, &json!({"x": "y"})).is_err());
        // 2 is an integer and a number: both branches match.
        assert!(check(&schema, &json!({"n": 2})).is_err());
        assert!(check(&schema, &json!({"n": 2.5})).is_ok());
    }
}
