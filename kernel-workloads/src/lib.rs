//! The workload suite: real, unmodified tools (coreutils, git, Python and
//! pip, a C compiler and make, cargo, npm and node) run twice in fresh
//! copies of the same workspace, ungoverned and under `kernel-enforcer
//! run --govern-syscalls`, with their outcomes compared: each command's
//! exit status and standard output, the workspace tree byte for byte,
//! and the governed run's evidence (verified, its decisions counted).
//!
//! - [`workloads`]: what each workload sets up and runs;
//! - [`runner`]: running a pair and comparing it;
//! - [`driver`]: the process that runs a workload's commands in both runs
//!   (governed, it is the agent);
//! - [`tree`] and [`normalise`]: what is compared, and the few
//!   differences that are legitimate;
//! - [`layout`]: directories and environment of a run;
//! - [`locate`]: the enforcer, the policy and the tools;
//! - [`hang`]: what a command that outlived its deadline is blocked in.
//!
//! The `kernel-workloads` binary prints a table of medians; the
//! integration test runs a short form of every workload once.
#![forbid(unsafe_code)]

pub mod driver;
pub mod hang;
pub mod layout;
pub mod locate;
pub mod normalise;
pub mod runner;
pub mod tree;
pub mod workloads;
