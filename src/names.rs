//! One spelling per enum value.
//!
//! The enums records carry (window kind, trend, alert state, ...) are written as text by every
//! sink, read back by the store, filtered on by the API and shown by the dashboard. Each lists
//! its values once, through `named!`, which gives it `as_str`, `FromStr`,
//! `Display` and serde in that one spelling. Reading a value that is not one of them is an
//! error ([`UnknownName`]), never a quiet default.

/// Text that is not one of an enum's names.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown {what} {value:?}; expected one of {}", expected.join(", "))]
pub struct UnknownName {
    /// What the enum is called in messages, e.g. "alert state".
    pub what: &'static str,
    pub value: String,
    pub expected: &'static [&'static str],
}

/// Declares a field-less enum whose values each have one name:
///
/// ```ignore
/// named! {
///     /// Doc comment of the enum.
///     pub enum Trend as "trend" {
///         Rising = "rising",
///         Falling = "falling",
///     }
/// }
/// ```
///
/// Serde goes through the same names (as `#[serde(rename)]`, so binary formats still encode
/// the variant index, as a derive would).
macro_rules! named {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident as $what:literal {
            $($(#[$variant_meta:meta])* $variant:ident = $text:literal),+ $(,)?
        }
    ) => {
        $(#[$meta])*
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
        $vis enum $name {
            $($(#[$variant_meta])* #[serde(rename = $text)] $variant),+
        }

        impl $name {
            /// Every value, in declaration order.
            #[allow(dead_code)] // not every enum's callers list its values
            pub const ALL: &'static [$name] = &[$($name::$variant),+];
            /// Every name, in declaration order.
            pub const NAMES: &'static [&'static str] = &[$($text),+];

            /// The one spelling of this value (records, store, API, pages).
            pub const fn as_str(self) -> &'static str {
                match self {
                    $($name::$variant => $text),+
                }
            }
        }

        impl ::std::fmt::Display for $name {
            fn fmt(&self, f: &mut ::std::fmt::Formatter<'_>) -> ::std::fmt::Result {
                f.write_str(self.as_str())
            }
        }

        impl ::std::str::FromStr for $name {
            type Err = $crate::names::UnknownName;

            fn from_str(text: &str) -> ::std::result::Result<Self, Self::Err> {
                match text {
                    $($text => Ok($name::$variant),)+
                    _ => Err($crate::names::UnknownName {
                        what: $what,
                        value: text.to_owned(),
                        expected: Self::NAMES,
                    }),
                }
            }
        }
    };
}
pub(crate) use named;

#[cfg(test)]
mod tests {
    super::named! {
        /// A test enum.
        #[derive(PartialOrd, Ord)]
        enum Tide as "tide" {
            High = "high",
            /// Documented variant.
            LowWater = "low_water",
        }
    }

    #[test]
    fn every_spelling_agrees_and_unknown_text_is_an_error() {
        for &tide in Tide::ALL {
            assert_eq!(tide.as_str().parse::<Tide>(), Ok(tide));
            assert_eq!(tide.to_string(), tide.as_str());
            assert_eq!(
                serde_json::to_string(&tide).unwrap(),
                format!("\"{}\"", tide.as_str())
            );
            let json = format!("\"{tide}\"");
            assert_eq!(serde_json::from_str::<Tide>(&json).unwrap(), tide);
        }
        let error = "ebb".parse::<Tide>().unwrap_err();
        assert_eq!(
            error.to_string(),
            "unknown tide \"ebb\"; expected one of high, low_water"
        );
        assert!(serde_json::from_str::<Tide>("\"ebb\"").is_err());
        assert!(Tide::High < Tide::LowWater);
    }
}
