//! `ringkv-ctl`: see the library ([`ringkv_ctl`]).

use clap::Parser;
use ringkv_ctl::AdminArgs;

fn main() {
    let args = AdminArgs::parse();
    let done = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(anyhow::Error::from)
        .and_then(|rt| rt.block_on(ringkv_ctl::run(args, &mut std::io::stdout())));
    // One line that says what went wrong, not a backtrace.
    if let Err(e) = done {
        eprintln!("ringkv-ctl: {e:#}");
        std::process::exit(1);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ringkv_ctl::AdminAction;

    #[test]
    fn takes_the_nodes_and_an_action() {
        let a = AdminArgs::parse_from(["ringkv-ctl", "--nodes", "a:1,b:2", "reshard", "--shards", "8"]);
        assert_eq!(a.nodes, ["a:1", "b:2"]);
        assert!(matches!(a.action, AdminAction::Reshard { shards: 8 }));
        assert!(AdminArgs::try_parse_from(["ringkv-ctl", "status"]).is_err(), "--nodes is required");
    }
}
