//! Which `Host` names the dashboard answers to: the defence against DNS rebinding.
//!
//! A web page on `attacker.example` can point that name at 127.0.0.1 once the browser has
//! loaded it; its scripts then reach the dashboard as their own origin, so the `Origin` check
//! passes and, without a token, they read the API and acknowledge alerts. The browser still
//! sends `Host: attacker.example`, which is what is refused here. IP addresses and `localhost`
//! (and `*.localhost`, which resolves to loopback by definition) cannot be rebound, so they are
//! always allowed; any other name must be listed in `web.allowed_hosts`.

use std::net::IpAddr;

use axum::http::{header, HeaderMap};

use super::error::WebError;
use crate::types::Invalid;

/// Whether a `Host` header value (`name`, `name:port`, `[v6]:port`) may be answered.
pub fn is_allowed(host: &str, allowed: &[String]) -> bool {
    let name = strip_port(host).trim_end_matches('.').to_ascii_lowercase();
    if name.is_empty() {
        return false;
    }
    let address = name.trim_start_matches('[').trim_end_matches(']');
    if address.parse::<IpAddr>().is_ok() {
        return true;
    }
    if name == "localhost" || name.ends_with(".localhost") {
        return true;
    }
    allowed.iter().any(|pattern| {
        let pattern = pattern.trim_end_matches('.').to_ascii_lowercase();
        match pattern.strip_prefix('.') {
            Some(domain) => name == domain || name.ends_with(&pattern),
            None => name == pattern,
        }
    })
}

/// The name part of a `Host` value.
fn strip_port(host: &str) -> &str {
    if host.starts_with('[') {
        // `[::1]:8080`: the port follows the bracket.
        return host.split_once(']').map_or(host, |(name, _)| name);
    }
    match host.rsplit_once(':') {
        Some((name, port)) if !name.contains(':') && port.bytes().all(|b| b.is_ascii_digit()) => {
            name
        }
        _ => host,
    }
}

/// A name as `web.allowed_hosts` lists it: a host name, or `.domain` for it and its
/// subdomains; no ports, schemes or wildcards elsewhere.
pub fn validate_pattern(pattern: &str) -> Result<(), Invalid> {
    let name = pattern.strip_prefix('.').unwrap_or(pattern);
    let valid = !name.is_empty()
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
    if valid {
        Ok(())
    } else {
        Err(Invalid::new(
            "",
            format!(
                "{pattern:?} is not a host name: write it as browsers send it, without \
                 scheme or port (\"dash.example.com\", or \".example.com\" for every \
                 subdomain)"
            ),
        ))
    }
}

/// Refuses a browser request whose `Origin` is not this server: cross-site acknowledgements
/// and cross-site WebSocket connections (which browsers do not restrict by themselves).
pub(crate) fn check_same_origin(headers: &HeaderMap) -> Result<(), WebError> {
    let Some(origin) = headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()) else {
        return Ok(()); // not a browser, or a same-origin GET-style request
    };
    let host = headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .unwrap_or_default();
    let origin_host = origin.split_once("://").map_or(origin, |(_, rest)| rest);
    if origin_host == host {
        Ok(())
    } else {
        Err(WebError::CrossOrigin)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn addresses_and_loopback_names_pass_other_names_only_when_listed() {
        let none: &[String] = &[];
        for host in [
            "127.0.0.1:8080",
            "localhost",
            "LOCALHOST:80",
            "app.localhost:3000",
            "[::1]:8080",
            "[::1]",
            "10.1.2.3",
            "localhost.",
        ] {
            assert!(is_allowed(host, none), "{host}");
        }
        for host in [
            "attacker.example",
            "attacker.example:8080",
            "",
            ":80",
            "localhost.evil",
        ] {
            assert!(!is_allowed(host, none), "{host}");
        }
        let listed = ["dash.example.com".to_owned(), ".corp.example".to_owned()];
        assert!(is_allowed("Dash.Example.com:8080", &listed));
        assert!(is_allowed("corp.example", &listed));
        assert!(is_allowed("a.b.corp.example", &listed));
        assert!(!is_allowed("evilcorp.example", &listed));
        assert!(!is_allowed("example.com", &listed));
    }

    #[test]
    fn patterns_are_bare_host_names() {
        assert!(validate_pattern("dash.example.com").is_ok());
        assert!(validate_pattern(".example.com").is_ok());
        for bad in [
            "",
            ".",
            "https://dash.example.com",
            "dash:8080",
            "*.example.com",
        ] {
            assert!(validate_pattern(bad).is_err(), "{bad}");
        }
    }
}
