//! Example agents.
#![forbid(unsafe_code)]
