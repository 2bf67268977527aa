//! Saves of one session inside one process take turns: the per-session
//! gate the engine's writes of an existing record pass through.
//!
//! Without it, concurrent requests of one session in one process race each
//! other's compare-and-swap: all but one fail, back off, read the record
//! again and retry, and under a burst most of a save's time goes to
//! backoff. Through the gate they write one after the other, and the gate
//! remembers the last record this process wrote for the session (its
//! version and data): a save that loaded an older version merges its
//! changes onto that record and swaps on its version, with no failed write,
//! no read and no backoff. Conflicts then come only from other processes
//! (or other apps on the same store), and the usual merge-and-retry handles
//! them: the remembered record is only a guess at the newest one, which the
//! compare-and-swap checks, so a wrong guess costs one retry, never an
//! update, and a record that ended meanwhile is never written again (an
//! update never creates).
//!
//! The remembered record must outlive the save that wrote it: the requests
//! of a burst load the session together, but on a fast store each save is
//! over before the next one reaches the gate. So an entry lives while a
//! request holds or waits on its gate, and then [`RETAIN`] longer, at most
//! [`IDLE_ENTRIES`] of them: the map holds only the sessions being saved
//! or just saved. The record is dropped at once when the session ends or
//! moves (a logout, a revocation, an emptied session, a rotation).
//!
//! A save waits for its turn at most [`TURN_WAIT`]: a turn that lasts
//! longer is a store call that hangs, or one whose store hooks wait for
//! another save of the session (tests do that). The save then goes ahead
//! without its turn and races as it would without the gate: its
//! compare-and-swap keeps it correct.

use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::sync::{Mutex as TurnLock, OwnedMutexGuard};
use tokio::time::Instant;

use crate::record::Envelope;
use crate::store::Version;

/// How long a session's last written record is kept after its last save:
/// long enough for the other requests of a burst, which loaded the session
/// before that save, to reach the gate.
pub(crate) const RETAIN: Duration = Duration::from_secs(2);

/// At most this many sessions keep a record nobody is saving.
pub(crate) const IDLE_ENTRIES: usize = 1024;

/// The longest a save waits for its turn.
pub(crate) const TURN_WAIT: Duration = Duration::from_millis(250);

/// A record this process wrote: its version and data.
#[derive(Debug, Clone)]
pub(crate) struct Written {
    pub(crate) version: Option<Version>,
    pub(crate) envelope: Envelope,
}

/// One session being saved, or just saved.
#[derive(Debug)]
struct Entry {
    /// Requests holding or waiting on the gate.
    users: usize,
    /// Taken for the duration of a write.
    turn: Arc<TurnLock<()>>,
    /// The last record this process wrote while the entry lived.
    written: Option<Written>,
    /// When the last request left the gate (while `users` is 0).
    idle_since: Instant,
}

#[derive(Debug, Default)]
struct Table {
    /// By store key. Hashed with foldhash, seeded at random: a save looks
    /// its key up three or four times, and std's SipHash would cost more
    /// than the rest of the gate (the keys are ids the engine drew, which
    /// no client chooses).
    entries: HashMap<String, Entry, foldhash::fast::RandomState>,
    /// Entries that became idle, oldest first: (key, `idle_since`). An
    /// entry is removed when its item comes up and it is still idle since
    /// then.
    idle: VecDeque<(String, Instant)>,
}

impl Table {
    /// Removes the entries idle for [`RETAIN`], and the oldest idle ones
    /// beyond [`IDLE_ENTRIES`].
    fn purge(&mut self, now: Instant) {
        while let Some((key, since)) = self.idle.front() {
            if now.duration_since(*since) < RETAIN && self.idle.len() <= IDLE_ENTRIES {
                break;
            }
            if self
                .entries
                .get(key)
                .is_some_and(|entry| entry.users == 0 && entry.idle_since == *since)
            {
                self.entries.remove(key);
            }
            self.idle.pop_front();
        }
    }
}

/// The gates of one engine, by store key.
#[derive(Debug, Default)]
pub(crate) struct Gates {
    table: Mutex<Table>,
}

impl Gates {
    fn table(&self) -> MutexGuard<'_, Table> {
        // Every mutation under this lock completes before any code that
        // could panic runs.
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits for the turn of the session under `key`, at most
    /// [`TURN_WAIT`]; it lasts until the returned gate is dropped.
    /// Cancel-safe: a request dropped while waiting only leaves its place.
    /// The gate keeps `key` (see [`Gate::key`]): a save that built it
    /// hands it over instead of having it copied.
    pub(crate) async fn enter(&self, key: impl Into<String>) -> Gate<'_> {
        let ticket = self.ticket(key.into());
        let turn = match ticket.turn.clone().try_lock_owned() {
            Ok(turn) => Some(turn),
            // Not free: wait (no timer for the common, uncontended case).
            Err(_) => tokio::time::timeout(TURN_WAIT, ticket.turn.clone().lock_owned())
                .await
                .ok(),
        };
        if turn.is_none() {
            log::debug!("kvsession: a save of a session went ahead without its turn");
        }
        Gate { turn, ticket }
    }

    fn ticket(&self, key: String) -> Ticket<'_> {
        let mut table = self.table();
        let now = Instant::now();
        table.purge(now);
        let entry = match table.entries.get_mut(&key) {
            Some(entry) => entry,
            None => table.entries.entry(key.clone()).or_insert_with(|| Entry {
                users: 0,
                turn: Arc::default(),
                written: None,
                idle_since: now,
            }),
        };
        entry.users += 1;
        let turn = entry.turn.clone();
        Ticket {
            gates: self,
            key,
            turn,
        }
    }

    /// Drops what this process remembers of the session under `key`: it
    /// ended or moved.
    pub(crate) fn forget(&self, key: &str) {
        let mut table = self.table();
        if let Some(entry) = table.entries.get_mut(key) {
            entry.written = None;
            if entry.users == 0 {
                table.entries.remove(key);
            }
        }
    }

    /// How many sessions have an entry (being saved, or just saved), once
    /// the entries past their time are gone.
    #[cfg(test)]
    pub(crate) fn len(&self) -> usize {
        let mut table = self.table();
        table.purge(Instant::now());
        table.entries.len()
    }

    /// How many sessions are being saved (a request holds or waits on
    /// their gate).
    #[cfg(test)]
    pub(crate) fn busy(&self) -> usize {
        self.table()
            .entries
            .values()
            .filter(|entry| entry.users > 0)
            .count()
    }
}

/// A request's place at a gate, held or waited for.
struct Ticket<'a> {
    gates: &'a Gates,
    key: String,
    turn: Arc<TurnLock<()>>,
}

impl Drop for Ticket<'_> {
    fn drop(&mut self) {
        let mut table = self.gates.table();
        let now = Instant::now();
        let Some(entry) = table.entries.get_mut(&self.key) else {
            return;
        };
        entry.users -= 1;
        if entry.users == 0 {
            if entry.written.is_some() {
                // Kept for the requests that loaded before this save. The
                // ticket goes: its key moves to the queue.
                entry.idle_since = now;
                table.idle.push_back((std::mem::take(&mut self.key), now));
            } else {
                table.entries.remove(&self.key);
            }
        }
        table.purge(now);
    }
}

/// The turn of one session: no other request of this engine writes the
/// session's record until it is dropped.
pub(crate) struct Gate<'a> {
    /// `None` if the wait timed out: the save races, and neither reads
    /// nor leaves a remembered record. Released before the ticket, which
    /// may remove the entry.
    turn: Option<OwnedMutexGuard<()>>,
    ticket: Ticket<'a>,
}

impl std::fmt::Debug for Gate<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Gate")
            .field("key", &self.ticket.key)
            .field("turn", &self.turn.is_some())
            .finish_non_exhaustive()
    }
}

impl Gate<'_> {
    /// The store key of the session whose turn this is.
    pub(crate) fn key(&self) -> &str {
        &self.ticket.key
    }

    /// The last record this process wrote for the session, if it is not at
    /// version `loaded` (the request then loaded an older record, or
    /// another process wrote since: the swap on the remembered version
    /// tells which).
    pub(crate) fn newer_than(&self, loaded: Option<&Version>) -> Option<Written> {
        self.turn.as_ref()?;
        let table = self.ticket.gates.table();
        table
            .entries
            .get(&self.ticket.key)
            .and_then(|entry| entry.written.as_ref())
            .filter(|written| written.version.as_ref() != loaded)
            .cloned()
    }

    /// Remembers the record just written.
    pub(crate) fn wrote(&self, version: Option<Version>, envelope: &Envelope) {
        if self.turn.is_none() {
            // Another save may be writing right now: which record is the
            // newer is unknown.
            self.forget();
            return;
        }
        if let Some(entry) = self.ticket.gates.table().entries.get_mut(&self.ticket.key) {
            entry.written = Some(Written {
                version,
                envelope: envelope.clone(),
            });
        }
    }

    /// Forgets the session's record: it ended, moved, or is unknown.
    pub(crate) fn forget(&self) {
        self.ticket.gates.forget(&self.ticket.key);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn version(v: &str) -> Option<Version> {
        Some(Version::new(v))
    }

    #[tokio::test(start_paused = true)]
    async fn an_entry_lives_while_its_gate_is_held_or_waited_on() {
        let gates = Gates::default();
        let first = gates.enter("a").await;
        assert_eq!(gates.len(), 1);
        let mut second = Box::pin(gates.enter("a"));
        assert!(
            futures_util::poll!(second.as_mut()).is_pending(),
            "one turn at a time"
        );
        let other = gates.enter("b").await;
        assert_eq!(gates.len(), 2, "other sessions do not wait");
        drop(other);
        drop(first);
        assert_eq!(gates.len(), 1, "the waiting request keeps the entry");
        let second = second.await;
        drop(second);
        assert_eq!(gates.len(), 0, "nothing written, nothing kept");
    }

    #[tokio::test(start_paused = true)]
    async fn a_save_waits_for_its_turn_at_most_turn_wait() {
        let gates = Gates::default();
        let held = gates.enter("a").await;
        held.wrote(version("2"), &Envelope::default());
        let started = Instant::now();
        let late = gates.enter("a").await;
        assert_eq!(started.elapsed(), TURN_WAIT);
        assert!(
            late.newer_than(version("1").as_ref()).is_none(),
            "no turn, no record"
        );
        late.wrote(version("3"), &Envelope::default());
        assert!(
            held.newer_than(version("1").as_ref()).is_none(),
            "a save without its turn leaves nothing to trust"
        );
        drop((held, late));
        assert_eq!(gates.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_request_dropped_while_waiting_leaves_no_entry() {
        let gates = Gates::default();
        let held = gates.enter("a").await;
        let mut waiting = Box::pin(gates.enter("a"));
        assert!(futures_util::poll!(waiting.as_mut()).is_pending());
        drop(held);
        drop(waiting);
        assert_eq!(gates.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn a_written_record_is_offered_to_older_loads_for_a_while() {
        let gates = Gates::default();
        let gate = gates.enter("a").await;
        assert!(gate.newer_than(version("1").as_ref()).is_none());
        gate.wrote(version("2"), &Envelope::default());
        drop(gate);
        assert_eq!(gates.busy(), 0);

        tokio::time::advance(RETAIN / 2).await;
        let gate = gates.enter("a").await;
        assert!(
            gate.newer_than(version("2").as_ref()).is_none(),
            "same version"
        );
        let written = gate.newer_than(version("1").as_ref()).expect("remembered");
        assert_eq!(written.version, version("2"));
        drop(gate);

        let gate = gates.enter("b").await;
        assert!(gate.newer_than(None).is_none(), "never across sessions");
        drop(gate);

        tokio::time::advance(RETAIN).await;
        let gate = gates.enter("b").await;
        assert_eq!(gates.len(), 1, "idle entries go after RETAIN");
        drop(gate);
        assert_eq!(gates.len(), 0);
    }

    #[tokio::test(start_paused = true)]
    async fn idle_entries_are_bounded() {
        let gates = Gates::default();
        for n in 0..3 * IDLE_ENTRIES {
            let gate = gates.enter(&format!("k{n}")).await;
            gate.wrote(version("1"), &Envelope::default());
        }
        assert!(gates.len() <= IDLE_ENTRIES + 1, "{}", gates.len());
        let gate = gates.enter("k0").await;
        assert!(gate.newer_than(None).is_none(), "the oldest went first");
    }

    #[tokio::test(start_paused = true)]
    async fn forgetting_drops_the_written_record() {
        let gates = Gates::default();
        let gate = gates.enter("a").await;
        gate.wrote(version("2"), &Envelope::default());
        gates.forget("a");
        assert!(gate.newer_than(version("1").as_ref()).is_none());
        gate.wrote(version("3"), &Envelope::default());
        gate.forget();
        assert!(gate.newer_than(version("1").as_ref()).is_none());
        drop(gate);
        assert_eq!(gates.len(), 0);

        let gate = gates.enter("a").await;
        gate.wrote(version("4"), &Envelope::default());
        drop(gate);
        gates.forget("a");
        assert_eq!(gates.len(), 0, "an idle entry goes at once");
    }
}

/// Concurrent saves of one session through `rocket::local`, on a
/// `MemoryStore` that counts the compare-and-swap conflicts.
#[cfg(test)]
mod saves {
    use std::sync::Arc;

    use rocket::http::{Cookie, Status};
    use rocket::local::asynchronous::Client;
    use rocket::tokio::sync::Barrier;

    use super::Gates;
    use crate::conformance::app;
    use crate::conformance::hooked::HookedStore;
    use crate::engine::Engine;
    use crate::{KvSession, MemoryStore, SessionConfig};

    /// A `MemoryStore` that counts updates and their conflicts, with or
    /// without compare-and-swap.
    fn counting(versioned: bool) -> Arc<HookedStore> {
        let store = HookedStore::new(Arc::new(MemoryStore::new()));
        Arc::new(if versioned {
            store
        } else {
            store.without_compare_and_swap()
        })
    }

    /// An app whose `/together` requests wait for `writers` of them.
    async fn client(store: Arc<HookedStore>, config: SessionConfig, writers: usize) -> Client {
        let rocket = rocket::custom(app::figment())
            .attach(KvSession::from_arc(store).config(config))
            .manage(Arc::new(Barrier::new(writers)))
            .manage(Arc::new(app::Gate::default()))
            .mount("/", app::routes())
            .mount("/", app::racing_routes());
        Client::untracked(rocket).await.expect("launch")
    }

    /// Once every request is answered: no session is being saved, and
    /// after [`RETAIN`] (paused clock) nothing is kept.
    async fn assert_no_gates_left(clients: &[&Client]) {
        fn gates(client: &Client) -> &Gates {
            &Engine::fetch(client.rocket()).expect("engine").gates
        }
        for client in clients {
            assert_eq!(gates(client).busy(), 0, "a gate outlived its save");
            assert!(gates(client).len() <= 1, "one session was saved");
        }
        tokio::time::advance(super::RETAIN).await;
        for client in clients {
            assert_eq!(gates(client).len(), 0, "an entry outlived RETAIN");
        }
    }

    /// The session cookie of a new session holding `init`.
    async fn session(client: &Client) -> Cookie<'static> {
        let res = client.post("/set/init/1").dispatch().await;
        assert_eq!(res.status(), Status::Ok);
        res.cookies().get("session").expect("cookie").clone()
    }

    async fn write(client: &Client, cookie: &Cookie<'static>, uri: String) -> Status {
        client
            .post(uri)
            .cookie(cookie.clone())
            .dispatch()
            .await
            .status()
    }

    async fn keys(client: &Client, cookie: &Cookie<'static>) -> Vec<String> {
        let res = client.get("/keys").cookie(cookie.clone()).dispatch().await;
        assert_eq!(res.status(), Status::Ok);
        let body = res.into_string().await.unwrap_or_default();
        body.split(',')
            .filter(|k| k.starts_with('k'))
            .map(str::to_owned)
            .collect()
    }

    /// Every request loads the session before any saves (the barrier),
    /// and none of their writes conflicts: each goes onto the record the
    /// one before wrote.
    #[tokio::test(start_paused = true)]
    async fn concurrent_writers_in_one_process_never_conflict() {
        let writers = 32;
        let store = counting(true);
        let client = client(store.clone(), app::config("serial-one"), writers).await;
        let cookie = session(&client).await;
        let updates = store.updates();
        let requests = (0..writers).map(|n| write(&client, &cookie, format!("/together/k{n:02}")));
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
        assert_eq!(keys(&client, &cookie).await.len(), writers, "updates lost");
        assert_eq!(store.conflicts(), 0, "saves raced each other");
        assert_eq!(
            store.updates() - updates,
            writers as u64,
            "one write per save"
        );
        assert_no_gates_left(&[&client]).await;
    }

    /// Two apps on one store are two processes: their saves conflict, and
    /// are merged.
    #[tokio::test(start_paused = true)]
    async fn two_apps_on_one_store_still_merge() {
        let writers = 16;
        let store = counting(true);
        let config = app::config("serial-two");
        let first = client(store.clone(), config.clone(), writers).await;
        let second = client(store.clone(), config, writers).await;
        let cookie = session(&first).await;
        let requests = (0..2 * writers).map(|n| {
            let client = if n % 2 == 0 { &first } else { &second };
            write(client, &cookie, format!("/together/k{n:02}"))
        });
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
        assert_eq!(
            keys(&second, &cookie).await.len(),
            2 * writers,
            "updates lost"
        );
        assert!(store.conflicts() > 0, "the apps did race");
        assert_no_gates_left(&[&first, &second]).await;
    }

    /// A logout that races the saves of its session ends it for good: no
    /// save after it writes the session back, remembered record or not.
    #[tokio::test(start_paused = true)]
    async fn a_logout_racing_the_saves_ends_the_session() {
        let writers = 16;
        let store = counting(true);
        let config = app::config("serial-logout");
        let prefix = config.key_prefix.clone();
        let client = client(store.clone(), config, writers + 1).await;
        let cookie = session(&client).await;
        let barrier = client
            .rocket()
            .state::<Arc<Barrier>>()
            .expect("barrier")
            .clone();
        let logout = async {
            barrier.wait().await;
            write(&client, &cookie, "/logout".into()).await
        };
        let requests = (0..writers).map(|n| write(&client, &cookie, format!("/together/k{n:02}")));
        let (statuses, logout) =
            futures_util::future::join(futures_util::future::join_all(requests), logout).await;
        assert_eq!(logout, Status::Ok);
        assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
        assert!(
            keys(&client, &cookie).await.is_empty(),
            "the session lives on"
        );
        assert!(app::live_sessions(&*store, &prefix).await.is_empty());
        assert_no_gates_left(&[&client]).await;
    }

    /// Without compare-and-swap the saves still succeed (they take turns;
    /// without versions nothing is remembered).
    #[tokio::test(start_paused = true)]
    async fn without_compare_and_swap_saves_take_turns() {
        let writers = 32;
        let store = counting(false);
        let client = client(store.clone(), app::config("serial-plain"), writers).await;
        let cookie = session(&client).await;
        let requests = (0..writers).map(|n| write(&client, &cookie, format!("/together/k{n:02}")));
        let statuses = futures_util::future::join_all(requests).await;
        assert!(statuses.iter().all(|s| *s == Status::Ok), "{statuses:?}");
        assert!(!keys(&client, &cookie).await.is_empty());
        assert_eq!(store.conflicts(), 0);
        assert_no_gates_left(&[&client]).await;
    }
}
