//! Segment files: naming, the in-memory list of live segments, and which of them may be
//! deleted.
//!
//! Invariant that makes deletion safe: every segment but the first one ever written
//! starts (after its header) with a checkpoint of every shard's latest Vote, Committed
//! and Purge records, so deleting older segments never loses that state; and a segment
//! is deleted only when each of its entries is purged by a Purge record that is already
//! durable. Only a prefix of the list is deleted, so the survivors stay contiguous.

use std::collections::HashMap;
use std::io;
use std::path::{Path, PathBuf};

use super::format;
use super::fs::{FileSystem, WalFile};

const SUFFIX: &str = ".wal";
const SEQ_DIGITS: usize = 20;

/// `{seq:020}.wal` inside `dir`.
pub(crate) fn segment_path(dir: &Path, seq: u64) -> PathBuf {
    dir.join(format!("{seq:0width$}{SUFFIX}", width = SEQ_DIGITS))
}

/// The sequence number of a segment file name; `None` for any other file.
pub(crate) fn parse_seq(path: &Path) -> Option<u64> {
    let digits = path.file_name()?.to_str()?.strip_suffix(SUFFIX)?;
    if digits.len() != SEQ_DIGITS || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    digits.parse().ok()
}

/// Segment files in `dir`, oldest first. Other files are ignored.
pub(crate) fn list(fs: &dyn FileSystem, dir: &Path) -> io::Result<Vec<(u64, PathBuf)>> {
    let mut segments: Vec<_> = fs.list(dir)?.into_iter().filter_map(|p| Some((parse_seq(&p)?, p))).collect();
    segments.sort_unstable();
    Ok(segments)
}

/// Creates segment `seq` holding a header followed by `body`, and makes both the file
/// and its directory entry durable before returning.
pub(crate) fn create(
    fs: &dyn FileSystem,
    dir: &Path,
    seq: u64,
    body: &[u8],
) -> io::Result<(PathBuf, Box<dyn WalFile>)> {
    let path = segment_path(dir, seq);
    let mut bytes = Vec::with_capacity(format::HEADER_LEN + body.len());
    format::encode_header(&mut bytes);
    bytes.extend_from_slice(body);
    let mut file = fs.create(&path)?;
    file.write_all(&bytes)?;
    file.sync_data()?;
    fs.sync_dir(dir)?;
    Ok((path, file))
}

/// What the WAL remembers about one segment.
#[derive(Debug)]
pub(crate) struct SegmentInfo {
    pub seq: u64,
    pub path: PathBuf,
    /// Size on disk; for the active segment, as of the last time it was recorded.
    pub bytes: u64,
    /// Per shard, the highest entry index in this segment that no Truncate has deleted.
    max_entry: HashMap<u32, u64>,
}

impl SegmentInfo {
    pub(crate) fn new(seq: u64, path: PathBuf, bytes: u64) -> Self {
        SegmentInfo { seq, path, bytes, max_entry: HashMap::new() }
    }

    /// Shards with entries here that are not purged yet.
    fn pinned_by<'a>(&'a self, purged_upto: &'a dyn Fn(u32) -> Option<u64>) -> impl Iterator<Item = u32> + 'a {
        self.max_entry
            .iter()
            .filter(move |(shard, max)| purged_upto(**shard).is_none_or(|upto| **max > upto))
            .map(|(shard, _)| *shard)
    }
}

/// The live segments, oldest first; the last one is the active (written) segment.
#[derive(Debug, Default)]
pub(crate) struct Segments {
    list: Vec<SegmentInfo>,
}

impl Segments {
    pub(crate) fn push(&mut self, info: SegmentInfo) {
        self.list.push(info);
    }

    pub(crate) fn len(&self) -> usize {
        self.list.len()
    }

    pub(crate) fn active(&self) -> Option<&SegmentInfo> {
        self.list.last()
    }

    pub(crate) fn active_mut(&mut self) -> Option<&mut SegmentInfo> {
        self.list.last_mut()
    }

    /// An entry of `shard` was appended to the active segment.
    pub(crate) fn note_entry(&mut self, shard: u32, index: u64) {
        if let Some(active) = self.list.last_mut() {
            let max = active.max_entry.entry(shard).or_insert(index);
            *max = (*max).max(index);
        }
    }

    /// `shard` deleted its entries from `since` on, in whatever segment they are; they
    /// no longer keep any segment alive.
    pub(crate) fn note_truncate(&mut self, shard: u32, since: u64) {
        for segment in &mut self.list {
            if let Some(max) = segment.max_entry.get_mut(&shard) {
                if *max >= since {
                    match since.checked_sub(1) {
                        Some(below) => *max = below,
                        None => {
                            segment.max_entry.remove(&shard);
                        }
                    }
                }
            }
        }
    }

    /// Sum of segment sizes, counting the active one as `active_len`.
    pub(crate) fn total_bytes(&self, active_len: u64) -> u64 {
        let old: u64 = self.list.iter().rev().skip(1).map(|s| s.bytes).sum();
        old + active_len
    }

    /// How many of the oldest segments hold only purged entries. Never counts the
    /// active segment.
    pub(crate) fn purged_prefix_len(&self, purged_upto: &dyn Fn(u32) -> Option<u64>) -> usize {
        let old = self.list.len().saturating_sub(1);
        self.list[..old].iter().take_while(|s| s.pinned_by(purged_upto).next().is_none()).count()
    }

    /// Deletes the purged prefix, oldest first, syncing the directory after each file so
    /// that a crash can never leave a gap in the sequence. Returns the deleted paths.
    pub(crate) fn delete_purged_prefix(
        &mut self,
        fs: &dyn FileSystem,
        dir: &Path,
        purged_upto: &dyn Fn(u32) -> Option<u64>,
    ) -> io::Result<Vec<PathBuf>> {
        let mut deleted = Vec::new();
        for _ in 0..self.purged_prefix_len(purged_upto) {
            fs.remove(&self.list[0].path)?;
            fs.sync_dir(dir)?;
            deleted.push(self.list.remove(0).path);
        }
        Ok(deleted)
    }

    /// Shards whose unpurged entries keep alive segments older than the newest two.
    pub(crate) fn pinning_shards(&self, purged_upto: &dyn Fn(u32) -> Option<u64>) -> Vec<u32> {
        let old = self.list.len().saturating_sub(2);
        let mut shards: Vec<u32> = self.list[..old].iter().flat_map(|s| s.pinned_by(purged_upto)).collect();
        shards.sort_unstable();
        shards.dedup();
        shards
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn segments(entries: &[&[(u32, u64)]]) -> Segments {
        let mut segments = Segments::default();
        for (seq, entries) in entries.iter().enumerate() {
            segments.push(SegmentInfo::new(seq as u64, PathBuf::from(format!("{seq}")), 0));
            for (shard, index) in entries.iter() {
                segments.note_entry(*shard, *index);
            }
        }
        segments
    }

    #[test]
    fn segment_names_are_zero_padded_and_sort_in_log_order() {
        let dir = Path::new("wal");
        let nine = segment_path(dir, 9);
        let ten = segment_path(dir, 10);
        assert_eq!(nine.file_name().and_then(|n| n.to_str()), Some("00000000000000000009.wal"));
        assert!(nine < ten);
        assert_eq!((parse_seq(&nine), parse_seq(&segment_path(dir, u64::MAX))), (Some(9), Some(u64::MAX)));
        for other in ["9.wal", "0000000000000000000x.wal", "00000000000000000009.tmp", "notes"] {
            assert_eq!(parse_seq(&dir.join(other)), None, "{other}");
        }
    }

    #[test]
    fn only_a_fully_purged_prefix_is_deletable_and_never_the_active_segment() {
        let segs = segments(&[&[(1, 10), (2, 5)], &[(1, 20)], &[(2, 30)], &[(1, 40)]]);
        // Cases: purged index of shard 1 and shard 2 -> deletable prefix length.
        let cases = [
            (None, None, 0),
            (Some(10), None, 0),     // shard 2 still needs segment 0
            (Some(10), Some(5), 1),  // segment 1 still needs shard 1 up to 20
            (Some(20), Some(5), 2),  // segment 2 has shard 2 up to 30
            (Some(40), Some(30), 3), // everything purged: all but the active one
            (Some(9), Some(100), 0),
        ];
        for (p1, p2, expected) in cases {
            let purged = move |shard: u32| if shard == 1 { p1 } else { p2 };
            assert_eq!(segs.purged_prefix_len(&purged), expected, "purged {p1:?} {p2:?}");
        }
    }

    #[test]
    fn truncated_entries_stop_pinning_older_segments() {
        let mut segs = segments(&[&[(1, 1), (1, 50)], &[(1, 60)], &[]]);
        let purged = |_shard: u32| Some(10);
        assert_eq!(segs.purged_prefix_len(&purged), 0);
        segs.note_truncate(1, 11); // entries 11.. are gone; a rewrite lands in the active segment
        assert_eq!(segs.purged_prefix_len(&purged), 2);
        segs.note_truncate(1, 0);
        assert_eq!(segs.pinning_shards(&|_| None), Vec::<u32>::new());
    }

    #[test]
    fn pinning_shards_are_those_holding_segments_older_than_the_newest_two() {
        let segs = segments(&[&[(3, 5), (1, 1)], &[(2, 9)], &[(4, 1)], &[(5, 1)]]);
        let purged = |shard: u32| (shard == 1).then_some(1);
        assert_eq!(segs.pinning_shards(&purged), vec![2, 3]);
        assert!(segments(&[&[(1, 1)], &[(2, 1)]]).pinning_shards(&|_| None).is_empty());
    }
}
