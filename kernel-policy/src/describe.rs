//! Readable one-line descriptions, for operators' tools.

use kernel_core::Action;

/// One line describing `action`, for tables and listings.
pub fn action(action: &Action) -> String {
    match action {
        Action::Exec(exec) => {
            let mut text = format!("exec {}", exec.program);
            for arg in &exec.args {
                text.push(' ');
                text.push_str(arg);
            }
            text
        }
        Action::FileRead { path } => format!("file_read {path}"),
        Action::FileWrite {
            path,
            mode: kernel_core::WriteMode::Descriptor,
            ..
        } => format!("file_write {path} (writable descriptor)"),
        Action::FileWrite {
            path,
            mode: kernel_core::WriteMode::Symlink,
            ..
        } => format!("file_write {path} (symbolic link)"),
        Action::FileWrite {
            path,
            mode: kernel_core::WriteMode::HardLink,
            ..
        } => format!("file_write {path} (hard link)"),
        Action::FileWrite {
            path,
            mode: kernel_core::WriteMode::Metadata,
            ..
        } => format!("file_write {path} (metadata)"),
        Action::FileWrite {
            path,
            mode: kernel_core::WriteMode::Connect,
            ..
        } => format!("file_write {path} (Unix socket connection)"),
        Action::FileWrite { path, size, .. } => format!("file_write {path} ({size} bytes)"),
        Action::FileDelete { path } => format!("file_delete {path}"),
        Action::NetConnect { host, port } => format!("net_connect {host}:{port}"),
        Action::Http { method, url } => format!("http {method} {url}"),
        Action::ToolCall { name, input } => format!("tool_call {name} {input}"),
        Action::Custom { kind, payload } => format!("custom {kind} {payload}"),
        Action::McpRequest {
            from,
            method,
            params,
        } => match from {
            kernel_core::McpPeer::Agent => format!("mcp_request {method} {params}"),
            kernel_core::McpPeer::Server => format!("mcp_server_request {method} {params}"),
        },
    }
}
