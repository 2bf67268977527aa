//! What the store writes to memcached and how it handles memcached's edge
//! cases: record layout and expiry tokens (the 31-day default as an
//! absolute time), items memcached still holds past their expiry, foreign
//! versions, `touch`, keys memcached URI-encodes in its dump, the item size
//! limit, a server without its LRU crawler, a busy crawler, several
//! servers, stalls.

mod common;

use std::collections::HashSet;
use std::error::Error as _;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use futures::TryStreamExt;
use rocket_kvsession::conformance::unique_prefix;
use rocket_kvsession::{
    CreateOutcome, DeleteOutcome, KeyValueStore, StoreError, UpdateOutcome, Version,
};
use rocket_kvsession_memcached::{MemcachedStore, MemcachedStoreError, DEFAULT_ITEM_SIZE_LIMIT};

use common::{Raw, TestServer};

fn in_secs(secs: u64) -> SystemTime {
    SystemTime::now() + Duration::from_secs(secs)
}

fn unix_ms(at: SystemTime) -> u64 {
    at.duration_since(UNIX_EPOCH).unwrap().as_millis() as u64
}

fn key(prefix: &str, n: u64) -> String {
    format!("{prefix}{n:016x}_65000000")
}

async fn listed(store: &MemcachedStore, prefix: &str) -> HashSet<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

fn created_version(outcome: Result<CreateOutcome, StoreError>) -> Version {
    match outcome {
        Ok(CreateOutcome::Created(Some(v))) => v,
        other => panic!("create: {other:?}"),
    }
}

/// The store's own error inside a `StoreError`.
fn own_error(e: &StoreError) -> &MemcachedStoreError {
    e.source()
        .and_then(|s| s.downcast_ref::<MemcachedStoreError>())
        .unwrap_or_else(|| panic!("not a MemcachedStoreError: {e:?}"))
}

/// A record in this crate's layout, written directly: for items memcached
/// holds whatever their header says.
fn record(expires_ms: u64, value: &[u8]) -> Vec<u8> {
    let mut out = vec![1u8];
    out.extend_from_slice(&expires_ms.to_be_bytes());
    out.extend_from_slice(value);
    out
}

#[tokio::test]
async fn record_layout_cas_versions_and_relative_ttls() {
    let Some(url) = common::url("record_layout") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.unwrap();
    let mut raw = Raw::connect(&url).await;
    let key = key(&unique_prefix("layout"), 1);
    let expires = in_secs(600);

    let version = created_version(store.create(&key, b"value", Some(expires)).await);
    let (bytes, cas, ttl) = raw.item(&key).await.expect("stored");
    assert_eq!(bytes, record(unix_ms(expires), b"value"), "the layout");
    assert_eq!(
        version.as_str(),
        cas.to_string(),
        "the version is the CAS value"
    );
    // 600 s rounded up plus a second of grace, sent as seconds from now.
    assert!((599..=601).contains(&ttl), "TTL {ttl}");

    let record = store.get(&key).await.unwrap().expect("record");
    assert_eq!(record.value, b"value");
    assert_eq!(record.version, Some(version.clone()));
    assert_eq!(record.expires_at.map(unix_ms), Some(unix_ms(expires)));

    let updated = store
        .update(&key, b"next", Some(&version), Some(in_secs(1200)))
        .await
        .unwrap();
    let UpdateOutcome::Updated(Some(next)) = updated else {
        panic!("{updated:?}");
    };
    let (_, cas, ttl) = raw.item(&key).await.unwrap();
    assert_eq!(next.as_str(), cas.to_string());
    assert!((1199..=1201).contains(&ttl), "TTL {ttl}");
    store.delete(&key).await.unwrap();
}

/// memcached reads an expiry over 30 days as an absolute Unix time: the
/// default lifetime of 31 days must arrive as one, or every session is
/// stored already expired.
#[tokio::test]
async fn thirty_one_days_are_sent_as_an_absolute_time() {
    let Some(url) = common::url("thirty_one_days") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.unwrap();
    let mut raw = Raw::connect(&url).await;
    let prefix = unique_prefix("31-days");
    let month = Duration::from_secs(31 * 24 * 3600);
    for (n, lifetime) in [
        (1, month),
        (2, Duration::from_secs(30 * 24 * 3600)),
        (3, Duration::from_secs(30 * 24 * 3600 + 1)),
        (4, Duration::from_secs(365 * 24 * 3600)),
    ] {
        let key = key(&prefix, n);
        let _ = created_version(
            store
                .create(&key, b"v", Some(SystemTime::now() + lifetime))
                .await,
        );
        let (_, _, ttl) = raw
            .item(&key)
            .await
            .expect("a live item, not one already expired");
        // Rounded up, plus a second of grace, and memcached converts an
        // absolute time on a clock of its own, which may be a second ahead.
        let secs = lifetime.as_secs() as i64;
        assert!(
            (secs - 60..=secs + 4).contains(&ttl),
            "lifetime {secs}: memcached holds it for {ttl} s"
        );
        assert!(store.get(&key).await.unwrap().is_some());
        store.delete(&key).await.unwrap();
    }
}

#[tokio::test]
async fn a_past_expiry_stores_no_live_item() {
    let Some(url) = common::url("past_expiry") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.unwrap();
    let mut raw = Raw::connect(&url).await;
    let prefix = unique_prefix("past");
    let past = SystemTime::now() - Duration::from_secs(5);

    let dead = key(&prefix, 1);
    let _ = created_version(store.create(&dead, b"v", Some(past)).await);
    assert_eq!(raw.item(&dead).await, None, "memcached holds no item");
    assert_eq!(store.get(&dead).await.unwrap(), None);

    // An update to a past expiry ends the record.
    let live = key(&prefix, 2);
    let v = created_version(store.create(&live, b"v", Some(in_secs(60))).await);
    let outcome = store
        .update(&live, b"w", Some(&v), Some(past))
        .await
        .unwrap();
    assert!(matches!(outcome, UpdateOutcome::Updated(_)), "{outcome:?}");
    assert_eq!(raw.item(&live).await, None);
    assert_eq!(store.get(&live).await.unwrap(), None);
}

/// memcached counts whole seconds and gets a second of grace, so it may
/// hold an item a moment past the expiry in its header: the store treats
/// it as gone (written here directly, so no clock has to pass).
#[tokio::test]
async fn items_past_their_header_expiry_are_gone() {
    let Some(url) = common::url("header_expiry") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.unwrap();
    let mut raw = Raw::connect(&url).await;
    let key = key(&unique_prefix("header-expiry"), 1);
    let expired = record(unix_ms(SystemTime::now()) - 10, b"old");
    let (reply, _) = raw
        .meta(&format!("ms {key} {} T60", expired.len()), Some(&expired))
        .await;
    assert_eq!(reply, "HD");
    assert_eq!(store.get(&key).await.unwrap(), None, "get");
    assert_eq!(
        store
            .update(&key, b"x", None, Some(in_secs(60)))
            .await
            .unwrap(),
        UpdateOutcome::Missing,
        "update without a version never brings it back"
    );
    assert_eq!(
        store.touch(&key, in_secs(60)).await.unwrap(),
        UpdateOutcome::Missing,
        "touch"
    );
    assert!(raw.item(&key).await.is_some(), "left alone");

    // `create` takes the key over.
    let version = created_version(store.create(&key, b"new", Some(in_secs(60))).await);
    let record = store.get(&key).await.unwrap().expect("the new record");
    assert_eq!(record.value, b"new");
    assert_eq!(record.version, Some(version));
    store.delete(&key).await.unwrap();

    // A value that is not a record of this crate is an error, not a session.
    let (reply, _) = raw.meta(&format!("ms {key} 3 T60"), Some(b"abc")).await;
    assert_eq!(reply, "HD");
    let e = store.get(&key).await.unwrap_err();
    assert!(
        matches!(own_error(&e), MemcachedStoreError::CorruptRecord { .. }),
        "{e:?}"
    );
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn foreign_versions_match_nothing() {
    let Some(store) = common::store("foreign_versions").await else {
        return;
    };
    let prefix = unique_prefix("foreign");
    let key = key(&prefix, 1);
    let junk = Version::new("not-a-cas-value");
    let _ = created_version(store.create(&key, b"v", Some(in_secs(60))).await);
    assert_eq!(
        store
            .update(&key, b"w", Some(&junk), Some(in_secs(60)))
            .await
            .unwrap(),
        UpdateOutcome::Conflict
    );
    let cad = store.compare_and_delete().unwrap();
    assert_eq!(
        cad.delete_if(&key, &junk).await.unwrap(),
        DeleteOutcome::Conflict
    );
    assert_eq!(store.get(&key).await.unwrap().unwrap().value, b"v");
    store.delete(&key).await.unwrap();
    assert_eq!(
        store
            .update(&key, b"w", Some(&junk), Some(in_secs(60)))
            .await
            .unwrap(),
        UpdateOutcome::Missing
    );
    assert_eq!(
        cad.delete_if(&key, &junk).await.unwrap(),
        DeleteOutcome::Missing
    );
}

#[tokio::test]
async fn touch_moves_both_expiries_and_keeps_the_value() {
    let Some(url) = common::url("touch") else {
        return;
    };
    let store = MemcachedStore::connect(&url).await.unwrap();
    let mut raw = Raw::connect(&url).await;
    let key = key(&unique_prefix("touch"), 1);
    let v1 = created_version(store.create(&key, b"keep", Some(in_secs(60))).await);
    let later = in_secs(7200);
    let UpdateOutcome::Updated(Some(v2)) = store.touch(&key, later).await.unwrap() else {
        panic!("touch");
    };
    let (bytes, cas, ttl) = raw.item(&key).await.unwrap();
    assert_eq!(bytes, record(unix_ms(later), b"keep"));
    assert!((7199..=7201).contains(&ttl), "TTL {ttl}");
    // memcached cannot rewrite a value and keep its CAS value (1.6.18 has
    // no `E` flag for `ms`): the version moves, and the old one conflicts.
    assert_eq!(v2.as_str(), cas.to_string());
    assert_ne!(v1, v2);
    assert_eq!(
        store
            .update(&key, b"stale", Some(&v1), Some(in_secs(60)))
            .await
            .unwrap(),
        UpdateOutcome::Conflict
    );
    let record = store.get(&key).await.unwrap().unwrap();
    assert_eq!(record.value, b"keep");
    assert_eq!(record.expires_at.map(unix_ms), Some(unix_ms(later)));
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn keys_memcached_encodes_in_its_dump_are_listed_as_written() {
    let Some(store) = common::store("encoded_keys").await else {
        return;
    };
    let prefix = format!("{}%/ü:+&=", unique_prefix("encoded"));
    let keys: HashSet<String> = (0..5).map(|n| key(&prefix, n)).collect();
    for key in &keys {
        let _ = created_version(store.create(key, b"v", Some(in_secs(60))).await);
    }
    assert_eq!(listed(&store, &prefix).await, keys);
    store.delete_many(keys.into_iter().collect()).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

#[tokio::test]
async fn keys_memcached_cannot_hold_are_refused() {
    let Some(store) = common::store("bad_keys").await else {
        return;
    };
    for bad in [
        "a b".to_owned(),
        "a\r\nb".to_owned(),
        "k".repeat(251),
        String::new(),
    ] {
        let e = store.check_key(&bad).unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{e:?}");
        let e = store.get(&bad).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{e:?}");
        let e = store.create(&bad, b"v", None).await.unwrap_err();
        assert!(matches!(e, StoreError::InvalidKey { .. }), "{e:?}");
    }
    store.check_key(&"k".repeat(250)).unwrap();
}

#[tokio::test]
async fn records_over_the_item_size_limit_fail_naming_it() {
    let Some(store) = common::store("too_large").await else {
        return;
    };
    assert_eq!(
        store.item_size_limit(),
        DEFAULT_ITEM_SIZE_LIMIT,
        "the server's -I"
    );
    let key = key(&unique_prefix("too-large"), 1);
    let huge = vec![7u8; 2 * 1024 * 1024];
    for result in [
        store
            .create(&key, &huge, Some(in_secs(60)))
            .await
            .map(|_| ()),
        store
            .update(&key, &huge, None, Some(in_secs(60)))
            .await
            .map(|_| ()),
    ] {
        let e = result.unwrap_err();
        assert!(matches!(e, StoreError::Backend { .. }), "{e:?}");
        let MemcachedStoreError::ValueTooLarge { limit, size } = own_error(&e) else {
            panic!("{e:?}");
        };
        assert_eq!(*limit, DEFAULT_ITEM_SIZE_LIMIT);
        assert!(*size > huge.len());
        assert!(e.source().unwrap().to_string().contains("1048576 bytes"));
    }
    assert_eq!(store.get(&key).await.unwrap(), None, "nothing was written");

    // The largest record the store lets through is one memcached stores.
    let mut largest = 0;
    for len in (900 * 1024..DEFAULT_ITEM_SIZE_LIMIT).step_by(512) {
        let value = vec![1u8; len];
        match store.create(&key, &value, Some(in_secs(60))).await {
            Ok(CreateOutcome::Created(_)) => {
                largest = len;
                store.delete(&key).await.unwrap();
            }
            Ok(other) => panic!("{other:?}"),
            Err(e) => {
                let MemcachedStoreError::ValueTooLarge { .. } = own_error(&e) else {
                    panic!("{e:?}");
                };
                break;
            }
        }
    }
    assert!(
        largest > DEFAULT_ITEM_SIZE_LIMIT - 1024,
        "largest accepted: {largest}"
    );
    let record = vec![1u8; largest];
    let _ = created_version(store.create(&key, &record, Some(in_secs(60))).await);
    assert_eq!(store.get(&key).await.unwrap().unwrap().value, record);
    store.delete(&key).await.unwrap();
}

#[tokio::test]
async fn the_item_size_limit_is_the_servers() {
    let Some(server) = TestServer::start_with("item_size_limit", &["-I", "2m"]).await else {
        return;
    };
    let store = MemcachedStore::connect(&server.url()).await.unwrap();
    assert_eq!(store.item_size_limit(), 2 * 1024 * 1024);
    let _ = created_version(
        store
            .create("k_1", &vec![0u8; 1536 * 1024], Some(in_secs(60)))
            .await,
    );
    let e = store
        .create("k_2", &vec![0u8; 3 * 1024 * 1024], Some(in_secs(60)))
        .await
        .unwrap_err();
    let MemcachedStoreError::ValueTooLarge { limit, .. } = own_error(&e) else {
        panic!("{e:?}");
    };
    assert_eq!(*limit, 2 * 1024 * 1024);
}

#[tokio::test]
async fn a_server_without_its_crawler_fails_listing_clearly() {
    let Some(server) = TestServer::start_with("no_crawler", &["-o", "no_lru_crawler"]).await else {
        return;
    };
    let store = MemcachedStore::connect(&server.url()).await.unwrap();
    store.init().await.expect("init only warns");
    let _ = created_version(store.create("s_1", b"v", Some(in_secs(60))).await);
    let e = store.list("s_").try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(e, StoreError::Misconfigured { .. }), "{e:?}");
    let MemcachedStoreError::CrawlerRefused { reply, .. } = own_error(&e) else {
        panic!("{e:?}");
    };
    assert!(reply.contains("lru crawler disabled"), "{reply}");
}

/// A crawl that another client does not read holds the server's crawler
/// (and the worker thread that asks for another one): a listing meanwhile
/// fails as unavailable, within its bounds, never lists nothing. (How soon
/// memcached recovers once that client is gone is memcached's business:
/// 1.6.18 sometimes does not, while crawl requests abandoned meanwhile are
/// pending.)
#[tokio::test]
async fn a_crawler_held_by_another_client_makes_listing_unavailable() {
    let Some(server) = TestServer::start("held_crawler").await else {
        return;
    };
    // Enough items that the dump cannot fit the socket buffers.
    let mut raw = Raw::connect(&server.url()).await;
    let items = 300_000;
    let mut batch = String::new();
    for n in 0..items {
        batch.push_str(&format!("ms fill_{n:08} 1 T600 q\r\nv\r\n"));
    }
    batch.push_str("mn");
    assert_eq!(raw.meta(&batch, None).await.0, "MN");

    let mut holder = Raw::connect(&server.url()).await;
    let (first, _) = holder.meta("lru_crawler metadump all", None).await;
    assert!(first.starts_with("key="), "{first}");

    let timeout = Duration::from_millis(500);
    let wait = Duration::from_millis(300);
    let store = MemcachedStore::builder()
        .timeout(timeout)
        .crawl_wait(wait)
        .connect(&server.url())
        .await
        .unwrap();
    let started = Instant::now();
    let e = store
        .list("fill_")
        .try_collect::<Vec<_>>()
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(
        matches!(
            own_error(&e),
            MemcachedStoreError::CrawlerBusy { .. } | MemcachedStoreError::Timeout { .. }
        ),
        "{e:?}"
    );
    assert!(started.elapsed() < wait + timeout + Duration::from_secs(2));

    drop(holder);
}

/// A stand-in for memcached that answers `lru_crawler metadump` from a
/// script: one reply per command received, in order; the last one for
/// every command after.
async fn scripted_crawler(
    replies: Vec<&'static str>,
) -> (String, tokio::task::JoinHandle<Vec<String>>) {
    use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let address = listener.local_addr().unwrap().to_string();
    let task = tokio::spawn(async move {
        let (stream, _) = listener.accept().await.unwrap();
        let mut stream = BufReader::new(stream);
        let mut commands = Vec::new();
        loop {
            let mut line = String::new();
            if stream.read_line(&mut line).await.unwrap_or(0) == 0 {
                return commands;
            }
            commands.push(line.trim_end().to_owned());
            let reply = replies[(commands.len() - 1).min(replies.len() - 1)];
            stream.get_mut().write_all(reply.as_bytes()).await.unwrap();
        }
    });
    (address, task)
}

async fn store_on(address: &str, wait: Duration) -> MemcachedStore {
    use rocket_kvsession_memcached::memcache::exp::AsyncMetaClient;
    let client = AsyncMetaClient::connect(address).await.unwrap();
    MemcachedStore::new(client, [address]).with_crawl_wait(wait)
}

const BUSY: &str = "BUSY currently processing crawler request\r\n";

#[tokio::test]
async fn a_busy_crawler_is_retried() {
    let (address, server) = scripted_crawler(vec![
        BUSY,
        BUSY,
        "key=a_1 exp=-1 la=1 cas=1 fetch=no cls=1 size=60\nkey=b_1 exp=-1 la=1 cas=2 fetch=no cls=1 size=60\nkey=a%3A2 exp=-1 la=1 cas=3 fetch=no cls=1 size=60\nEND\r\n",
    ])
    .await;
    let store = store_on(&address, Duration::from_secs(30)).await;
    let keys: Vec<String> = store
        .list("a")
        .map_ok(|i| i.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys, ["a_1", "a:2"]);
    drop(store);
    assert_eq!(server.await.unwrap(), ["lru_crawler metadump hash"; 3]);
}

#[tokio::test]
async fn a_crawler_busy_for_longer_than_the_wait_is_reported() {
    let (address, _server) = scripted_crawler(vec![BUSY]).await;
    let wait = Duration::from_millis(200);
    let store = store_on(&address, wait).await;
    let started = Instant::now();
    let e = store.list("").try_collect::<Vec<_>>().await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    let MemcachedStoreError::CrawlerBusy { waited, .. } = own_error(&e) else {
        panic!("{e:?}");
    };
    assert!(*waited >= wait);
    assert!(started.elapsed() < wait + Duration::from_secs(2));
}

#[tokio::test]
async fn servers_without_hash_dumps_are_crawled_by_lru() {
    let (address, server) = scripted_crawler(vec![
        "BADCLASS invalid class id\r\n",
        "key=s_1 exp=-1 la=1 cas=1 fetch=no cls=1 size=60\nEND\r\n",
    ])
    .await;
    let store = store_on(&address, Duration::from_secs(30)).await;
    let keys: Vec<String> = store
        .list("s_")
        .map_ok(|i| i.key)
        .try_collect()
        .await
        .unwrap();
    assert_eq!(keys, ["s_1"]);
    drop(store);
    assert_eq!(
        server.await.unwrap(),
        ["lru_crawler metadump hash", "lru_crawler metadump all"]
    );
}

#[tokio::test]
async fn keys_spread_over_several_servers_and_all_are_listed() {
    let Some(a) = TestServer::start("several_servers").await else {
        return;
    };
    let b = TestServer::start("several_servers").await.unwrap();
    let url = format!("memcache://127.0.0.1:{},127.0.0.1:{}", a.port, b.port);
    let store = MemcachedStore::connect(&url).await.unwrap();
    assert_eq!(store.servers().len(), 2);
    let prefix = unique_prefix("spread");
    let keys: Vec<String> = (0..60).map(|n| key(&prefix, n)).collect();
    for key in &keys {
        let _ = created_version(store.create(key, key.as_bytes(), Some(in_secs(60))).await);
    }
    let (mut on_a, mut on_b) = (0, 0);
    let (mut raw_a, mut raw_b) = (Raw::connect(&a.url()).await, Raw::connect(&b.url()).await);
    for key in &keys {
        match (raw_a.item(key).await, raw_b.item(key).await) {
            (Some(_), None) => on_a += 1,
            (None, Some(_)) => on_b += 1,
            other => panic!("{key}: {other:?}"),
        }
    }
    assert!(on_a > 10 && on_b > 10, "{on_a} / {on_b}");
    assert_eq!(
        listed(&store, &prefix).await,
        keys.iter().cloned().collect()
    );

    // The servers' order does not matter: another process that lists them
    // the other way round finds every session.
    let reversed = format!("memcache://127.0.0.1:{},127.0.0.1:{}", b.port, a.port);
    let other = MemcachedStore::connect(&reversed).await.unwrap();
    for key in &keys {
        assert_eq!(other.get(key).await.unwrap().unwrap().value, key.as_bytes());
    }
    other.delete_many(keys.clone()).await.unwrap();
    assert!(listed(&store, &prefix).await.is_empty());
}

/// A server that accepts connections but never answers: every operation
/// fails as unavailable within the timeout.
#[tokio::test]
async fn a_stalled_server_times_out() {
    if common::skipping("stalled_server") {
        return;
    }
    // The kernel accepts connections into the backlog; nobody reads them.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let url = format!("memcache://{}", listener.local_addr().unwrap());
    let timeout = Duration::from_millis(300);
    let started = Instant::now();
    let e = MemcachedStore::builder()
        .timeout(timeout)
        .connect(&url)
        .await
        .unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(started.elapsed() < timeout + Duration::from_secs(2));

    // A client of the caller's without timeouts of its own: the store's
    // bound still holds.
    use rocket_kvsession_memcached::memcache::exp::AsyncMetaClient;
    let address = listener.local_addr().unwrap().to_string();
    let client = AsyncMetaClient::builder()
        .io_timeout(None)
        .connect_timeout(None)
        .connect_async(address.as_str())
        .await
        .unwrap();
    let store = MemcachedStore::new(client, [address]).with_timeout(timeout);
    let started = Instant::now();
    let e = store.get("k_1").await.unwrap_err();
    assert!(matches!(e, StoreError::Unavailable { .. }), "{e:?}");
    assert!(
        matches!(own_error(&e), MemcachedStoreError::Timeout { .. }),
        "{e:?}"
    );
    assert!(started.elapsed() < timeout + Duration::from_secs(2));
}
