//! What a command that outlived its deadline is blocked in, read from
//! `/proc` by the runner (which is not confined) while the driver waits
//! to kill it: each of its processes and threads with the system call it
//! is in, decoded (paths read from its memory), and the kernel function
//! it sleeps in.

use std::fmt::Write as _;
use std::os::unix::fs::FileExt;

/// One line per thread of `pid` and of every process it started.
pub fn describe(pid: u32) -> String {
    let mut out = String::new();
    let mut pending = vec![pid];
    let mut seen = 0;
    while let Some(pid) = pending.pop() {
        seen += 1;
        if seen > 64 {
            out.push_str("  ... (more processes)\n");
            break;
        }
        let command = std::fs::read(format!("/proc/{pid}/cmdline"))
            .map(|raw| {
                raw.split(|b| *b == 0)
                    .filter(|part| !part.is_empty())
                    .map(|part| String::from_utf8_lossy(part).into_owned())
                    .collect::<Vec<_>>()
                    .join(" ")
            })
            .unwrap_or_else(|_| "(gone)".into());
        let mut tids: Vec<u32> = std::fs::read_dir(format!("/proc/{pid}/task"))
            .map(|dir| {
                dir.flatten()
                    .filter_map(|e| e.file_name().to_str()?.parse().ok())
                    .collect()
            })
            .unwrap_or_default();
        tids.sort_unstable();
        let _ = writeln!(out, "  pid {pid} `{}`:", shorten(&command, 160));
        for tid in &tids {
            let task = format!("/proc/{pid}/task/{tid}");
            let syscall = std::fs::read_to_string(format!("{task}/syscall")).unwrap_or_default();
            let wchan = std::fs::read_to_string(format!("{task}/wchan")).unwrap_or_default();
            let _ = writeln!(
                out,
                "    thread {tid}: {} [sleeping in {}]",
                decode(pid, syscall.trim()),
                if wchan.is_empty() || wchan == "0" {
                    "-"
                } else {
                    wchan.trim()
                }
            );
            if let Ok(children) = std::fs::read_to_string(format!("{task}/children")) {
                pending.extend(
                    children
                        .split_whitespace()
                        .filter_map(|c| c.parse::<u32>().ok()),
                );
            }
        }
    }
    out
}

fn shorten(text: &str, limit: usize) -> String {
    if text.chars().count() <= limit {
        text.to_owned()
    } else {
        let cut: String = text.chars().take(limit).collect();
        format!("{cut}...")
    }
}

/// `/proc/<pid>/task/<tid>/syscall` decoded: `openat(AT_FDCWD, "d/",
/// O_PATH|O_DIRECTORY)`.
fn decode(pid: u32, line: &str) -> String {
    let fields: Vec<&str> = line.split_whitespace().collect();
    let Some(first) = fields.first() else {
        return "(no system call information)".into();
    };
    if *first == "running" {
        return "running (not in a system call)".into();
    }
    let Ok(number) = first.parse::<i64>() else {
        return line.to_owned();
    };
    if number < 0 {
        return "not in a system call".into();
    }
    let arg = |i: usize| {
        fields
            .get(i + 1)
            .and_then(|f| u64::from_str_radix(f.trim_start_matches("0x"), 16).ok())
            .unwrap_or(0)
    };
    let path = |i: usize| format!("{:?}", read_string(pid, arg(i)));
    let fd = |i: usize| dirfd(pid, arg(i));
    let flags = |i: usize| open_flags(arg(i));
    let (name, args) = match number {
        2 => ("open", vec![path(0), flags(1)]),
        257 => ("openat", vec![fd(0), path(1), flags(2)]),
        437 => ("openat2", vec![fd(0), path(1), "...".into()]),
        85 => ("creat", vec![path(0)]),
        87 => ("unlink", vec![path(0)]),
        263 => ("unlinkat", vec![fd(0), path(1), format!("{:#x}", arg(2))]),
        84 => ("rmdir", vec![path(0)]),
        83 => ("mkdir", vec![path(0), format!("{:o}", arg(1))]),
        258 => ("mkdirat", vec![fd(0), path(1), format!("{:o}", arg(2))]),
        82 => ("rename", vec![path(0), path(1)]),
        264 => ("renameat", vec![fd(0), path(1), fd(2), path(3)]),
        316 => (
            "renameat2",
            vec![fd(0), path(1), fd(2), path(3), format!("{:#x}", arg(4))],
        ),
        42 => ("connect", vec![format!("{}", arg(0))]),
        59 => ("execve", vec![path(0)]),
        322 => ("execveat", vec![fd(0), path(1)]),
        86 => ("link", vec![path(0), path(1)]),
        265 => ("linkat", vec![fd(0), path(1), fd(2), path(3)]),
        88 => ("symlink", vec![path(0), path(1)]),
        266 => ("symlinkat", vec![path(0), fd(1), path(2)]),
        0 => ("read", vec![format!("{}", arg(0))]),
        1 => ("write", vec![format!("{}", arg(0))]),
        7 => ("poll", vec![]),
        35 => ("nanosleep", vec![]),
        61 => (
            "wait4",
            vec![format!("{}", i64::from_ne_bytes(arg(0).to_ne_bytes()))],
        ),
        202 => ("futex", vec![]),
        230 => ("clock_nanosleep", vec![]),
        232 => ("epoll_wait", vec![]),
        247 => ("waitid", vec![]),
        270 => ("pselect6", vec![]),
        271 => ("ppoll", vec![]),
        281 => ("epoll_pwait", vec![]),
        _ => {
            return format!(
                "system call {number} ({})",
                fields.get(1..7).unwrap_or_default().join(", ")
            );
        }
    };
    format!("{name}({})", args.join(", "))
}

/// A NUL-terminated string in the process's memory (up to 4 KiB).
fn read_string(pid: u32, address: u64) -> String {
    if address == 0 {
        return "(null)".into();
    }
    let Ok(memory) = std::fs::File::open(format!("/proc/{pid}/mem")) else {
        return "(memory unreadable)".into();
    };
    let mut bytes = Vec::new();
    let mut at = address;
    while bytes.len() < 4096 {
        let mut chunk = [0u8; 256];
        let Ok(got) = memory.read_at(&mut chunk, at) else {
            break;
        };
        let chunk = chunk.get(..got).unwrap_or_default();
        if let Some(end) = chunk.iter().position(|b| *b == 0) {
            bytes.extend_from_slice(chunk.get(..end).unwrap_or_default());
            return String::from_utf8_lossy(&bytes).into_owned();
        }
        if got == 0 {
            break;
        }
        bytes.extend_from_slice(chunk);
        at += u64::try_from(got).unwrap_or(256);
    }
    if bytes.is_empty() {
        "(memory unreadable)".into()
    } else {
        String::from_utf8_lossy(&bytes).into_owned()
    }
}

fn dirfd(pid: u32, raw: u64) -> String {
    let fd = i32::from_ne_bytes(u32::try_from(raw & 0xffff_ffff).unwrap_or(0).to_ne_bytes());
    if fd == -100 {
        return "AT_FDCWD".into();
    }
    match std::fs::read_link(format!("/proc/{pid}/fd/{fd}")) {
        Ok(target) => format!("{fd}=`{}`", target.display()),
        Err(_) => fd.to_string(),
    }
}

fn open_flags(flags: u64) -> String {
    const NAMES: [(u64, &str); 13] = [
        (0o1, "O_WRONLY"),
        (0o2, "O_RDWR"),
        (0o100, "O_CREAT"),
        (0o200, "O_EXCL"),
        (0o400, "O_NOCTTY"),
        (0o1000, "O_TRUNC"),
        (0o2000, "O_APPEND"),
        (0o4000, "O_NONBLOCK"),
        (0o200000, "O_DIRECTORY"),
        (0o400000, "O_NOFOLLOW"),
        (0o1000000, "O_NOATIME"),
        (0o2000000, "O_CLOEXEC"),
        (0o10000000, "O_PATH"),
    ];
    let mut names: Vec<&str> = NAMES
        .iter()
        .filter(|(bit, _)| flags & bit != 0)
        .map(|(_, name)| *name)
        .collect();
    if flags & 0o3 == 0 {
        names.insert(0, "O_RDONLY");
    }
    names.join("|")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn open_flags_read_as_names() {
        assert_eq!(
            open_flags(0x21_0000),
            "O_RDONLY|O_DIRECTORY|O_PATH",
            "mv's directory open"
        );
        assert_eq!(open_flags(0o1101), "O_WRONLY|O_CREAT|O_TRUNC");
    }

    #[test]
    fn this_process_can_be_described() {
        let text = describe(std::process::id());
        assert!(text.contains("thread"), "{text}");
    }
}
