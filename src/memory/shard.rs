//! One shard of the [`MemoryStore`](super::MemoryStore): the records of the
//! keys that hash to it, their two eviction queues, and the rules that pick
//! what to evict. Everything here runs under the shard's lock and never
//! blocks on another shard (it may only *try* another shard's lock).
//!
//! The records live in a slab (`Vec<Option<Node>>` with a free list), found
//! through a hash table of slab indices, and linked into one of two FIFO
//! queues (S3-FIFO, Yang et al., SOSP 2023, without its ghost queue: session
//! ids are random, a key evicted is never written again):
//!
//! * **probation**: every new record starts at its tail. Its share is a
//!   tenth of the shard's entries; while it holds more, eviction takes from
//!   its head. A record found there that was read, updated or touched since
//!   it was written is promoted to the tail of the protected queue instead
//!   of being evicted. So records that never come back (a flood of
//!   cookieless requests that each create a session) only ever push out
//!   each other.
//! * **protected**: records that came back. Eviction takes from its head
//!   only while probation is within its share; a record used since it was
//!   last looked at gets another round (CLOCK: its use count, at most 3, is
//!   lowered by one and it goes to the tail).
//!
//! Wherever it is, an expired record is dropped first, and an owner index
//! (`crate::record::Index`) that names a session this store still holds is
//! never evicted: it goes to the protected tail, so that losing it can never
//! hide a live session from `revoke_owner`.

use std::time::SystemTime;

use hashbrown::HashTable;

use crate::keys::INDEX_MARK;
use crate::record::Index;
use crate::store::{CreateOutcome, DeleteOutcome, KeyInfo, Record, UpdateOutcome, Version};

/// What one record is assumed to cost beyond its key and value bytes: its
/// slab slot, hash table slot, version token and allocator overhead. An
/// estimate, so that many tiny records cannot fill far more memory than the
/// byte limit.
pub(super) const ENTRY_OVERHEAD: u64 = 256;

/// The end of a queue.
const NIL: u32 = u32::MAX;

/// A record's use count saturates here: a record used this often survives
/// this many rounds of the protected queue without being used again.
const MAX_USES: u8 = 3;

/// The share of a shard's entries the probation queue may hold before
/// eviction takes from it: one in `PROBATION_SHARE`.
const PROBATION_SHARE: u64 = 10;

/// How many slab slots every write checks for an expired record, so that
/// expired records are reclaimed without anybody reading them.
const SWEEP_PER_WRITE: usize = 2;

/// The bytes a record of `key` and `value` is accounted for.
pub(super) fn record_bytes(key: &str, value_capacity: usize) -> u64 {
    key.len() as u64 + value_capacity as u64 + ENTRY_OVERHEAD
}

/// Where the shard's eviction asks about keys of other shards.
pub(super) trait Peers {
    /// The shard and hash of `key`.
    fn route(&self, key: &str) -> (usize, u64);
    /// Whether shard `shard` holds a live record under `key`; `true` when
    /// it cannot tell without waiting (its lock is held elsewhere).
    fn holds(&self, shard: usize, hash: u64, key: &str, now: SystemTime) -> bool;
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Queue {
    Probation = 0,
    Protected = 1,
}

#[derive(Debug)]
struct Node {
    key: Box<str>,
    hash: u64,
    value: Vec<u8>,
    /// Kept as the token it is handed out as, so a read clones a pointer.
    version: Version,
    expires_at: Option<SystemTime>,
    /// When the record was last written or touched: `KeyInfo::last_modified`.
    modified: SystemTime,
    uses: u8,
    queue: Queue,
    prev: u32,
    next: u32,
}

impl Node {
    fn live(&self, now: SystemTime) -> bool {
        self.expires_at.is_none_or(|at| at > now)
    }

    fn bytes(&self) -> u64 {
        record_bytes(&self.key, self.value.capacity())
    }

    fn used(&mut self) {
        self.uses = (self.uses + 1).min(MAX_USES);
    }
}

#[derive(Debug, Clone, Copy)]
struct List {
    head: u32,
    tail: u32,
    len: u64,
}

impl List {
    const EMPTY: List = List {
        head: NIL,
        tail: NIL,
        len: 0,
    };
}

/// One shard: at most `max_entries` records and `max_bytes` bytes (see
/// [`record_bytes`]), beyond which only protected owner indexes can keep it.
#[derive(Debug)]
pub(super) struct Shard {
    /// This shard's place among the store's shards.
    index: usize,
    /// How many shards the store has: versions are `counter * stride + index`,
    /// unique across the store.
    stride: u64,
    counter: u64,
    table: HashTable<u32>,
    slab: Vec<Option<Node>>,
    free: Vec<u32>,
    queues: [List; 2],
    entries: u64,
    bytes: u64,
    max_entries: u64,
    max_bytes: u64,
    probation_max: u64,
    /// The next slab slot the write-time sweep checks.
    hand: usize,
}

impl Shard {
    pub(super) fn new(index: usize, stride: usize, max_entries: u64, max_bytes: u64) -> Self {
        Shard {
            index,
            stride: stride as u64,
            counter: 0,
            table: HashTable::new(),
            slab: Vec::new(),
            free: Vec::new(),
            queues: [List::EMPTY; 2],
            entries: 0,
            bytes: 0,
            max_entries,
            max_bytes,
            probation_max: (max_entries / PROBATION_SHARE).max(1),
            hand: 0,
        }
    }

    fn node(&self, i: u32) -> &Node {
        self.slab[i as usize]
            .as_ref()
            .expect("a queued or indexed slot holds a node")
    }

    fn node_mut(&mut self, i: u32) -> &mut Node {
        self.slab[i as usize]
            .as_mut()
            .expect("a queued or indexed slot holds a node")
    }

    fn find(&self, hash: u64, key: &str) -> Option<u32> {
        let slab = &self.slab;
        self.table
            .find(hash, |&i| {
                slab[i as usize].as_ref().is_some_and(|n| &*n.key == key)
            })
            .copied()
    }

    /// The live record under `key`, dropping an expired one.
    fn find_live(&mut self, hash: u64, key: &str, now: SystemTime) -> Option<u32> {
        let i = self.find(hash, key)?;
        if self.node(i).live(now) {
            Some(i)
        } else {
            self.remove(i);
            None
        }
    }

    fn next_version(&mut self) -> Version {
        self.counter += 1;
        version_token(
            self.counter
                .wrapping_mul(self.stride)
                .wrapping_add(self.index as u64),
        )
    }

    // The queues.

    fn push_tail(&mut self, i: u32, queue: Queue) {
        let tail = self.queues[queue as usize].tail;
        {
            let node = self.node_mut(i);
            node.queue = queue;
            node.prev = tail;
            node.next = NIL;
        }
        if tail == NIL {
            self.queues[queue as usize].head = i;
        } else {
            self.node_mut(tail).next = i;
        }
        let list = &mut self.queues[queue as usize];
        list.tail = i;
        list.len += 1;
    }

    fn unlink(&mut self, i: u32) {
        let (queue, prev, next) = {
            let node = self.node(i);
            (node.queue, node.prev, node.next)
        };
        if prev == NIL {
            self.queues[queue as usize].head = next;
        } else {
            self.node_mut(prev).next = next;
        }
        if next == NIL {
            self.queues[queue as usize].tail = prev;
        } else {
            self.node_mut(next).prev = prev;
        }
        self.queues[queue as usize].len -= 1;
    }

    fn move_to_tail(&mut self, i: u32, queue: Queue) {
        self.unlink(i);
        self.push_tail(i, queue);
    }

    // Insertion and removal.

    fn insert(&mut self, node: Node) -> u32 {
        self.entries += 1;
        self.bytes += node.bytes();
        let hash = node.hash;
        let i = match self.free.pop() {
            Some(i) => {
                self.slab[i as usize] = Some(node);
                i
            }
            None => {
                self.slab.push(Some(node));
                // At most u32::MAX - 1 slots: far more than any byte limit allows.
                (self.slab.len() - 1) as u32
            }
        };
        let slab = &self.slab;
        self.table.insert_unique(hash, i, |&j| {
            slab[j as usize].as_ref().map_or(0, |n| n.hash)
        });
        self.push_tail(i, Queue::Probation);
        i
    }

    fn remove(&mut self, i: u32) {
        self.unlink(i);
        let Some(node) = self.slab[i as usize].take() else {
            return;
        };
        if let Ok(entry) = self.table.find_entry(node.hash, |&j| j == i) {
            entry.remove();
        }
        self.free.push(i);
        self.entries -= 1;
        self.bytes -= node.bytes();
    }

    fn over_budget(&self) -> bool {
        self.entries > self.max_entries || self.bytes > self.max_bytes
    }

    // Eviction.

    /// The record eviction looks at next, never `keep` (the record just
    /// written): the head of probation while it holds more than its share
    /// (or nothing is protected), else the head of the protected queue.
    fn candidate(&self, keep: u32) -> Option<u32> {
        let first = if self.queues[Queue::Probation as usize].len > self.probation_max
            || self.queues[Queue::Protected as usize].len == 0
        {
            Queue::Probation
        } else {
            Queue::Protected
        };
        let second = match first {
            Queue::Probation => Queue::Protected,
            Queue::Protected => Queue::Probation,
        };
        [first, second].into_iter().find_map(|queue| {
            let mut i = self.queues[queue as usize].head;
            if i == keep && i != NIL {
                i = self.node(i).next;
            }
            (i != NIL).then_some(i)
        })
    }

    /// Evicts until the shard is within its limits (see the module docs for
    /// the order). Gives up, over its limits, after four looks per record:
    /// only when what is left are protected owner indexes (or `keep`).
    fn evict(&mut self, keep: u32, now: SystemTime, peers: &dyn Peers) {
        let mut looks = 4 * self.entries + 8;
        while self.over_budget() && looks > 0 {
            looks -= 1;
            let Some(i) = self.candidate(keep) else {
                return;
            };
            let node = self.node_mut(i);
            if !node.live(now) {
                self.remove(i);
            } else if node.uses > 0 {
                // Promoted, or another round: either way one use is spent.
                node.uses -= 1;
                self.move_to_tail(i, Queue::Protected);
            } else if self.names_a_held_session(i, now, peers) {
                self.move_to_tail(i, Queue::Protected);
            } else {
                self.remove(i);
            }
        }
    }

    /// Whether the record at `i` is an owner index that names a session the
    /// store holds live (in this shard, or another one that is not busy).
    fn names_a_held_session(&self, i: u32, now: SystemTime, peers: &dyn Peers) -> bool {
        let node = self.node(i);
        let Ok(index) = Index::decode(&node.value) else {
            return false;
        };
        // The index key is the app's key prefix, the mark, then hex; its
        // sessions' keys are that prefix, then the id.
        let Some(at) = node.key.rfind(INDEX_MARK) else {
            return false;
        };
        let prefix = &node.key[..at];
        let mut key = String::with_capacity(prefix.len() + 82);
        index.entries.iter().any(|entry| {
            key.clear();
            key.push_str(prefix);
            entry.id.push_to(&mut key);
            let (shard, hash) = peers.route(&key);
            if shard == self.index {
                self.find(hash, &key)
                    .is_some_and(|j| self.node(j).live(now))
            } else {
                peers.holds(shard, hash, &key, now)
            }
        })
    }

    /// Drops the expired records among the next [`SWEEP_PER_WRITE`] slab
    /// slots, so that every slot is looked at once per `slots / 2` writes.
    fn sweep(&mut self, now: SystemTime) {
        for _ in 0..SWEEP_PER_WRITE.min(self.slab.len()) {
            self.hand = (self.hand + 1) % self.slab.len();
            if self.slab[self.hand].as_ref().is_some_and(|n| !n.live(now)) {
                self.remove(self.hand as u32);
            }
        }
    }

    /// After a write of the record at `i`: evict what is over the limits,
    /// then sweep.
    fn after_write(&mut self, i: u32, now: SystemTime, peers: &dyn Peers) {
        if self.over_budget() {
            self.evict(i, now, peers);
        }
        self.sweep(now);
    }

    // The store's operations.

    /// Whether the shard holds a live record under `key` (for [`Peers::holds`]).
    pub(super) fn holds(&self, hash: u64, key: &str, now: SystemTime) -> bool {
        self.find(hash, key).is_some_and(|i| self.node(i).live(now))
    }

    pub(super) fn get(&mut self, hash: u64, key: &str, now: SystemTime) -> Option<Record> {
        let i = self.find_live(hash, key, now)?;
        let node = self.node_mut(i);
        node.used();
        Some(Record::new(
            node.value.clone(),
            Some(node.version.clone()),
            node.expires_at,
        ))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn create(
        &mut self,
        hash: u64,
        key: &str,
        value: &[u8],
        expires_at: Option<SystemTime>,
        now: SystemTime,
        peers: &dyn Peers,
    ) -> CreateOutcome {
        if self.find_live(hash, key, now).is_some() {
            return CreateOutcome::AlreadyExists;
        }
        let version = self.next_version();
        let i = self.insert(Node {
            key: key.into(),
            hash,
            value: value.to_vec(),
            version: version.clone(),
            expires_at,
            modified: now,
            uses: 0,
            queue: Queue::Probation,
            prev: NIL,
            next: NIL,
        });
        self.after_write(i, now, peers);
        CreateOutcome::Created(Some(version))
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn update(
        &mut self,
        hash: u64,
        key: &str,
        value: &[u8],
        expected: Option<&Version>,
        expires_at: Option<SystemTime>,
        now: SystemTime,
        peers: &dyn Peers,
    ) -> UpdateOutcome {
        let Some(i) = self.find_live(hash, key, now) else {
            return UpdateOutcome::Missing;
        };
        if expected.is_some_and(|v| *v != self.node(i).version) {
            return UpdateOutcome::Conflict;
        }
        let version = self.next_version();
        let node = self.node_mut(i);
        let before = node.bytes();
        // Reuse the allocation unless it would waste more than half of it.
        let capacity = node.value.capacity();
        if capacity >= value.len() && capacity <= value.len() * 2 + 64 {
            node.value.clear();
            node.value.extend_from_slice(value);
        } else {
            node.value = value.to_vec();
        }
        node.version = version.clone();
        node.expires_at = expires_at;
        node.modified = now;
        node.used();
        let after = node.bytes();
        self.bytes = self.bytes - before + after;
        self.after_write(i, now, peers);
        UpdateOutcome::Updated(Some(version))
    }

    pub(super) fn touch(
        &mut self,
        hash: u64,
        key: &str,
        expires_at: SystemTime,
        now: SystemTime,
    ) -> UpdateOutcome {
        let Some(i) = self.find_live(hash, key, now) else {
            return UpdateOutcome::Missing;
        };
        let node = self.node_mut(i);
        node.expires_at = Some(expires_at);
        node.modified = now;
        node.used();
        let version = node.version.clone();
        self.sweep(now);
        UpdateOutcome::Updated(Some(version))
    }

    pub(super) fn delete(&mut self, hash: u64, key: &str) {
        if let Some(i) = self.find(hash, key) {
            self.remove(i);
        }
    }

    pub(super) fn delete_if(
        &mut self,
        hash: u64,
        key: &str,
        expected: &Version,
        now: SystemTime,
    ) -> DeleteOutcome {
        let Some(i) = self.find_live(hash, key, now) else {
            return DeleteOutcome::Missing;
        };
        if self.node(i).version != *expected {
            return DeleteOutcome::Conflict;
        }
        self.remove(i);
        DeleteOutcome::Deleted
    }

    /// Adds the live keys under `prefix` to `out`.
    pub(super) fn list(&self, prefix: &str, now: SystemTime, out: &mut Vec<KeyInfo>) {
        out.extend(
            self.slab
                .iter()
                .flatten()
                .filter(|n| n.key.starts_with(prefix) && n.live(now))
                .map(|n| KeyInfo::new(&*n.key, Some(n.modified))),
        );
    }

    /// How many live records the shard holds.
    pub(super) fn live(&self, now: SystemTime) -> usize {
        self.slab.iter().flatten().filter(|n| n.live(now)).count()
    }

    /// How many records the shard holds, expired or not, and their bytes
    /// as accounted.
    pub(super) fn held(&self) -> (u64, u64) {
        (self.entries, self.bytes)
    }
}

/// `n` in decimal as a [`Version`], without the formatting machinery.
fn version_token(mut n: u64) -> Version {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    match std::str::from_utf8(&digits[at..]) {
        Ok(text) => Version::new(text),
        Err(_) => Version::from(n),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::Duration;

    use crate::record::{Handle, IndexEntry};

    /// A single-shard store's peers: there are none.
    struct Alone;

    impl Peers for Alone {
        fn route(&self, key: &str) -> (usize, u64) {
            (0, hash(key))
        }
        fn holds(&self, _: usize, _: u64, _: &str, _: SystemTime) -> bool {
            unreachable!("one shard only")
        }
    }

    fn hash(key: &str) -> u64 {
        use std::hash::BuildHasher;
        foldhash::fast::FixedState::with_seed(7).hash_one(key)
    }

    fn key(n: u64) -> String {
        format!("s:{n:016x}_6745c1a0")
    }

    fn now() -> SystemTime {
        SystemTime::UNIX_EPOCH + Duration::from_secs(1_800_000_000)
    }

    fn later() -> Option<SystemTime> {
        Some(now() + Duration::from_secs(3600))
    }

    fn create(shard: &mut Shard, key: &str) {
        let outcome = shard.create(hash(key), key, b"v", later(), now(), &Alone);
        assert!(matches!(outcome, CreateOutcome::Created(_)), "{outcome:?}");
    }

    fn has(shard: &mut Shard, key: &str) -> bool {
        shard.holds(hash(key), key, now())
    }

    /// Walks both queues and checks their links and lengths.
    fn check_links(shard: &Shard) {
        let mut seen = 0;
        for queue in [Queue::Probation, Queue::Protected] {
            let list = shard.queues[queue as usize];
            let (mut i, mut prev, mut len) = (list.head, NIL, 0);
            while i != NIL {
                let node = shard.node(i);
                assert_eq!(node.queue, queue);
                assert_eq!(node.prev, prev);
                prev = i;
                i = node.next;
                len += 1;
            }
            assert_eq!(list.tail, prev);
            assert_eq!(list.len, len);
            seen += len;
        }
        assert_eq!(seen, shard.entries);
        assert_eq!(shard.table.len() as u64, shard.entries);
    }

    #[test]
    fn versions_are_decimal_and_unique_across_shards() {
        assert_eq!(version_token(0).as_str(), "0");
        assert_eq!(version_token(u64::MAX).as_str(), u64::MAX.to_string());
        let mut a = Shard::new(0, 2, 10, 1 << 20);
        let mut b = Shard::new(1, 2, 10, 1 << 20);
        let versions: Vec<Version> = (0..5)
            .flat_map(|_| [a.next_version(), b.next_version()])
            .collect();
        let unique: std::collections::HashSet<_> = versions.iter().collect();
        assert_eq!(unique.len(), versions.len());
    }

    #[test]
    fn records_that_never_come_back_are_evicted_before_those_that_do() {
        let mut shard = Shard::new(0, 1, 20, 1 << 20);
        create(&mut shard, "active");
        for n in 0..1_000 {
            create(&mut shard, &key(n));
            assert!(shard.get(hash("active"), "active", now()).is_some(), "{n}");
            assert!(shard.entries <= 20);
        }
        check_links(&shard);
        // The newest of the flood are there; the oldest are not.
        assert!(has(&mut shard, &key(999)));
        assert!(!has(&mut shard, &key(0)));
    }

    #[test]
    fn protected_records_leave_in_order_of_disuse() {
        let mut shard = Shard::new(0, 1, 10, 1 << 20);
        for n in 0..10 {
            create(&mut shard, &key(n));
        }
        // All read once: all go to the protected queue when looked at.
        for n in 0..10 {
            assert!(shard.get(hash(&key(n)), &key(n), now()).is_some());
        }
        // 0 is read again: it gets one more round than the others.
        assert!(shard.get(hash(&key(0)), &key(0), now()).is_some());
        for n in 10..12 {
            create(&mut shard, &key(n));
        }
        check_links(&shard);
        assert_eq!(shard.entries, 10);
        assert!(has(&mut shard, &key(0)));
        // A new record is always admitted.
        assert!(has(&mut shard, &key(11)));
    }

    #[test]
    fn updates_and_touches_count_as_use() {
        let mut shard = Shard::new(0, 1, 10, 1 << 20);
        for n in 0..10 {
            create(&mut shard, &key(n));
        }
        let k = key(0);
        let outcome = shard.update(hash(&k), &k, b"w", None, later(), now(), &Alone);
        assert!(matches!(outcome, UpdateOutcome::Updated(_)));
        let k = key(1);
        let at = now() + Duration::from_secs(60);
        assert!(matches!(
            shard.touch(hash(&k), &k, at, now()),
            UpdateOutcome::Updated(_)
        ));
        for n in 10..30 {
            create(&mut shard, &key(n));
        }
        check_links(&shard);
        assert!(has(&mut shard, &key(0)));
        assert!(has(&mut shard, &key(1)));
        assert!(!has(&mut shard, &key(2)));
    }

    #[test]
    fn expired_records_go_first_and_are_swept() {
        let mut shard = Shard::new(0, 1, 100, 1 << 20);
        let past = Some(now() - Duration::from_secs(1));
        for n in 0..50 {
            let k = key(n);
            let _ = shard.create(hash(&k), &k, b"v", past, now(), &Alone);
        }
        assert!(shard.get(hash(&key(0)), &key(0), now()).is_none());
        // Writes of other keys reclaim them, two slots a write.
        for n in 100..130 {
            create(&mut shard, &key(n));
        }
        check_links(&shard);
        assert_eq!(shard.held().0, 30);
        assert_eq!(shard.live(now()), 30);
    }

    #[test]
    fn bytes_bound_the_shard() {
        let mut shard = Shard::new(0, 1, 1000, 10 * (1024 + ENTRY_OVERHEAD + 30));
        let value = vec![0u8; 1024];
        for n in 0..100 {
            let k = key(n);
            let _ = shard.create(hash(&k), &k, &value, later(), now(), &Alone);
            assert!(shard.bytes <= shard.max_bytes, "{n}");
        }
        assert_eq!(shard.entries, 10);
        // Growing a record evicts others, never the record itself.
        let k = key(99);
        let big = vec![1u8; 4096];
        let outcome = shard.update(hash(&k), &k, &big, None, later(), now(), &Alone);
        assert!(matches!(outcome, UpdateOutcome::Updated(_)));
        assert!(shard.bytes <= shard.max_bytes);
        assert_eq!(shard.get(hash(&k), &k, now()).unwrap().value, big);
        check_links(&shard);
    }

    fn index_of(sessions: &[String]) -> Vec<u8> {
        let mut index = Index::new("alice");
        for key in sessions {
            index.entries.push(IndexEntry {
                id: key["s:".len()..].parse().unwrap(),
                handle: Handle([7; 16]),
                indexed: 0,
            });
        }
        index.encode()
    }

    #[test]
    fn an_owner_index_stays_while_a_session_it_names_is_held() {
        let mut shard = Shard::new(0, 1, 20, 1 << 20);
        let session = key(1_000_000);
        let index_key = format!("s:{INDEX_MARK}{}", "ab".repeat(16));
        let value = index_of(std::slice::from_ref(&session));
        let _ = shard.create(hash(&index_key), &index_key, &value, later(), now(), &Alone);
        create(&mut shard, &session);
        // The session is used, the index never read; a flood goes by.
        for n in 0..500 {
            create(&mut shard, &key(n));
            assert!(shard.get(hash(&session), &session, now()).is_some());
        }
        assert!(has(&mut shard, &index_key));
        assert!(shard.entries <= 20);
        // Once the session is gone, so is the index, in its turn: sessions
        // that come back push it out of the protected queue.
        shard.delete(hash(&session), &session);
        for n in 500..600 {
            create(&mut shard, &key(n));
            assert!(shard.get(hash(&key(n)), &key(n), now()).is_some());
        }
        assert!(!has(&mut shard, &index_key));
        check_links(&shard);
    }

    #[test]
    fn deletes_and_slot_reuse_keep_the_queues_sound() {
        let mut shard = Shard::new(0, 1, 8, 1 << 20);
        for round in 0..50u64 {
            for n in 0..6 {
                create(&mut shard, &key(round * 10 + n));
            }
            for n in (0..6).step_by(2) {
                let k = key(round * 10 + n);
                let v = shard.get(hash(&k), &k, now()).map(|r| r.version.unwrap());
                if let Some(v) = v {
                    assert_eq!(
                        shard.delete_if(hash(&k), &k, &v, now()),
                        DeleteOutcome::Deleted
                    );
                }
            }
            check_links(&shard);
            assert!(shard.entries <= 8);
        }
    }
}
