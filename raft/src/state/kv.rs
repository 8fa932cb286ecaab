//! The ordered key-value abstraction the state logic runs on.
//!
//! The state machine logic only needs point reads, prefix scans and buffered writes. On disk it
//! runs over a sled tree, in unit tests over [`MemKv`]; in both cases writes go through an
//! [`Overlay`] whose changes are committed atomically after a batch of entries is applied
//! (on disk: `store/redo.rs`).

use std::collections::BTreeMap;
use std::ops::Bound;

use super::StateError;

/// A key-value pair as owned bytes.
pub type Pair = (Vec<u8>, Vec<u8>);

/// An overlay's buffered changes: each key's new value (`None` = delete).
pub type Changes = BTreeMap<Vec<u8>, Option<Vec<u8>>>;

/// Iterator over pairs (fallible, as on-disk reads can fail).
pub type PairIter<'a> = Box<dyn Iterator<Item = Result<Pair, StateError>> + 'a>;

/// Read access to an ordered key-value store.
pub trait KvRead {
    /// The value of `key`.
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError>;
    /// Pairs whose key starts with `prefix`: ascending from `from` (or the prefix start) when
    /// `rev` is false, descending from the end of the prefix when `rev` is true (`from` ignored).
    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>, rev: bool) -> PairIter<'a>;
}

/// Buffered write access.
pub trait Kv: KvRead {
    /// Set `key` to `value`.
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>);
    /// Remove `key`.
    fn del(&mut self, key: Vec<u8>);
}

/// The smallest key greater than every key starting with `prefix` (None: unbounded).
pub fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < u8::MAX {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn bounds(prefix: &[u8], from: Option<&[u8]>, rev: bool) -> (Bound<Vec<u8>>, Bound<Vec<u8>>) {
    let start = match from {
        Some(f) if !rev && f > prefix => f.to_vec(),
        _ => prefix.to_vec(),
    };
    let end = match prefix_end(prefix) {
        Some(e) => Bound::Excluded(e),
        None => Bound::Unbounded,
    };
    (Bound::Included(start), end)
}

/// An in-memory store (unit tests, and a reference for the on-disk one).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MemKv {
    /// The pairs.
    pub map: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl KvRead for MemKv {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        Ok(self.map.get(key).cloned())
    }

    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>, rev: bool) -> PairIter<'a> {
        let range = self.map.range(bounds(prefix, from, rev));
        let map = |(k, v): (&Vec<u8>, &Vec<u8>)| Ok((k.clone(), v.clone()));
        if rev {
            Box::new(range.rev().map(map))
        } else {
            Box::new(range.map(map))
        }
    }
}

impl MemKv {
    /// Apply the changes of an overlay.
    pub fn commit(&mut self, changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>) {
        for (k, v) in changes {
            match v {
                Some(v) => self.map.insert(k, v),
                None => self.map.remove(&k),
            };
        }
    }
}

/// Buffered writes over a read-only base. Reads see the buffered writes.
pub struct Overlay<'b, B: KvRead + ?Sized> {
    base: &'b B,
    pending: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'b, B: KvRead + ?Sized> Overlay<'b, B> {
    /// An empty overlay over `base`.
    pub fn new(base: &'b B) -> Self {
        Overlay {
            base,
            pending: BTreeMap::new(),
        }
    }

    /// The buffered changes (`None` = delete), to commit atomically.
    pub fn into_changes(self) -> Changes {
        self.pending
    }
}

impl<B: KvRead + ?Sized> KvRead for Overlay<'_, B> {
    fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StateError> {
        match self.pending.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    fn scan<'a>(&'a self, prefix: &[u8], from: Option<&[u8]>, rev: bool) -> PairIter<'a> {
        let range = self.pending.range(bounds(prefix, from, rev));
        let over: OverIter<'_> = if rev {
            Box::new(range.rev())
        } else {
            Box::new(range)
        };
        Box::new(Merge {
            base: self.base.scan(prefix, from, rev).peekable(),
            over: over.peekable(),
            rev,
        })
    }
}

impl<B: KvRead + ?Sized> Kv for Overlay<'_, B> {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.pending.insert(key, Some(value));
    }

    fn del(&mut self, key: Vec<u8>) {
        self.pending.insert(key, None);
    }
}

impl Kv for MemKv {
    fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.map.insert(key, value);
    }

    fn del(&mut self, key: Vec<u8>) {
        self.map.remove(&key);
    }
}

type OverIter<'a> = Box<dyn Iterator<Item = (&'a Vec<u8>, &'a Option<Vec<u8>>)> + 'a>;

/// Merge of a base scan and the overlay's buffered writes (overlay wins on equal keys).
struct Merge<'a> {
    base: std::iter::Peekable<PairIter<'a>>,
    over: std::iter::Peekable<OverIter<'a>>,
    rev: bool,
}

impl Iterator for Merge<'_> {
    type Item = Result<Pair, StateError>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            let take_over = match (self.base.peek(), self.over.peek()) {
                (None, None) => return None,
                (Some(Err(_)), _) => return self.base.next(),
                (None, Some(_)) => true,
                (Some(_), None) => false,
                (Some(Ok((bk, _))), Some((ok, _))) => {
                    if bk == *ok {
                        // Overlay shadows the base entry.
                        self.base.next();
                        true
                    } else {
                        (ok.as_slice() < bk.as_slice()) != self.rev
                    }
                }
            };
            if take_over {
                match self.over.next() {
                    Some((k, Some(v))) => return Some(Ok((k.clone(), v.clone()))),
                    Some((_, None)) => continue,
                    None => return None,
                }
            } else {
                return self.base.next();
            }
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn overlay_merges_in_order_both_directions() {
        let mut base = MemKv::default();
        for k in [b"a1", b"a3", b"a5", b"b1"] {
            base.put(k.to_vec(), k.to_vec());
        }
        let mut ov = Overlay::new(&base);
        ov.put(b"a2".to_vec(), b"x".to_vec());
        ov.del(b"a3".to_vec());
        ov.put(b"a5".to_vec(), b"y".to_vec());
        let keys = |rev| -> Vec<Vec<u8>> {
            ov.scan(b"a", None, rev)
                .map(|r| r.map(|(k, _)| k))
                .collect::<Result<_, _>>()
                .unwrap()
        };
        assert_eq!(
            keys(false),
            vec![b"a1".to_vec(), b"a2".to_vec(), b"a5".to_vec()]
        );
        assert_eq!(
            keys(true),
            vec![b"a5".to_vec(), b"a2".to_vec(), b"a1".to_vec()]
        );
        assert_eq!(ov.get(b"a5").unwrap(), Some(b"y".to_vec()));
        let from: Vec<_> = ov
            .scan(b"a", Some(b"a2"), false)
            .map(|r| r.unwrap().0)
            .collect();
        assert_eq!(from, vec![b"a2".to_vec(), b"a5".to_vec()]);
    }

    #[test]
    fn prefix_end_handles_ff() {
        assert_eq!(prefix_end(b"a"), Some(b"b".to_vec()));
        assert_eq!(prefix_end(&[1, 255]), Some(vec![2]));
        assert_eq!(prefix_end(&[255]), None);
    }
}
