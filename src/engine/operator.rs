//! The per-series operators' interface.

use super::input::Accepted;
use super::output::Emitted;

/// A per-series operator of a stream, in one key group. Hooks are synchronous and never fail
/// on data; records carry their operator's order ([`output::SubKey`]).
pub trait Operator: Send {
    fn on_event(&mut self, event: &Accepted<'_>, out: &mut Emitted<'_>);
    /// The stream's watermark advanced to `watermark` (`i64::MAX` at end of input).
    fn on_watermark(&mut self, watermark: i64, out: &mut Emitted<'_>);
    /// The lowest watermark at which `on_watermark` would do anything; `None` for none.
    fn due(&mut self) -> Option<i64>;
}
