//! The rules every URL Tessera calls out to follows, whoever calls it: a source fetching
//! keys, a target posting to a platform, the `aws_iam` source forwarding to STS.
//!
//! `https` only; plain `http` only where a config says `insecure_http: true`, and then only
//! to a loopback host, for tests (DESIGN.md "JWT rules every JWT source shares").

use url::{Host, Url};

/// Check a URL Tessera is about to call: `https`, or `http` on a loopback host when
/// `insecure_http` allows it; a host; no credentials. The message names the URL and says
/// what to write instead.
pub fn check_url(url: &Url, insecure_http: bool) -> Result<(), String> {
    match url.scheme() {
        "https" => {}
        "http" if insecure_http && is_loopback(url) => {}
        "http" if insecure_http => {
            return Err(format!(
                "`{url}`: plain http is allowed only on a loopback host (127.0.0.1, ::1, localhost)"
            ));
        }
        "http" => {
            return Err(format!(
                "`{url}`: plain http is refused; use https (or insecure_http on loopback for tests)"
            ));
        }
        other => return Err(format!("`{url}`: scheme `{other}` is not https")),
    }
    if url.host().is_none() {
        return Err(format!("`{url}` has no host"));
    }
    if !url.username().is_empty() || url.password().is_some() {
        return Err(format!("`{url}` must not carry credentials"));
    }
    Ok(())
}

/// Whether the URL's host is a loopback address (`127.0.0.0/8`, `::1`) or `localhost`.
pub fn is_loopback(url: &Url) -> bool {
    match url.host() {
        Some(Host::Ipv4(ip)) => ip.is_loopback(),
        Some(Host::Ipv6(ip)) => ip.is_loopback(),
        Some(Host::Domain(d)) => d.eq_ignore_ascii_case("localhost"),
        None => false,
    }
}

/// The `Host` header an HTTP client sends for `url`: the host, and the port unless it is
/// the scheme's default (RFC 9110 §7.2).
pub fn authority(url: &Url) -> String {
    let host = url.host_str().unwrap_or_default();
    match url.port() {
        Some(port) => format!("{host}:{port}"),
        None => host.to_owned(),
    }
}

/// An error and its causes on one line (`error sending request: connection refused`), for
/// upstream failures in logs and audit details.
pub fn error_chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut cause = error.source();
    while let Some(e) = cause {
        text.push_str(": ");
        text.push_str(&e.to_string());
        cause = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn url(text: &str) -> Url {
        Url::parse(text).unwrap()
    }

    #[test]
    fn https_always_plain_http_only_to_loopback_when_allowed() {
        assert!(check_url(&url("https://idp.example.com/jwks"), false).is_ok());
        for loopback in ["http://127.0.0.1:9/", "http://127.1.2.3/", "http://[::1]:9/", "http://LOCALHOST/"] {
            assert!(check_url(&url(loopback), true).is_ok(), "{loopback}");
            assert!(check_url(&url(loopback), false).is_err(), "{loopback}");
        }
        for remote in ["http://idp.example.com/", "http://10.0.0.1/", "http://localhost.evil.example/"] {
            assert!(check_url(&url(remote), true).is_err(), "{remote}");
        }
        assert!(check_url(&url("ftp://idp.example.com/"), true).is_err());
        assert!(check_url(&url("file:///etc/jwks.json"), true).is_err());
        assert!(check_url(&url("https://u:p@idp.example.com/"), false).is_err());
        assert!(check_url(&url("https://u@idp.example.com/"), false).is_err());
    }

    #[test]
    fn the_authority_leaves_out_default_ports() {
        assert_eq!(authority(&url("https://sts.amazonaws.com/")), "sts.amazonaws.com");
        assert_eq!(authority(&url("https://sts.amazonaws.com:443/")), "sts.amazonaws.com");
        assert_eq!(authority(&url("http://127.0.0.1:5000/")), "127.0.0.1:5000");
    }
}
