//! A plain text-protocol connection of the store's own, for the commands
//! the client crate does not send: `stats settings` (the server's item
//! size limit and whether its LRU crawler runs) and `lru_crawler metadump`
//! (listing, in [`crate::crawler`]). Every step is bounded by a timeout.

use std::time::Duration;

use rocket_kvsession::StoreError;
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::net::TcpStream;

use crate::error::{unexpected, unreachable, MemcachedStoreError};

/// The longest reply line read: far above any `STAT` or metadump line (a
/// key is at most 250 bytes, URI-encoded at most 750).
const MAX_LINE: usize = 16 * 1024;

/// One connection to one server.
#[derive(Debug)]
pub(crate) struct AdminConnection {
    server: String,
    stream: BufReader<TcpStream>,
    timeout: Duration,
    line: Vec<u8>,
}

impl AdminConnection {
    /// Connects to `server` (`host:port`) within `timeout`.
    pub(crate) async fn open(server: &str, timeout: Duration) -> Result<Self, StoreError> {
        let stream = within(timeout, TcpStream::connect(server)).await?;
        stream.set_nodelay(true).map_err(unreachable)?;
        Ok(AdminConnection {
            server: server.to_owned(),
            stream: BufReader::new(stream),
            timeout,
            line: Vec::with_capacity(256),
        })
    }

    /// Sends one command line (`command` without the line end).
    pub(crate) async fn send(&mut self, command: &str) -> Result<(), StoreError> {
        let stream = self.stream.get_mut();
        let write = async {
            stream.write_all(command.as_bytes()).await?;
            stream.write_all(b"\r\n").await?;
            stream.flush().await
        };
        within(self.timeout, write).await
    }

    /// Reads one reply line, without its line end (memcached ends metadump
    /// lines with `\n` and all others with `\r\n`). A closed connection is
    /// an error: every command this module sends ends with a reply line of
    /// its own.
    pub(crate) async fn read_line(&mut self) -> Result<&[u8], StoreError> {
        self.line.clear();
        let limit = (MAX_LINE + 1) as u64;
        let mut limited = (&mut self.stream).take(limit);
        let n = within(self.timeout, limited.read_until(b'\n', &mut self.line)).await?;
        if n == 0 || self.line.last() != Some(&b'\n') {
            if self.line.len() > MAX_LINE {
                return Err(self.unexpected("a reply line", "a line longer than 16 KiB"));
            }
            return Err(unreachable(std::io::ErrorKind::UnexpectedEof.into()));
        }
        self.line.pop();
        if self.line.last() == Some(&b'\r') {
            self.line.pop();
        }
        Ok(&self.line)
    }

    /// A [`MemcachedStoreError::UnexpectedReply`] of this server.
    pub(crate) fn unexpected(&self, command: &'static str, reply: &str) -> StoreError {
        unexpected(command, format!("{reply:?} from {}", self.server))
    }
}

/// What `stats settings` says that the store uses.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub(crate) struct Settings {
    /// The largest item the server stores, in bytes (`-I`).
    pub(crate) item_size_max: Option<usize>,
    /// Whether the LRU crawler, which listing needs, runs.
    pub(crate) lru_crawler: Option<bool>,
}

impl Settings {
    /// The settings in the `STAT name value` lines of a reply.
    fn parse_line(&mut self, line: &str) {
        let mut words = line.split(' ');
        let (Some("STAT"), Some(name), Some(value)) = (words.next(), words.next(), words.next())
        else {
            return;
        };
        match name {
            "item_size_max" => self.item_size_max = value.parse().ok(),
            "lru_crawler" => self.lru_crawler = Some(value == "yes"),
            _ => {}
        }
    }
}

/// Reads the settings of `server`.
pub(crate) async fn settings(server: &str, timeout: Duration) -> Result<Settings, StoreError> {
    let mut conn = AdminConnection::open(server, timeout).await?;
    conn.send("stats settings").await?;
    let mut settings = Settings::default();
    loop {
        let line = String::from_utf8_lossy(conn.read_line().await?).into_owned();
        if line == "END" {
            return Ok(settings);
        }
        if !line.starts_with("STAT ") {
            return Err(conn.unexpected("stats settings", &line));
        }
        settings.parse_line(&line);
    }
}

/// Runs `fut` within `timeout`: its I/O error as unavailable, or
/// [`MemcachedStoreError::Timeout`] once the time is up.
async fn within<T>(
    timeout: Duration,
    fut: impl std::future::Future<Output = std::io::Result<T>>,
) -> Result<T, StoreError> {
    match tokio::time::timeout(timeout, fut).await {
        Ok(result) => result.map_err(unreachable),
        Err(_) => Err(MemcachedStoreError::Timeout { after: timeout }.into_store_error()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn stat_lines() {
        let mut settings = Settings::default();
        for line in [
            "STAT maxbytes 67108864",
            "STAT item_size_max 1048576",
            "STAT lru_crawler yes",
            "STAT garbage",
            "not a stat",
        ] {
            settings.parse_line(line);
        }
        assert_eq!(
            settings,
            Settings {
                item_size_max: Some(1_048_576),
                lru_crawler: Some(true),
            }
        );
        settings.parse_line("STAT lru_crawler no");
        assert_eq!(settings.lru_crawler, Some(false));
    }
}
