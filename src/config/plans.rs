//! What the components are built from, derived from the pipeline file: the engine's plan,
//! the live view, and the fingerprint of the state's shape. Here rather than in each component,
//! so that the components need nothing of the whole file.

use std::sync::Arc;

use serde::Serialize;

use super::Config;
use crate::engine::join::{JoinOn, Side};
use crate::engine::plan::{EnginePlan, JoinPlan, StreamPlan};
use crate::live::{Lines, LiveState};

impl Config {
    /// The plan of the engine of this pipeline's streams and joins, on `engine.threads` shards.
    pub fn engine_plan(&self) -> EnginePlan {
        let mut streams: Vec<StreamPlan> = self
            .streams
            .iter()
            .map(|s| StreamPlan {
                name: Arc::from(s.name.as_str()),
                watermark: s.watermark,
                dedup: s.dedup,
                windows: s.windows.clone(),
                analytics: s.analytics,
                max_series: s.max_series,
                group_assigned: s.is_group_assigned(),
                joins: Vec::new(),
            })
            .collect();
        let joins = self
            .joins
            .iter()
            .enumerate()
            .map(|(i, j)| {
                let (left, right) = j.sides;
                let by_field = matches!(j.on, JoinOn::Field(_));
                streams[left].joins.push((i, Side::Left, by_field));
                streams[right].joins.push((i, Side::Right, by_field));
                JoinPlan {
                    name: Arc::from(j.name.as_str()),
                    left,
                    right,
                    within_ms: j.within.ms(),
                    kind: j.kind,
                }
            })
            .collect();
        EnginePlan::new(streams, joins, self.engine.threads())
    }

    /// The live view of this pipeline: within its `[live]` limits, charting each stream's SMA
    /// and EWMA as its analytics take them.
    pub fn live_view(&self) -> Arc<LiveState> {
        LiveState::for_streams(
            self.live.limits(),
            self.streams.iter().filter_map(|stream| {
                let analytics = stream.analytics.as_ref()?;
                Some((stream.name.as_str(), Lines::from(analytics)))
            }),
        )
    }

    /// A stable digest of everything that shapes engine state (streams without their sources,
    /// joins): a checkpoint taken under another shape cannot be restored into this one. Digested
    /// from the JSON of those settings, a format of their own, rather than `Debug` text, which may
    /// change with any refactoring.
    pub fn state_fingerprint(&self) -> String {
        #[derive(Serialize)]
        struct StreamShape<'a> {
            name: &'a str,
            fields: &'a crate::event::FieldMapping,
            watermark: WatermarkShape,
            dedup: &'a Option<crate::engine::dedup::DedupConfig>,
            windows: &'a [crate::engine::window::WindowSpec],
            analytics: &'a Option<crate::engine::points::AnalyticsConfig>,
            max_series: usize,
        }
        /// What of the watermark shapes state: not `max_ahead`, which only refuses input and may
        /// change between runs.
        #[derive(Serialize)]
        struct WatermarkShape {
            lateness: crate::types::Duration,
            idle_timeout: crate::types::Duration,
        }
        let streams: Vec<StreamShape<'_>> = self
            .streams
            .iter()
            .map(|s| StreamShape {
                name: &s.name,
                fields: &s.fields,
                watermark: WatermarkShape {
                    lateness: s.watermark.lateness,
                    idle_timeout: s.watermark.idle_timeout,
                },
                dedup: &s.dedup,
                windows: &s.windows,
                analytics: &s.analytics,
                max_series: s.max_series,
            })
            .collect();
        let shape = serde_json::to_vec(&(streams, &self.joins))
            .expect("settings of plain strings, numbers and lists always serialise");
        format!("{:016x}", crate::digest::fnv1a(shape))
    }
}
