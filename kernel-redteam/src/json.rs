//! How other programs read the same JSON bytes: the judge of the parser
//! differentials. A gateway decides on its own reading of a message;
//! whoever receives the bytes it passes on may read them otherwise. This
//! module parses JSON keeping what a reader may resolve differently
//! (duplicate keys in order, number literals as written) and gives the
//! value each common kind of reader sees, and splits a stream into lines
//! the way common line readers do.

use serde_json::{Map, Number, Value};

/// A JSON value as written: objects keep every member in order.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Raw {
    Null,
    Bool(bool),
    /// The number literal as written.
    Number(String),
    String(String),
    Array(Vec<Raw>),
    Object(Vec<(String, Raw)>),
}

/// How a reader resolves what JSON leaves open.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reader {
    /// The last of duplicate keys wins (JavaScript, Python, serde_json's
    /// `Value`), numbers as doubles beyond 64-bit integers.
    LastWins,
    /// The first of duplicate keys wins (some streaming parsers, and
    /// anything that looks a field up by scanning).
    FirstWins,
    /// Keys match case-insensitively, the last wins (Go's encoding/json
    /// matching struct fields).
    CaseFold,
    /// The last key wins and integers keep every digit (Python's `int`,
    /// big-number libraries).
    ExactNumbers,
}

impl Reader {
    pub(crate) const ALL: [Self; 4] = [
        Self::LastWins,
        Self::FirstWins,
        Self::CaseFold,
        Self::ExactNumbers,
    ];

    pub(crate) fn name(self) -> &'static str {
        match self {
            Self::LastWins => "a last-key-wins reader",
            Self::FirstWins => "a first-key-wins reader",
            Self::CaseFold => "a case-insensitive reader",
            Self::ExactNumbers => "an exact-number reader",
        }
    }
}

/// Parses one JSON text (whitespace around it allowed, nothing else).
pub(crate) fn parse(text: &str) -> Option<Raw> {
    let mut p = Parser {
        bytes: text.as_bytes(),
        at: 0,
        depth: 0,
    };
    let value = p.value()?;
    p.ws();
    (p.at == p.bytes.len()).then_some(value)
}

struct Parser<'a> {
    bytes: &'a [u8],
    at: usize,
    depth: usize,
}

impl Parser<'_> {
    fn peek(&self) -> Option<u8> {
        self.bytes.get(self.at).copied()
    }

    fn ws(&mut self) {
        while matches!(self.peek(), Some(b' ' | b'\t' | b'\n' | b'\r')) {
            self.at += 1;
        }
    }

    fn eat(&mut self, word: &[u8]) -> bool {
        if self.bytes.get(self.at..self.at + word.len()) == Some(word) {
            self.at += word.len();
            true
        } else {
            false
        }
    }

    fn value(&mut self) -> Option<Raw> {
        self.ws();
        self.depth += 1;
        if self.depth > 512 {
            return None;
        }
        let value = match self.peek()? {
            b'n' => self.eat(b"null").then_some(Raw::Null),
            b't' => self.eat(b"true").then_some(Raw::Bool(true)),
            b'f' => self.eat(b"false").then_some(Raw::Bool(false)),
            b'"' => self.string().map(Raw::String),
            b'[' => {
                self.at += 1;
                let mut items = Vec::new();
                self.ws();
                if self.peek() == Some(b']') {
                    self.at += 1;
                } else {
                    loop {
                        items.push(self.value()?);
                        self.ws();
                        match self.peek()? {
                            b',' => self.at += 1,
                            b']' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Some(Raw::Array(items))
            }
            b'{' => {
                self.at += 1;
                let mut members = Vec::new();
                self.ws();
                if self.peek() == Some(b'}') {
                    self.at += 1;
                } else {
                    loop {
                        self.ws();
                        let key = self.string()?;
                        self.ws();
                        if !self.eat(b":") {
                            return None;
                        }
                        members.push((key, self.value()?));
                        self.ws();
                        match self.peek()? {
                            b',' => self.at += 1,
                            b'}' => {
                                self.at += 1;
                                break;
                            }
                            _ => return None,
                        }
                    }
                }
                Some(Raw::Object(members))
            }
            _ => self.number(),
        };
        self.depth -= 1;
        value
    }

    fn number(&mut self) -> Option<Raw> {
        let start = self.at;
        while matches!(
            self.peek(),
            Some(b'-' | b'+' | b'.' | b'e' | b'E' | b'0'..=b'9')
        ) {
            self.at += 1;
        }
        let text = std::str::from_utf8(self.bytes.get(start..self.at)?).ok()?;
        // The grammar, checked by a strict parser.
        serde_json::from_str::<serde_json::Value>(text).ok()?;
        Some(Raw::Number(text.to_owned()))
    }

    fn string(&mut self) -> Option<String> {
        if !self.eat(b"\"") {
            return None;
        }
        let start = self.at;
        loop {
            match self.peek()? {
                b'"' => break,
                b'\\' => self.at += 2,
                c if c < 0x20 => return None,
                _ => self.at += 1,
            }
        }
        let body = self.bytes.get(start..self.at)?;
        self.at += 1;
        decode_string(body)
    }
}

/// Decodes a string body with its escapes; a lone surrogate becomes
/// U+FFFD, as lenient readers do.
fn decode_string(body: &[u8]) -> Option<String> {
    let text = std::str::from_utf8(body).ok()?;
    let mut out = String::new();
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c != '\\' {
            out.push(c);
            continue;
        }
        match chars.next()? {
            '"' => out.push('"'),
            '\\' => out.push('\\'),
            '/' => out.push('/'),
            'b' => out.push('\u{8}'),
            'f' => out.push('\u{c}'),
            'n' => out.push('\n'),
            'r' => out.push('\r'),
            't' => out.push('\t'),
            'u' => {
                let hex: String = chars.by_ref().take(4).collect();
                let unit = u32::from_str_radix(&hex, 16).ok()?;
                if (0xd800..0xdc00).contains(&unit) {
                    // A high surrogate: a low one may follow.
                    let rest = chars.as_str();
                    let low = rest
                        .strip_prefix("\\u")
                        .and_then(|r| r.get(..4))
                        .and_then(|h| u32::from_str_radix(h, 16).ok())
                        .filter(|l| (0xdc00..0xe000).contains(l));
                    match low {
                        Some(low) => {
                            for _ in 0..6 {
                                chars.next();
                            }
                            let code = 0x10000 + ((unit - 0xd800) << 10) + (low - 0xdc00);
                            out.push(char::from_u32(code).unwrap_or('\u{fffd}'));
                        }
                        None => out.push('\u{fffd}'),
                    }
                } else {
                    out.push(char::from_u32(unit).unwrap_or('\u{fffd}'));
                }
            }
            _ => return None,
        }
    }
    Some(out)
}

impl Raw {
    /// The value `reader` sees.
    pub(crate) fn read(&self, reader: Reader) -> Value {
        match self {
            Self::Null => Value::Null,
            Self::Bool(b) => Value::Bool(*b),
            Self::Number(text) => number(text, reader),
            Self::String(s) => Value::String(s.clone()),
            Self::Array(items) => Value::Array(items.iter().map(|i| i.read(reader)).collect()),
            Self::Object(members) => {
                let mut map = Map::new();
                for (key, value) in members {
                    let key = if reader == Reader::CaseFold {
                        key.to_ascii_lowercase()
                    } else {
                        key.clone()
                    };
                    if reader == Reader::FirstWins && map.contains_key(&key) {
                        continue;
                    }
                    map.insert(key, value.read(reader));
                }
                Value::Object(map)
            }
        }
    }
}

/// A number literal as `reader` reads it. An integer beyond 64 bits is a
/// double for most readers; an exact reader keeps its digits (shown as a
/// string: no double holds it).
fn number(text: &str, reader: Reader) -> Value {
    if let Ok(i) = text.parse::<i64>() {
        return Value::Number(i.into());
    }
    if let Ok(u) = text.parse::<u64>() {
        return Value::Number(u.into());
    }
    let integer = !text.contains(['.', 'e', 'E']);
    if reader == Reader::ExactNumbers && integer {
        return Value::String(text.to_owned());
    }
    text.parse::<f64>()
        .ok()
        .and_then(Number::from_f64)
        .map_or(Value::Null, Value::Number)
}

/// Lines as a reader that ends them only at `\n` sees them (MCP's stdio
/// transport), and as a lenient one that also ends them at `\r`, U+2028,
/// U+2029, vertical tab, form feed, the information separators and NEL
/// (Python's `str.splitlines`, Node's `readline` for `\r`).
pub(crate) fn lines(text: &str, lenient: bool) -> Vec<String> {
    let breaks = |c: char| {
        c == '\n'
            || (lenient
                && matches!(
                    c,
                    '\r' | '\u{b}'
                        | '\u{c}'
                        | '\u{1c}'
                        | '\u{1d}'
                        | '\u{1e}'
                        | '\u{85}'
                        | '\u{2028}'
                        | '\u{2029}'
                ))
    };
    text.split(breaks)
        .map(|l| l.trim_end_matches('\r').to_owned())
        .filter(|l| !l.trim().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn readers_resolve_duplicates_and_numbers_their_own_way() {
        let raw = parse(r#"{"a":1,"A":2,"a":3,"n":123456789012345678901}"#).unwrap();
        assert_eq!(raw.read(Reader::LastWins)["a"], 3);
        assert_eq!(raw.read(Reader::FirstWins)["a"], 1);
        assert_eq!(raw.read(Reader::CaseFold)["a"], 3);
        assert_eq!(raw.read(Reader::CaseFold).get("A"), None);
        assert_eq!(raw.read(Reader::ExactNumbers)["n"], "123456789012345678901");
        assert!(raw.read(Reader::LastWins)["n"].is_f64());
        assert_eq!(
            parse(r#""\ud800x\u00e9""#).unwrap(),
            Raw::String("\u{fffd}x\u{e9}".into())
        );
        assert_eq!(parse("{} x"), None);
        assert_eq!(lines("a\rb\u{2028}c\nd", true), ["a", "b", "c", "d"]);
        assert_eq!(lines("a\rb\u{2028}c\nd", false), ["a\rb\u{2028}c", "d"]);
    }
}
