//! Errors of the WAL, named for what the caller should do about them.

use std::io;
use std::path::PathBuf;
use std::sync::Arc;

/// Everything the WAL can fail with.
///
/// `Clone` because one failed batch answers many waiters with the same error, and a
/// failed WAL keeps answering later submits with the error that broke it.
#[derive(thiserror::Error, Debug, Clone)]
pub enum Error {
    /// The file system failed. After a failed write or fsync the WAL refuses further
    /// writes: the node should stop serving from this WAL and restart (recovery replays
    /// whatever did reach the disk). `WalOptions::on_failure` is told.
    #[error("wal I/O error: {0}")]
    Io(Arc<io::Error>),
    /// Bytes on disk that the WAL did not write, or a format it does not read. Needs an
    /// operator: open() refuses rather than silently dropping acknowledged records.
    #[error("wal corruption in {} at byte {offset}: {reason}", segment.display())]
    Corruption { segment: PathBuf, offset: u64, reason: String },
    /// The disk (or quota) is full: nothing of this submit was written (the part of its
    /// batch that reached the file was cut off again) and the WAL stays usable. Submit
    /// again once space returns. (Where cutting it off failed, the WAL fails with `Io`.)
    #[error("wal disk is full")]
    Full,
    /// The WAL was closed; nothing more is accepted.
    #[error("wal is closed")]
    Closed,
    /// One record is larger than the format allows; nothing of that submit was written
    /// and the WAL stays usable. A caller bug (entries must be split or bounded).
    #[error("wal record of {len} bytes exceeds the maximum of {max} bytes")]
    TooLarge { len: u64, max: u64 },
}

impl Error {
    /// A bounded label for metrics (`ringkv_wal_errors_total{kind=...}`).
    pub fn metric_label(&self) -> &'static str {
        match self {
            Error::Io(_) => "io",
            Error::Corruption { .. } => "corruption",
            Error::Full => "full",
            Error::Closed => "closed",
            Error::TooLarge { .. } => "too_large",
        }
    }
}

impl From<io::Error> for Error {
    fn from(err: io::Error) -> Self {
        let full = err.kind() == io::ErrorKind::StorageFull
            || matches!(err.raw_os_error(), Some(libc::ENOSPC) | Some(libc::EDQUOT));
        if full {
            Error::Full
        } else {
            Error::Io(Arc::new(err))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn enospc_and_quota_map_to_full_and_others_to_io() {
        assert!(matches!(Error::from(io::Error::from_raw_os_error(libc::ENOSPC)), Error::Full));
        assert!(matches!(Error::from(io::Error::from_raw_os_error(libc::EDQUOT)), Error::Full));
        let io = Error::from(io::Error::from_raw_os_error(libc::EIO));
        assert!(matches!(io, Error::Io(_)));
        assert_eq!(io.clone().metric_label(), "io");
    }
}
