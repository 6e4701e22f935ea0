//! The transparency-dev known-answer vectors (RFC 6962 / RFC 9162), all of
//! them: every `happy-path` (and every other `wantErr: false` case) must
//! verify, every `wantErr: true` case must be rejected.
#![allow(
    clippy::unwrap_used,
    clippy::expect_used,
    clippy::panic,
    clippy::indexing_slicing,
    missing_docs,
    reason = "tests"
)]

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use kernel_core::merkle::{verify_consistency, verify_inclusion};
use serde_json::Value;
use std::path::{Path, PathBuf};

fn files(kind: &str) -> Vec<PathBuf> {
    let root = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/merkle")
        .join(kind);
    let mut out = Vec::new();
    let mut dirs = vec![root];
    while let Some(dir) = dirs.pop() {
        for entry in std::fs::read_dir(&dir).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                dirs.push(path);
            } else if path.extension().is_some_and(|e| e == "json") {
                out.push(path);
            }
        }
    }
    out.sort();
    out
}

fn bytes(value: &Value) -> Vec<u8> {
    match value {
        Value::Null => Vec::new(),
        Value::String(text) => STANDARD.decode(text).unwrap(),
        other => panic!("not base64: {other}"),
    }
}

fn proof(value: &Value) -> Vec<Vec<u8>> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(items) => items.iter().map(bytes).collect(),
        other => panic!("not a proof: {other}"),
    }
}

#[test]
fn inclusion_vectors() {
    let (mut accepted, mut rejected) = (0, 0);
    for path in files("inclusion") {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let result = verify_inclusion(
            v["leafIdx"].as_u64().unwrap(),
            v["treeSize"].as_u64().unwrap(),
            &bytes(&v["leafHash"]),
            &proof(&v["proof"]),
            &bytes(&v["root"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", path.display());
        if want_err {
            rejected += 1
        } else {
            accepted += 1
        }
    }
    assert!(
        accepted >= 5 && rejected >= 50,
        "{accepted} accepted, {rejected} rejected"
    );
}

#[test]
fn consistency_vectors() {
    let (mut accepted, mut rejected) = (0, 0);
    for path in files("consistency") {
        let v: Value = serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
        let result = verify_consistency(
            v["size1"].as_u64().unwrap(),
            v["size2"].as_u64().unwrap(),
            &proof(&v["proof"]),
            &bytes(&v["root1"]),
            &bytes(&v["root2"]),
        );
        let want_err = v["wantErr"].as_bool().unwrap();
        assert_eq!(result.is_err(), want_err, "{}: {result:?}", path.display());
        if want_err {
            rejected += 1
        } else {
            accepted += 1
        }
    }
    assert!(
        accepted >= 5 && rejected >= 50,
        "{accepted} accepted, {rejected} rejected"
    );
}
