//! Test harness for ringkv integration tests.
