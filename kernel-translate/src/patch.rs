//! Codex's patch format (`apply_patch`): which files a patch adds, updates,
//! moves and deletes, read the way Codex reads it, so that each becomes an
//! action before Codex applies the patch.
//!
//! The format (Codex's own grammar):
//!
//! ```text
//! *** Begin Patch
//! *** Add File: PATH        followed by lines starting with `+` (the content)
//! *** Delete File: PATH
//! *** Update File: PATH     optionally followed by `*** Move to: PATH`,
//!                           then chunks of `@@`, ` `, `-`, `+` lines
//! *** End Patch
//! ```
//!
//! What it guarantees: every file Codex would write or delete for a patch
//! this module accepts is named in the result, in the patch's order. A
//! patch Codex would refuse, or whose reading is not certain (a hunk
//! header it does not know, an `*** Environment ID:` line naming another
//! machine), is refused here too.

/// Why a Codex patch is refused: Codex would refuse it, or its reading is
/// not certain. Paths and lines quoted are cut to 120 characters.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchError {
    /// Not between `*** Begin Patch` and `*** End Patch`.
    #[error("a patch must start with `*** Begin Patch` and end with `*** End Patch`")]
    Unbounded,
    /// An `*** Environment ID:` line: the patch may be for another machine.
    #[error(
        "the patch names an environment (`*** Environment ID:`): where it applies \
         cannot be decided here"
    )]
    Environment,
    /// A line where a hunk header belongs that is none.
    #[error(
        "`{0}` is not a patch hunk header (`*** Add File:`, `*** Delete File:` or \
         `*** Update File:`)"
    )]
    NotAHeader(String),
    /// A second chunk of an update that does not start with `@@`.
    #[error("update of `{path}`: a chunk must start with `@@`, not `{line}`")]
    ChunkWithoutMarker {
        /// The updated file.
        path: String,
        /// The line found.
        line: String,
    },
    /// A chunk whose first line is not a chunk line.
    #[error(
        "update of `{path}`: `{line}` is not a context (` `), removed (`-`) or added \
         (`+`) line"
    )]
    NotAChunkLine {
        /// The updated file.
        path: String,
        /// The line found.
        line: String,
    },
    /// A chunk with no lines.
    #[error("update of `{0}` has an empty chunk")]
    EmptyChunk(String),
    /// An update with no chunks.
    #[error("update of `{0}` has no chunks")]
    NoChunks(String),
    /// A hunk header with an empty path.
    #[error("a patch hunk names an empty path")]
    EmptyPath,
}

/// The start of every refusal of an `apply_patch` invocation.
const INVOCATION_FORM: &str = "`apply_patch` is decided only as `apply_patch <<'EOF'` with the \
                               patch as the here-document (optionally after `cd DIR &&`) and \
                               nothing else: ";

/// Why a command line that invokes `apply_patch` is refused: it is not
/// one of the forms Codex intercepts and whose reading is certain.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum PatchInvocationError {
    /// The first line is not `apply_patch <<DELIMITER`.
    #[error("{INVOCATION_FORM}the first line is not `apply_patch <<DELIMITER`")]
    NotHereDocument,
    /// The delimiter is not a plain word.
    #[error("{INVOCATION_FORM}the delimiter is not a plain word")]
    Delimiter,
    /// The directory of `cd DIR &&` is not one the shell and Codex read
    /// alike (cut to 120 characters).
    #[error("`cd {0}`: the directory must be a plain word or in single quotes")]
    Directory(String),
    /// No line closes the here-document.
    #[error("{INVOCATION_FORM}the here-document is not closed")]
    NotClosed,
    /// Text follows the here-document.
    #[error("{INVOCATION_FORM}something follows the here-document")]
    TrailingText,
    /// An unquoted delimiter with text the shell would expand.
    #[error("{INVOCATION_FORM}an unquoted delimiter with `$`, `` ` `` or `\\` in the patch")]
    Expansion,
}

/// One file a patch touches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hunk {
    /// `*** Add File:`: the file is written with exactly `content`.
    Add {
        /// The path as the patch gives it.
        path: String,
        /// The new content (each `+` line and a newline).
        content: String,
    },
    /// `*** Delete File:`.
    Delete {
        /// The path as the patch gives it.
        path: String,
    },
    /// `*** Update File:`: the file is rewritten by the chunks; with
    /// `*** Move to:` the result is written to `move_to` and `path` is
    /// deleted.
    Update {
        /// The path as the patch gives it.
        path: String,
        /// The path after `*** Move to:`, if any.
        move_to: Option<String>,
    },
}

const BEGIN: &str = "*** Begin Patch";
const END: &str = "*** End Patch";
const ADD: &str = "*** Add File: ";
const DELETE: &str = "*** Delete File: ";
const UPDATE: &str = "*** Update File: ";
const MOVE_TO: &str = "*** Move to: ";
const END_OF_FILE: &str = "*** End of File";
const ENVIRONMENT: &str = "*** Environment ID:";

/// The files `patch` touches, in order; or why it cannot be read.
pub fn parse(patch: &str) -> Result<Vec<Hunk>, PatchError> {
    let lines: Vec<&str> = patch.trim().lines().collect();
    let body = body_lines(&lines)?;
    let mut hunks = Vec::new();
    let mut rest = body;
    while let Some((first, after)) = rest.split_first() {
        let header = first.trim();
        if header.starts_with(ENVIRONMENT) {
            return Err(PatchError::Environment);
        }
        if let Some(path) = header.strip_prefix(ADD) {
            let taken = after
                .iter()
                .take_while(|line| line.starts_with('+'))
                .count();
            let mut content = String::new();
            for line in after.iter().take(taken) {
                content.push_str(line.get(1..).unwrap_or_default());
                content.push('\n');
            }
            hunks.push(Hunk::Add {
                path: file_path(path)?,
                content,
            });
            rest = after.get(taken..).unwrap_or_default();
        } else if let Some(path) = header.strip_prefix(DELETE) {
            hunks.push(Hunk::Delete {
                path: file_path(path)?,
            });
            rest = after;
        } else if let Some(path) = header.strip_prefix(UPDATE) {
            let (move_to, chunks) = match after.split_first() {
                Some((line, chunks)) if line.starts_with(MOVE_TO) => (
                    Some(file_path(line.get(MOVE_TO.len()..).unwrap_or_default())?),
                    chunks,
                ),
                _ => (None, after),
            };
            let used = update_chunks(chunks, path)?;
            hunks.push(Hunk::Update {
                path: file_path(path)?,
                move_to,
            });
            rest = chunks.get(used..).unwrap_or_default();
        } else {
            return Err(PatchError::NotAHeader(cut(header)));
        }
    }
    Ok(hunks)
}

/// The lines between `*** Begin Patch` and `*** End Patch`. As Codex does,
/// also takes a patch wrapped in the lines of a here-document
/// (`<<'EOF'` ... `EOF`).
fn body_lines<'a>(lines: &'a [&'a str]) -> Result<&'a [&'a str], PatchError> {
    let bounded = |lines: &'a [&'a str]| -> Option<&'a [&'a str]> {
        match lines {
            [first, body @ .., last] if first.trim() == BEGIN && last.trim() == END => Some(body),
            _ => None,
        }
    };
    if let Some(body) = bounded(lines) {
        return Ok(body);
    }
    if let [first, inner @ .., last] = lines
        && matches!(*first, "<<EOF" | "<<'EOF'" | "<<\"EOF\"")
        && last.ends_with("EOF")
        && let Some(body) = bounded(inner)
    {
        return Ok(body);
    }
    Err(PatchError::Unbounded)
}

/// How many lines of `lines` belong to the update hunk of `path` (its
/// chunks), checking them as Codex does.
fn update_chunks(lines: &[&str], path: &str) -> Result<usize, PatchError> {
    let mut used = 0;
    let mut chunks = 0;
    while let Some(line) = lines.get(used) {
        if line.trim().is_empty() {
            used += 1;
            continue;
        }
        if line.starts_with('*') {
            break;
        }
        let start = if *line == "@@" || line.starts_with("@@ ") {
            1
        } else if chunks == 0 {
            0
        } else {
            return Err(PatchError::ChunkWithoutMarker {
                path: cut(path),
                line: cut(line),
            });
        };
        let mut taken = 0;
        for line in lines.iter().skip(used + start) {
            if *line == END_OF_FILE {
                if taken == 0 {
                    break;
                }
                taken += 1;
                break;
            }
            match line.chars().next() {
                None | Some(' ' | '+' | '-') => taken += 1,
                Some(_) if taken == 0 => {
                    return Err(PatchError::NotAChunkLine {
                        path: cut(path),
                        line: cut(line),
                    });
                }
                Some(_) => break,
            }
        }
        if taken == 0 {
            return Err(PatchError::EmptyChunk(cut(path)));
        }
        used += start + taken;
        chunks += 1;
    }
    if chunks == 0 {
        return Err(PatchError::NoChunks(cut(path)));
    }
    Ok(used)
}

fn file_path(path: &str) -> Result<String, PatchError> {
    if path.is_empty() {
        return Err(PatchError::EmptyPath);
    }
    Ok(path.to_owned())
}

/// At most 120 characters of `text`, for messages.
fn cut(text: &str) -> String {
    let mut out: String = text.chars().take(120).collect();
    if out.len() < text.len() {
        out.push('…');
    }
    out
}

/// How an `exec_command` line invokes `apply_patch`, in the only forms
/// Codex intercepts and applies itself (instead of running a shell):
/// `apply_patch <<'EOF'` (or `applypatch`), optionally after `cd DIR &&`,
/// with the patch as the here-document and nothing else on the line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invocation {
    /// The here-document's text: the patch.
    pub patch: String,
    /// The directory of a leading `cd DIR &&`, if any.
    pub cd: Option<String>,
}

/// The `apply_patch` invocation `command` is, if it is one of the forms
/// Codex intercepts; `None` if `command` does not start by invoking
/// `apply_patch`; an error if it does, but not in a form whose reading is
/// certain.
pub fn invocation(command: &str) -> Option<Result<Invocation, PatchInvocationError>> {
    let text = command.trim_start();
    let (first, rest) = text.split_once('\n').unwrap_or((text, ""));
    let mut line = first.trim();
    let mut cd = None;
    if let Some(after) = line.strip_prefix("cd ") {
        let after = after.trim_start();
        let (dir, tail) = match after.strip_prefix('\'') {
            Some(quoted) => {
                let end = quoted.find('\'')?;
                (after.get(..end + 2)?, quoted.get(end + 1..)?)
            }
            None => after.split_at(after.find(char::is_whitespace)?),
        };
        line = tail.trim_start().strip_prefix("&&")?.trim_start();
        cd = Some(dir);
    }
    let mut words = line.split_whitespace();
    let program = words.next()?;
    if !matches!(program, "apply_patch" | "applypatch") {
        return None;
    }
    Some(heredoc(words.collect::<Vec<_>>().as_slice(), rest, cd))
}

fn heredoc(
    words: &[&str],
    rest: &str,
    cd: Option<&str>,
) -> Result<Invocation, PatchInvocationError> {
    let marker = match words {
        [redirect] => redirect.strip_prefix("<<"),
        ["<<", delimiter] => Some(*delimiter),
        _ => None,
    };
    let Some(marker) = marker else {
        return Err(PatchInvocationError::NotHereDocument);
    };
    let (delimiter, quoted) = match marker
        .strip_prefix('\'')
        .and_then(|m| m.strip_suffix('\''))
        .or_else(|| marker.strip_prefix('"').and_then(|m| m.strip_suffix('"')))
    {
        Some(inner) => (inner, true),
        None => (marker, false),
    };
    if delimiter.is_empty()
        || !delimiter
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '_')
    {
        return Err(PatchInvocationError::Delimiter);
    }
    let cd = match cd {
        None => None,
        Some(dir) => Some(cd_dir(dir).ok_or_else(|| PatchInvocationError::Directory(cut(dir)))?),
    };
    let mut body = String::new();
    let mut after = None;
    let mut lines = rest.split('\n');
    for line in lines.by_ref() {
        if line == delimiter {
            after = Some(());
            break;
        }
        body.push_str(line);
        body.push('\n');
    }
    if after.is_none() {
        return Err(PatchInvocationError::NotClosed);
    }
    if lines.any(|line| !line.trim().is_empty()) {
        return Err(PatchInvocationError::TrailingText);
    }
    // Unquoted, the shell would expand the text; Codex reads it as it is.
    // Only text without anything to expand reads the same both ways.
    if !quoted && body.contains(['$', '`', '\\']) {
        return Err(PatchInvocationError::Expansion);
    }
    Ok(Invocation {
        patch: body.trim_end_matches('\n').to_owned(),
        cd,
    })
}

/// The directory of `cd DIR`, when the shell and Codex read it alike.
fn cd_dir(dir: &str) -> Option<String> {
    if let Some(inner) = dir.strip_prefix('\'').and_then(|d| d.strip_suffix('\'')) {
        return (!inner.is_empty() && !inner.contains('\'')).then(|| inner.to_owned());
    }
    let plain = !dir.is_empty()
        && !dir.starts_with('~')
        && dir
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '/' | '-' | '+' | ','));
    plain.then(|| dir.to_owned())
}

#[cfg(test)]
mod tests {
    #![expect(clippy::unwrap_used, reason = "tests")]
    use super::*;

    #[test]
    fn every_hunk_kind_is_read_in_order() {
        let patch = "*** Begin Patch\n\
                     *** Add File: src/new.rs\n\
                     +fn main() {}\n\
                     +\n\
                     *** Update File: src/lib.rs\n\
                     @@ fn f()\n\
                     -    old();\n\
                     +    new();\n\
                     @@\n\
                     \x20context\n\
                     *** End of File\n\
                     *** Delete File: gone.txt\n\
                     *** Update File: a.txt\n\
                     *** Move to: b/a.txt\n\
                     @@\n\
                     -x\n\
                     +y\n\
                     *** End Patch\n";
        assert_eq!(
            parse(patch).unwrap(),
            vec![
                Hunk::Add {
                    path: "src/new.rs".into(),
                    content: "fn main() {}\n\n".into()
                },
                Hunk::Update {
                    path: "src/lib.rs".into(),
                    move_to: None
                },
                Hunk::Delete {
                    path: "gone.txt".into()
                },
                Hunk::Update {
                    path: "a.txt".into(),
                    move_to: Some("b/a.txt".into())
                },
            ]
        );
    }

    #[test]
    fn a_patch_wrapped_in_here_document_lines_is_read() {
        let patch = "<<'EOF'\n*** Begin Patch\n*** Delete File: x\n*** End Patch\nEOF\n";
        assert_eq!(
            parse(patch).unwrap(),
            vec![Hunk::Delete { path: "x".into() }]
        );
    }

    #[test]
    fn what_codex_would_refuse_or_read_otherwise_is_refused() {
        let a = || "a".to_owned();
        let stray = || "stray".to_owned();
        for (patch, error) in [
            ("", PatchError::Unbounded),
            (
                "*** Begin Patch\n*** Add File: a\n+x\n",
                PatchError::Unbounded,
            ),
            ("*** Add File: a\n+x\n*** End Patch", PatchError::Unbounded),
            (
                "*** Begin Patch\n*** Copy File: a\n*** End Patch",
                PatchError::NotAHeader("*** Copy File: a".into()),
            ),
            (
                "*** Begin Patch\n*** Environment ID: remote\n*** Add File: a\n+x\n*** End Patch",
                PatchError::Environment,
            ),
            (
                "*** Begin Patch\n*** Update File: a\n*** End Patch",
                PatchError::NoChunks(a()),
            ),
            (
                "*** Begin Patch\n*** Update File: a\n@@\n*** End Patch",
                PatchError::EmptyChunk(a()),
            ),
            (
                "*** Begin Patch\n*** Update File: a\n@@\n-x\nstray\n*** End Patch",
                PatchError::ChunkWithoutMarker {
                    path: a(),
                    line: stray(),
                },
            ),
            (
                "*** Begin Patch\n*** Update File: a\nstray\n*** End Patch",
                PatchError::NotAChunkLine {
                    path: a(),
                    line: stray(),
                },
            ),
            // The header is read trimmed: no path is no header.
            (
                "*** Begin Patch\n*** Add File: \n+x\n*** End Patch",
                PatchError::NotAHeader("*** Add File:".into()),
            ),
            (
                "*** Begin Patch\n*** Update File: a\n*** Move to: \n@@\n-x\n*** End Patch",
                PatchError::EmptyPath,
            ),
        ] {
            assert_eq!(parse(patch), Err(error), "{patch:?}");
        }
        // What the agent is shown names the line, cut to 120 characters.
        let long = format!("*** Begin Patch\n*** {}\n*** End Patch", "x".repeat(200));
        let error = parse(&long).unwrap_err();
        assert_eq!(
            error.to_string(),
            format!(
                "`*** {}…` is not a patch hunk header (`*** Add File:`, `*** Delete File:` or \
                 `*** Update File:`)",
                "x".repeat(116)
            )
        );
    }

    #[test]
    fn a_line_that_is_not_a_chunk_line_ends_the_update_and_must_be_a_header() {
        // After a chunk, a line that is no chunk line starts the next hunk.
        let patch =
            "*** Begin Patch\n*** Update File: a\n@@\n-x\n+y\n*** Delete File: b\n*** End Patch";
        assert_eq!(parse(patch).unwrap().len(), 2);
        // A context line that looks like a header is content, as for Codex:
        // it starts with a space.
        let patch =
            "*** Begin Patch\n*** Update File: a\n@@\n *** Delete File: b\n+y\n*** End Patch";
        assert_eq!(
            parse(patch).unwrap(),
            vec![Hunk::Update {
                path: "a".into(),
                move_to: None
            }]
        );
    }

    #[test]
    fn the_intercepted_invocations_are_recognised() {
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+hi\n*** End Patch";
        for (command, cd) in [
            (format!("apply_patch <<'EOF'\n{patch}\nEOF\n"), None),
            (format!("applypatch <<\"PATCH\"\n{patch}\nPATCH"), None),
            (format!("apply_patch << EOF\n{patch}\nEOF\n\n"), None),
            (
                format!("cd sub && apply_patch <<'EOF'\n{patch}\nEOF\n"),
                Some("sub"),
            ),
            (
                format!("cd 'a dir' && apply_patch <<'EOF'\n{patch}\nEOF"),
                Some("a dir"),
            ),
        ] {
            let found = invocation(&command).unwrap().unwrap();
            assert_eq!(found.patch, patch, "{command:?}");
            assert_eq!(found.cd.as_deref(), cd, "{command:?}");
        }
    }

    #[test]
    fn other_commands_are_not_invocations_and_near_misses_are_refused() {
        for command in ["ls -la", "echo apply_patch", "cd sub", "cd sub && ls", ""] {
            assert!(invocation(command).is_none(), "{command:?}");
        }
        let patch = "*** Begin Patch\n*** Add File: a.txt\n+$(id)\n*** End Patch";
        for (command, error) in [
            (
                format!("apply_patch <<'EOF'\n{patch}\nEOF\nrm -rf /"),
                PatchInvocationError::TrailingText,
            ),
            (
                format!("apply_patch <<'EOF' && rm x\n{patch}\nEOF"),
                PatchInvocationError::NotHereDocument,
            ),
            (
                format!("apply_patch <<EOF\n{patch}\nEOF"),
                PatchInvocationError::Expansion,
            ),
            (
                format!("apply_patch <<-'EOF'\n{patch}\nEOF"),
                PatchInvocationError::Delimiter,
            ),
            (
                format!("apply_patch <<'EOF'\n{patch}\n"),
                PatchInvocationError::NotClosed,
            ),
            (
                format!("apply_patch\n{patch}"),
                PatchInvocationError::NotHereDocument,
            ),
            (
                format!("cd $HOME && apply_patch <<'EOF'\n{patch}\nEOF"),
                PatchInvocationError::Directory("$HOME".into()),
            ),
            (
                format!("cd ~ && apply_patch <<'EOF'\n{patch}\nEOF"),
                PatchInvocationError::Directory("~".into()),
            ),
        ] {
            assert_eq!(invocation(&command), Some(Err(error)), "{command:?}");
        }
        // What the agent is shown says which form is decided.
        assert_eq!(
            PatchInvocationError::TrailingText.to_string(),
            "`apply_patch` is decided only as `apply_patch <<'EOF'` with the patch as the \
             here-document (optionally after `cd DIR &&`) and nothing else: something follows \
             the here-document"
        );
    }
}
