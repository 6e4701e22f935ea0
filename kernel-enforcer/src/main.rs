//! The `kernel-enforcer` binary: see `kernel-enforcer --help`.

fn main() -> std::process::ExitCode {
    kernel_enforcer::cli::main()
}
