//! The on-disk format of the WAL. Every decision about how bytes look on disk lives in
//! this file; bump [`FORMAT_VERSION`] when any of it changes.
//!
//! ```text
//! directory   := segment*            one file per segment, named "{seq:020}.wal"
//!                                    (u64 seq, zero-padded so names sort in log order)
//! segment     := header record*
//! header      := magic:[u8;8] = "RKVWAL\r\n" | version:u32 LE = 1          12 bytes
//! record      := len:u32 LE | crc:u32 LE | shard:u32 LE | kind:u8 | payload  8 + len bytes
//!                  len = 5 + payload length, and 5 <= len <= MAX_RECORD_LEN
//!                  crc = CRC-32 (IEEE, crc32fast) of shard | kind | payload
//! payload     := by kind
//!                  1 Vote       opaque bytes
//!                  2 Committed  opaque bytes
//!                  3 Entry      index:u64 LE | opaque bytes
//!                  4 Truncate   since:u64 LE
//!                  5 Purge      upto:u64 LE | opaque bytes (the purged log id)
//!                  6 Forget     empty (added later within version 1: older readers refuse
//!                               it as an unknown kind, loudly, never silently)
//! ```
//!
//! Kind 0 and `len` < 5 are never written, so zero-filled space (a preallocated or torn
//! tail) can never decode as a record. Recovery mode: a record that fails to decode in
//! the last segment is a torn tail, and is cut off, only if no valid record follows it
//! (see `recovery.rs`); anywhere else it is corruption.

use super::Error;

/// First bytes of every segment file.
pub(crate) const MAGIC: [u8; 8] = *b"RKVWAL\r\n";
/// The format version this code writes and the only one it reads.
pub(crate) const FORMAT_VERSION: u32 = 1;
/// Size of the segment header.
pub(crate) const HEADER_LEN: usize = 12;
/// `len` and `crc`, the part of a record that `len` does not count.
const FRAME_LEN: usize = 8;
/// shard + kind: the smallest `len`.
const MIN_LEN: usize = 5;
/// Largest `len` accepted. A bigger length field is corruption, never an allocation.
pub(crate) const MAX_RECORD_LEN: usize = 64 << 20;

const KIND_VOTE: u8 = 1;
const KIND_COMMITTED: u8 = 2;
const KIND_ENTRY: u8 = 3;
const KIND_TRUNCATE: u8 = 4;
const KIND_PURGE: u8 = 5;
const KIND_FORGET: u8 = 6;

/// One WAL record of one shard. The WAL never looks inside the opaque bytes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Record {
    /// The shard's vote; the latest one wins.
    Vote(Vec<u8>),
    /// The shard's committed log id; the latest one wins.
    Committed(Vec<u8>),
    /// A Raft log entry; a later entry with the same index replaces it.
    Entry { index: u64, data: Vec<u8> },
    /// Deletes the shard's entries with `index >= since`.
    Truncate { since: u64 },
    /// Deletes the shard's entries with `index <= upto`; `data` (the purged log id) is
    /// kept, the latest one wins.
    Purge { upto: u64, data: Vec<u8> },
    /// The shard's replica left this node: its vote, committed id, purge and entries are
    /// all dropped, as if it had never been here.
    Forget,
}

impl Record {
    fn kind(&self) -> u8 {
        match self {
            Record::Vote(_) => KIND_VOTE,
            Record::Committed(_) => KIND_COMMITTED,
            Record::Entry { .. } => KIND_ENTRY,
            Record::Truncate { .. } => KIND_TRUNCATE,
            Record::Purge { .. } => KIND_PURGE,
            Record::Forget => KIND_FORGET,
        }
    }

    fn payload_len(&self) -> usize {
        match self {
            Record::Vote(data) | Record::Committed(data) => data.len(),
            Record::Entry { data, .. } | Record::Purge { data, .. } => 8 + data.len(),
            Record::Truncate { .. } => 8,
            Record::Forget => 0,
        }
    }
}

/// Appends a segment header.
pub(crate) fn encode_header(buf: &mut Vec<u8>) {
    buf.extend_from_slice(&MAGIC);
    buf.extend_from_slice(&FORMAT_VERSION.to_le_bytes());
}

/// Checks the segment header at the start of `data`; the error is a reason for humans.
pub(crate) fn check_header(data: &[u8]) -> Result<(), String> {
    let (Some(magic), Some(version)) = (data.get(..8), le_u32(data, 8)) else {
        return Err(format!("segment header truncated to {} bytes", data.len()));
    };
    if magic != MAGIC {
        return Err(format!("bad segment magic {magic:02x?}"));
    }
    if version != FORMAT_VERSION {
        return Err(format!("unsupported format version {version}"));
    }
    Ok(())
}

/// True when the file holds nothing but a crash while its header was being written could
/// leave: a strict prefix of a valid header, or only zeros.
pub(crate) fn is_unwritten_header(data: &[u8]) -> bool {
    let mut header = Vec::with_capacity(HEADER_LEN);
    encode_header(&mut header);
    (data.len() < HEADER_LEN && header.starts_with(data)) || data.iter().all(|b| *b == 0)
}

/// Appends one record. Fails, leaving `buf` unchanged, when it exceeds [`MAX_RECORD_LEN`].
pub(crate) fn encode_record(shard: u32, record: &Record, buf: &mut Vec<u8>) -> Result<(), Error> {
    let len = MIN_LEN + record.payload_len();
    if len > MAX_RECORD_LEN {
        return Err(Error::TooLarge { len: len as u64, max: MAX_RECORD_LEN as u64 });
    }
    let start = buf.len();
    buf.reserve(FRAME_LEN + len);
    buf.extend_from_slice(&(len as u32).to_le_bytes());
    buf.extend_from_slice(&[0; 4]); // crc, filled in below
    buf.extend_from_slice(&shard.to_le_bytes());
    buf.push(record.kind());
    match record {
        Record::Vote(data) | Record::Committed(data) => buf.extend_from_slice(data),
        Record::Entry { index: n, data } | Record::Purge { upto: n, data } => {
            buf.extend_from_slice(&n.to_le_bytes());
            buf.extend_from_slice(data);
        }
        Record::Truncate { since } => buf.extend_from_slice(&since.to_le_bytes()),
        Record::Forget => {}
    }
    let crc = crc32fast::hash(&buf[start + FRAME_LEN..]);
    buf[start + 4..start + FRAME_LEN].copy_from_slice(&crc.to_le_bytes());
    Ok(())
}

/// A record decoded from the front of a byte slice.
#[derive(Debug, PartialEq, Eq)]
pub(crate) struct Decoded {
    pub shard: u32,
    pub record: Record,
    /// Bytes the record occupies on disk, frame included.
    pub size: usize,
}

/// Why bytes did not decode as a record.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub(crate) enum DecodeError {
    #[error("record of {need} bytes extends past the end of the file ({have} bytes left)")]
    PastEnd { need: usize, have: usize },
    #[error("record length {0} is out of range")]
    BadLength(u32),
    #[error("record checksum mismatch (stored {stored:#010x}, computed {computed:#010x})")]
    BadChecksum { stored: u32, computed: u32 },
    #[error("unknown record kind {0}")]
    UnknownKind(u8),
    #[error("record of kind {kind} has a malformed payload of {len} bytes")]
    BadPayload { kind: u8, len: usize },
}

impl DecodeError {
    /// Whether an interrupted write can explain the failure. A record whose checksum
    /// matches but whose content is invalid was written like that: never a torn write.
    pub(crate) fn may_be_torn(&self) -> bool {
        matches!(self, DecodeError::PastEnd { .. } | DecodeError::BadLength(_) | DecodeError::BadChecksum { .. })
    }
}

/// Decodes the record at the start of `data`. Never panics, whatever the bytes.
pub(crate) fn decode_record(data: &[u8]) -> Result<Decoded, DecodeError> {
    let body = checked_body(data)?;
    let (Some(shard), Some(&kind)) = (le_u32(body, 0), body.get(4)) else {
        return Err(DecodeError::BadLength(body.len() as u32)); // unreachable: len >= MIN_LEN
    };
    let payload = &body[MIN_LEN..];
    let bad_payload = || DecodeError::BadPayload { kind, len: payload.len() };
    let record = match kind {
        KIND_VOTE => Record::Vote(payload.to_vec()),
        KIND_COMMITTED => Record::Committed(payload.to_vec()),
        KIND_ENTRY => {
            let index = le_u64(payload, 0).ok_or_else(bad_payload)?;
            Record::Entry { index, data: payload[8..].to_vec() }
        }
        KIND_TRUNCATE if payload.len() == 8 => Record::Truncate { since: le_u64(payload, 0).ok_or_else(bad_payload)? },
        KIND_TRUNCATE => return Err(bad_payload()),
        KIND_PURGE => {
            let upto = le_u64(payload, 0).ok_or_else(bad_payload)?;
            Record::Purge { upto, data: payload[8..].to_vec() }
        }
        KIND_FORGET if payload.is_empty() => Record::Forget,
        KIND_FORGET => return Err(bad_payload()),
        other => return Err(DecodeError::UnknownKind(other)),
    };
    Ok(Decoded { shard, record, size: FRAME_LEN + body.len() })
}

/// True if some record with a valid length and checksum starts at any offset after
/// `start`. Used to tell a torn tail (nothing valid after) from corruption.
pub(crate) fn valid_record_after(data: &[u8], start: usize) -> bool {
    let last = data.len().saturating_sub(FRAME_LEN + MIN_LEN);
    (start.saturating_add(1)..=last).any(|at| checked_body(&data[at..]).is_ok())
}

/// Validates frame, length and checksum; returns shard | kind | payload.
fn checked_body(data: &[u8]) -> Result<&[u8], DecodeError> {
    let (Some(len), Some(stored)) = (le_u32(data, 0), le_u32(data, 4)) else {
        return Err(DecodeError::PastEnd { need: FRAME_LEN, have: data.len() });
    };
    let body_len = len as usize;
    if !(MIN_LEN..=MAX_RECORD_LEN).contains(&body_len) {
        return Err(DecodeError::BadLength(len));
    }
    let Some(body) = data.get(FRAME_LEN..FRAME_LEN + body_len) else {
        return Err(DecodeError::PastEnd { need: FRAME_LEN + body_len, have: data.len() });
    };
    let computed = crc32fast::hash(body);
    if computed != stored {
        return Err(DecodeError::BadChecksum { stored, computed });
    }
    Ok(body)
}

fn le_u32(data: &[u8], at: usize) -> Option<u32> {
    Some(u32::from_le_bytes(data.get(at..at.checked_add(4)?)?.try_into().ok()?))
}

fn le_u64(data: &[u8], at: usize) -> Option<u64> {
    Some(u64::from_le_bytes(data.get(at..at.checked_add(8)?)?.try_into().ok()?))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn all_kinds() -> Vec<Record> {
        vec![
            Record::Vote(b"vote".to_vec()),
            Record::Committed(vec![]),
            Record::Entry { index: 7, data: b"entry".to_vec() },
            Record::Entry { index: u64::MAX, data: vec![] },
            Record::Truncate { since: 3 },
            Record::Purge { upto: 2, data: b"log-id".to_vec() },
        ]
    }

    fn encoded(shard: u32, record: &Record) -> Vec<u8> {
        let mut buf = Vec::new();
        encode_record(shard, record, &mut buf).expect("small record encodes");
        buf
    }

    #[test]
    fn every_record_kind_decodes_to_what_was_encoded() {
        let mut buf = Vec::new();
        for (shard, record) in all_kinds().iter().enumerate() {
            encode_record(shard as u32, record, &mut buf).expect("small record encodes");
        }
        let mut at = 0;
        for (shard, record) in all_kinds().into_iter().enumerate() {
            let decoded = decode_record(&buf[at..]).expect("valid record");
            assert_eq!((decoded.shard, &decoded.record), (shard as u32, &record));
            at += decoded.size;
        }
        assert_eq!(at, buf.len());
    }

    #[test]
    fn record_layout_is_len_crc_shard_kind_payload() {
        let buf = encoded(0x0102_0304, &Record::Truncate { since: 9 });
        assert_eq!(&buf[0..4], &13u32.to_le_bytes());
        assert_eq!(&buf[4..8], &crc32fast::hash(&buf[8..]).to_le_bytes());
        assert_eq!(&buf[8..12], &0x0102_0304u32.to_le_bytes());
        assert_eq!(buf[12], KIND_TRUNCATE);
        assert_eq!(&buf[13..], &9u64.to_le_bytes());
    }

    #[test]
    fn any_single_bit_flip_is_detected() {
        let buf = encoded(4, &Record::Entry { index: 11, data: b"hello".to_vec() });
        for bit in 0..buf.len() * 8 {
            let mut bad = buf.clone();
            bad[bit / 8] ^= 1 << (bit % 8);
            assert!(decode_record(&bad).is_err(), "flip of bit {bit} went unnoticed");
        }
    }

    #[test]
    fn length_above_maximum_is_rejected_without_allocating() {
        let mut buf = encoded(1, &Record::Vote(vec![1]));
        buf[0..4].copy_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(decode_record(&buf), Err(DecodeError::BadLength(u32::MAX)));
        let mut out = Vec::new();
        let huge = Record::Vote(vec![0; MAX_RECORD_LEN]);
        assert!(matches!(encode_record(1, &huge, &mut out), Err(Error::TooLarge { .. })));
        assert!(out.is_empty());
    }

    #[test]
    fn checksummed_but_malformed_records_are_not_mistaken_for_torn_writes() {
        let mut buf = encoded(1, &Record::Truncate { since: 1 });
        buf[12] = 99; // unknown kind, then fix the checksum
        let crc = crc32fast::hash(&buf[8..]);
        buf[4..8].copy_from_slice(&crc.to_le_bytes());
        let err = decode_record(&buf).expect_err("unknown kind");
        assert_eq!(err, DecodeError::UnknownKind(99));
        assert!(!err.may_be_torn());
    }

    #[test]
    fn arbitrary_bytes_never_panic_the_decoder() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let valid: Vec<u8> = all_kinds().iter().flat_map(|r| encoded(3, r)).collect();
        for _ in 0..20_000 {
            let mut data = if rng.random_bool(0.5) {
                valid.clone()
            } else {
                (0..rng.random_range(0..64)).map(|_| rng.random()).collect()
            };
            for _ in 0..rng.random_range(0..4) {
                if !data.is_empty() {
                    let at = rng.random_range(0..data.len());
                    data[at] = rng.random();
                }
            }
            data.truncate(rng.random_range(0..=data.len()));
            let _ = decode_record(&data);
            let _ = check_header(&data);
            let _ = valid_record_after(&data, rng.random_range(0..=data.len() + 1));
        }
    }

    #[test]
    fn header_has_magic_and_version() {
        let mut header = Vec::new();
        encode_header(&mut header);
        assert_eq!(header.len(), HEADER_LEN);
        assert_eq!(check_header(&header), Ok(()));
        let mut other_version = header.clone();
        other_version[8] = 2;
        assert!(check_header(&other_version).is_err_and(|e| e.contains("version 2")));
        let mut bad_magic = header.clone();
        bad_magic[0] = b'X';
        assert!(check_header(&bad_magic).is_err());
        assert!(is_unwritten_header(&header[..5]) && is_unwritten_header(&[0; 40]));
        assert!(!is_unwritten_header(&bad_magic[..5]));
    }
}
