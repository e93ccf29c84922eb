//! The on-disk format of a shard's snapshot. Every decision about how a snapshot looks
//! on disk lives in this file; bump `FORMAT_VERSION` (and with it `MAGIC`) when any
//! of it changes.
//!
//! ```text
//! directory  := "snapshot.bin"                the snapshot, if the shard has one
//!               "snapshot.tmp"                 a snapshot being written (overwritten)
//!               "snapshot.initial.tmp"         a split child's first snapshot being
//!                                              written; never trusted after a restart
//! file       := magic:[u8;8] = "RKVSNAP3" | meta_len:u32 LE | meta | body | crc:u32 LE
//!                 the magic's last byte is the version, as an ASCII digit
//!                 meta = SnapshotMeta (postcard), meta_len bytes
//!                 body = the state machine's image (postcard), opaque here
//!                 crc  = CRC-32 (IEEE, crc32fast) of everything before it
//! ```
//!
//! There is no recovery mode: a file that fails any check is refused whole, never read
//! as an empty state (the log before it may already be purged). A file is written under
//! a temporary name, fsynced and renamed into place, so a crash leaves either the old
//! snapshot or the new one.

use std::path::Path;

use super::types::SnapshotMeta;

/// The format version this code writes and the only one it reads.
pub(crate) const FORMAT_VERSION: u8 = 3;
/// First bytes of every snapshot file: a fixed prefix, then [`FORMAT_VERSION`].
pub(crate) const MAGIC: [u8; 8] = *b"RKVSNAP3";
const _: () = assert!(MAGIC[7] == b'0' + FORMAT_VERSION, "the magic ends with the version");
/// The magic without its version byte: a file that has it is a snapshot of another version.
const MAGIC_PREFIX: &[u8] = b"RKVSNAP";
/// Magic and `meta_len`: the smallest header.
const HEADER_LEN: usize = 12;
/// The trailing CRC.
const CRC_LEN: usize = 4;

/// The shard's snapshot.
pub(crate) const SNAP_FILE: &str = "snapshot.bin";
/// A snapshot on its way to [`SNAP_FILE`].
const TMP_FILE: &str = "snapshot.tmp";
/// A split child's first snapshot on its way to disk; never trusted after a restart.
pub const INITIAL_TMP: &str = "snapshot.initial.tmp";

/// How much of a snapshot may be dirty in the page cache at once.
const SYNC_STEP: usize = 8 << 20;

/// An I/O error carrying `e`'s message (the snapshot paths report every failure as I/O).
pub(crate) fn io_err(e: impl std::fmt::Display) -> std::io::Error {
    std::io::Error::other(e.to_string())
}

/// Writes the shard's snapshot in `dir`, replacing the previous one; fsynced (file and
/// rename) before return.
pub(crate) fn write_snapshot_file(dir: &Path, meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let buf = encode_snapshot(meta, body)?;
    let tmp = dir.join(TMP_FILE);
    write_in_steps(&tmp, &buf)?; // durable before it replaces the previous snapshot
    std::fs::rename(&tmp, dir.join(SNAP_FILE))?;
    std::fs::File::open(dir)?.sync_all() // the rename itself is durable
}

/// Writes a split child's first snapshot, fsynced (file and link) before return, unless
/// the shard already wrote a newer one of its own (it serves from memory meanwhile and
/// may snapshot again first): an existing [`SNAP_FILE`] is kept.
pub(crate) fn write_initial_snapshot(dir: &Path, meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<()> {
    std::fs::create_dir_all(dir)?;
    let tmp = dir.join(INITIAL_TMP);
    write_in_steps(&tmp, &encode_snapshot(meta, body)?)?;
    match std::fs::hard_link(&tmp, dir.join(SNAP_FILE)) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {}
        Err(e) => return Err(e),
    }
    std::fs::remove_file(&tmp)?;
    std::fs::File::open(dir)?.sync_all()
}

/// Writes `bytes` to a new file, fsynced before return, syncing every [`SYNC_STEP`]: a
/// large snapshot written in one go and synced at the end fills the page cache, and on
/// common filesystems the WAL's next fsync then waits for all of it (client writes
/// stall for seconds). In steps, WAL fsyncs wait for one step at most; and after each
/// step the writer rests as long as the step took, so a snapshot (always background
/// work) takes at most half of the disk from the WAL's fsyncs.
fn write_in_steps(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut f = std::fs::File::create(path)?;
    let steps = bytes.len().div_ceil(SYNC_STEP);
    for (i, chunk) in bytes.chunks(SYNC_STEP).enumerate() {
        let step = std::time::Instant::now();
        f.write_all(chunk)?;
        f.sync_data()?;
        if i + 1 < steps {
            std::thread::sleep(step.elapsed()); // between steps only: small files go at once
        }
    }
    f.sync_all()
}

/// The bytes of a snapshot file.
fn encode_snapshot(meta: &SnapshotMeta, body: &[u8]) -> std::io::Result<Vec<u8>> {
    let meta_bytes = postcard::to_stdvec(meta).map_err(io_err)?;
    let mut buf = Vec::with_capacity(HEADER_LEN + meta_bytes.len() + body.len() + CRC_LEN);
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&(meta_bytes.len() as u32).to_le_bytes());
    buf.extend_from_slice(&meta_bytes);
    buf.extend_from_slice(body);
    let crc = crc32fast::hash(&buf);
    buf.extend_from_slice(&crc.to_le_bytes());
    Ok(buf)
}

/// Reads the snapshot file in `dir`, if any: its metadata and body. A damaged file is an
/// error, never silently ignored: the log before it may already be purged.
pub(crate) fn read_snapshot_file(dir: &Path) -> std::io::Result<Option<(SnapshotMeta, Vec<u8>)>> {
    let path = dir.join(SNAP_FILE);
    let buf = match std::fs::read(&path) {
        Ok(b) => b,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    decode_snapshot(&buf).map(Some).map_err(|why| io_err(format!("snapshot {} is corrupt: {why}", path.display())))
}

/// Checks and splits the bytes of a snapshot file; the error is a reason for humans.
fn decode_snapshot(buf: &[u8]) -> Result<(SnapshotMeta, Vec<u8>), String> {
    if buf.len() < HEADER_LEN + CRC_LEN {
        return Err(format!("bad header: file truncated to {} bytes", buf.len()));
    }
    let (magic, rest) = buf.split_at(MAGIC.len());
    if magic != MAGIC {
        if magic.starts_with(MAGIC_PREFIX) {
            let version = char::from(magic[MAGIC.len() - 1]).escape_default();
            return Err(format!(
                "bad header: unsupported format version {version} (this build reads {FORMAT_VERSION})"
            ));
        }
        return Err(format!("bad header: bad magic {magic:02x?}"));
    }
    let (content, crc) = buf.split_at(buf.len() - CRC_LEN);
    let crc = u32::from_le_bytes([crc[0], crc[1], crc[2], crc[3]]);
    if crc32fast::hash(content) != crc {
        return Err("checksum mismatch".into());
    }
    let meta_len = u32::from_le_bytes([rest[0], rest[1], rest[2], rest[3]]) as usize;
    let meta_end = HEADER_LEN
        .checked_add(meta_len)
        .filter(|e| *e <= content.len())
        .ok_or_else(|| "bad meta length".to_string())?;
    let meta: SnapshotMeta = postcard::from_bytes(&content[HEADER_LEN..meta_end]).map_err(|_| "bad meta")?;
    Ok((meta, content[meta_end..].to_vec()))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn meta() -> SnapshotMeta {
        let log_id = openraft::LogId::new(openraft::CommittedLeaderId::new(3, 1), 42);
        SnapshotMeta { last_log_id: Some(log_id), last_membership: Default::default(), snapshot_id: "0-3-42-1".into() }
    }

    /// Writes a snapshot with `body` and returns the path of its file.
    fn written(dir: &Path, body: &[u8]) -> std::path::PathBuf {
        write_snapshot_file(dir, &meta(), body).unwrap();
        dir.join(SNAP_FILE)
    }

    fn refusal(dir: &Path) -> String {
        read_snapshot_file(dir).unwrap_err().to_string()
    }

    #[test]
    fn a_snapshot_reads_back_as_written_and_leaves_no_temporary_file() {
        let dir = tempfile::tempdir().unwrap();
        assert!(read_snapshot_file(dir.path()).unwrap().is_none(), "no file: no snapshot, not an error");
        written(dir.path(), b"the body");
        let (got, body) = read_snapshot_file(dir.path()).unwrap().unwrap();
        assert_eq!((got, body), (meta(), b"the body".to_vec()));
        assert!(!dir.path().join(TMP_FILE).exists());

        let next = SnapshotMeta { snapshot_id: "0-3-50-2".into(), ..meta() };
        write_snapshot_file(dir.path(), &next, b"").unwrap();
        assert_eq!(read_snapshot_file(dir.path()).unwrap().unwrap(), (next, Vec::new()), "replaced whole");
    }

    #[test]
    fn the_layout_is_magic_meta_length_meta_body_crc() {
        let dir = tempfile::tempdir().unwrap();
        let bytes = std::fs::read(written(dir.path(), b"body")).unwrap();
        let meta_bytes = postcard::to_stdvec(&meta()).unwrap();
        assert_eq!(&bytes[..8], b"RKVSNAP3");
        assert_eq!(&bytes[8..12], &(meta_bytes.len() as u32).to_le_bytes());
        assert_eq!(&bytes[12..12 + meta_bytes.len()], &meta_bytes[..]);
        let (content, crc) = bytes.split_at(bytes.len() - 4);
        assert!(content.ends_with(b"body"));
        assert_eq!(crc, crc32fast::hash(content).to_le_bytes());
    }

    #[test]
    fn an_initial_snapshot_never_replaces_one_the_shard_wrote_itself() {
        let dir = tempfile::tempdir().unwrap();
        write_initial_snapshot(dir.path(), &meta(), b"first").unwrap();
        assert_eq!(read_snapshot_file(dir.path()).unwrap().unwrap().1, b"first");
        assert!(!dir.path().join(INITIAL_TMP).exists());

        written(dir.path(), b"own");
        write_initial_snapshot(dir.path(), &meta(), b"first, late").unwrap();
        assert_eq!(read_snapshot_file(dir.path()).unwrap().unwrap().1, b"own");
        assert!(!dir.path().join(INITIAL_TMP).exists());
    }

    #[test]
    fn another_version_or_magic_is_refused_by_name() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), b"body");
        let good = std::fs::read(&path).unwrap();

        let mut older = good.clone();
        older[7] = b'2';
        std::fs::write(&path, older).unwrap();
        let err = refusal(dir.path());
        assert!(err.contains("corrupt") && err.contains("unsupported format version 2"), "{err}");

        let mut foreign = good;
        foreign[..8].copy_from_slice(b"RKVWAL\r\n");
        std::fs::write(&path, foreign).unwrap();
        let err = refusal(dir.path());
        assert!(err.contains("bad magic"), "{err}");
    }

    #[test]
    fn a_truncated_file_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), b"some body bytes");
        let good = std::fs::read(&path).unwrap();
        for len in [0, 5, HEADER_LEN, good.len() / 2, good.len() - 1] {
            std::fs::write(&path, &good[..len]).unwrap();
            let err = refusal(dir.path());
            assert!(err.contains("corrupt"), "cut to {len}: {err}");
        }
    }

    #[test]
    fn a_flipped_byte_anywhere_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = written(dir.path(), b"some body bytes");
        let good = std::fs::read(&path).unwrap();
        for at in 0..good.len() {
            let mut bytes = good.clone();
            bytes[at] ^= 0x01;
            std::fs::write(&path, bytes).unwrap();
            let err = refusal(dir.path());
            assert!(err.contains("corrupt"), "byte {at}: {err}");
        }
    }

    #[test]
    fn a_meta_length_past_the_end_is_refused_even_with_a_valid_crc() {
        let meta_bytes = postcard::to_stdvec(&meta()).unwrap();
        let mut buf = encode_snapshot(&meta(), b"").unwrap();
        buf.truncate(buf.len() - CRC_LEN);
        buf[8..12].copy_from_slice(&(meta_bytes.len() as u32 + 1).to_le_bytes());
        let crc = crc32fast::hash(&buf);
        buf.extend_from_slice(&crc.to_le_bytes());
        assert_eq!(decode_snapshot(&buf).unwrap_err(), "bad meta length");
    }
}
