//! Errors as people read them: the error and each of its causes, on one line.
//!
//! Tidewatch's error types say what failed in their own message and keep the cause as their
//! `source()`, never both (or a chain would print every cause twice). Whatever shows an error
//! to a person (the log, the status page, the command line) prints the whole chain with
//! [`Report`]. Some libraries' errors (rdkafka's, sqlx's) do print their cause and return it
//! too: a cause whose text is already shown is not repeated.

use std::error::Error;
use std::fmt;

/// Displays an error followed by its causes: `sink: database sqlite://x.db: disk I/O error`.
pub struct Report<'a>(pub &'a (dyn Error + 'static));

impl fmt::Display for Report<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut shown = self.0.to_string();
        let mut cause = self.0.source();
        while let Some(error) = cause {
            let text = error.to_string();
            if !shown.contains(&text) {
                shown.push_str(": ");
                shown.push_str(&text);
            }
            cause = error.source();
        }
        f.write_str(&shown)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Debug, thiserror::Error)]
    #[error("writing {what}")]
    struct Outer {
        what: &'static str,
        #[source]
        source: std::io::Error,
    }

    #[test]
    fn shows_every_cause_once() {
        let error = Outer {
            what: "windows.ndjson",
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(
            Report(&error).to_string(),
            "writing windows.ndjson: disk full"
        );
        // A library error that prints its cause and returns it too.
        let chatty = Outer {
            what: "a.ndjson (disk full)",
            source: std::io::Error::other("disk full"),
        };
        assert_eq!(Report(&chatty).to_string(), "writing a.ndjson (disk full)");
    }
}
