//! The error of a configuration value that parsed but is not acceptable.

use std::fmt;

use thiserror::Error;

/// A value that parsed but is not acceptable. `key` is relative to the table that found the
/// problem; each enclosing table prefixes its own key ([`Invalid::under`]) on the way up.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
#[error("{key}: {message}")]
pub struct Invalid {
    pub key: String,
    pub message: String,
}

impl Invalid {
    pub fn new(key: impl Into<String>, message: impl Into<String>) -> Self {
        Invalid {
            key: key.into(),
            message: message.into(),
        }
    }

    /// The same problem seen from the enclosing table `table` (`"streams[0]"`, `"windows[1]"`).
    pub fn under(self, table: impl fmt::Display) -> Self {
        let key = if self.key.is_empty() {
            table.to_string()
        } else {
            format!("{table}.{}", self.key)
        };
        Invalid { key, ..self }
    }
}
