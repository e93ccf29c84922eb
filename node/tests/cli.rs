//! The binary's start-up contract: bad configuration is refused before any port is
//! bound, with every problem named. (This suite also makes `cargo test` build the real
//! `ringkv-node` binary that the multi-process suites in `tests/` start.)

use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_ringkv-node"))
}

#[test]
fn shard_count_that_is_not_a_power_of_two_is_refused_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let out = bin().args(["--shards", "3", "--listen", "127.0.0.1:0", "--data-dir"]).arg(dir.path()).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("power of two"), "{err}");
    assert!(std::fs::read_dir(dir.path()).unwrap().next().is_none(), "nothing written for a refused config");
}

#[test]
fn every_contradiction_is_reported_at_once() {
    let out = bin().args(["--shards", "6", "--node-id", "0", "--max-key-bytes", "0"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    for want in ["power of two", "--node-id", "--max-key-bytes"] {
        assert!(err.contains(want), "missing `{want}` in: {err}");
    }
}

/// Enumerated options are refused by the parser, naming the values it takes.
#[test]
fn an_unknown_log_format_is_refused_with_the_choices() {
    let out = bin().args(["--log-format", "xml"]).output().unwrap();
    assert_eq!(out.status.code(), Some(2));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--log-format") && err.contains("text") && err.contains("json"), "{err}");
}

#[test]
fn help_documents_the_environment_variables() {
    let out = bin().arg("--help").output().unwrap();
    let help = String::from_utf8_lossy(&out.stdout);
    for var in ["RINGKV_NODE_ID", "RINGKV_PEERS", "RINGKV_SHARDS", "RINGKV_DATA_DIR", "RINGKV_LISTEN"] {
        assert!(help.contains(var), "{var} not in --help");
    }
}

#[test]
fn a_data_dir_of_another_node_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("node.json"), r#"{"node_id": 7, "shards": 4}"#).unwrap();
    let out = bin()
        .args(["--listen", "127.0.0.1:0", "--internal-listen", "127.0.0.1:0", "--data-dir"])
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refusing to mix data"), "{err}");
}
