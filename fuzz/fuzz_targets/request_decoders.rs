//! Request decoding: query strings, db, TTLs, keys in paths, content types, JSON and form
//! bodies, cursors and the compat database sources. The first byte picks the decoder.
#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| ringkv_fuzz::check_request_bytes(data));
