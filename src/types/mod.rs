//! Leaf types every component's configuration uses: durations, byte sizes, and the error of a
//! value that parsed but is not acceptable. They import nothing else of the crate, so a
//! component can check its own settings without depending on the whole pipeline file.

mod duration;
mod invalid;
mod size;

pub use self::duration::Duration;
pub use self::invalid::Invalid;
pub use self::size::ByteSize;
