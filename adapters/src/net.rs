//! The rules every URL Tessera calls out to follows, whoever calls it: a source fetching
//! keys, a target posting to a platform, the `aws_iam` source forwarding to STS.
//!
//! `https` only; plain `http` only where a config says `insecure_http: true`, and then only
//! to a loopback host, for tests (DESIGN.md "JWT rules every JWT source shares").
//!
//! And the rule for the `Host` of requests to Tessera's own loopback listeners (the
//! broker's admin listener, the agent's endpoints), against DNS rebinding:
//! [`is_local_request`].

use std::net::{IpAddr, Ipv6Addr};

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

/// The `message` of the fixed JSON body a loopback listener refuses a request for another
/// host with (421 Misdirected Request, RFC 9110 §15.5.20).
pub const MISDIRECTED_MESSAGE: &str =
    "this listener answers only to a loopback address, localhost or a host name it is configured with";

/// Whether a request is addressed to this loopback listener by name: its `Host` (RFC 9110
/// §7.2; `hosts` are the header's values, `authority` the HTTP/2 `:authority` used when
/// there is no header) is a loopback address literal (`127.0.0.0/8`, `[::1]`), `localhost`,
/// or one of `names`, with or without a port.
///
/// A web page can rebind its own name to 127.0.0.1 and so reach a loopback listener from
/// the browser of whoever opens it, but its requests still carry its own name: refusing
/// every other `Host` keeps them out.
pub fn is_local_request<'a>(
    hosts: &[&[u8]],
    authority: Option<&str>,
    names: impl IntoIterator<Item = &'a str>,
) -> bool {
    let authority = match hosts {
        [] => authority,
        [one] => std::str::from_utf8(one).ok(),
        _ => None,
    };
    let Some(host) = authority.and_then(authority_host) else {
        return false;
    };
    if host_is_loopback(host) {
        return true;
    }
    names.into_iter().filter_map(authority_host).any(|name| same_host(name, host))
}

/// A name a loopback listener may also answer to (`admin.hosts`, the agent's `hosts`): a
/// DNS name or an IP address, IPv6 in brackets, with no port.
pub fn check_host_name(name: &str) -> Result<(), String> {
    let port_free = if name.starts_with('[') { name.ends_with(']') } else { !name.contains(':') };
    if port_free && authority_host(name).is_some() {
        Ok(())
    } else {
        Err(format!("`{name}` is not a host name or address (write it without scheme, port or path)"))
    }
}

/// The host of an authority `host[:port]` (RFC 3986 §3.2.2), an IPv6 literal without its
/// brackets; `None` for anything else (a user, a path, a bad port, bare IPv6).
fn authority_host(authority: &str) -> Option<&str> {
    let (host, port) = match authority.strip_prefix('[') {
        Some(bracketed) => {
            let (inside, rest) = bracketed.split_once(']')?;
            inside.parse::<Ipv6Addr>().ok()?;
            let port = if rest.is_empty() { None } else { Some(rest.strip_prefix(':')?) };
            (inside, port)
        }
        None => match authority.split_once(':') {
            Some((host, port)) => (host, Some(port)),
            None => (authority, None),
        },
    };
    let port_ok = port.is_none_or(|p| (1..=5).contains(&p.len()) && p.bytes().all(|b| b.is_ascii_digit()));
    let host_ok = !host.is_empty() && host.bytes().all(|b| b.is_ascii_alphanumeric() || b"-._:".contains(&b));
    (port_ok && host_ok).then_some(host)
}

fn host_is_loopback(host: &str) -> bool {
    match host.parse::<IpAddr>() {
        Ok(ip) => ip.is_loopback(),
        Err(_) => same_host(host, "localhost"),
    }
}

/// Addresses compare as addresses, names without case and a final `.`.
fn same_host(a: &str, b: &str) -> bool {
    match (a.parse::<IpAddr>(), b.parse::<IpAddr>()) {
        (Ok(a), Ok(b)) => a == b,
        (Err(_), Err(_)) => {
            fn trim(h: &str) -> &str {
                h.strip_suffix('.').unwrap_or(h)
            }
            trim(a).eq_ignore_ascii_case(trim(b))
        }
        _ => false,
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

/// Why an HTTP request failed, in words: what failed (`cannot connect`, `timed out`, ...)
/// and, unless it timed out, the innermost cause, which for a connection is the operating
/// system's error (`Connection refused (os error 111)`), else a DNS or TLS problem. Without
/// the URL, which [`request_error`] puts in front.
pub fn request_failure(e: &reqwest::Error) -> String {
    let what = if e.is_timeout() {
        return "timed out".to_string();
    } else if e.is_connect() {
        "cannot connect"
    } else if e.is_body() || e.is_decode() {
        "the answer could not be read"
    } else {
        "the request failed"
    };
    match root_cause(e) {
        Some(root) => format!("{what}: {root}"),
        None => what.to_string(),
    }
}

/// [`request_failure`] after the endpoint called:
/// `http://127.0.0.1:8200/v1/aws/credentials: cannot connect: Connection refused (os error 111)`.
pub fn request_error(endpoint: &dyn std::fmt::Display, e: &reqwest::Error) -> String {
    format!("{endpoint}: {}", request_failure(e))
}

/// The message of the last error in `error`'s chain of sources; `None` when it has none.
pub fn root_cause(error: &dyn std::error::Error) -> Option<String> {
    let mut cause = error.source()?;
    while let Some(deeper) = cause.source() {
        cause = deeper;
    }
    Some(cause.to_string())
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
    fn loopback_listeners_answer_to_loopback_localhost_and_their_names_only() {
        let local = |host: &str| {
            is_local_request(&[host.as_bytes()], None, ["tessera-admin", "10.0.0.5", "[fd00::1]"])
        };
        for host in [
            "127.0.0.1",
            "127.0.0.1:8090",
            "127.9.8.7:1",
            "[::1]",
            "[::1]:8090",
            "localhost",
            "LocalHost:8200",
            "localhost.",
            "tessera-admin",
            "Tessera-Admin:8090",
            "10.0.0.5:8090",
            "[fd00::1]:8090",
        ] {
            assert!(local(host), "{host}");
        }
        for host in [
            "evil.example",
            "evil.example:8090",
            "127.0.0.1.evil.example",
            "localhost.evil.example",
            "evil.localhost",
            "::1",
            "[::1",
            "[::ffff:127.0.0.1]",
            "127.1",
            "0x7f.0.0.1",
            "10.0.0.6",
            "[fd00::2]",
            "evil.example@127.0.0.1",
            "127.0.0.1/",
            "127.0.0.1:",
            "127.0.0.1:80:80",
            "127.0.0.1:123456",
            "127.0.0.1 ",
            "",
        ] {
            assert!(!local(host), "{host}");
        }
        // No Host: HTTP/2's `:authority`; several Host headers: refused.
        assert!(is_local_request(&[], Some("127.0.0.1:8090"), []));
        assert!(!is_local_request(&[], Some("evil.example"), []));
        assert!(!is_local_request(&[], None, []));
        assert!(!is_local_request(&[b"127.0.0.1", b"evil.example"], None, []));
        assert!(!is_local_request(&[&[0xff, 0x31]], None, []));
    }

    #[test]
    fn configured_host_names_have_no_port() {
        for ok in ["tessera-admin", "tessera-admin.tessera.svc.cluster.local", "10.0.0.5", "[fd00::1]"] {
            assert!(check_host_name(ok).is_ok(), "{ok}");
        }
        for bad in
            ["", "tessera-admin:8090", "http://tessera-admin", "fd00::1", "[fd00::1]:80", "a/b", "*.svc"]
        {
            assert!(check_host_name(bad).is_err(), "{bad}");
        }
    }

    /// A refused connection names the endpoint and the operating system's error.
    #[tokio::test]
    async fn a_request_error_names_the_endpoint_and_the_os_error() {
        let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}/v1/token", listener.local_addr().unwrap());
        drop(listener);
        let e = reqwest::Client::new().get(&url).send().await.unwrap_err();
        let text = request_error(&url, &e);
        assert!(text.starts_with(&format!("{url}: cannot connect: ")), "{text}");
        assert!(text.contains("(os error 111)"), "{text}");
        assert_eq!(text.matches(&url).count(), 1, "{text}");
    }

    #[test]
    fn the_authority_leaves_out_default_ports() {
        assert_eq!(authority(&url("https://sts.amazonaws.com/")), "sts.amazonaws.com");
        assert_eq!(authority(&url("https://sts.amazonaws.com:443/")), "sts.amazonaws.com");
        assert_eq!(authority(&url("http://127.0.0.1:5000/")), "127.0.0.1:5000");
    }
}
