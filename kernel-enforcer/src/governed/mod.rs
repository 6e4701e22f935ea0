//! Agents the enforcer starts itself: supervised mode (`kernel-enforcer
//! run`, the agent confined before its first instruction) and governed
//! mode (`run --govern-syscalls`, the agent's own system calls decided).

pub mod egress;
pub mod exec_trace;
pub mod notify;
pub mod rate;
pub mod supervise;
