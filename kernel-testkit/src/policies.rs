//! Policies several tests decide by.

/// Reads of the workspace, nothing else.
pub const READ_WORKSPACE: &str =
    r#"permit (principal, action == Action::"file_read", resource in Workspace::"root");"#;

/// Reads of the workspace (policy `read-workspace`), but never of a file
/// named `secret-*` (policy `no-secrets`, reason `secrets stay secret`).
pub const READ_WORKSPACE_BUT_SECRETS: &str = r#"
@id("read-workspace")
permit (principal, action == Action::"file_read", resource in Workspace::"root");

@id("no-secrets")
@reason("secrets stay secret")
forbid (principal, action == Action::"file_read", resource)
when { resource.name like "secret-*" };
"#;
