//! The ids of the credentials this engine opened lately: the exact value of
//! a session cookie (or token) -> the id sealed in it, so the later requests
//! of a session skip the base64, the AES-256-GCM and the id's parse.
//!
//! Why it is safe to skip them:
//!
//! - Only a value that opened with one of the engine's keys and held an id
//!   of this app's layout ever enters ([`OpenedIds::insert`] has one
//!   caller, after such an open). A forged, changed or foreign value
//!   always goes through the cipher, and leaves no entry.
//! - An entry decides nothing about the session: it stands for the open
//!   alone. A request that hits still checks the id's age and reads its
//!   record, which alone says whether the session lives: the cookie of a
//!   logged-out, revoked or expired session still opens nothing.
//! - The engine's keys are fixed for its life, and the table lives in the
//!   engine: a value that opened once would open again. An entry keeps
//!   whether the value opened with a fallback key only, so every request
//!   that sends it still gets a cookie re-sealed with the current key.
//! - Bounded: a fixed table of [`SLOTS`] slots, one entry each; a new entry
//!   replaces the one in its slot. At most [`SLOTS`] values, each no longer
//!   than the cipher accepts, whatever clients send.
//! - The slot is picked by a keyed hash (foldhash, seeded at random for
//!   each engine), and the value in it compared with the value sent in
//!   constant time (no branch on the bytes; `subtle` for the verdict): how
//!   long a lookup takes tells nothing of a stored value, only whether the
//!   sent one is exactly it.
//! - A lock per slot: requests of different sessions do not wait on each
//!   other. Neither values nor ids are ever printed.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::sync::{Mutex, MutexGuard};

use subtle::ConstantTimeEq;

use super::Carrier;
use crate::id::SessionId;

/// How many values the table holds at most (a power of two).
pub(crate) const SLOTS: usize = 4096;

/// One value that opened, and what it opened to.
struct Entry {
    /// Sealed for the cookie or for the token: one never stands for the other.
    carrier: Carrier,
    /// The exact value sent.
    value: Box<[u8]>,
    /// The id sealed in it (of this app's layout).
    id: SessionId,
    /// It opened with a fallback key only.
    needs_reseal: bool,
}

/// The table of opened values of one engine.
pub(crate) struct OpenedIds {
    hasher: foldhash::quality::RandomState,
    slots: Box<[Mutex<Option<Box<Entry>>>]>,
}

impl fmt::Debug for OpenedIds {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Values are bearer credentials: never printed.
        f.debug_struct("OpenedIds")
            .field("slots", &self.slots.len())
            .finish_non_exhaustive()
    }
}

impl Default for OpenedIds {
    fn default() -> Self {
        OpenedIds {
            hasher: foldhash::quality::RandomState::default(),
            slots: (0..SLOTS).map(|_| Mutex::new(None)).collect(),
        }
    }
}

impl OpenedIds {
    /// The slot of `value` sealed for `carrier`, locked.
    fn slot(&self, carrier: Carrier, value: &str) -> MutexGuard<'_, Option<Box<Entry>>> {
        let mut hasher = self.hasher.build_hasher();
        hasher.write_u8(carrier as u8);
        hasher.write(value.as_bytes());
        let index = hasher.finish() as usize & (self.slots.len() - 1);
        // Every mutation under this lock is one assignment: a poisoned lock
        // still holds a whole entry or none.
        self.slots[index].lock().unwrap_or_else(|e| e.into_inner())
    }

    /// The id `value` (sent as `carrier`) opened to, and whether it opened
    /// with a fallback key only; `None` unless it is exactly a value that
    /// opened before and is still in the table.
    pub(crate) fn get(&self, carrier: Carrier, value: &str) -> Option<(SessionId, bool)> {
        let slot = self.slot(carrier, value);
        let entry = slot.as_deref()?;
        (entry.carrier == carrier && same_value(&entry.value, value.as_bytes()))
            .then(|| (entry.id.clone(), entry.needs_reseal))
    }

    /// Records that `value`, sent as `carrier`, opened to `id` (with a
    /// fallback key only if `needs_reseal`). Only for values the cipher
    /// opened.
    pub(crate) fn insert(&self, carrier: Carrier, value: &str, id: &SessionId, needs_reseal: bool) {
        let entry = Box::new(Entry {
            carrier,
            value: value.as_bytes().into(),
            id: id.clone(),
            needs_reseal,
        });
        *self.slot(carrier, value) = Some(entry);
    }

    /// Drops the entry of `value`, if it has one: its session was found
    /// ended or expired, so the value will open nothing again.
    pub(crate) fn forget(&self, carrier: Carrier, value: &str) {
        let mut slot = self.slot(carrier, value);
        if slot.as_deref().is_some_and(|entry| {
            entry.carrier == carrier && same_value(&entry.value, value.as_bytes())
        }) {
            *slot = None;
        }
    }

    /// How many values the table holds.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        self.slots
            .iter()
            .filter(|slot| slot.lock().unwrap_or_else(|e| e.into_inner()).is_some())
            .count()
    }
}

/// Whether `stored` and `sent` are the same bytes, in a time that depends
/// on their lengths only (lengths are public: all values of one layout have
/// one length): the differences of all words are gathered without a branch,
/// then compared with zero in constant time.
fn same_value(stored: &[u8], sent: &[u8]) -> bool {
    if stored.len() != sent.len() {
        return false;
    }
    let (a, b) = (stored.chunks_exact(8), sent.chunks_exact(8));
    let tail = a.remainder().iter().zip(b.remainder());
    let word = |chunk: &[u8]| u64::from_le_bytes(chunk.try_into().unwrap_or_default());
    let mut differ = a.zip(b).fold(0u64, |acc, (a, b)| acc | (word(a) ^ word(b)));
    for (a, b) in tail {
        differ |= u64::from(a ^ b);
    }
    bool::from(differ.ct_eq(&0))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(n: u64) -> SessionId {
        format!("{n:016x}_6745c1a0").parse().unwrap()
    }

    #[test]
    fn only_the_exact_value_and_carrier_find_an_entry() {
        let opened = OpenedIds::default();
        let value = "A".repeat(71);
        opened.insert(Carrier::Cookie, &value, &id(1), false);
        assert_eq!(opened.get(Carrier::Cookie, &value), Some((id(1), false)));
        // A cookie's value is not a token.
        assert_eq!(opened.get(Carrier::Token, &value), None);
        for changed in [
            format!("{}B", &value[..70]),
            format!("B{}", &value[1..]),
            value[..70].to_owned(),
            format!("{value}A"),
            String::new(),
        ] {
            assert_eq!(opened.get(Carrier::Cookie, &changed), None, "{changed}");
        }
    }

    #[test]
    fn an_entry_remembers_a_fallback_open() {
        let opened = OpenedIds::default();
        opened.insert(Carrier::Token, "sealed-with-an-old-key", &id(2), true);
        assert_eq!(
            opened.get(Carrier::Token, "sealed-with-an-old-key"),
            Some((id(2), true))
        );
    }

    #[test]
    fn the_table_never_holds_more_than_its_slots() {
        let opened = OpenedIds::default();
        for n in 0..3 * SLOTS as u64 {
            opened.insert(Carrier::Cookie, &format!("value-{n}"), &id(n), false);
        }
        assert!(opened.len() <= SLOTS);
        // Most of the newest ones are there (a newer one may have taken a
        // slot of an older one).
        let last = (2 * SLOTS as u64..3 * SLOTS as u64)
            .filter(|n| opened.get(Carrier::Cookie, &format!("value-{n}")).is_some())
            .count();
        assert!(last > SLOTS / 2, "{last}");
    }

    #[test]
    fn forgetting_drops_only_that_value() {
        let opened = OpenedIds::default();
        opened.insert(Carrier::Cookie, "one", &id(1), false);
        opened.insert(Carrier::Cookie, "two", &id(2), false);
        opened.forget(Carrier::Cookie, "one");
        opened.forget(Carrier::Token, "two");
        assert_eq!(opened.get(Carrier::Cookie, "one"), None);
        assert_eq!(opened.get(Carrier::Cookie, "two"), Some((id(2), false)));
    }

    #[test]
    fn values_compare_by_every_byte() {
        let a = b"0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdefXYZ";
        assert!(same_value(a, a));
        for i in 0..a.len() {
            let mut b = *a;
            b[i] ^= 1;
            assert!(!same_value(a, &b), "byte {i}");
        }
        assert!(!same_value(a, &a[..a.len() - 1]));
        assert!(same_value(b"", b""));
    }

    #[test]
    fn debug_shows_no_value() {
        let opened = OpenedIds::default();
        opened.insert(Carrier::Cookie, "secret-cookie-value", &id(7), false);
        let shown = format!("{opened:?}");
        assert!(!shown.contains("secret") && !shown.contains("0000000000000007"));
    }
}

/// The table as the engine uses it, through `rocket::local`.
#[cfg(test)]
mod loads {
    use rocket::http::{Cookie, Status};
    use rocket::local::asynchronous::Client;

    use super::OpenedIds;
    use crate::conformance::app;
    use crate::engine::Engine;
    use crate::{KvSession, MemoryStore, SessionConfig};

    const OLD_KEY: &str = app::SECRET_KEY;
    const NEW_KEY: &str = "Rc1+7Q0rLQGZRo/gHFm9JqTIjZoDq0DbzcNx9ku2r1s=";

    /// An app on `store` whose `secret_key` is `key`, with `fallbacks`.
    async fn client(store: &MemoryStore, key: &str, fallbacks: &[&str]) -> Client {
        let config = SessionConfig {
            secret_key_fallbacks: fallbacks.iter().map(|k| (*k).into()).collect(),
            ..SessionConfig::default()
        };
        let figment = rocket::Config::figment()
            .merge(("secret_key", key))
            .merge(("log_level", "off"));
        let rocket = rocket::custom(figment)
            .attach(KvSession::new(store.clone()).config(config))
            .mount("/", app::routes());
        Client::untracked(rocket).await.expect("launch")
    }

    fn opened(client: &Client) -> &OpenedIds {
        &Engine::fetch(client.rocket()).expect("engine").opened
    }

    async fn login(client: &Client) -> Cookie<'static> {
        let res = client.post("/login/alice").dispatch().await;
        assert_eq!(res.status(), Status::Ok);
        res.cookies().get("session").expect("a cookie").clone()
    }

    /// The user the session of `cookie` holds, and the session cookie the
    /// response sets, if any.
    async fn whoami(client: &Client, cookie: &Cookie<'static>) -> (Option<String>, Option<String>) {
        let res = client
            .get("/whoami")
            .cookie(cookie.clone())
            .dispatch()
            .await;
        let set = res.cookies().get("session").map(|c| c.value().to_owned());
        let user = match res.status() {
            Status::Ok => res.into_string().await,
            _ => None,
        };
        (user, set)
    }

    #[rocket::async_test]
    async fn only_values_that_opened_enter() {
        let client = client(&MemoryStore::new(), OLD_KEY, &[]).await;
        let cookie = login(&client).await;
        // Sealing a value does not put it in the table: opening it does.
        assert_eq!(opened(&client).len(), 0);
        let value = cookie.value();
        let flipped = |i: usize| {
            let mut bytes = value.as_bytes().to_vec();
            bytes[i] = if bytes[i] == b'A' { b'B' } else { b'A' };
            String::from_utf8(bytes).unwrap()
        };
        let forged = [
            flipped(0),
            flipped(value.len() / 2),
            flipped(value.len() - 1),
            "A".repeat(value.len()),
            value[..value.len() - 4].to_owned(),
        ];
        for forged in &forged {
            let (user, _) = whoami(&client, &Cookie::new("session", forged.clone())).await;
            assert_eq!(user, None, "{forged}");
        }
        assert_eq!(opened(&client).len(), 0, "a forged value entered");
        for _ in 0..3 {
            assert_eq!(whoami(&client, &cookie).await.0.as_deref(), Some("alice"));
            assert_eq!(opened(&client).len(), 1);
        }
        // Once the real value is in, its forgeries still open nothing.
        for forged in &forged {
            let (user, _) = whoami(&client, &Cookie::new("session", forged.clone())).await;
            assert_eq!(user, None, "{forged}");
        }
        assert_eq!(opened(&client).len(), 1);
    }

    #[rocket::async_test]
    async fn a_value_sealed_with_a_fallback_key_is_resealed_every_time() {
        let store = MemoryStore::new();
        let before = client(&store, OLD_KEY, &[]).await;
        let cookie = login(&before).await;
        let during = client(&store, NEW_KEY, &[OLD_KEY]).await;
        // The second and third requests find the value in the table, and
        // still answer with a cookie sealed with the current key.
        for i in 0..3 {
            let (user, resealed) = whoami(&during, &cookie).await;
            assert_eq!(user.as_deref(), Some("alice"), "request {i}");
            let resealed = resealed.expect("re-sealed with the current key");
            assert_ne!(resealed, cookie.value());
            let current = Cookie::new("session", resealed);
            assert_eq!(
                whoami(&during, &current).await,
                (Some("alice".into()), None)
            );
        }
        // The old value and the re-sealed ones.
        assert_eq!(opened(&during).len(), 4);
    }

    #[rocket::async_test]
    async fn a_logged_out_session_stays_logged_out() {
        let client = client(&MemoryStore::new(), OLD_KEY, &[]).await;
        let cookie = login(&client).await;
        assert_eq!(whoami(&client, &cookie).await.0.as_deref(), Some("alice"));
        assert_eq!(opened(&client).len(), 1);
        let res = client
            .post("/logout")
            .cookie(cookie.clone())
            .dispatch()
            .await;
        assert_eq!(res.status(), Status::Ok);
        for _ in 0..2 {
            assert_eq!(whoami(&client, &cookie).await.0, None);
        }
        // Found ended: its entry is gone.
        assert_eq!(opened(&client).len(), 0);
    }
}
