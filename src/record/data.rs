//! The lazy key index over a record's bytes: a session's keys and their
//! encoded values as spans of the record a store returned (shared, never
//! copied), plus what a request set since. Nothing is allocated per key or
//! value on load; a save copies the bytes of unchanged keys as they are.

use std::collections::BTreeMap;
use std::sync::Arc;

use super::msgpack::write_map;

/// The bytes of a stored record, as a store returned them. Converting a
/// `Vec<u8>` moves it (the engine's loads); a slice is copied.
#[derive(Debug, Clone)]
pub(crate) enum RecordBytes {
    Owned(Vec<u8>),
    Shared(Arc<Vec<u8>>),
}

impl RecordBytes {
    pub(crate) fn as_slice(&self) -> &[u8] {
        match self {
            RecordBytes::Owned(bytes) => bytes,
            RecordBytes::Shared(bytes) => bytes,
        }
    }
}

impl From<Vec<u8>> for RecordBytes {
    fn from(bytes: Vec<u8>) -> Self {
        RecordBytes::Owned(bytes)
    }
}

impl From<Arc<Vec<u8>>> for RecordBytes {
    fn from(bytes: Arc<Vec<u8>>) -> Self {
        RecordBytes::Shared(bytes)
    }
}

impl From<&[u8]> for RecordBytes {
    fn from(bytes: &[u8]) -> Self {
        RecordBytes::Owned(bytes.to_vec())
    }
}

impl<const N: usize> From<&[u8; N]> for RecordBytes {
    fn from(bytes: &[u8; N]) -> Self {
        RecordBytes::from(bytes.as_slice())
    }
}

impl From<&Vec<u8>> for RecordBytes {
    fn from(bytes: &Vec<u8>) -> Self {
        RecordBytes::from(bytes.as_slice())
    }
}

/// Where a key or a value lies in the loaded record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Span {
    pub(super) start: usize,
    pub(super) end: usize,
}

impl Span {
    pub(super) fn of(self, record: &[u8]) -> &[u8] {
        // Every span was cut from this record when it was decoded.
        &record[self.start..self.end]
    }
}

/// One key and its encoded value.
#[derive(Debug, Clone)]
pub(super) enum Entry {
    /// Both still lie in the loaded record.
    Loaded { key: Span, value: Span },
    /// Set since the record was loaded.
    Owned { key: String, value: Vec<u8> },
}

impl Entry {
    /// The key's bytes; `record` is the record a loaded entry was cut from.
    pub(super) fn key<'a>(&'a self, record: &'a [u8]) -> &'a [u8] {
        match self {
            Entry::Loaded { key, .. } => key.of(record),
            Entry::Owned { key, .. } => key.as_bytes(),
        }
    }

    /// The encoded value's bytes (see [`Entry::key`]).
    pub(super) fn value<'a>(&'a self, record: &'a [u8]) -> &'a [u8] {
        match self {
            Entry::Loaded { value, .. } => value.of(record),
            Entry::Owned { value, .. } => value,
        }
    }
}

/// A session's keys and their MessagePack-encoded values, in key order:
/// an index over the loaded record's bytes, plus what was set since.
///
/// Both parts are shared: a copy (a save's snapshot) costs two reference
/// counts, and a change after a copy copies the index, never the values.
#[derive(Clone, Default)]
pub(crate) struct Data {
    /// The loaded record and its index, as decoded.
    pub(super) loaded: Option<Arc<Loaded>>,
    /// The entries since the first change; `None`: exactly the loaded
    /// index. Sorted by key (byte order, which is `str` order), keys unique.
    pub(super) changed: Option<Arc<Vec<Entry>>>,
}

/// A record as decoded.
#[derive(Debug)]
pub(super) struct Loaded {
    pub(super) record: RecordBytes,
    /// Only [`Entry::Loaded`], sorted, keys unique.
    pub(super) index: Vec<Entry>,
    /// The encoded map inside `record` if it is what [`Envelope::encode`](super::Envelope::encode)
    /// would write for `index`: an unchanged save copies it whole.
    pub(super) verbatim: Option<Span>,
}

impl Data {
    fn record(&self) -> &[u8] {
        self.loaded.as_deref().map_or(&[], |l| l.record.as_slice())
    }

    fn entries(&self) -> &[Entry] {
        match (&self.changed, &self.loaded) {
            (Some(changed), _) => changed,
            (None, Some(loaded)) => &loaded.index,
            (None, None) => &[],
        }
    }

    fn entries_mut(&mut self) -> &mut Vec<Entry> {
        let loaded = &self.loaded;
        let changed = self.changed.get_or_insert_with(|| {
            Arc::new(loaded.as_ref().map_or(Vec::new(), |l| l.index.clone()))
        });
        Arc::make_mut(changed)
    }

    /// The encoded map to copy whole, while nothing changed.
    pub(super) fn verbatim(&self) -> Option<&[u8]> {
        let loaded = self.loaded.as_deref().filter(|_| self.changed.is_none())?;
        Some(loaded.verbatim?.of(loaded.record.as_slice()))
    }

    fn key_bytes<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        entry.key(self.record())
    }

    fn value_bytes<'a>(&'a self, entry: &'a Entry) -> &'a [u8] {
        entry.value(self.record())
    }

    fn find(&self, key: &str) -> Result<usize, usize> {
        self.entries()
            .binary_search_by(|entry| self.key_bytes(entry).cmp(key.as_bytes()))
    }

    /// The encoded value of `key`.
    pub(crate) fn get(&self, key: &str) -> Option<&[u8]> {
        let at = self.find(key).ok()?;
        Some(self.value_bytes(&self.entries()[at]))
    }

    pub(crate) fn contains_key(&self, key: &str) -> bool {
        self.find(key).is_ok()
    }

    pub(crate) fn len(&self) -> usize {
        self.entries().len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.entries().is_empty()
    }

    /// Every key and its encoded value, in key order.
    pub(crate) fn iter(&self) -> impl ExactSizeIterator<Item = (&str, &[u8])> + '_ {
        self.entries().iter().map(|entry| {
            // Loaded keys were checked to be UTF-8 when the record was decoded.
            let key =
                std::str::from_utf8(self.key_bytes(entry)).expect("keys are checked at decode");
            (key, self.value_bytes(entry))
        })
    }

    pub(crate) fn keys(&self) -> impl Iterator<Item = &str> + '_ {
        self.iter().map(|(key, _)| key)
    }

    /// Sets `key` to the encoded `value`.
    pub(crate) fn insert(&mut self, key: String, value: Vec<u8>) {
        match self.find(&key) {
            Ok(at) => self.entries_mut()[at] = Entry::Owned { key, value },
            Err(at) => self.entries_mut().insert(at, Entry::Owned { key, value }),
        }
    }

    /// Removes `key`; returns whether it was there.
    pub(crate) fn remove(&mut self, key: &str) -> bool {
        match self.find(key) {
            Ok(at) => {
                self.entries_mut().remove(at);
                true
            }
            Err(_) => false,
        }
    }

    /// Removes every key. The loaded record is let go.
    pub(crate) fn clear(&mut self) {
        *self = Data::default();
    }

    /// Writes the map as format 1 stores it.
    pub(super) fn write(&self, out: &mut Vec<u8>) -> Result<(), rmp::encode::ValueWriteError> {
        if let Some(map) = self.verbatim() {
            out.extend_from_slice(map);
            return Ok(());
        }
        let record = self.record();
        write_map(
            out,
            self.len(),
            self.entries()
                .iter()
                .map(|e| (e.key(record), e.value(record))),
        )
    }

    /// The bytes [`Data::write`] adds, about.
    pub(super) fn encoded_len(&self) -> usize {
        match self.verbatim() {
            Some(map) => map.len(),
            None => {
                let record = self.record();
                self.entries()
                    .iter()
                    .map(|e| e.key(record).len() + e.value(record).len() + 10)
                    .sum()
            }
        }
    }
}

impl std::fmt::Debug for Data {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_map().entries(self.iter()).finish()
    }
}

impl PartialEq for Data {
    fn eq(&self, other: &Self) -> bool {
        self.len() == other.len() && self.iter().eq(other.iter())
    }
}

impl Eq for Data {}

impl From<BTreeMap<String, Vec<u8>>> for Data {
    fn from(map: BTreeMap<String, Vec<u8>>) -> Self {
        Data {
            loaded: None,
            changed: (!map.is_empty()).then(|| {
                Arc::new(
                    map.into_iter()
                        .map(|(key, value)| Entry::Owned { key, value })
                        .collect(),
                )
            }),
        }
    }
}

impl FromIterator<(String, Vec<u8>)> for Data {
    fn from_iter<I: IntoIterator<Item = (String, Vec<u8>)>>(iter: I) -> Self {
        Data::from(iter.into_iter().collect::<BTreeMap<_, _>>())
    }
}
