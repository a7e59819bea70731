//! The schema, as numbered migrations applied in order on connect.

use sqlx::{AnyConnection, AnyPool, Connection, Row};

/// Schema changes in order; `schema_version` records how many have been applied.
const MIGRATIONS: &[&str] = &[
    r#"
CREATE TABLE IF NOT EXISTS windows (
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    kind TEXT NOT NULL,
    window_start BIGINT NOT NULL,
    window_end BIGINT NOT NULL,
    count BIGINT NOT NULL,
    sum DOUBLE PRECISION NOT NULL,
    mean DOUBLE PRECISION NOT NULL,
    min DOUBLE PRECISION NOT NULL,
    max DOUBLE PRECISION NOT NULL,
    stddev DOUBLE PRECISION,
    first DOUBLE PRECISION NOT NULL,
    last DOUBLE PRECISION NOT NULL,
    "final" BOOLEAN NOT NULL,
    PRIMARY KEY (stream, series, kind, window_start, window_end)
);
CREATE INDEX IF NOT EXISTS windows_by_end ON windows (stream, series, window_end);
CREATE TABLE IF NOT EXISTS alerts (
    id TEXT PRIMARY KEY,
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    ts BIGINT NOT NULL,
    value DOUBLE PRECISION NOT NULL,
    expected DOUBLE PRECISION NOT NULL,
    stddev DOUBLE PRECISION NOT NULL,
    z DOUBLE PRECISION NOT NULL,
    direction TEXT NOT NULL,
    severity TEXT NOT NULL,
    episode_start BIGINT NOT NULL,
    state TEXT NOT NULL,
    acked_by TEXT,
    acked_at BIGINT,
    note TEXT
);
CREATE INDEX IF NOT EXISTS alerts_by_state ON alerts (state, ts);
CREATE TABLE IF NOT EXISTS late_events (
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    ts BIGINT NOT NULL,
    watermark BIGINT NOT NULL,
    lateness_ms BIGINT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    PRIMARY KEY (source, "partition", "offset")
);
CREATE TABLE IF NOT EXISTS dead_letters (
    stream TEXT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (source, "partition", "offset")
)
"#,
    r#"
CREATE TABLE IF NOT EXISTS checkpoints (
    pipeline TEXT PRIMARY KEY,
    fingerprint TEXT NOT NULL,
    engine {BLOB},
    positions TEXT NOT NULL,
    epoch BIGINT NOT NULL,
    written_at BIGINT NOT NULL
)
"#,
    // What the detector found (method, expectation, band, score, probability) and people's
    // verdicts. Alerts from before were all threshold alerts.
    r#"
ALTER TABLE alerts ADD COLUMN lower DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN upper DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN score DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN probability DOUBLE PRECISION;
ALTER TABLE alerts ADD COLUMN method TEXT NOT NULL DEFAULT 'threshold';
ALTER TABLE alerts ADD COLUMN expectation TEXT;
ALTER TABLE alerts ADD COLUMN verdict TEXT;
CREATE INDEX IF NOT EXISTS alerts_by_verdict ON alerts (stream, verdict)
"#,
    // Late events and dead letters are keyed by stream too: two streams reading one topic
    // each have their own row for the same message. (SQLite cannot change a primary key in
    // place: rebuild both tables.)
    r#"
CREATE TABLE late_events_by_stream (
    stream TEXT NOT NULL,
    series TEXT NOT NULL,
    ts BIGINT NOT NULL,
    watermark BIGINT NOT NULL,
    lateness_ms BIGINT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    PRIMARY KEY (stream, source, "partition", "offset")
);
INSERT INTO late_events_by_stream
    SELECT stream, series, ts, watermark, lateness_ms, source, "partition", "offset"
    FROM late_events;
DROP TABLE late_events;
ALTER TABLE late_events_by_stream RENAME TO late_events;
CREATE TABLE dead_letters_by_stream (
    stream TEXT NOT NULL,
    source TEXT NOT NULL,
    "partition" BIGINT NOT NULL,
    "offset" BIGINT NOT NULL,
    reason TEXT NOT NULL,
    payload TEXT NOT NULL,
    PRIMARY KEY (stream, source, "partition", "offset")
);
INSERT INTO dead_letters_by_stream
    SELECT stream, source, "partition", "offset", reason, payload FROM dead_letters;
DROP TABLE dead_letters;
ALTER TABLE dead_letters_by_stream RENAME TO dead_letters
"#,
    // Alerts are read newest first, a page at a time (keyset on ts, id), for all series or
    // one.
    r#"
CREATE INDEX IF NOT EXISTS alerts_newest ON alerts (ts, id);
CREATE INDEX IF NOT EXISTS alerts_by_series ON alerts (stream, series, ts, id)
"#,
    // The notification outbox: one row per receiver, alert and event, written with the alert
    // (or the acknowledgement) and delivered by the notifier, retried until it is.
    r#"
CREATE TABLE IF NOT EXISTS notifications (
    target TEXT NOT NULL,
    alert_id TEXT NOT NULL,
    event TEXT NOT NULL,
    created_at BIGINT NOT NULL,
    attempts BIGINT NOT NULL,
    next_attempt BIGINT NOT NULL,
    delivered_at BIGINT,
    last_error TEXT,
    PRIMARY KEY (target, alert_id, event)
);
CREATE INDEX IF NOT EXISTS notifications_due ON notifications (delivered_at, next_attempt)
"#,
    // Engine state in parts of a few megabytes rather than one value: a single value of
    // hundreds of megabytes is copied whole by the driver and again by SQLite as it builds the
    // row (and may not exceed 1 GB in either database). `engine_chunks` counts the parts of
    // a checkpoint whose `engine` is NULL; checkpoints written before keep theirs in `engine`.
    r#"
CREATE TABLE IF NOT EXISTS checkpoint_chunks (
    pipeline TEXT NOT NULL,
    seq BIGINT NOT NULL,
    bytes {BLOB} NOT NULL,
    PRIMARY KEY (pipeline, seq)
);
ALTER TABLE checkpoints ADD COLUMN engine_chunks BIGINT
"#,
    // Every acknowledgement of an alert, not only the last (which the alert row keeps): who
    // looked, when, what they said and judged. The acknowledgements from before are the rows'.
    r#"
CREATE TABLE IF NOT EXISTS acknowledgements (
    alert_id TEXT NOT NULL,
    acked_at BIGINT NOT NULL,
    acked_by TEXT NOT NULL,
    note TEXT,
    verdict TEXT
);
CREATE INDEX IF NOT EXISTS acknowledgements_by_alert ON acknowledgements (alert_id, acked_at);
INSERT INTO acknowledgements (alert_id, acked_at, acked_by, note, verdict)
    SELECT id, acked_at, acked_by, note, verdict FROM alerts
    WHERE acked_at IS NOT NULL AND acked_by IS NOT NULL
"#,
    // Engine state a checkpoint adds to rather than rewrites: per key group its newest image,
    // and the log segments after it (see engine::changelog); `checkpoints.engine` holds the
    // head (the routers' state). A checkpoint may write its rows over several transactions
    // before the one that saves its `checkpoints` row: rows count once their `seq` is at most
    // the row's `state_seq`.
    r#"
CREATE TABLE IF NOT EXISTS state_images (
    pipeline TEXT NOT NULL,
    kg BIGINT NOT NULL,
    pos BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    bytes {BLOB} NOT NULL,
    PRIMARY KEY (pipeline, kg, pos)
);
CREATE TABLE IF NOT EXISTS state_logs (
    pipeline TEXT NOT NULL,
    kg BIGINT NOT NULL,
    first_pos BIGINT NOT NULL,
    last_pos BIGINT NOT NULL,
    seq BIGINT NOT NULL,
    bytes {BLOB} NOT NULL,
    PRIMARY KEY (pipeline, kg, first_pos)
);
ALTER TABLE checkpoints ADD COLUMN state_seq BIGINT
"#,
];

/// Key of the PostgreSQL advisory lock migrations hold: instances starting together (a
/// consumer group, the dashboard beside the pipeline) take turns, since concurrent `CREATE
/// TABLE IF NOT EXISTS` can fail on PostgreSQL and two could apply the same migration.
const MIGRATION_LOCK: i64 = 0x7469_6465_7761_7463; // "tidewatc"

pub async fn migrate(pool: &AnyPool, postgres: bool) -> Result<(), sqlx::Error> {
    let mut conn = pool.acquire().await?;
    if postgres {
        sqlx::query("SELECT pg_advisory_lock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    let result = apply_migrations(&mut conn, postgres).await;
    if postgres {
        // Also released when the connection closes, should this fail.
        sqlx::query("SELECT pg_advisory_unlock($1)")
            .bind(MIGRATION_LOCK)
            .execute(&mut *conn)
            .await?;
    }
    result
}

async fn apply_migrations(conn: &mut AnyConnection, postgres: bool) -> Result<(), sqlx::Error> {
    sqlx::query("CREATE TABLE IF NOT EXISTS schema_version (version BIGINT NOT NULL)")
        .execute(&mut *conn)
        .await?;
    if postgres {
        // Under the advisory lock: one transaction per migration.
        let applied = applied_migrations(conn).await?;
        for index in applied..MIGRATIONS.len() {
            let mut tx = conn.begin().await?;
            apply_migration(&mut tx, index, postgres).await?;
            tx.commit().await?;
        }
        return Ok(());
    }
    // SQLite: the version is read and the migrations applied under the write lock (`BEGIN
    // IMMEDIATE`), so two processes opening one file at once (a pipeline and a tool reading
    // its store) cannot both apply the same migration.
    sqlx::query("BEGIN IMMEDIATE").execute(&mut *conn).await?;
    let mut applied = async {
        for index in applied_migrations(conn).await?..MIGRATIONS.len() {
            apply_migration(conn, index, postgres).await?;
        }
        Ok::<(), sqlx::Error>(())
    }
    .await;
    let end = if applied.is_ok() {
        "COMMIT"
    } else {
        "ROLLBACK"
    };
    if let Err(error) = sqlx::query(end).execute(&mut *conn).await {
        applied = applied.and(Err(error));
    }
    applied
}

async fn applied_migrations(conn: &mut AnyConnection) -> Result<usize, sqlx::Error> {
    let applied: i64 = sqlx::query("SELECT COUNT(*) FROM schema_version")
        .fetch_one(&mut *conn)
        .await?
        .try_get(0)?;
    Ok(applied.max(0) as usize)
}

async fn apply_migration(
    conn: &mut AnyConnection,
    index: usize,
    postgres: bool,
) -> Result<(), sqlx::Error> {
    // The one type the two dialects spell differently.
    let migration = MIGRATIONS[index].replace("{BLOB}", if postgres { "BYTEA" } else { "BLOB" });
    for statement in migration.split(';').filter(|s| !s.trim().is_empty()) {
        sqlx::query(statement).execute(&mut *conn).await?;
    }
    sqlx::query("INSERT INTO schema_version (version) VALUES ($1)")
        .bind(index as i64 + 1)
        .execute(&mut *conn)
        .await?;
    Ok(())
}
