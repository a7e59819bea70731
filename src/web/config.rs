//! How the dashboard is served: the pipeline file's `[web]` table.

use serde::{Deserialize, Serialize};

use super::hosts;
use crate::types::{Duration as ConfigDuration, Invalid};

/// How the dashboard is served: the pipeline file's `[web]` table.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct WebConfig {
    /// Host names the dashboard answers to besides `localhost` and IP addresses, as browsers
    /// send them in `Host` (e.g. `["dash.example.com"]`; `.example.com` takes its subdomains
    /// too). Any other name is refused, so that a web page cannot reach the dashboard by
    /// pointing a name of its own at this address (DNS rebinding).
    pub allowed_hosts: Vec<String>,
    /// Marks the session cookie `Secure`, so browsers send it over HTTPS only: set it when a
    /// TLS proxy serves the dashboard.
    pub secure_cookies: bool,
    /// Most connections open at once; one more is answered 503 and closed. Default 512.
    pub max_connections: usize,
    /// How long a client may take to send a request's headers (or, between two requests, to
    /// start the next) before the connection is closed; default "10s".
    pub header_timeout: ConfigDuration,
}

impl Default for WebConfig {
    fn default() -> Self {
        WebConfig {
            allowed_hosts: Vec::new(),
            secure_cookies: false,
            max_connections: 512,
            header_timeout: ConfigDuration::from_secs(10),
        }
    }
}

impl WebConfig {
    pub fn validate(&self) -> Result<(), Invalid> {
        for (i, host) in self.allowed_hosts.iter().enumerate() {
            hosts::validate_pattern(host).map_err(|e| e.under(format!("allowed_hosts[{i}]")))?;
        }
        if !(1..=65_536).contains(&self.max_connections) {
            return Err(Invalid::new(
                "max_connections",
                "must be between 1 and 65536",
            ));
        }
        self.header_timeout.positive("header_timeout")?;
        Ok(())
    }
}
