//! Server-rendered pages (askama): real data on first paint, escaped everywhere by default.
//! One module per page family; what several pages share (the viewer, text formatting) in
//! leaves of their own.

mod alerts;
mod assets;
pub(crate) mod format;
mod login;
mod overview;
mod series;
mod status;
mod viewer;

pub use self::alerts::alerts;
pub use self::assets::{script, stylesheet, uplot_script, uplot_style};
pub use self::login::{login, login_form, logout};
pub use self::overview::overview;
pub use self::series::series;
pub use self::status::status;
