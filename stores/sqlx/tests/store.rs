//! The sqlx stores' own behaviour beyond the conformance suite, on
//! PostgreSQL, a SQLite file and SQLite in memory: table names that try to
//! inject SQL, prefixes with `LIKE` wildcards, the native sweep at scale
//! through `cleanup_sessions`, `init`, the schema, the capabilities, and
//! compare-and-delete of expired rows and foreign versions.

mod common;

use std::collections::HashSet;
use std::time::{Duration, SystemTime};

use futures::TryStreamExt;
use rocket_kvsession::conformance::session_id_created_at;
use rocket_kvsession::{
    cleanup_sessions, Capabilities, CreateOutcome, DeleteOutcome, Expiry, KeyValueStore,
    SessionConfig, StoreError, UpdateOutcome, Version,
};
use rocket_kvsession_sqlx::{sqlx, PostgresStore, SqliteStore, TableName};

use common::Backend;

const HOSTILE_NAMES: &[&str] = &[
    "sessions\"; DROP TABLE users; --",
    "sessions; DROP TABLE users",
    "x\" (key int); --",
    "a.b.c",
    "sessions'",
    "ses sions",
    "sessions--",
    "",
    "1sessions",
    "sessions\u{0}",
    "séance",
];

async fn listed(store: &dyn KeyValueStore, prefix: &str) -> HashSet<String> {
    store
        .list(prefix)
        .map_ok(|info| info.key)
        .try_collect()
        .await
        .expect("list")
}

/// Every backend under test, or fewer when PostgreSQL is opted out.
async fn backends(test: &str) -> Vec<Backend> {
    let mut all = Vec::new();
    if let Some(pg) = common::postgres(test).await {
        all.push(pg);
    }
    all.push(common::sqlite_file(test).await.expect("sqlite file"));
    all.push(common::sqlite_memory(test).await.expect("sqlite memory"));
    all
}

#[tokio::test]
async fn table_names_that_could_inject_sql_are_refused() {
    for name in HOSTILE_NAMES {
        let err = TableName::new(name).expect_err(name);
        assert_eq!(err.name(), *name);
        let sqlite = SqliteStore::connect("sqlite::memory:")
            .await
            .expect("connect");
        assert!(sqlite.with_table_name(name).is_err(), "{name:?}");
    }
    if let Some(url) = common::database_url("table_names_that_could_inject_sql_are_refused") {
        let pg = PostgresStore::connect(&url).await.expect("connect");
        for name in HOSTILE_NAMES {
            assert!(pg.clone().with_table_name(name).is_err(), "{name:?}");
        }
    }
}

#[tokio::test]
async fn quoted_mixed_case_table_names_and_hostile_keys_round_trip() {
    // A valid name that only works when quoted consistently, and keys and
    // values full of SQL metacharacters: everything is bound, nothing is
    // interpolated.
    let mut stores: Vec<(Box<dyn KeyValueStore>, Backend)> = Vec::new();
    let name = format!("Mixed_Case_{}", common::unique_table("q"));
    let name = &name[..name.len().min(63)];
    for backend in backends("hostile_keys").await {
        let store: Box<dyn KeyValueStore> = match &backend {
            Backend::Postgres(s) => Box::new(s.clone().with_table_name(name).expect("name")),
            Backend::SqliteFile(s, _) | Backend::SqliteMemory(s) => {
                Box::new(s.clone().with_table_name(name).expect("name"))
            }
        };
        store.init().await.expect("init");
        store.init().await.expect("init is idempotent");
        stores.push((store, backend));
    }
    for (store, _) in &stores {
        for key in [
            "'; DROP TABLE kvsession; --",
            "a\"b",
            "%_\\",
            "key with spaces and ünïcödé",
        ] {
            let value = key.as_bytes();
            let created = store.create(key, value, None).await.expect("create");
            assert!(matches!(created, CreateOutcome::Created(Some(_))), "{key}");
            let record = store.get(key).await.expect("get").expect("record");
            assert_eq!(record.value, value);
            assert_eq!(listed(&**store, key).await, HashSet::from([key.to_owned()]));
            store.delete(key).await.expect("delete");
        }
    }
    for (store, backend) in stores {
        if let Backend::Postgres(pg) = &backend {
            let quoted = format!("DROP TABLE \"{name}\"");
            sqlx::query(&quoted)
                .execute(pg.pool())
                .await
                .expect("the table has its exact name");
        }
        drop(store);
        backend.finish().await;
    }
}

#[tokio::test]
async fn prefixes_are_matched_literally() {
    for backend in backends("literal_prefix").await {
        let store = backend.store();
        let base = rocket_kvsession::conformance::unique_prefix("like");
        let keys = [
            format!("{base}a%b_1"),
            format!("{base}a%b_2"),
            format!("{base}aXbY3"),   // matches `a%b_` as a LIKE pattern
            format!("{base}a%bb4"),   // matches `a%b_` as a LIKE pattern
            format!("{base}a\\%b_5"), // the escape character itself
            format!("{base}A%B_6"),   // another case
        ];
        for key in &keys {
            let past = SystemTime::now() - Duration::from_secs(10);
            let _ = store.create(key, b"v", Some(past)).await.expect("create");
        }
        let literal = format!("{base}a%b_");
        assert_eq!(
            listed(store, &literal).await,
            HashSet::from([keys[0].clone(), keys[1].clone()]),
            "{backend:?}"
        );
        assert_eq!(
            listed(store, &format!("{base}a\\%")).await,
            HashSet::from([keys[4].clone()])
        );
        assert_eq!(
            listed(store, &format!("{base}A")).await,
            HashSet::from([keys[5].clone()]),
            "prefixes are case-sensitive"
        );
        // The native sweep honours the same literal prefix.
        let native = store.expired_deletion().expect("a native sweep");
        let deleted = native
            .delete_expired(&literal, SystemTime::now(), 100)
            .await
            .expect("delete_expired");
        assert_eq!(deleted, 2);
        assert_eq!(listed(store, &base).await.len(), 4);
        let deleted = native
            .delete_expired(&base, SystemTime::now(), 100)
            .await
            .expect("delete_expired");
        assert_eq!(deleted, 4);
        backend.finish().await;
    }
}

/// Fills the table with `n` sessions under `prefix` through SQL: expired
/// ones (expires_at in the past) or live ones.
async fn fill(backend: &Backend, prefix: &str, n: u64, expired: bool) {
    let now = SystemTime::now()
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    let expires_at = if expired {
        now - 60_000
    } else {
        now + 3_600_000
    };
    // Session-shaped keys: `{16 hex}_{created hex}`.
    let created = format!("{:x}", now / 1000);
    match backend {
        Backend::Postgres(store) => {
            let sql = format!(
                "INSERT INTO {} (key, value, version, expires_at, modified_at) \
                 SELECT $1 || lpad(to_hex(i), 16, '0') || '_' || $2, '\\x00'::bytea, 1, $3, $4 \
                 FROM generate_series(1, $5) AS i",
                common::quoted(store.table_name())
            );
            sqlx::query(&sql)
                .bind(prefix)
                .bind(&created)
                .bind(expires_at)
                .bind(now)
                .bind(n as i64)
                .execute(store.pool())
                .await
                .expect("fill");
        }
        Backend::SqliteFile(store, _) | Backend::SqliteMemory(store) => {
            let sql = format!(
                "WITH RECURSIVE i(n) AS (SELECT 1 UNION ALL SELECT n + 1 FROM i WHERE n < ?5) \
                 INSERT INTO {} (key, value, version, expires_at, modified_at) \
                 SELECT ?1 || printf('%016x', n) || '_' || ?2, x'00', 1, ?3, ?4 FROM i",
                common::quoted(store.table_name())
            );
            sqlx::query(&sql)
                .bind(prefix)
                .bind(&created)
                .bind(expires_at)
                .bind(now)
                .bind(n as i64)
                .execute(store.pool())
                .await
                .expect("fill");
        }
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cleanup_sessions_sweeps_natively_in_batches() {
    for backend in backends("native_sweep").await {
        let store = backend.store();
        let config = SessionConfig {
            key_prefix: rocket_kvsession::conformance::unique_prefix("sweep"),
            lifetime: 3600,
            ..Default::default()
        };
        let prefix = &config.key_prefix;
        // 25,000 expired rows: three native statements (10,000 at most each).
        fill(&backend, prefix, 25_000, true).await;
        let live_prefix = format!("{prefix}live-");
        fill(&backend, &live_prefix, 300, false).await;
        // Written without an expiry (as with set_ttl = false): judged by the
        // key, here created two hours ago with a one-hour lifetime.
        let two_hours_ago = SystemTime::now() - Duration::from_secs(7200);
        let old = format!("{prefix}{}", session_id_created_at(64, two_hours_ago));
        let young = format!("{prefix}{}", session_id_created_at(64, SystemTime::now()));
        for key in [&old, &young] {
            let _ = store.create(key, b"v", None).await.expect("create");
        }
        // Another app's expired sessions are not touched.
        let other = rocket_kvsession::conformance::unique_prefix("sweep-other");
        fill(&backend, &other, 10, true).await;

        let report = cleanup_sessions(store, &config).await.expect("sweep");
        assert_eq!(report.deleted, 25_001, "{report:?} on {backend:?}");
        // What is left after the native statements is listed and judged
        // by its keys: the 300 rows that are not ids of this layout are
        // skipped, the two without expiry judged.
        assert_eq!(
            (report.scanned, report.skipped),
            (302, 300),
            "the rows left are listed: {report:?}"
        );
        let left = listed(store, prefix).await;
        assert_eq!(left.len(), 301);
        assert!(left.contains(&young) && !left.contains(&old));
        assert_eq!(listed(store, &other).await.len(), 10);
        let again = cleanup_sessions(store, &config).await.expect("sweep");
        assert_eq!(again.deleted, 0);
        backend.finish().await;
    }
}

#[tokio::test]
async fn an_expired_row_is_taken_over_with_a_new_version() {
    for backend in backends("takeover").await {
        let store = backend.store();
        let key = format!(
            "{}k",
            rocket_kvsession::conformance::unique_prefix("takeover")
        );
        let past = SystemTime::now() - Duration::from_secs(1);
        let Ok(CreateOutcome::Created(Some(old))) = store.create(&key, b"old", Some(past)).await
        else {
            panic!("create");
        };
        assert_eq!(store.get(&key).await.expect("get"), None);
        let later = SystemTime::now() + Duration::from_secs(60);
        let Ok(CreateOutcome::Created(Some(new))) = store.create(&key, b"new", Some(later)).await
        else {
            panic!("an expired key must be free for create");
        };
        assert_ne!(old, new, "a stale version must not match the new record");
        let stale = store
            .update(&key, b"stale", Some(&old), Some(later))
            .await
            .expect("update");
        assert_eq!(stale, UpdateOutcome::Conflict);
        let record = store.get(&key).await.expect("get").expect("record");
        assert_eq!(record.value, b"new");
        let at = record.expires_at.expect("the expiry column is returned");
        let delta = at.duration_since(later).expect("never earlier than handed");
        assert!(delta < Duration::from_millis(1), "{delta:?}");
        // touch keeps the version and the value.
        let even_later = later + Duration::from_secs(600);
        assert_eq!(
            store.touch(&key, even_later).await.expect("touch"),
            UpdateOutcome::Updated(Some(new.clone()))
        );
        let record = store.get(&key).await.expect("get").expect("record");
        assert_eq!(
            (record.value.as_slice(), record.version),
            (&b"new"[..], Some(new))
        );
        assert!(record.expires_at.expect("expiry") >= even_later);
        backend.finish().await;
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_inits_of_one_table_all_succeed() {
    let Some(Backend::Postgres(store)) = common::postgres("concurrent_init").await else {
        return;
    };
    let fresh = store
        .clone()
        .with_table_name(&common::unique_table("init_race"))
        .expect("name");
    let inits = (0..8).map(|_| {
        let store = fresh.clone();
        tokio::spawn(async move { store.init().await })
    });
    for result in futures::future::join_all(inits).await {
        result.expect("task").expect("init");
    }
    let _ = fresh.create("k", b"v", None).await.expect("create");
    let drop_table = format!("DROP TABLE {}", common::quoted(fresh.table_name()));
    sqlx::query(&drop_table)
        .execute(fresh.pool())
        .await
        .expect("drop");
    Backend::Postgres(store).finish().await;
}

#[tokio::test]
async fn a_missing_table_is_a_configuration_error() {
    for backend in backends("missing_table").await {
        let store: Box<dyn KeyValueStore> = match &backend {
            Backend::Postgres(s) => {
                Box::new(s.clone().with_table_name("never_created").expect("name"))
            }
            Backend::SqliteFile(s, _) | Backend::SqliteMemory(s) => {
                Box::new(s.clone().with_table_name("never_created").expect("name"))
            }
        };
        let err = store.get("k").await.expect_err("no table");
        assert!(
            matches!(err, StoreError::Misconfigured { .. }),
            "{err:?} on {backend:?}"
        );
        assert!(err.to_string().contains("never_created"), "{err}");
        drop(store);
        backend.finish().await;
    }
}

#[tokio::test]
async fn capabilities_and_optional_units() {
    for backend in backends("capabilities").await {
        let store = backend.store();
        assert_eq!(
            store.capabilities(),
            Capabilities::new(Expiry::FilteredOnRead).with_compare_and_swap(),
            "{backend:?}"
        );
        assert!(store.capabilities().expiry.needs_sweep());
        assert!(store.compare_and_delete().is_some(), "{backend:?}");
        assert!(store.expired_deletion().is_some(), "{backend:?}");
        assert_eq!(store.name(), "sqlx");
        backend.finish().await;
    }
}

#[tokio::test]
async fn compare_and_delete_of_an_expired_or_foreign_version() {
    for backend in backends("cad_expired").await {
        let store = backend.store();
        let cad = store.compare_and_delete().expect("compare-and-delete");
        let prefix = rocket_kvsession::conformance::unique_prefix("cad-expired");
        let expired = format!("{prefix}expired");
        let past = SystemTime::now() - Duration::from_secs(1);
        let Ok(CreateOutcome::Created(Some(version))) =
            store.create(&expired, b"v", Some(past)).await
        else {
            panic!("create");
        };
        assert_eq!(
            cad.delete_if(&expired, &version).await.expect("delete_if"),
            DeleteOutcome::Missing,
            "an expired row is missing, whatever its version ({backend:?})"
        );
        // The expired row is left to the sweep, which still finds it.
        let swept = store
            .expired_deletion()
            .expect("a native sweep")
            .delete_expired(&prefix, SystemTime::now(), 10)
            .await
            .expect("delete_expired");
        assert_eq!(swept, 1);

        let live = format!("{prefix}live");
        let later = SystemTime::now() + Duration::from_secs(60);
        let Ok(CreateOutcome::Created(Some(version))) =
            store.create(&live, b"v", Some(later)).await
        else {
            panic!("create");
        };
        for foreign in [Version::new("not a version"), Version::new("-1")] {
            assert_eq!(
                cad.delete_if(&live, &foreign).await.expect("delete_if"),
                DeleteOutcome::Conflict,
                "{foreign:?} on {backend:?}"
            );
        }
        assert_eq!(
            cad.delete_if(&live, &version).await.expect("delete_if"),
            DeleteOutcome::Deleted
        );
        assert!(listed(store, &prefix).await.is_empty());
        backend.finish().await;
    }
}
