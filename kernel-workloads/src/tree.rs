//! A workspace tree as the comparison sees it: every path with its file
//! type, permission bits, contents (regular files), target (symbolic
//! links) and which paths are hard links of one file. Times are ignored.
//!
//! Two normalisations of contents, both of files that cache what varies
//! between any two runs:
//!
//! - a git index (`.git/index`): its stat cache (each entry's ctime,
//!   mtime, device, inode, uid, gid and size, the last of which git
//!   zeroes for entries it finds "racily clean", depending on timing) and
//!   its trailing checksum over them are zeroed; entries' paths, modes,
//!   object ids and flags and the extensions are compared;
//! - cargo's `target/.rustc_info.json` (its cache of rustc's answers, a
//!   hash map written in a random order): compared as JSON, objects'
//!   keys sorted.

use std::collections::BTreeMap;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// What one path is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// A directory.
    Dir,
    /// A regular file and its contents.
    File(Vec<u8>),
    /// A symbolic link and its target, as written.
    Symlink(String),
    /// Anything else (a socket, a FIFO, a device), by name.
    Other(&'static str),
}

/// One path of the tree.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Entry {
    /// Its type and contents.
    pub kind: Kind,
    /// Permission bits (`mode & 0o7777`; 0 for symbolic links).
    pub mode: u32,
    /// For a file with several links inside the tree: the first of its
    /// paths (in sorted order), on every path but that first one.
    pub hard_link_of: Option<String>,
}

/// A snapshot of a directory tree, by path relative to its root (`.`
/// is the root itself).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Tree {
    /// Every path beneath the root, sorted.
    pub entries: BTreeMap<String, Entry>,
}

impl Tree {
    /// Reads the tree beneath `root` (not following symbolic links).
    pub fn snapshot(root: &Path) -> Result<Self, String> {
        let mut entries = BTreeMap::new();
        let mut inodes: BTreeMap<String, (u64, u64, u64)> = BTreeMap::new();
        walk(root, root, &mut entries, &mut inodes)?;
        let mut first_of: BTreeMap<(u64, u64), String> = BTreeMap::new();
        for (path, (dev, ino, links)) in &inodes {
            if *links < 2 {
                continue;
            }
            match first_of.get(&(*dev, *ino)) {
                Some(first) => {
                    if let Some(entry) = entries.get_mut(path) {
                        entry.hard_link_of = Some(first.clone());
                    }
                }
                None => {
                    first_of.insert((*dev, *ino), path.clone());
                }
            }
        }
        Ok(Self { entries })
    }

    /// The differences from `governed` (this being the reference run),
    /// one line each, at most `limit` of them (and a count of the rest).
    pub fn differences(&self, other: &Self, limit: usize) -> Vec<String> {
        let mut lines = Vec::new();
        let mut more = 0usize;
        let mut note = |line: String| {
            if lines.len() < limit {
                lines.push(line);
            } else {
                more += 1;
            }
        };
        for (path, mine) in &self.entries {
            match other.entries.get(path) {
                None => note(format!("`{path}` ({}) is missing", describe(mine))),
                Some(theirs) if theirs != mine => {
                    note(format!("`{path}`: {}", changes(mine, theirs)));
                }
                Some(_) => {}
            }
        }
        for (path, theirs) in &other.entries {
            if !self.entries.contains_key(path) {
                note(format!("`{path}` ({}) is extra", describe(theirs)));
            }
        }
        if more > 0 {
            lines.push(format!("... and {more} more differences"));
        }
        lines
    }
}

fn walk(
    root: &Path,
    dir: &Path,
    entries: &mut BTreeMap<String, Entry>,
    inodes: &mut BTreeMap<String, (u64, u64, u64)>,
) -> Result<(), String> {
    let fail = |path: &Path, e: std::io::Error| format!("`{}`: {e}", path.display());
    let metadata = std::fs::symlink_metadata(dir).map_err(|e| fail(dir, e))?;
    let relative = |path: &Path| {
        let rel = path.strip_prefix(root).unwrap_or(path);
        if rel.as_os_str().is_empty() {
            ".".to_owned()
        } else {
            rel.to_string_lossy().into_owned()
        }
    };
    entries.insert(
        relative(dir),
        Entry {
            kind: Kind::Dir,
            mode: metadata.mode() & 0o7777,
            hard_link_of: None,
        },
    );
    let mut children: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| fail(dir, e))?
        .map(|entry| entry.map(|e| e.path()))
        .collect::<Result<_, _>>()
        .map_err(|e| fail(dir, e))?;
    children.sort();
    for path in children {
        let metadata = std::fs::symlink_metadata(&path).map_err(|e| fail(&path, e))?;
        let file_type = metadata.file_type();
        let name = relative(&path);
        if file_type.is_dir() {
            walk(root, &path, entries, inodes)?;
            continue;
        }
        let kind = if file_type.is_symlink() {
            let target = std::fs::read_link(&path).map_err(|e| fail(&path, e))?;
            Kind::Symlink(target.to_string_lossy().into_owned())
        } else if file_type.is_file() {
            let contents = std::fs::read(&path).map_err(|e| fail(&path, e))?;
            if name == ".git/index" || name.ends_with("/.git/index") {
                Kind::File(git_index_without_stat_cache(&contents).unwrap_or(contents))
            } else if name.ends_with("target/.rustc_info.json") {
                Kind::File(sorted_json(&contents).unwrap_or(contents))
            } else {
                Kind::File(contents)
            }
        } else {
            use std::os::unix::fs::FileTypeExt;
            Kind::Other(if file_type.is_socket() {
                "socket"
            } else if file_type.is_fifo() {
                "FIFO"
            } else if file_type.is_block_device() {
                "block device"
            } else {
                "character device"
            })
        };
        let mode = if file_type.is_symlink() {
            0
        } else {
            metadata.mode() & 0o7777
        };
        if file_type.is_file() {
            inodes.insert(
                name.clone(),
                (metadata.dev(), metadata.ino(), metadata.nlink()),
            );
        }
        entries.insert(
            name,
            Entry {
                kind,
                mode,
                hard_link_of: None,
            },
        );
    }
    Ok(())
}

fn describe(entry: &Entry) -> String {
    let kind = match &entry.kind {
        Kind::Dir => "directory".to_owned(),
        Kind::File(contents) => format!("file, {} bytes", contents.len()),
        Kind::Symlink(target) => format!("symlink to `{target}`"),
        Kind::Other(what) => (*what).to_owned(),
    };
    match &entry.hard_link_of {
        Some(first) => format!("{kind}, mode {:o}, hard link of `{first}`", entry.mode),
        None => format!("{kind}, mode {:o}", entry.mode),
    }
}

fn changes(mine: &Entry, theirs: &Entry) -> String {
    let mut what = Vec::new();
    match (&mine.kind, &theirs.kind) {
        (Kind::File(a), Kind::File(b)) if a != b => {
            let at = a.iter().zip(b).position(|(x, y)| x != y);
            what.push(match at {
                Some(at) => format!(
                    "contents differ from byte {at} ({} vs {} bytes)",
                    a.len(),
                    b.len()
                ),
                None => format!(
                    "contents differ in length ({} vs {} bytes)",
                    a.len(),
                    b.len()
                ),
            });
        }
        (a, b) if a != b => what.push(format!("{} vs {}", kind_name(a), kind_name(b))),
        _ => {}
    }
    if mine.mode != theirs.mode {
        what.push(format!("mode {:o} vs {:o}", mine.mode, theirs.mode));
    }
    if mine.hard_link_of != theirs.hard_link_of {
        let link = |of: &Option<String>| match of {
            Some(first) => format!("a hard link of `{first}`"),
            None => "not a hard link of an earlier path".to_owned(),
        };
        what.push(format!(
            "{} vs {}",
            link(&mine.hard_link_of),
            link(&theirs.hard_link_of)
        ));
    }
    what.join("; ")
}

fn kind_name(kind: &Kind) -> String {
    match kind {
        Kind::Dir => "a directory".into(),
        Kind::File(_) => "a file".into(),
        Kind::Symlink(target) => format!("a symlink to `{target}`"),
        Kind::Other(what) => format!("a {what}"),
    }
}

/// JSON with every object's keys sorted; `None` if it is not JSON.
pub fn sorted_json(text: &[u8]) -> Option<Vec<u8>> {
    fn write(value: &serde_json::Value, out: &mut String) {
        match value {
            serde_json::Value::Object(map) => {
                let mut keys: Vec<&String> = map.keys().collect();
                keys.sort();
                out.push('{');
                for (i, key) in keys.into_iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    out.push_str(&serde_json::Value::String(key.clone()).to_string());
                    out.push(':');
                    if let Some(inner) = map.get(key) {
                        write(inner, out);
                    }
                }
                out.push('}');
            }
            serde_json::Value::Array(items) => {
                out.push('[');
                for (i, item) in items.iter().enumerate() {
                    if i > 0 {
                        out.push(',');
                    }
                    write(item, out);
                }
                out.push(']');
            }
            other => out.push_str(&other.to_string()),
        }
    }
    let value: serde_json::Value = serde_json::from_slice(text).ok()?;
    let mut out = String::new();
    write(&value, &mut out);
    Some(out.into_bytes())
}

/// A git index (version 2 or 3) with its stat cache and checksum zeroed;
/// `None` for anything else (compared as it is).
pub fn git_index_without_stat_cache(index: &[u8]) -> Option<Vec<u8>> {
    const HEADER: usize = 12;
    const STAT: usize = 40;
    const FIXED: usize = STAT + 20 + 2;
    const CHECKSUM: usize = 20;
    if index.get(..4)? != b"DIRC" {
        return None;
    }
    let word = |at: usize| {
        index
            .get(at..at + 4)
            .and_then(|b| <[u8; 4]>::try_from(b).ok())
            .map(u32::from_be_bytes)
    };
    let version = word(4)?;
    if !(version == 2 || version == 3) {
        return None;
    }
    let count = usize::try_from(word(8)?).ok()?;
    let mut out = index.to_vec();
    let mut at = HEADER;
    for _ in 0..count {
        let flags = index
            .get(at + STAT + 20..at + FIXED)
            .and_then(|b| <[u8; 2]>::try_from(b).ok())
            .map(u16::from_be_bytes)?;
        let extended = version == 3 && flags & 0x4000 != 0;
        let name_at = at + FIXED + if extended { 2 } else { 0 };
        let name_len = index.get(name_at..)?.iter().position(|b| *b == 0)?;
        // Entries are padded with 1 to 8 NULs to a multiple of 8 bytes.
        let unpadded = name_at + name_len - at;
        let length = (unpadded + 8) & !7;
        // ctime, mtime (8 bytes each), dev, ino (4 each): zeroed; mode
        // (4) kept; uid, gid, size (4 each): zeroed.
        for range in [at..at + 24, at + 28..at + STAT] {
            out.get_mut(range)?.fill(0);
        }
        at += length;
    }
    if at + CHECKSUM > index.len() {
        return None;
    }
    let end = out.len();
    out.get_mut(end - CHECKSUM..)?.fill(0);
    Some(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::indexing_slicing, reason = "tests")]
    use super::*;

    #[test]
    fn a_tree_records_types_modes_contents_links() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let root = dir.path();
        std::fs::create_dir(root.join("d")).unwrap();
        std::fs::write(root.join("d/a"), "alpha").unwrap();
        std::fs::set_permissions(root.join("d/a"), std::fs::Permissions::from_mode(0o640)).unwrap();
        std::fs::hard_link(root.join("d/a"), root.join("b")).unwrap();
        std::os::unix::fs::symlink("d/a", root.join("s")).unwrap();
        let tree = Tree::snapshot(root).unwrap();
        let paths: Vec<&str> = tree.entries.keys().map(String::as_str).collect();
        assert_eq!(paths, [".", "b", "d", "d/a", "s"]);
        assert_eq!(tree.entries["d/a"].kind, Kind::File(b"alpha".to_vec()));
        assert_eq!(tree.entries["d/a"].mode, 0o640);
        assert_eq!(tree.entries["d/a"].hard_link_of.as_deref(), Some("b"));
        assert_eq!(tree.entries["s"].kind, Kind::Symlink("d/a".into()));

        let mut other = tree.clone();
        other.entries.get_mut("d/a").unwrap().hard_link_of = None;
        other.entries.remove("s");
        let differences = tree.differences(&other, 10);
        assert_eq!(differences.len(), 2, "{differences:?}");
    }

    #[test]
    fn a_git_index_keeps_paths_and_ids_but_not_its_stat_cache() {
        let mut index = b"DIRC\0\0\0\x02\0\0\0\x01".to_vec();
        let mut entry = vec![7u8; 40];
        entry[24..28].copy_from_slice(&0o100644u32.to_be_bytes());
        entry.extend_from_slice(&[0xab; 20]);
        entry.extend_from_slice(&3u16.to_be_bytes());
        entry.extend_from_slice(b"a.c");
        while !entry.len().is_multiple_of(8) || entry.last() != Some(&0) {
            entry.push(0);
        }
        index.extend_from_slice(&entry);
        index.extend_from_slice(&[0xcd; 20]);
        let normalised = git_index_without_stat_cache(&index).unwrap();
        assert_eq!(normalised.len(), index.len());
        assert!(normalised[12..36].iter().all(|b| *b == 0));
        assert_eq!(&normalised[36..40], &0o100644u32.to_be_bytes());
        assert!(normalised[40..52].iter().all(|b| *b == 0));
        assert_eq!(&normalised[52..72], &[0xab; 20]);
        assert!(normalised[normalised.len() - 20..].iter().all(|b| *b == 0));
        assert_eq!(git_index_without_stat_cache(b"not an index"), None);
    }

    #[test]
    fn json_compares_without_key_order() {
        let a = sorted_json(br#"{"b":{"y":1,"x":[2,{"d":3,"c":4}]},"a":18446744073709551615}"#);
        let b = sorted_json(br#"{"a":18446744073709551615,"b":{"x":[2,{"c":4,"d":3}],"y":1}}"#);
        assert_eq!(a, b);
        assert_eq!(
            String::from_utf8(a.unwrap()).unwrap(),
            r#"{"a":18446744073709551615,"b":{"x":[2,{"c":4,"d":3}],"y":1}}"#
        );
        assert_eq!(sorted_json(b"not json"), None);
    }
}
