//! WAL replay (`Wal::open` on an in-memory file system) against the format's reference
//! decoder: raw segment bytes, or well-formed records that are then damaged and split
//! into segments.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz::check_wal_bytes(data));
