//! The WAL's only door to the disk: a small file-system trait, the real implementation,
//! and a fault-injecting wrapper for tests (failed writes and fsyncs, a full disk, slow
//! fsyncs, and a count of bytes written but not yet synced). With the `failpoints`
//! feature, [`ControlledFs`] lets a multi-process test inject faults into a running node
//! through a control file (`RINGKV_WAL_FAULTS`).

use parking_lot::{Mutex, MutexGuard};
use std::collections::HashMap;
use std::fs::{File, OpenOptions};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

/// File-system operations the WAL needs, and no more.
pub trait FileSystem: Send + Sync {
    /// Creates `dir` and its parents if missing.
    fn create_dir_all(&self, dir: &Path) -> io::Result<()>;
    /// Paths of the entries directly inside `dir`, in no particular order.
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>>;
    /// Creates a new, empty file for appending; fails if it exists.
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Opens an existing file for appending at its end.
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>>;
    /// Reads a whole file.
    fn read(&self, path: &Path) -> io::Result<Vec<u8>>;
    /// Deletes a file.
    fn remove(&self, path: &Path) -> io::Result<()>;
    /// Cuts a file to `len` bytes; durable when this returns.
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()>;
    /// Makes creations and deletions of entries in `dir` durable.
    fn sync_dir(&self, dir: &Path) -> io::Result<()>;
}

/// An append-only file.
pub trait WalFile: Send {
    /// Appends all of `buf`. After an error the file's length is unknown (part of `buf`
    /// may be there): [`WalFile::set_len`] cuts it back.
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()>;
    /// fdatasync: everything appended so far is durable when this returns Ok.
    fn sync_data(&mut self) -> io::Result<()>;
    /// Cuts the file back to `len` bytes (what a failed append may have left after it) and
    /// makes that durable; later appends go after `len`.
    fn set_len(&mut self, len: u64) -> io::Result<()>;
    /// Current length in bytes.
    fn len(&self) -> u64;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The real file system.
#[derive(Debug, Default, Clone, Copy)]
pub struct RealFs;

struct RealFile {
    file: File,
    len: u64,
}

impl FileSystem for RealFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        if dir.is_dir() {
            return Ok(());
        }
        std::fs::create_dir_all(dir)?;
        // The new directory's own entry must survive a crash too.
        match dir.parent() {
            Some(parent) if !parent.as_os_str().is_empty() => self.sync_dir(parent),
            _ => Ok(()),
        }
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        std::fs::read_dir(dir)?.map(|entry| Ok(entry?.path())).collect()
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().append(true).create_new(true).open(path)?;
        Ok(Box::new(RealFile { file, len: 0 }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let file = OpenOptions::new().append(true).open(path)?;
        let len = file.metadata()?.len();
        Ok(Box::new(RealFile { file, len }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        std::fs::read(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        std::fs::remove_file(path)
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        let file = OpenOptions::new().write(true).open(path)?;
        file.set_len(len)?;
        file.sync_all()
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        File::open(dir)?.sync_all()
    }
}

impl WalFile for RealFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        self.file.write_all(buf)?;
        self.len += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        self.file.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.file.set_len(len)?;
        // fdatasync covers the size, which is what reading the records back needs.
        self.file.sync_data()?;
        self.len = len;
        Ok(())
    }

    fn len(&self) -> u64 {
        self.len
    }
}

/// Wraps another file system and fails chosen operations on demand. Clones share state,
/// so a test keeps one clone to arm faults and read counters while the WAL uses another.
#[derive(Clone)]
pub struct FaultyFs {
    inner: Arc<dyn FileSystem>,
    state: Arc<Mutex<FaultState>>,
}

#[derive(Default)]
struct FaultState {
    /// errno, and how many bytes of the write land before it fails.
    next_write_error: Option<(i32, usize)>,
    next_sync_error: Option<i32>,
    sync_latency: Duration,
    file_writes: u64,
    file_syncs: u64,
    /// Bytes written to each file since its last successful sync.
    unsynced: HashMap<PathBuf, u64>,
}

struct FaultyFile {
    inner: Box<dyn WalFile>,
    path: PathBuf,
    state: Arc<Mutex<FaultState>>,
}

impl FaultyFs {
    /// Wraps `inner`; no fault is armed.
    pub fn new(inner: Arc<dyn FileSystem>) -> Self {
        FaultyFs { inner, state: Arc::default() }
    }

    /// Wraps the real file system.
    pub fn real() -> Self {
        Self::new(Arc::new(RealFs))
    }

    /// The next file write fails with this errno (e.g. `libc::EIO`, `libc::ENOSPC`) and
    /// writes nothing.
    pub fn fail_next_write(&self, errno: i32) {
        self.lock().next_write_error = Some((errno, 0));
    }

    /// The next file write puts its first `written` bytes in the file, then fails with
    /// this errno: a disk that fills up in the middle of a write.
    pub fn fail_next_write_partly(&self, errno: i32, written: usize) {
        self.lock().next_write_error = Some((errno, written));
    }

    /// The next file sync fails with this errno.
    pub fn fail_next_sync(&self, errno: i32) {
        self.lock().next_sync_error = Some(errno);
    }

    /// Every file sync takes at least this long, like a real disk.
    pub fn set_sync_latency(&self, latency: Duration) {
        self.lock().sync_latency = latency;
    }

    /// Successful file writes so far.
    pub fn file_writes(&self) -> u64 {
        self.lock().file_writes
    }

    /// Successful file syncs so far (directory syncs not counted).
    pub fn file_syncs(&self) -> u64 {
        self.lock().file_syncs
    }

    /// Bytes written to any file and not synced since.
    pub fn unsynced_bytes(&self) -> u64 {
        self.lock().unsynced.values().sum()
    }

    fn lock(&self) -> MutexGuard<'_, FaultState> {
        lock(&self.state)
    }
}

fn lock(state: &Mutex<FaultState>) -> MutexGuard<'_, FaultState> {
    state.lock()
}

impl FileSystem for FaultyFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        self.inner.create_dir_all(dir)
    }

    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        self.inner.list(dir)
    }

    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let inner = self.inner.create(path)?;
        Ok(Box::new(FaultyFile { inner, path: path.to_path_buf(), state: self.state.clone() }))
    }

    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        let inner = self.inner.open_append(path)?;
        Ok(Box::new(FaultyFile { inner, path: path.to_path_buf(), state: self.state.clone() }))
    }

    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        self.inner.read(path)
    }

    fn remove(&self, path: &Path) -> io::Result<()> {
        self.inner.remove(path)?;
        self.lock().unsynced.remove(path);
        Ok(())
    }

    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        self.inner.truncate(path, len)
    }

    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        self.inner.sync_dir(dir)
    }
}

impl WalFile for FaultyFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        let armed = lock(&self.state).next_write_error.take();
        if let Some((errno, written)) = armed {
            let part = &buf[..written.min(buf.len())];
            if !part.is_empty() {
                self.inner.write_all(part)?;
                *lock(&self.state).unsynced.entry(self.path.clone()).or_default() += part.len() as u64;
            }
            return Err(io::Error::from_raw_os_error(errno));
        }
        self.inner.write_all(buf)?;
        let mut state = lock(&self.state);
        state.file_writes += 1;
        *state.unsynced.entry(self.path.clone()).or_default() += buf.len() as u64;
        Ok(())
    }

    fn sync_data(&mut self) -> io::Result<()> {
        let latency = {
            let mut state = lock(&self.state);
            if let Some(errno) = state.next_sync_error.take() {
                return Err(io::Error::from_raw_os_error(errno));
            }
            state.sync_latency
        };
        if !latency.is_zero() {
            std::thread::sleep(latency); // simulated device latency, not a test wait
        }
        self.inner.sync_data()?;
        let mut state = lock(&self.state);
        state.file_syncs += 1;
        state.unsynced.remove(&self.path);
        Ok(())
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)?;
        lock(&self.state).unsynced.remove(&self.path);
        Ok(())
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

/// The environment variable that names the control file of [`ControlledFs`].
pub const FAULTS_ENV: &str = "RINGKV_WAL_FAULTS";

/// The file system a node's WAL uses: the real one; with the `failpoints` feature and
/// [`FAULTS_ENV`] set, [`ControlledFs`] over it. Without the feature the variable is
/// ignored (with a warning): fault injection is never a production path.
pub fn for_node() -> Arc<dyn FileSystem> {
    let Some(control) = std::env::var_os(FAULTS_ENV) else { return Arc::new(RealFs) };
    #[cfg(feature = "failpoints")]
    {
        tracing::warn!(control = %Path::new(&control).display(), "wal: test-only fault injection is on");
        Arc::new(ControlledFs::new(PathBuf::from(control)))
    }
    #[cfg(not(feature = "failpoints"))]
    {
        tracing::warn!(
            control = %Path::new(&control).display(),
            "{FAULTS_ENV} is set but this build has no fault injection (the `failpoints` feature); ignored"
        );
        Arc::new(RealFs)
    }
}

/// The real file system, except that each file write and fsync first reads a small
/// control file and does what it says (the multi-process tests write it while the node
/// runs; only with the `failpoints` feature):
/// - `fsync-error`: the fsync fails with EIO, syncing nothing;
/// - `slow-fsync MS`: the fsync first sleeps MS milliseconds;
/// - `write-enospc`: the write fails with ENOSPC, writing nothing;
/// - anything else, nothing, or no file: no fault.
#[cfg(feature = "failpoints")]
pub struct ControlledFs {
    control: Arc<PathBuf>,
}

#[cfg(feature = "failpoints")]
struct ControlledFile {
    inner: Box<dyn WalFile>,
    control: Arc<PathBuf>,
}

/// What the control file asks for.
#[cfg(feature = "failpoints")]
#[derive(Debug, PartialEq, Eq)]
enum Fault {
    None,
    FsyncError,
    SlowFsync(Duration),
    WriteEnospc,
}

#[cfg(feature = "failpoints")]
fn parse_fault(text: &str) -> Fault {
    let mut words = text.split_whitespace();
    match (words.next(), words.next().and_then(|w| w.parse::<u64>().ok())) {
        (Some("fsync-error"), _) => Fault::FsyncError,
        (Some("slow-fsync"), Some(ms)) => Fault::SlowFsync(Duration::from_millis(ms)),
        (Some("write-enospc"), _) => Fault::WriteEnospc,
        _ => Fault::None,
    }
}

#[cfg(feature = "failpoints")]
impl ControlledFs {
    /// The real file system, faults as `control` says.
    pub fn new(control: PathBuf) -> Self {
        ControlledFs { control: Arc::new(control) }
    }

    fn wrap(&self, inner: Box<dyn WalFile>) -> Box<dyn WalFile> {
        Box::new(ControlledFile { inner, control: self.control.clone() })
    }
}

#[cfg(feature = "failpoints")]
impl ControlledFile {
    fn fault(&self) -> Fault {
        std::fs::read_to_string(&*self.control).map_or(Fault::None, |t| parse_fault(&t))
    }
}

#[cfg(feature = "failpoints")]
impl FileSystem for ControlledFs {
    fn create_dir_all(&self, dir: &Path) -> io::Result<()> {
        RealFs.create_dir_all(dir)
    }
    fn list(&self, dir: &Path) -> io::Result<Vec<PathBuf>> {
        RealFs.list(dir)
    }
    fn create(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(self.wrap(RealFs.create(path)?))
    }
    fn open_append(&self, path: &Path) -> io::Result<Box<dyn WalFile>> {
        Ok(self.wrap(RealFs.open_append(path)?))
    }
    fn read(&self, path: &Path) -> io::Result<Vec<u8>> {
        RealFs.read(path)
    }
    fn remove(&self, path: &Path) -> io::Result<()> {
        RealFs.remove(path)
    }
    fn truncate(&self, path: &Path, len: u64) -> io::Result<()> {
        RealFs.truncate(path, len)
    }
    fn sync_dir(&self, dir: &Path) -> io::Result<()> {
        RealFs.sync_dir(dir)
    }
}

#[cfg(feature = "failpoints")]
impl WalFile for ControlledFile {
    fn write_all(&mut self, buf: &[u8]) -> io::Result<()> {
        if self.fault() == Fault::WriteEnospc {
            return Err(io::Error::from_raw_os_error(libc::ENOSPC));
        }
        self.inner.write_all(buf)
    }

    fn sync_data(&mut self) -> io::Result<()> {
        match self.fault() {
            Fault::FsyncError => return Err(io::Error::from_raw_os_error(libc::EIO)),
            Fault::SlowFsync(d) => std::thread::sleep(d), // the injected device latency
            Fault::None | Fault::WriteEnospc => {}
        }
        self.inner.sync_data()
    }

    fn set_len(&mut self, len: u64) -> io::Result<()> {
        self.inner.set_len(len)
    }

    fn len(&self) -> u64 {
        self.inner.len()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What every `FileSystem` must do for the WAL; run against each implementation.
    fn conformance(fs: &dyn FileSystem) {
        let tmp = tempfile::tempdir().expect("tempdir");
        let dir = tmp.path().join("a").join("b");
        fs.create_dir_all(&dir).expect("create dir");
        fs.create_dir_all(&dir).expect("create dir is idempotent");
        let path = dir.join("f");

        let mut file = fs.create(&path).expect("create");
        assert!(fs.create(&path).is_err(), "create must not clobber an existing file");
        file.write_all(b"hello ").expect("write");
        file.sync_data().expect("sync");
        assert_eq!(file.len(), 6);
        drop(file);

        let mut file = fs.open_append(&path).expect("open_append");
        assert_eq!(file.len(), 6, "open_append reports the existing length");
        file.write_all(b"world").expect("append");
        file.sync_data().expect("sync");
        assert_eq!(fs.read(&path).expect("read"), b"hello world");
        assert_eq!(fs.list(&dir).expect("list"), vec![path.clone()]);

        fs.truncate(&path, 5).expect("truncate");
        assert_eq!(fs.read(&path).expect("read"), b"hello");
        fs.sync_dir(&dir).expect("sync dir");
        fs.remove(&path).expect("remove");
        assert!(fs.list(&dir).expect("list").is_empty());
        assert!(fs.open_append(&path).is_err(), "open_append needs an existing file");
    }

    #[test]
    fn real_fs_conforms() {
        conformance(&RealFs);
    }

    #[test]
    fn faulty_fs_without_armed_faults_conforms() {
        conformance(&FaultyFs::real());
    }

    #[cfg(feature = "failpoints")]
    #[test]
    fn controlled_fs_without_a_control_file_conforms_and_faults_as_the_file_says() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let control = tmp.path().join("faults");
        let fs = ControlledFs::new(control.clone());
        conformance(&fs);

        let cases = [
            ("", Fault::None),
            ("fsync-error\n", Fault::FsyncError),
            ("slow-fsync 300", Fault::SlowFsync(Duration::from_millis(300))),
            ("slow-fsync", Fault::None),
            ("write-enospc", Fault::WriteEnospc),
            ("garbage", Fault::None),
        ];
        for (text, fault) in cases {
            assert_eq!(parse_fault(text), fault, "{text:?}");
        }
        let mut file = fs.create(&tmp.path().join("f")).expect("create");
        std::fs::write(&control, "write-enospc").expect("control");
        assert_eq!(file.write_all(b"x").expect_err("enospc").kind(), io::ErrorKind::StorageFull);
        std::fs::write(&control, "fsync-error").expect("control");
        file.write_all(b"x").expect("writes pass under fsync-error");
        assert_eq!(file.sync_data().expect_err("eio").raw_os_error(), Some(libc::EIO));
        std::fs::write(&control, "").expect("control");
        file.sync_data().expect("no fault");
    }

    #[test]
    fn faulty_fs_fails_only_the_armed_operation_once() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let fs = FaultyFs::real();
        let mut file = fs.create(&tmp.path().join("f")).expect("create");

        fs.fail_next_write(libc::ENOSPC);
        let err = file.write_all(b"abc").expect_err("armed write fails");
        assert_eq!(err.kind(), io::ErrorKind::StorageFull);
        assert_eq!(file.len(), 0, "a failed injected write writes nothing");
        file.write_all(b"abc").expect("only the next write fails");
        assert_eq!(fs.unsynced_bytes(), 3);

        fs.fail_next_sync(libc::EIO);
        assert_eq!(file.sync_data().expect_err("armed sync fails").raw_os_error(), Some(libc::EIO));
        assert_eq!((fs.file_syncs(), fs.unsynced_bytes()), (0, 3));
        file.sync_data().expect("only the next sync fails");
        assert_eq!((fs.file_writes(), fs.file_syncs(), fs.unsynced_bytes()), (1, 1, 0));

        fs.fail_next_write_partly(libc::ENOSPC, 2);
        file.write_all(b"defg").expect_err("armed write fails");
        assert_eq!((file.len(), fs.unsynced_bytes()), (5, 2), "two bytes landed before the error");
        file.set_len(3).expect("cut back, durably");
        assert_eq!((file.len(), fs.unsynced_bytes()), (3, 0));
        assert_eq!(fs.read(&tmp.path().join("f")).expect("read"), b"abc");
    }
}
