//! A snapshot's bytes, encoded as the state tree is read and decoded pair by pair.
//!
//! The snapshot is the state's key-value pairs in key order, encoded as `restore` reads them
//! (bincode's standard configuration: a varint count, then each pair as two length-prefixed
//! byte strings). Each pair is encoded as soon as the capture's dump hands it over, so a
//! build holds the encoded state once; it used to collect every pair first (which also kept
//! every page of the tree in memory, whatever sled's cache size) and then encode the
//! collection. An install reads the pairs back as slices of the snapshot's bytes
//! ([`for_each_pair`]) instead of decoding a copy of them all.

use openraft::{LogId, StorageError};

use super::capture::Capture;
use super::{read_err, write_err, StoreError};
use crate::state::keys::{dec, meta};
use crate::state::{self, StateError};
use crate::types::NodeId;

/// Room left in front of the pairs for the count, the longest varint bincode writes.
const COUNT_ROOM: usize = 9;
/// The configuration `restore` decodes with (`state::keys::dec`).
const CONFIG: bincode::config::Configuration = bincode::config::standard();

/// Encodes key-value pairs one at a time into the bytes of a `Vec<(bytes, bytes)>`.
pub(crate) struct PairsEncoder {
    buf: Vec<u8>,
    count: u64,
}

impl PairsEncoder {
    pub(crate) fn new() -> Self {
        PairsEncoder {
            buf: vec![0; COUNT_ROOM],
            count: 0,
        }
    }

    /// Appends one pair: each byte string as its length (a varint) and its bytes, which is
    /// what serde's encoding of a `&[u8]` comes to, without a call per byte.
    pub(crate) fn push(&mut self, k: &[u8], v: &[u8]) -> Result<(), StateError> {
        for bytes in [k, v] {
            bincode::encode_into_std_write(bytes.len() as u64, &mut self.buf, CONFIG)
                .map_err(|e| StateError::Encode(e.to_string()))?;
            self.buf.extend_from_slice(bytes);
        }
        self.count += 1;
        Ok(())
    }

    /// The encoded sequence: the count written in front of the pairs (the buffer moves down
    /// by the room the count did not need; no second copy of the pairs is made).
    pub(crate) fn finish(mut self) -> Result<Vec<u8>, StateError> {
        let count = bincode::encode_to_vec(self.count, CONFIG)
            .map_err(|e| StateError::Encode(e.to_string()))?;
        let start = COUNT_ROOM
            .checked_sub(count.len())
            .ok_or_else(|| StateError::Encode(format!("a varint of {} bytes", count.len())))?;
        self.buf[start..COUNT_ROOM].copy_from_slice(&count);
        self.buf.drain(..start);
        Ok(self.buf)
    }
}

/// Hands `f` each pair of a snapshot's bytes, in order, as slices of `data` (nothing is
/// copied). Errors on bytes that are not exactly such a sequence.
pub(crate) fn for_each_pair(
    data: &[u8],
    mut f: impl FnMut(&[u8], &[u8]) -> Result<(), StoreError>,
) -> Result<(), StoreError> {
    let (count, mut at) = varint(data, 0)?;
    for _ in 0..count {
        let (k, next) = bytes(data, at)?;
        let (v, next) = bytes(data, next)?;
        f(k, v)?;
        at = next;
    }
    if at != data.len() {
        return Err(corrupt(format!(
            "{} bytes after its {count} pairs",
            data.len() - at
        )));
    }
    Ok(())
}

/// The varint at `at` and where what follows it starts.
fn varint(data: &[u8], at: usize) -> Result<(u64, usize), StoreError> {
    let rest = data.get(at..).unwrap_or_default();
    let (n, used): (u64, usize) = bincode::decode_from_slice(rest, CONFIG)
        .map_err(|e| corrupt(format!("a length at byte {at}: {e}")))?;
    Ok((n, at + used))
}

/// The length-prefixed byte string at `at` and where what follows it starts.
fn bytes(data: &[u8], at: usize) -> Result<(&[u8], usize), StoreError> {
    let (len, start) = varint(data, at)?;
    let end = usize::try_from(len)
        .ok()
        .and_then(|l| start.checked_add(l))
        .filter(|end| *end <= data.len())
        .ok_or_else(|| {
            corrupt(format!(
                "a string of {len} bytes at byte {start} runs past the end"
            ))
        })?;
    Ok((&data[start..end], end))
}

fn corrupt(what: String) -> StoreError {
    StoreError::State(StateError::Decode(format!("snapshot: {what}")))
}

/// Read the whole tree through `capture` (the state as of its start) and encode it as the
/// key-value pairs that `restore` reads; also how long that took, in ms (the read and the
/// encoding are one pass). Blocking: run off the async runtime.
pub(crate) fn dump_and_encode(
    tree: &sled::Tree,
    capture: Capture,
    applied: Option<LogId<NodeId>>,
) -> Result<(Vec<u8>, u128), StorageError<NodeId>> {
    let t0 = std::time::Instant::now();
    let key = meta(state::meta::APPLIED);
    let mut seen: Option<Vec<u8>> = None;
    let mut out = PairsEncoder::new();
    capture
        .dump::<DumpError>(tree, |k, v| {
            if k == key.as_slice() {
                seen = Some(v.to_vec());
            }
            Ok(out.push(k, v)?)
        })
        .map_err(|e| match e {
            DumpError::Read(e) => read_err(e),
            DumpError::Encode(e) => write_err(e),
        })?;
    // The corrected dump must be the state at the capture's start: its applied log id says
    // so (anything else is a bug in the capture; no wrong snapshot is written).
    let seen: Option<Option<LogId<NodeId>>> = match seen {
        Some(v) => Some(dec(&v).map_err(read_err)?),
        None => None,
    };
    if seen.flatten() != applied {
        return Err(write_err(format!(
            "snapshot dump is not the state at {applied:?} (it says {seen:?})"
        )));
    }
    let data = out.finish().map_err(write_err)?;
    Ok((data, t0.elapsed().as_millis()))
}

/// Why a dump stopped.
#[derive(Debug, thiserror::Error)]
enum DumpError {
    #[error("reading the state: {0}")]
    Read(#[from] sled::Error),
    #[error("encoding the snapshot: {0}")]
    Encode(#[from] StateError),
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::state::keys::enc;

    fn pairs(n: usize, size: usize) -> Vec<(Vec<u8>, Vec<u8>)> {
        (0..n)
            .map(|i| {
                (
                    (i as u64).to_be_bytes().to_vec(),
                    vec![(i % 251) as u8; size],
                )
            })
            .collect()
    }

    #[test]
    fn pairs_encoded_one_at_a_time_are_the_encoding_of_their_sequence() {
        // Counts and lengths whose varint takes 1, 3 and 5 bytes (below 251, below 2^16, above).
        for (n, size) in [
            (0, 0),
            (1, 3),
            (250, 7),
            (251, 0),
            (300, 300),
            (2, 70_000),
            (70_000, 1),
        ] {
            let all = pairs(n, size);
            let mut e = PairsEncoder::new();
            for (k, v) in &all {
                e.push(k, v).unwrap();
            }
            let view: Vec<(&[u8], &[u8])> = all.iter().map(|(k, v)| (&k[..], &v[..])).collect();
            let bytes = e.finish().unwrap();
            assert_eq!(bytes, enc(&view).unwrap(), "{n} pairs of {size} B");
            let mut back = Vec::new();
            for_each_pair(&bytes, |k, v| {
                back.push((k.to_vec(), v.to_vec()));
                Ok(())
            })
            .unwrap();
            assert!(back == all, "{n} pairs of {size} B decoded pair by pair");
        }
    }

    #[test]
    fn bytes_that_are_not_a_whole_sequence_of_pairs_are_refused() {
        let mut e = PairsEncoder::new();
        e.push(b"key", b"value").unwrap();
        let good = e.finish().unwrap();
        let ok = |d: &[u8]| for_each_pair(d, |_, _| Ok(())).is_ok();
        assert!(ok(&good));
        for cut in 0..good.len() {
            assert!(!ok(&good[..cut]), "cut at {cut}");
        }
        let mut longer = good.clone();
        longer.push(0);
        assert!(!ok(&longer));
        // One pair whose key claims far more bytes than there are.
        assert!(!ok(&[1, 253, 255, 255, 255, 255, 255, 255, 255, 127]));
    }
}
