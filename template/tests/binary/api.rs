//! Binary-level tests of the api type.
