//! Which server holds a key, when the store spans several: rendezvous
//! (highest random weight) hashing over a hash that is fixed by this
//! crate, so every process of an app, whatever Rust or client version
//! built it, sends a key to the same server. Adding or removing a server
//! only moves the keys that belonged to it.
//!
//! The client's own default router hashes server names with the standard
//! library's `DefaultHasher`, whose algorithm may change between Rust
//! releases: two builds of one app could then look for a session on
//! different servers.

use memcache::exp::Router;

/// Rendezvous hashing over 64-bit FNV-1a, scores spread by SplitMix64's
/// finalizer.
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct StableRendezvous;

/// 64-bit FNV-1a of `bytes`.
fn fnv1a(bytes: &[u8]) -> u64 {
    let mut hash: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in bytes {
        hash ^= u64::from(b);
        hash = hash.wrapping_mul(0x0000_0100_0000_01b3);
    }
    hash
}

/// SplitMix64's finalizer.
fn mix(mut x: u64) -> u64 {
    x ^= x >> 30;
    x = x.wrapping_mul(0xbf58_476d_1ce4_e5b9);
    x ^= x >> 27;
    x = x.wrapping_mul(0x94d0_49bb_1331_11eb);
    x ^ (x >> 31)
}

/// The index in `servers` of the server that holds `key`.
pub(crate) fn server_for(key: &[u8], servers: &[String]) -> usize {
    let key_hash = fnv1a(key);
    let mut best = (0, 0u64);
    for (index, server) in servers.iter().enumerate() {
        let score = mix(key_hash ^ fnv1a(server.as_bytes()));
        if index == 0 || score > best.1 {
            best = (index, score);
        }
    }
    best.0
}

impl Router for StableRendezvous {
    fn route(&self, key: &[u8], servers: &[String]) -> usize {
        server_for(key, servers)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn servers(n: u16) -> Vec<String> {
        (0..n).map(|i| format!("10.0.0.{}:11211", i + 1)).collect()
    }

    #[test]
    fn routes_are_fixed() {
        // Pinned: a change here moves sessions between servers on upgrade.
        // (FNV-1a test vectors from its specification.)
        assert_eq!(fnv1a(b""), 0xcbf2_9ce4_8422_2325);
        assert_eq!(fnv1a(b"a"), 0xaf63_dc4c_8601_ec8c);
        let three = servers(3);
        let routes: Vec<usize> = (0..12)
            .map(|n| server_for(format!("session:{n:016x}_6745c1a0").as_bytes(), &three))
            .collect();
        assert_eq!(routes, [0, 1, 1, 2, 2, 1, 1, 0, 2, 2, 0, 0]);
        assert_eq!(server_for(b"anything", &servers(1)), 0);
    }

    #[test]
    fn balanced_and_minimal_moves() {
        let four = servers(4);
        let mut three = four.clone();
        three.remove(1);
        let mut counts = [0usize; 4];
        for n in 0..4000u32 {
            let key = format!("session:{n:016x}_6745c1a0");
            let before = server_for(key.as_bytes(), &four);
            counts[before] += 1;
            let after = server_for(key.as_bytes(), &three);
            if before != 1 {
                // Only the removed server's keys move.
                assert_eq!(three[after], four[before], "{key}");
            }
        }
        assert!(counts.iter().all(|&c| c > 800), "unbalanced: {counts:?}");
    }
}
