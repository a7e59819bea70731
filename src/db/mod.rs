//! The database: SQLite (the embedded default) or PostgreSQL, one implementation over both
//! through sqlx's `Any` driver. The `db` sink writes records to it, checkpoints are kept in it
//! ([`DbCheckpoints`]), and the dashboard reads it through the [`Store`] (whose one write is an
//! acknowledgement).
//!
//! Tables: `windows` (key: stream, series, kind, window_start, window_end), `alerts` (key: id,
//! itself derived from stream, series and episode start), `late_events` and `dead_letters` (key:
//! stream, source, partition, offset), `checkpoints` (key: the checkpoint's name). Point records are
//! not stored (one row per event would dwarf everything else; the dashboard keeps recent points
//! in memory and history comes from windows); join records go to the other sinks.

mod checkpoints;
mod database;
pub(crate) mod rows;
mod schema;
mod store;

pub use self::checkpoints::DbCheckpoints;
pub use self::database::{connection_url, Database, DbError};
pub use self::store::{
    AckEntry, Acknowledgement, AlertCursor, AlertFilter, Store, VerdictFilter, VerdictShare,
};
