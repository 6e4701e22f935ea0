//! The enforcer's configuration file (`--config FILE`, TOML).
//!
//! Every key has a command-line flag of the same name (with `-` for `_`);
//! a flag given on the command line wins over the file, and the file wins
//! over the built-in default. Relative paths in the file are relative to
//! the file's own directory, so a configuration can travel with its
//! policies. Unknown keys are errors, so a misspelt setting never goes
//! unnoticed. Nothing that weakens a guarantee can be set here:
//! `--danger-unconfined` and `--shadow` exist only on the command line,
//! where they are seen (a file that sets `shadow` is refused by name).
//!
//! ```toml
//! policies = ["policies/agent.cedar"]
//! workspace = "/srv/agent/workspace"
//! evidence = "/var/lib/agent-kernel/evidence.log"
//! key = "/etc/agent-kernel/kernel.key"
//! protect = ["/etc/agent-kernel"]
//! permit_ttl_secs = 30
//! operator_uid = 1000
//! checkpoint_every = 1000
//! checkpoint_interval_secs = 5
//! exec_timeout_secs = 30
//! scratch = "/srv/agent/scratch"
//! connect_timeout_secs = 10
//! syscall_rate = 2000
//! egress_proxy = true
//! system_trees = ["/opt/toolchains"]
//! evidence_window_ms = 50
//! evidence_segment = "1GB"
//! socket = "/run/user/1000/agent-kernel.sock"
//! ```

use serde::Deserialize;
use std::path::{Path, PathBuf};

/// Settings read from a configuration file; each is optional.
#[derive(Debug, Default, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileConfig {
    /// Cedar policy files.
    #[serde(default)]
    pub policies: Vec<PathBuf>,
    /// The agent's workspace root.
    pub workspace: Option<PathBuf>,
    /// Evidence file.
    pub evidence: Option<PathBuf>,
    /// Private key file.
    pub key: Option<PathBuf>,
    /// Extra paths the floor and the confinement protect.
    #[serde(default)]
    pub protect: Vec<PathBuf>,
    /// Seconds an allow receipt stays valid.
    pub permit_ttl_secs: Option<u64>,
    /// The operator's control socket.
    pub control: Option<PathBuf>,
    /// The uid allowed on the control socket.
    pub operator_uid: Option<u32>,
    /// Sign a checkpoint after this many records.
    pub checkpoint_every: Option<u64>,
    /// Sign a checkpoint when a record has waited this many seconds.
    pub checkpoint_interval_secs: Option<u64>,
    /// Time limit of a brokered program, in seconds.
    pub exec_timeout_secs: Option<u64>,
    /// Supervised mode: the agent's private scratch directory.
    pub scratch: Option<PathBuf>,
    /// Supervised mode: seconds the agent has to connect.
    pub connect_timeout_secs: Option<u64>,
    /// Supervised mode with `--govern-syscalls`: decisions per second.
    pub syscall_rate: Option<u32>,
    /// Supervised mode with `--govern-syscalls`: run the egress proxy
    /// (the default) or not.
    pub egress_proxy: Option<bool>,
    /// Supervised mode: more trees of programs and libraries the agent
    /// may read and run, like the system trees.
    #[serde(default)]
    pub system_trees: Vec<PathBuf>,
    /// Records durable within this many milliseconds of being written
    /// (`--evidence-window`), instead of before their decision takes
    /// effect.
    pub evidence_window_ms: Option<u64>,
    /// Keep the evidence in segments of this size (`--evidence-segment`):
    /// a string such as `"1GB"` or `"64MiB"`, or a number of bytes.
    pub evidence_segment: Option<SegmentSize>,
    /// `listen`: the endpoint socket to create (other commands ignore it).
    pub socket: Option<PathBuf>,
}

/// The size of an evidence segment, in bytes: at least
/// [`MIN_SEGMENT_BYTES`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SegmentSize(pub u64);

/// The smallest evidence segment: 1 KiB (a segment's first record, its
/// checkpoint, takes up to about 2 KiB, so a smaller size would rotate at
/// every commit and gain nothing).
pub const MIN_SEGMENT_BYTES: u64 = 1024;

impl std::str::FromStr for SegmentSize {
    type Err = String;

    /// A number of bytes with an optional unit: `B`, `KB`, `MB`, `GB`,
    /// `TB` (powers of 1000) or `KiB`, `MiB`, `GiB`, `TiB` (powers of
    /// 1024), such as `1GB`, `64MiB` or `1048576`.
    fn from_str(text: &str) -> Result<Self, String> {
        let bad = || {
            format!("`{text}` is not a segment size such as `1GB`, `64MiB` or `1048576` (bytes)")
        };
        let text = text.trim();
        let split = text
            .find(|c: char| !c.is_ascii_digit())
            .unwrap_or(text.len());
        let (number, unit) = text.split_at(split);
        let number: u64 = number.parse().map_err(|_| bad())?;
        let scale: u64 = match unit.trim() {
            "" | "B" => 1,
            "KB" | "kB" => 1000,
            "MB" => 1000_u64.pow(2),
            "GB" => 1000_u64.pow(3),
            "TB" => 1000_u64.pow(4),
            "KiB" => 1 << 10,
            "MiB" => 1 << 20,
            "GiB" => 1 << 30,
            "TiB" => 1 << 40,
            _ => return Err(bad()),
        };
        let bytes = number.checked_mul(scale).ok_or_else(bad)?;
        if bytes < MIN_SEGMENT_BYTES {
            return Err(format!(
                "a segment of `{text}` is too small: give at least {MIN_SEGMENT_BYTES} bytes (1KiB)"
            ));
        }
        Ok(Self(bytes))
    }
}

impl<'de> Deserialize<'de> for SegmentSize {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Given {
            Bytes(u64),
            Text(String),
        }
        let text = match Given::deserialize(deserializer)? {
            Given::Bytes(bytes) => bytes.to_string(),
            Given::Text(text) => text,
        };
        text.parse().map_err(serde::de::Error::custom)
    }
}

/// Why a configuration file could not be used.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read the configuration `{path}`: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The file is not a valid configuration.
    #[error("invalid configuration `{path}`: {source}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        source: FileConfigError,
    },
}

/// Why configuration text is refused ([`FileConfig::parse`]).
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FileConfigError {
    /// `shadow` is set: only the command line may turn shadow mode on.
    #[error(
        "`shadow` cannot be set in a configuration file: shadow mode lets actions the policy denies proceed, so only the `--shadow` flag on the enforcer's command line turns it on"
    )]
    Shadow,
    /// Not TOML, or not of the configuration's shape: an unknown key, a
    /// wrong type, a value out of range (with its line and column).
    #[error("{}", .0.to_string().trim())]
    Toml(#[source] toml::de::Error),
}

impl FileConfig {
    /// Reads and checks `path`; relative paths inside it are made relative
    /// to its directory.
    pub fn load(path: &Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Self::parse(&text, base).map_err(|source| ConfigError::Invalid {
            path: path.to_owned(),
            source,
        })
    }

    /// Parses configuration text; relative paths are joined to `base`.
    pub fn parse(text: &str, base: &Path) -> Result<Self, FileConfigError> {
        if let Ok(table) = text.parse::<toml::Table>()
            && table.contains_key("shadow")
        {
            return Err(FileConfigError::Shadow);
        }
        let mut config: Self = toml::from_str(text).map_err(FileConfigError::Toml)?;
        let anchor = |path: &mut PathBuf| {
            if path.is_relative() {
                *path = base.join(&*path);
            }
        };
        config.policies.iter_mut().for_each(anchor);
        config.protect.iter_mut().for_each(anchor);
        for path in [
            &mut config.workspace,
            &mut config.evidence,
            &mut config.key,
            &mut config.control,
            &mut config.scratch,
            &mut config.socket,
        ]
        .into_iter()
        .flatten()
        {
            anchor(path);
        }
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, reason = "tests")]

    use super::*;

    #[test]
    fn relative_paths_are_relative_to_the_file() {
        let config = FileConfig::parse(
            "policies = [\"p/agent.cedar\", \"/abs/x.cedar\"]\nworkspace = \"ws\"\npermit_ttl_secs = 5\n",
            Path::new("/etc/kernel"),
        )
        .unwrap();
        assert_eq!(
            config.policies,
            [
                PathBuf::from("/etc/kernel/p/agent.cedar"),
                PathBuf::from("/abs/x.cedar")
            ]
        );
        assert_eq!(config.workspace, Some(PathBuf::from("/etc/kernel/ws")));
        assert_eq!(config.permit_ttl_secs, Some(5));
        assert_eq!(config.key, None);
        let config =
            FileConfig::parse("socket = \"run/e.sock\"\n", Path::new("/etc/kernel")).unwrap();
        assert_eq!(config.socket, Some(PathBuf::from("/etc/kernel/run/e.sock")));
    }

    #[test]
    fn unknown_keys_and_danger_are_refused_with_a_location() {
        // Refused by the TOML reader, at the key: the message (TOML's)
        // names it, and its span is where the key is written.
        let at = |text: &str, key: &str| match FileConfig::parse(text, Path::new(".")) {
            Err(FileConfigError::Toml(e)) if e.message().contains(key) => {
                e.span().and_then(|span| text.get(span)).map(str::to_owned)
            }
            _ => None,
        };
        assert_eq!(
            at("permit_tll_secs = 5\n", "permit_tll_secs").as_deref(),
            Some("permit_tll_secs")
        );
        assert_eq!(
            at("\n\ndanger_unconfined = true\n", "danger_unconfined").as_deref(),
            Some("danger_unconfined")
        );
        assert_eq!(
            at("permit_ttl_secs = \"soon\"\n", "string").as_deref(),
            Some("\"soon\"")
        );
    }

    #[test]
    fn segment_sizes_are_read_with_their_units() {
        for (text, bytes) in [
            ("1GB", 1_000_000_000),
            ("64MiB", 64 << 20),
            ("1048576", 1 << 20),
            ("4 KiB", 4096),
            ("1KiB", 1024),
            ("2TB", 2_000_000_000_000),
        ] {
            assert_eq!(
                text.parse::<SegmentSize>(),
                Ok(SegmentSize(bytes)),
                "{text}"
            );
        }
        for text in [
            "",
            "GB",
            "1.5GB",
            "10 parsecs",
            "-1GB",
            "1023",
            "99999999999999TiB",
        ] {
            assert!(text.parse::<SegmentSize>().is_err(), "{text}");
        }
        let config = FileConfig::parse("evidence_segment = \"64MiB\"\n", Path::new(".")).unwrap();
        assert_eq!(config.evidence_segment, Some(SegmentSize(64 << 20)));
        let config = FileConfig::parse("evidence_segment = 4096\n", Path::new(".")).unwrap();
        assert_eq!(config.evidence_segment, Some(SegmentSize(4096)));
        let small = FileConfig::parse("evidence_segment = 10\n", Path::new(".")).unwrap_err();
        assert!(
            matches!(&small, FileConfigError::Toml(e)
                if e.message().contains("too small") && e.span() == Some(19..21)),
            "{small}"
        );
    }

    #[test]
    fn shadow_mode_is_refused_in_a_file_whatever_its_value() {
        for text in [
            "shadow = true\n",
            "shadow = false\n",
            "policies = [\"p.cedar\"]\nshadow = \"yes\"\n",
        ] {
            let refused = FileConfig::parse(text, Path::new("."));
            assert!(
                matches!(refused, Err(FileConfigError::Shadow)),
                "{refused:?}"
            );
        }
    }
}
