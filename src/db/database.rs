//! One database: its connection pool, schema brought up to date on connect, and its errors.

use sqlx::any::AnyPoolOptions;
use sqlx::AnyPool;
use thiserror::Error;

/// SQLite's "database is locked" (SQLITE_BUSY) or "table is locked" (SQLITE_LOCKED).
fn is_busy(error: &sqlx::Error) -> bool {
    matches!(error, sqlx::Error::Database(e) if matches!(e.code().as_deref(), Some("5" | "6")))
}

/// How long a statement waits for a connection before it fails.
const ACQUIRE_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(5);

#[derive(Debug, Error)]
pub enum DbError {
    #[error("database {url}")]
    Sqlx {
        url: String,
        #[source]
        source: sqlx::Error,
    },
    #[error("unsupported database URL {0:?}: use sqlite://PATH or postgres://...")]
    UnsupportedUrl(String),
    #[error("cannot start the database runtime")]
    Runtime(#[source] std::io::Error),
    #[error("cannot start the thread that writes to the database")]
    Writer(#[source] std::io::Error),
}

/// The page cache of each SQLite connection: 32 MiB instead of SQLite's 2 MiB. Window rows
/// come in for every series at once and land all over the tables' indexes (keyed by series
/// first); with the small cache each transaction read back the pages it had just written out.
/// Replaying two hours of a 300-series topic into SQLite takes 4.6-6.0 s with it (2.0-2.2 s
/// of system time) against 7.4-7.6 s with the default (3.8-3.9 s).
const SQLITE_CACHE: &str = "PRAGMA cache_size = -32768";

/// A connection pool to one database, its schema up to date.
#[derive(Clone)]
pub struct Database {
    pool: AnyPool,
    sqlite: bool,
    /// The URL without its password, for logs and errors.
    url: String,
}

impl Database {
    /// Connects (creating a SQLite file if needed) and brings the schema up to date.
    pub async fn connect(url: &str) -> Result<Database, DbError> {
        sqlx::any::install_default_drivers();
        let connect_url = connection_url(url)?;
        let shown = redact(url);
        let error = |source| DbError::Sqlx {
            url: shown.clone(),
            source,
        };
        let sqlite = connect_url.starts_with("sqlite:");
        let pool = AnyPoolOptions::new()
            .max_connections(4)
            // An unreachable server is an error within seconds (the pipeline then pauses and
            // replays from its checkpoint, saying why), not a write stuck for sqlx's 30 s.
            .acquire_timeout(ACQUIRE_TIMEOUT)
            .after_connect(move |connection, _| {
                Box::pin(async move {
                    if sqlite {
                        sqlx::query(SQLITE_CACHE).execute(connection).await?;
                    }
                    Ok(())
                })
            })
            .connect(&connect_url)
            .await
            .map_err(error)?;
        if sqlite {
            // WAL lets the dashboard read while the pipeline writes. Switching needs the file
            // to itself, and SQLite answers "busy" at once rather than waiting, so a process
            // opening a fresh file beside another one tries again for a while.
            let mut attempts = 0;
            while let Err(failed) = sqlx::query("PRAGMA journal_mode = WAL")
                .execute(&pool)
                .await
            {
                attempts += 1;
                if attempts >= 50 || !is_busy(&failed) {
                    return Err(error(failed));
                }
                tokio::time::sleep(std::time::Duration::from_millis(20 * attempts)).await;
            }
        }
        super::schema::migrate(&pool, connect_url.starts_with("postgres"))
            .await
            .map_err(error)?;
        Ok(Database {
            pool,
            sqlite,
            url: shown,
        })
    }

    pub fn is_postgres(&self) -> bool {
        !self.sqlite
    }

    pub fn pool(&self) -> &AnyPool {
        &self.pool
    }

    /// A transaction that reads before it writes. On SQLite it takes the write lock at its
    /// start (`BEGIN IMMEDIATE`, waiting out another writer as any write does): a deferred
    /// transaction that read first cannot take the lock once another connection has written
    /// since its read, and SQLite then answers "database is locked" at once, without waiting.
    pub async fn begin_write(&self) -> Result<sqlx::Transaction<'static, sqlx::Any>, sqlx::Error> {
        if self.sqlite {
            self.pool.begin_with("BEGIN IMMEDIATE").await
        } else {
            self.pool.begin().await
        }
    }

    /// The URL as logs may show it (no password).
    pub fn url(&self) -> &str {
        &self.url
    }

    /// A query's failure, naming this database.
    pub fn error(&self, source: sqlx::Error) -> DbError {
        DbError::Sqlx {
            url: self.url.clone(),
            source,
        }
    }
}

/// sqlx wants `mode=rwc` to create a SQLite file; users should not have to know that.
pub fn connection_url(url: &str) -> Result<String, DbError> {
    if let Some(rest) = url
        .strip_prefix("sqlite://")
        .or_else(|| url.strip_prefix("sqlite:"))
    {
        if rest.contains("mode=") {
            return Ok(format!("sqlite://{rest}"));
        }
        let separator = if rest.contains('?') { '&' } else { '?' };
        return Ok(format!("sqlite://{rest}{separator}mode=rwc"));
    }
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        return Ok(url.to_owned());
    }
    Err(DbError::UnsupportedUrl(redact(url)))
}

/// The URL without its password, for logs and errors.
pub fn redact(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let credentials = &url[scheme + 3..at];
            match credentials.find(':') {
                Some(colon) => format!(
                    "{}{}:***{}",
                    &url[..scheme + 3],
                    &credentials[..colon],
                    &url[at..]
                ),
                None => url.to_owned(),
            }
        }
        _ => url.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn urls_are_normalised_and_redacted() {
        assert_eq!(
            connection_url("sqlite://tidewatch.db").unwrap(),
            "sqlite://tidewatch.db?mode=rwc"
        );
        assert_eq!(
            connection_url("sqlite:data/x.db?cache=shared").unwrap(),
            "sqlite://data/x.db?cache=shared&mode=rwc"
        );
        assert!(connection_url("mysql://x").is_err());
        assert_eq!(
            redact("postgres://tw:secret@db:5432/tw"),
            "postgres://tw:***@db:5432/tw"
        );
    }
}
