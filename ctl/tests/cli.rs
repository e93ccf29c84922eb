//! The binary's contract at its edges: what it says when it cannot start or cannot reach
//! a node. (This suite also makes `cargo test` build the real `ringkv-ctl` binary that
//! `tests/tests/admin_cli.rs` runs against a cluster of nodes.)

use std::process::Command;
use std::time::{Duration, Instant};

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringkv-ctl"))
}

#[test]
fn without_nodes_it_says_which_flag_is_missing() {
    let out = bin().arg("status").output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--nodes"), "{err}");
}

#[test]
fn a_shard_count_that_is_not_a_power_of_two_is_refused() {
    let out = bin().args(["--nodes", "127.0.0.1:1", "--timeout", "2s", "reshard", "--shards", "3"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(
        err.trim(),
        "ringkv-ctl: --shards 3 is not a power of two (1, 2, 4, 8, ...)",
        "one line, before any node is asked"
    );
}

#[test]
fn nodes_that_do_not_answer_end_in_an_error_within_the_timeout() {
    let started = Instant::now();
    let out = bin().args(["--nodes", "127.0.0.1:1", "--timeout", "2s", "status"]).output().unwrap();
    assert_eq!(out.status.code(), Some(1), "status of a ring nobody answers for");
    assert!(started.elapsed() < Duration::from_secs(20), "took {:?}", started.elapsed());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("127.0.0.1:1"), "the error names the node it could not reach: {err}");
    assert_eq!(err.trim().lines().count(), 1, "one line, no backtrace: {err}");
}
