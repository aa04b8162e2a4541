//! Binary-level tests of the scheduler type.
