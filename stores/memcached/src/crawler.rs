//! Listing keys: memcached has no command that lists keys by prefix; its
//! LRU crawler can dump every item (`lru_crawler metadump`, memcached
//! 1.4.31 and later). This module streams that dump from every server in
//! turn, over a connection of its own, and keeps the keys under the prefix.
//!
//! Its cost and limits:
//!
//! * It walks every item of the server, whatever the prefix: listing a
//!   prefix with ten sessions on a server with ten million items reads ten
//!   million lines (about 0.4 s per 200,000 items on loopback).
//! * It walks the hash table (`metadump hash`, so items the LRU reorders
//!   meanwhile are not skipped; `metadump all` on servers too old for
//!   `hash`), but items written, moved or deleted while it runs may be
//!   missed or listed twice.
//! * The dump is read as fast as the connection allows, by a task of its
//!   own, whatever the pace of whoever consumes the listing: the keys under
//!   the prefix wait in memory until they are taken. A crawler whose client
//!   reads slowly holds memcached's crawler lock (every other `lru_crawler`
//!   command waits for it, and so do the connections of the worker thread
//!   that runs it) and, in hash mode, the lock of one hash bucket (writes
//!   to its keys wait): a listing must never be what holds them.
//! * A server runs one crawl at a time: while another listing (or a
//!   `lru_crawler crawl`) runs, it answers `BUSY`, and the listing retries
//!   for up to the store's crawl wait, then fails
//!   ([`MemcachedStoreError::CrawlerBusy`]). While another client's dump is
//!   not being read, the server does not answer at all: the listing fails
//!   at the store's timeout.
//! * A server with its crawler disabled (`-o no_lru_crawler`) refuses: the
//!   listing fails with [`MemcachedStoreError::CrawlerRefused`], never lists
//!   nothing.

use std::time::{Duration, Instant};

use futures_util::stream::{self, BoxStream, Stream, StreamExt, TryStreamExt};
use rocket_kvsession::{KeyInfo, StoreError};
use tokio::sync::mpsc;

use crate::admin::AdminConnection;
use crate::connect::MemcachedStore;
use crate::error::MemcachedStoreError;

/// The first pause after a `BUSY`, doubled after each until [`MAX_PAUSE`].
const FIRST_PAUSE: Duration = Duration::from_millis(5);
/// The longest pause between two tries of a busy crawler.
const MAX_PAUSE: Duration = Duration::from_millis(200);

/// Streams every key of `store` that starts with `prefix`, server after
/// server. `last_modified` is `None`: the dump's `la` is the last access
/// (reads included, and only every 60 s), not the last write.
pub(crate) fn keys_with_prefix<'a>(
    store: &'a MemcachedStore,
    prefix: &'a str,
) -> BoxStream<'a, Result<KeyInfo, StoreError>> {
    stream::iter(store.servers())
        .then(move |server| async move {
            Dump::start(store, server)
                .await
                .map(|dump| dump.drain(prefix.to_owned()))
        })
        .try_flatten()
        .boxed()
}

/// Which items a dump walks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// The hash table: every item once, even those the LRU reorders.
    Hash,
    /// The LRUs of every slab class (servers before `hash`).
    All,
}

impl Mode {
    fn command(self) -> &'static str {
        match self {
            Mode::Hash => "lru_crawler metadump hash",
            Mode::All => "lru_crawler metadump all",
        }
    }
}

/// A refusal of a metadump, by its first word.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Refusal {
    /// `BUSY ...`: another crawl runs.
    Busy,
    /// `BADCLASS ...`: the server does not know the mode.
    BadClass,
    /// `ERROR`, `CLIENT_ERROR ...`, `SERVER_ERROR ...`: no crawler here.
    Refused,
}

/// One line of a metadump reply.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Line {
    /// An item: its key, if it is text.
    Item(Option<String>),
    /// The end of the dump.
    End,
    /// The dump did not start.
    Refusal(Refusal, String),
}

impl Line {
    fn parse(line: &[u8]) -> Line {
        if let Some(fields) = line.strip_prefix(b"key=") {
            let encoded = fields.split(|&b| b == b' ').next().unwrap_or_default();
            return Line::Item(uri_decode(encoded).and_then(|k| String::from_utf8(k).ok()));
        }
        if line == b"END" {
            return Line::End;
        }
        let text = String::from_utf8_lossy(line).into_owned();
        let kind = if line.starts_with(b"BUSY") {
            Refusal::Busy
        } else if line.starts_with(b"BADCLASS") {
            Refusal::BadClass
        } else {
            Refusal::Refused
        };
        Line::Refusal(kind, text)
    }
}

/// A metadump being read from one server.
struct Dump {
    conn: AdminConnection,
    /// The first line, read to see whether the dump started.
    first: Option<Line>,
}

impl Dump {
    /// Starts a dump on `server`, retrying while its crawler is busy (for
    /// up to the store's crawl wait) and falling back from `hash` to `all`
    /// on servers that know only the latter.
    async fn start(store: &MemcachedStore, server: &str) -> Result<Dump, StoreError> {
        let mut conn = AdminConnection::open(server, store.timeout()).await?;
        let started = Instant::now();
        let mut pause = FIRST_PAUSE;
        let mut mode = Mode::Hash;
        loop {
            conn.send(mode.command()).await?;
            let line = Line::parse(conn.read_line().await?);
            match line {
                Line::Refusal(Refusal::Busy, _) => {
                    let waited = started.elapsed();
                    if waited >= store.crawl_wait() {
                        return Err(MemcachedStoreError::CrawlerBusy {
                            server: server.to_owned(),
                            waited,
                        }
                        .into_store_error());
                    }
                    tokio::time::sleep(pause.min(store.crawl_wait() - waited)).await;
                    pause = (pause * 2).min(MAX_PAUSE);
                }
                Line::Refusal(Refusal::BadClass, _) if mode == Mode::Hash => mode = Mode::All,
                Line::Refusal(_, reply) => {
                    return Err(MemcachedStoreError::CrawlerRefused {
                        server: server.to_owned(),
                        reply,
                    }
                    .into_store_error());
                }
                first => {
                    return Ok(Dump {
                        conn,
                        first: Some(first),
                    })
                }
            }
        }
    }

    /// The next line.
    async fn next(&mut self) -> Result<Line, StoreError> {
        match self.first.take() {
            Some(line) => Ok(line),
            None => Ok(Line::parse(self.conn.read_line().await?)),
        }
    }

    /// Reads the dump to its end in a task of its own, and streams the
    /// keys under `prefix`. Dropping the stream ends the task at its next
    /// key, which closes the connection (and so the server's crawl).
    fn drain(mut self, prefix: String) -> impl Stream<Item = Result<KeyInfo, StoreError>> {
        let (keys, received) = mpsc::unbounded_channel();
        tokio::spawn(async move {
            loop {
                let key = match self.next().await {
                    Ok(Line::Item(Some(key))) if key.starts_with(&prefix) => Ok(key),
                    // Not under the prefix, or not text (not a key of this crate).
                    Ok(Line::Item(_)) => continue,
                    Ok(Line::End) => return,
                    Ok(Line::Refusal(_, reply)) => {
                        Err(self.conn.unexpected("lru_crawler metadump", &reply))
                    }
                    Err(e) => Err(e),
                };
                let last = key.is_err();
                if keys.send(key).is_err() || last {
                    return;
                }
            }
        });
        stream::unfold(received, |mut received| async move {
            let key = received.recv().await?;
            Some((key.map(|key| KeyInfo::new(key, None)), received))
        })
    }
}

/// Decodes memcached's URI encoding of a key (`%3A` for `:`); `None` for a
/// malformed escape.
fn uri_decode(encoded: &[u8]) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(encoded.len());
    let mut bytes = encoded.iter();
    while let Some(&b) = bytes.next() {
        if b != b'%' {
            out.push(b);
            continue;
        }
        let hex = [*bytes.next()?, *bytes.next()?];
        let hex = std::str::from_utf8(&hex).ok()?;
        out.push(u8::from_str_radix(hex, 16).ok()?);
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadump_lines() {
        assert_eq!(
            Line::parse(
                b"key=session%3A0011_65 exp=1796302743 la=1796302683 cas=7 fetch=no cls=1 size=67"
            ),
            Line::Item(Some("session:0011_65".into()))
        );
        assert_eq!(
            Line::parse(b"key=k exp=-1 la=1 cas=1 fetch=no cls=1 size=63 flags=0 "),
            Line::Item(Some("k".into()))
        );
        assert_eq!(Line::parse(b"key=%FF%FE exp=-1"), Line::Item(None));
        assert_eq!(Line::parse(b"key=bad%2 exp=-1"), Line::Item(None));
        assert_eq!(Line::parse(b"END"), Line::End);
        assert!(matches!(
            Line::parse(b"BUSY currently processing crawler request"),
            Line::Refusal(Refusal::Busy, _)
        ));
        assert!(matches!(
            Line::parse(b"BADCLASS invalid class id"),
            Line::Refusal(Refusal::BadClass, _)
        ));
        assert!(matches!(
            Line::parse(b"CLIENT_ERROR lru crawler disabled"),
            Line::Refusal(Refusal::Refused, _)
        ));
        assert!(matches!(
            Line::parse(b"ERROR"),
            Line::Refusal(Refusal::Refused, _)
        ));
    }

    #[test]
    fn uri_decoding() {
        assert_eq!(uri_decode(b"a%3Ab%25c%2fd").unwrap(), b"a:b%c/d");
        assert_eq!(uri_decode(b"plain-key_1.2~").unwrap(), b"plain-key_1.2~");
        assert_eq!(uri_decode(b"%"), None);
        assert_eq!(uri_decode(b"%zz"), None);
    }
}
