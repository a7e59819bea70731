//! Tables told apart by their `kind` key: `{ kind = "sliding", size = "1m", slide = "10s" }`.
//!
//! Serde's internally tagged enums buffer the whole table before choosing the variant, and an
//! error inside the buffered table loses its key (`streams[0].windows[1]` where the user needs
//! `streams[0].windows[1].slide`). So these tables are read as a plain table first, `kind` is
//! moved outside (`{ sliding = { size = ..., slide = ... } }`, an externally tagged enum, which
//! serde reads without buffering) and an error carries the key inside the table up to
//! [`Config::from_toml_str`](super::Config::from_toml_str), which joins it to the outer path.
//!
//! Use on a field: `#[serde(deserialize_with = "tagged::one")]` or `"tagged::many"` for a list.
//! The enum itself derives `Deserialize` with `rename_all = "snake_case"` and
//! `deny_unknown_fields`, as if it were written `{ sliding = { ... } }`.

use serde::de::{DeserializeOwned, Error as _};
use serde::{Deserialize, Deserializer};

/// Separates the inner key from the message inside a serde error's text (a character no TOML
/// key or message contains).
const KEY_MARK: char = '\u{1e}';

/// One `kind`-tagged table.
pub fn one<'de, D, T>(deserializer: D) -> Result<T, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    let mut table = toml::Table::deserialize(deserializer)?;
    let kind = match table.remove("kind") {
        Some(toml::Value::String(kind)) => kind,
        Some(_) => return Err(D::Error::custom(with_key("kind", "must be a string"))),
        None => return Err(D::Error::missing_field("kind")),
    };
    let external = toml::Value::Table(toml::Table::from_iter([(kind, toml::Value::Table(table))]));
    serde_path_to_error::deserialize(external).map_err(|error| {
        // The first segment is the variant; an error right at the enum is about `kind`.
        let segments: Vec<String> = error.path().iter().map(ToString::to_string).collect();
        let key = match segments.len() {
            0 => "kind".to_owned(),
            _ => segments[1..].join("."),
        };
        D::Error::custom(with_key(&key, error.into_inner().message()))
    })
}

/// A list of `kind`-tagged tables.
pub fn many<'de, D, T>(deserializer: D) -> Result<Vec<T>, D::Error>
where
    D: Deserializer<'de>,
    T: DeserializeOwned,
{
    #[derive(Deserialize)]
    #[serde(bound = "T: DeserializeOwned")]
    struct Item<T>(#[serde(deserialize_with = "one")] T);

    Ok(Vec::<Item<T>>::deserialize(deserializer)?
        .into_iter()
        .map(|Item(item)| item)
        .collect())
}

/// An error message about `key` inside a tagged table (nested ones join their keys).
fn with_key(key: &str, message: &str) -> String {
    let message = message.trim();
    match split_key(message) {
        Some((inner, rest)) if key.is_empty() => format!("{KEY_MARK}{inner}{KEY_MARK}{rest}"),
        Some((inner, rest)) => format!("{KEY_MARK}{key}.{inner}{KEY_MARK}{rest}"),
        None => format!("{KEY_MARK}{key}{KEY_MARK}{message}"),
    }
}

/// The key inside a tagged table an error is about, and the message, if the error came from
/// one (`None`: the error's path is all there is).
pub(super) fn split_key(message: &str) -> Option<(&str, &str)> {
    message.strip_prefix(KEY_MARK)?.split_once(KEY_MARK)
}
