//! Documented size limits. Anything over a limit is refused, never truncated.

/// Largest frame either side accepts on the channel, in bytes.
pub const MAX_FRAME_BYTES: usize = 2 * 1024 * 1024;
/// Longest path, in bytes, before or after canonicalisation.
pub const MAX_PATH_BYTES: usize = 4096;
/// Most arguments an `Exec` may carry (the program itself not counted).
pub const MAX_ARGS: usize = 4096;
/// Longest single argument or environment value, in bytes.
pub const MAX_ARG_BYTES: usize = 128 * 1024;
/// Most environment variables an `Exec` may set.
pub const MAX_ENV_VARS: usize = 256;
/// Longest host name, in bytes (the DNS limit).
pub const MAX_HOST_BYTES: usize = 253;
/// Longest URL, in bytes.
pub const MAX_URL_BYTES: usize = 8 * 1024;
/// Longest HTTP method token, in bytes.
pub const MAX_METHOD_BYTES: usize = 16;
/// Longest tool or custom-kind name, in bytes.
pub const MAX_NAME_BYTES: usize = 256;
/// Largest tool-call input (canonical JSON) or custom payload, in bytes.
pub const MAX_PAYLOAD_BYTES: usize = 1024 * 1024;
/// Most policy ids or reasons a receipt carries.
pub const MAX_RECEIPT_ENTRIES: usize = 64;
/// Longest policy id or reason in a receipt, in bytes.
pub const MAX_RECEIPT_TEXT_BYTES: usize = 1024;
