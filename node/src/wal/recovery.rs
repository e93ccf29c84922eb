//! Replay on open: read every segment in order, rebuild each shard's log, cut a torn
//! tail off the last segment, and refuse to open on anything else that does not decode.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use super::format::{self, Record};
use super::fs::FileSystem;
use super::segment::{self, SegmentInfo, Segments};
use super::{Error, Recovered, ShardLog};

/// The result of replay: what the caller gets, and what the writer needs to go on.
pub(super) struct Replayed {
    pub recovered: Recovered,
    pub segments: Segments,
}

impl ShardLog {
    /// Applies one record; records must be applied in log order.
    pub(crate) fn apply(&mut self, record: Record) {
        match record {
            Record::Vote(vote) => self.vote = Some(vote),
            Record::Committed(committed) => self.committed = Some(committed),
            Record::Entry { index, data } => {
                self.entries.insert(index, data);
            }
            Record::Truncate { since } => {
                self.entries.split_off(&since);
            }
            Record::Purge { upto, data } => {
                self.entries = match upto.checked_add(1) {
                    Some(first_kept) => self.entries.split_off(&first_kept),
                    None => BTreeMap::new(),
                };
                self.purged = Some((upto, data));
            }
            Record::Forget => *self = ShardLog::default(),
        }
    }
}

pub(super) fn replay(fs: &dyn FileSystem, dir: &Path) -> Result<Replayed, Error> {
    let files = segment::list(fs, dir)?;
    for pair in files.windows(2) {
        if let [(prev, _), (seq, path)] = pair {
            if prev.checked_add(1) != Some(*seq) {
                return Err(corruption(path, 0, format!("segments after {prev} up to {seq} are missing")));
            }
        }
    }

    let mut shards = BTreeMap::new();
    let mut segments = Segments::default();
    let mut torn_tail = None;
    for (i, (seq, path)) in files.iter().enumerate() {
        let is_last = i + 1 == files.len();
        let data = fs.read(path)?;
        segments.push(SegmentInfo::new(*seq, path.clone(), 0));
        let end = replay_segment(path, &data, is_last, &mut shards, &mut segments)?;
        if end < data.len() {
            // Only reachable for the last segment: these bytes were never acknowledged,
            // since the batch holding them never finished its fsync.
            tracing::warn!(segment = %path.display(), offset = end, dropped_bytes = data.len() - end, "wal: truncating torn tail");
            fs.truncate(path, end as u64)?;
            torn_tail = Some((path.clone(), end as u64));
        }
        if let Some(active) = segments.active_mut() {
            active.bytes = end as u64;
        }
    }
    tracing::info!(segments = files.len(), shards = shards.len(), "wal: replayed");
    Ok(Replayed { recovered: Recovered { shards, torn_tail }, segments })
}

/// Replays one segment and returns the offset where its valid records end.
fn replay_segment(
    path: &Path,
    data: &[u8],
    is_last: bool,
    shards: &mut BTreeMap<u32, ShardLog>,
    segments: &mut Segments,
) -> Result<usize, Error> {
    if let Err(reason) = format::check_header(data) {
        if is_last && format::is_unwritten_header(data) {
            return Ok(0); // crashed while creating it; the writer writes the header again
        }
        return Err(corruption(path, 0, reason));
    }
    let mut at = format::HEADER_LEN;
    while at < data.len() {
        match format::decode_record(&data[at..]) {
            Ok(decoded) => {
                match decoded.record {
                    Record::Entry { index, .. } => segments.note_entry(decoded.shard, index),
                    Record::Truncate { since } => segments.note_truncate(decoded.shard, since),
                    Record::Forget => segments.note_truncate(decoded.shard, 0),
                    _ => {}
                }
                shards.entry(decoded.shard).or_default().apply(decoded.record);
                at += decoded.size;
            }
            // A torn write leaves garbage only at the very end; if any valid record
            // follows, the bad bytes were acknowledged data that got damaged.
            Err(err) if is_last && err.may_be_torn() && !format::valid_record_after(data, at) => {
                return Ok(at);
            }
            Err(err) => return Err(corruption(path, at as u64, err.to_string())),
        }
    }
    Ok(at)
}

fn corruption(path: &Path, offset: u64, reason: String) -> Error {
    Error::Corruption { segment: PathBuf::from(path), offset, reason }
}

#[cfg(test)]
mod tests {
    use super::super::tests::util::*;
    use super::super::*;
    use std::fs::OpenOptions;
    use std::io::Write;

    fn write_entries(wal: &Wal, shard: u32, indexes: std::ops::RangeInclusive<u64>) {
        for index in indexes {
            write_sync(wal, shard, vec![entry(index)]).expect("write");
        }
    }

    fn only_segment(dir: &Path) -> PathBuf {
        let segments = segment_files(dir);
        assert_eq!(segments.len(), 1);
        segments[0].clone()
    }

    #[test]
    fn torn_tail_is_truncated_on_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        write_entries(&wal, 1, 1..=3);
        drop(wal);
        let path = only_segment(tmp.path());
        let len = std::fs::metadata(&path).expect("stat").len();
        let cut_at = len - 4; // inside the record of entry 3
        OpenOptions::new().write(true).open(&path).and_then(|f| f.set_len(cut_at)).expect("cut");

        let (wal, recovered) = open(tmp.path());
        let entry3_at = len - record_len(&entry(3));
        assert_eq!(recovered.torn_tail, Some((path.clone(), entry3_at)));
        assert_eq!(indexes(&recovered, 1), vec![1, 2]);
        assert_eq!(std::fs::metadata(&path).expect("stat").len(), entry3_at);

        write_entries(&wal, 1, 3..=4);
        drop(wal);
        let (_wal, recovered) = open(tmp.path());
        assert_eq!(recovered.torn_tail, None);
        assert_eq!(indexes(&recovered, 1), vec![1, 2, 3, 4]);
    }

    #[test]
    fn zero_filled_tail_is_torn_not_corrupt() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        write_entries(&wal, 1, 1..=2);
        drop(wal);
        let path = only_segment(tmp.path());
        let len = std::fs::metadata(&path).expect("stat").len();
        let mut file = OpenOptions::new().append(true).open(&path).expect("open");
        file.write_all(&[0; 4096]).expect("zeros");

        let (_wal, recovered) = open(tmp.path());
        assert_eq!(recovered.torn_tail, Some((path, len)));
        assert_eq!(indexes(&recovered, 1), vec![1, 2]);
    }

    #[test]
    fn corrupt_record_mid_file_refuses_to_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        write_entries(&wal, 1, 1..=5);
        drop(wal);
        let path = only_segment(tmp.path());
        // Entry 2's record starts right after entry 1's; flip its last payload byte.
        let entry2_at = format::HEADER_LEN as u64 + record_len(&entry(1));
        flip_byte(&path, entry2_at + record_len(&entry(2)) - 1);

        match Wal::open(tmp.path(), WalOptions::default()) {
            Err(Error::Corruption { segment, offset, reason }) => {
                assert_eq!((segment, offset), (path, entry2_at), "{reason}");
                assert!(reason.contains("checksum"), "{reason}");
            }
            other => panic!("expected corruption, got {:?}", other.map(|_| ())),
        }
    }

    #[test]
    fn damaged_tail_of_an_older_segment_refuses_to_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open_small(tmp.path(), 256);
        write_entries(&wal, 1, 1..=20);
        drop(wal);
        let segments = segment_files(tmp.path());
        assert!(segments.len() >= 2);
        let first = &segments[0];
        let len = std::fs::metadata(first).expect("stat").len();
        flip_byte(first, len - 1);

        let err = Wal::open(tmp.path(), WalOptions::default()).map(|_| ()).expect_err("corrupt");
        assert!(matches!(&err, Error::Corruption { segment, .. } if segment == first), "{err}");
    }

    #[test]
    fn bad_header_or_missing_segment_refuses_to_open() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open_small(tmp.path(), 256);
        write_entries(&wal, 1, 1..=30);
        drop(wal);
        let segments = segment_files(tmp.path());
        assert!(segments.len() >= 3);

        flip_byte(&segments[0], 0);
        let err = Wal::open(tmp.path(), WalOptions::default()).map(|_| ()).expect_err("bad magic");
        assert!(matches!(&err, Error::Corruption { segment, offset: 0, .. } if *segment == segments[0]), "{err}");

        std::fs::remove_file(&segments[1]).expect("remove");
        let err = Wal::open(tmp.path(), WalOptions::default()).map(|_| ()).expect_err("gap");
        assert!(matches!(&err, Error::Corruption { segment, .. } if *segment == segments[2]), "{err}");
    }

    #[test]
    fn last_segment_torn_inside_its_header_is_reset_and_reused() {
        let tmp = tempfile::tempdir().expect("tempdir");
        let (wal, _) = open(tmp.path());
        write_sync(&wal, 7, vec![Record::Vote(b"v".to_vec()), entry(1)]).expect("write");
        drop(wal);
        let next = segment::segment_path(tmp.path(), 2);
        std::fs::write(&next, &format::MAGIC[..3]).expect("partial header");

        let (wal, recovered) = open(tmp.path());
        assert_eq!(recovered.torn_tail, Some((next.clone(), 0)));
        write_sync(&wal, 7, vec![entry(2)]).expect("write");
        drop(wal);
        let (_wal, recovered) = open(tmp.path());
        assert_eq!(recovered.torn_tail, None);
        assert_eq!(indexes(&recovered, 7), vec![1, 2]);
        assert_eq!(recovered.shards[&7].vote.as_deref(), Some(&b"v"[..]));
    }
}
