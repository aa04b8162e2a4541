//! Integration tests: the service runs in-process on 127.0.0.1:0 and is
//! driven over real HTTP. One test binary, so it links once.

mod support;

/// The behaviour of this service type.
mod {{service_type}};
