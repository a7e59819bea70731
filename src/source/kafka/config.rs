//! A `kafka` source table.

use std::collections::{BTreeMap, BTreeSet};

use serde::{Deserialize, Serialize};

use crate::types::Invalid;

/// A Kafka consumer of some topics, in a consumer group.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KafkaSourceConfig {
    /// `bootstrap.servers`.
    pub brokers: String,
    pub topics: Vec<String>,
    /// Consumer group; default `tidewatch-<stream name>` (filled in once the config is read).
    pub group: Option<String>,
    /// Where a partition without a committed offset starts (default "earliest").
    #[serde(default)]
    pub start: StartFrom,
    /// Only these partitions of each topic (default: all), to split a topic between instances
    /// by hand.
    pub partitions: Option<Vec<i32>>,
    /// Who decides which partitions this instance reads.
    #[serde(default)]
    pub assignment: Assignment,
    /// Extra librdkafka properties (SASL/SSL, ...), passed through as they are:
    /// `kafka = { "security.protocol" = "SASL_SSL" }`.
    #[serde(default, rename = "kafka")]
    pub properties: BTreeMap<String, String>,
}

/// How a Kafka stream gets its partitions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Assignment {
    /// This instance reads every partition (or those `partitions` lists) with one engine state
    /// for the stream: series may span partitions; the watermark is the minimum over them.
    #[default]
    Static,
    /// The consumer group shares the partitions among the instances that join it and moves them
    /// when one comes or goes. State is kept per partition and handed over through the
    /// checkpoint store, so each series must come from one partition (messages keyed by series).
    Group,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum StartFrom {
    #[default]
    Earliest,
    Latest,
}

impl StartFrom {
    /// librdkafka's `auto.offset.reset` value.
    pub fn as_str(self) -> &'static str {
        match self {
            StartFrom::Earliest => "earliest",
            StartFrom::Latest => "latest",
        }
    }
}

/// librdkafka properties Tidewatch sets itself: overriding them would break delivery guarantees.
const MANAGED_PROPERTIES: [&str; 5] = [
    "bootstrap.servers",
    "group.id",
    "enable.auto.commit",
    "enable.auto.offset.store",
    "auto.offset.reset",
];

impl KafkaSourceConfig {
    /// The consumer group's id.
    pub fn group_id(&self) -> &str {
        self.group.as_deref().unwrap_or("tidewatch")
    }

    pub fn validate(&self) -> Result<(), Invalid> {
        if self.assignment == Assignment::Group && self.partitions.is_some() {
            return Err(Invalid::new(
                "partitions",
                "cannot be used with assignment = \"group\": the group assigns the partitions",
            ));
        }
        if let Some(list) = &self.partitions {
            let distinct: BTreeSet<_> = list.iter().collect();
            if list.is_empty() || list.iter().any(|&p| p < 0) || distinct.len() != list.len() {
                return Err(Invalid::new(
                    "partitions",
                    "must list distinct partition numbers (0 or more), e.g. [0, 2]",
                ));
            }
        }
        if self.brokers.trim().is_empty() {
            return Err(Invalid::new(
                "brokers",
                "must list at least one broker, e.g. \"localhost:9092\"",
            ));
        }
        if self.topics.is_empty() || self.topics.iter().any(|t| t.trim().is_empty()) {
            return Err(Invalid::new(
                "topics",
                "must list at least one non-empty topic name",
            ));
        }
        if let Some(managed) = self
            .properties
            .keys()
            .find(|k| MANAGED_PROPERTIES.contains(&k.as_str()))
        {
            return Err(Invalid::new(
                format!("kafka.\"{managed}\""),
                "Tidewatch sets this property itself (use brokers, group and start)",
            ));
        }
        Ok(())
    }
}
