//! Example agents.
