//! One `ringkv-node` process: where the binary is, its addresses, its log, and how it
//! is started, stopped and paused. A process may run under a command prefix
//! (`ip netns exec <namespace>`, see [`crate::netns`]): that prefix execs the node, so the
//! pid the harness holds, signals and all, is the node's own.

use parking_lot::{Mutex, MutexGuard};
use std::fs::OpenOptions;
use std::io::Write;
use std::net::{Ipv4Addr, SocketAddr, TcpListener};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::time::Duration;

use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

/// Environment variable that overrides where the node binary is.
pub const NODE_BIN_ENV: &str = "RINGKV_NODE_BIN";

/// The `ringkv-node` binary: `$RINGKV_NODE_BIN`, else the one cargo built next to this
/// test executable (test executables live in `target/<profile>/deps/`).
pub fn node_binary() -> PathBuf {
    if let Some(p) = std::env::var_os(NODE_BIN_ENV) {
        let p = PathBuf::from(p);
        assert!(p.is_file(), "{NODE_BIN_ENV}={} is not a file", p.display());
        return p;
    }
    workspace_binary("ringkv-node", "ringkv-node")
}

/// A binary of this workspace that cargo built next to this test executable: `name`
/// of package `package` (`cargo nextest run --workspace` builds them all).
pub fn workspace_binary(name: &str, package: &str) -> PathBuf {
    let exe = std::env::current_exe().expect("the test executable has a path");
    let candidates: Vec<PathBuf> = exe.ancestors().skip(1).take(3).map(|dir| dir.join(name)).collect();
    candidates.iter().find(|p| p.is_file()).cloned().unwrap_or_else(|| {
        panic!("{name} binary not found (looked at {candidates:?}); build it first: cargo build -p {package}")
    })
}

/// A port that was free on `ip` a moment ago (bound to port 0, then released).
///
/// Each node has its own loopback address, so a port the kernel hands out here cannot
/// collide with the ephemeral ports of outgoing connections (those use 127.0.0.1).
pub fn free_port(ip: Ipv4Addr) -> u16 {
    let l = TcpListener::bind((ip, 0)).unwrap_or_else(|e| panic!("cannot bind {ip}:0: {e}"));
    l.local_addr().expect("a bound socket has an address").port()
}

/// One node process. It keeps its addresses and data dir across restarts.
pub struct NodeProcess {
    pub id: u64,
    pub client_addr: SocketAddr,
    pub internal_addr: SocketAddr,
    pub data_dir: PathBuf,
    pub log_path: PathBuf,
    /// Words run before the binary, e.g. `["ip", "netns", "exec", "rkv1a2b-n1"]`; empty
    /// on loopback.
    exec_prefix: Vec<String>,
    args: Vec<String>,
    /// Environment for the next start only (e.g. `FAILPOINTS` to arm crash points).
    next_env: Mutex<Vec<(String, String)>>,
    child: Mutex<Option<Child>>,
}

impl NodeProcess {
    /// Describes a node; nothing runs until [`NodeProcess::spawn`].
    /// The ports are free ones on `ip`, which must be an address of this (the test's)
    /// network namespace.
    pub fn new(id: u64, ip: Ipv4Addr, dir: &Path) -> Self {
        let client_addr = SocketAddr::from((ip, free_port(ip)));
        let internal_addr = SocketAddr::from((ip, free_port(ip)));
        Self::at(id, client_addr, internal_addr, dir)
    }

    /// Describes a node with the given addresses (a node in its own network namespace
    /// owns its address, so fixed ports cannot collide there).
    pub fn at(id: u64, client_addr: SocketAddr, internal_addr: SocketAddr, dir: &Path) -> Self {
        Self {
            id,
            client_addr,
            internal_addr,
            data_dir: dir.join(format!("node-{id}")),
            log_path: dir.join(format!("node-{id}.log")),
            exec_prefix: Vec::new(),
            args: Vec::new(),
            next_env: Mutex::new(Vec::new()),
            child: Mutex::new(None),
        }
    }

    /// Sets the command-line flags used by every (re)start.
    pub fn set_args(&mut self, args: Vec<String>) {
        self.args = args;
    }

    /// Runs every later start under `prefix` (a command that execs the rest of its
    /// arguments, such as `ip netns exec <namespace>`).
    pub fn set_exec_prefix(&mut self, prefix: Vec<String>) {
        self.exec_prefix = prefix;
    }

    /// Sets flag `name` to `value` for later starts (replacing its value if given).
    pub fn set_flag(&mut self, name: &str, value: &str) {
        match self.args.iter().position(|a| a == name) {
            Some(i) if i + 1 < self.args.len() => self.args[i + 1] = value.to_string(),
            _ => self.args.extend([name.to_string(), value.to_string()]),
        }
    }

    /// Sets environment variables for the next start only.
    pub fn set_next_env(&self, env: Vec<(String, String)>) {
        *self.next_env.lock() = env;
    }

    fn child(&self) -> MutexGuard<'_, Option<Child>> {
        self.child.lock()
    }

    /// Starts the process; stdout and stderr are appended to the node's log file.
    pub fn spawn(&self) {
        let mut child = self.child();
        assert!(child.is_none(), "node {} is already running", self.id);
        let mut log = OpenOptions::new()
            .create(true)
            .append(true)
            .open(&self.log_path)
            .unwrap_or_else(|e| panic!("cannot open {}: {e}", self.log_path.display()));
        let _ = writeln!(log, "===== harness: starting node {} {:?}", self.id, self.args);
        let err = log.try_clone().expect("a log file handle can be cloned");
        let mut cmd = match self.exec_prefix.split_first() {
            None => Command::new(node_binary()),
            Some((program, rest)) => {
                let mut cmd = Command::new(program);
                cmd.args(rest).arg(node_binary());
                cmd
            }
        };
        // The node reads RINGKV_* from the environment; only our flags may configure it.
        for (k, _) in std::env::vars_os() {
            if k.to_string_lossy().starts_with("RINGKV_") {
                cmd.env_remove(k);
            }
        }
        cmd.args(&self.args)
            .env("RINGKV_LOG", std::env::var("RINGKV_TEST_NODE_LOG").unwrap_or_else(|_| "info,openraft=warn".into()))
            .env("NO_COLOR", "1")
            .envs(std::mem::take(&mut *self.next_env.lock()))
            .stdin(Stdio::null())
            .stdout(Stdio::from(log))
            .stderr(Stdio::from(err));
        *child = Some(cmd.spawn().unwrap_or_else(|e| panic!("cannot start node {}: {e}", self.id)));
    }

    /// Whether this harness started the process and has not seen it stop.
    pub fn is_running(&self) -> bool {
        self.child().is_some()
    }

    /// The exit status if the process ended on its own (a crash, a refused config).
    pub fn exited(&self) -> Option<ExitStatus> {
        let mut child = self.child();
        let status = child.as_mut()?.try_wait().ok().flatten()?;
        *child = None;
        Some(status)
    }

    /// Sends `signal` to the running process (SIGSTOP and SIGCONT to pause and resume it).
    /// Panics if it is not running.
    pub fn signal(&self, signal: Signal) {
        let child = self.child();
        let c = child.as_ref().unwrap_or_else(|| panic!("node {} is not running", self.id));
        let pid = Pid::from_raw(i32::try_from(c.id()).expect("pids fit in i32"));
        kill(pid, signal).unwrap_or_else(|e| panic!("{signal} to node {}: {e}", self.id));
    }

    /// The running process's pid.
    pub fn pid(&self) -> Option<u32> {
        self.child().as_ref().map(Child::id)
    }

    /// SIGKILL, then reap. A no-op if the process is not running.
    pub fn kill(&self) {
        if let Some(mut c) = self.child().take() {
            let _ = c.kill();
            let _ = c.wait();
        }
    }

    /// SIGTERM, then wait up to `timeout` for the process to exit and return its status.
    /// Panics (after a SIGKILL) if it does not exit in time.
    pub async fn terminate(&self, timeout: Duration) -> ExitStatus {
        let pid = {
            let child = self.child();
            let c = child.as_ref().unwrap_or_else(|| panic!("node {} is not running", self.id));
            Pid::from_raw(i32::try_from(c.id()).expect("pids fit in i32"))
        };
        kill(pid, Signal::SIGTERM).unwrap_or_else(|e| panic!("SIGTERM to node {}: {e}", self.id));
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            if let Some(status) = self.exited() {
                return status;
            }
            if tokio::time::Instant::now() >= deadline {
                self.kill();
                panic!("node {} did not exit within {timeout:?} of SIGTERM", self.id);
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    }

    /// The last `lines` lines of the node's log, leaving out openraft's per-attempt
    /// complaints about unreachable peers (a killed node makes hundreds of them).
    pub fn log_tail(&self, lines: usize) -> String {
        let text = self.log();
        let all: Vec<&str> = text
            .lines()
            .filter(|l| !(l.contains("openraft::") && (l.contains("nreachable") || l.contains("backoff"))))
            .collect();
        all[all.len().saturating_sub(lines)..].join("\n")
    }

    /// The whole log.
    pub fn log(&self) -> String {
        std::fs::read(&self.log_path).map(|b| String::from_utf8_lossy(&b).into_owned()).unwrap_or_default()
    }
}

impl Drop for NodeProcess {
    fn drop(&mut self) {
        self.kill();
    }
}
