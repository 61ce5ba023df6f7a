//! SPIFFE IDs (SPIFFE ID specification §2): `spiffe://` + trust domain name + path. The
//! `spiffe` source parses the `sub` of the JWT-SVIDs it verifies with it; the `spiffe`
//! target checks the IDs it renders with it before it signs one.

/// The longest SPIFFE ID accepted (SPIFFE ID §2.3: URIs up to 2048 bytes).
pub const MAX_ID_BYTES: usize = 2048;
/// The longest trust domain name (SPIFFE ID §2.1: at most 255 characters).
pub const MAX_TRUST_DOMAIN_BYTES: usize = 255;

/// A parsed SPIFFE ID.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpiffeId<'a> {
    pub trust_domain: &'a str,
    /// Empty for the trust domain's own ID, else `/segment/...`.
    pub path: &'a str,
}

/// SPIFFE ID §2.1: a trust domain name has only lower-case letters, digits, `.`, `-` and
/// `_`; no port, no user info, no percent-encoding.
pub fn valid_trust_domain(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_TRUST_DOMAIN_BYTES
        && name
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'-' | b'_'))
}

/// SPIFFE ID §2.2: path segments are non-empty, of letters, digits, `.`, `-`, `_`, and
/// never `.` or `..`; no trailing `/`, query or fragment. The empty path is the trust
/// domain's own ID.
pub fn valid_path(path: &str) -> bool {
    if path.is_empty() {
        return true;
    }
    let Some(rest) = path.strip_prefix('/') else { return false };
    rest.split('/').all(|segment| {
        !segment.is_empty()
            && segment != "."
            && segment != ".."
            && segment.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b'_'))
    })
}

/// Parse a SPIFFE ID strictly: the scheme exactly `spiffe`, the rest as above.
pub fn parse(text: &str) -> Option<SpiffeId<'_>> {
    if text.len() > MAX_ID_BYTES {
        return None;
    }
    let rest = text.strip_prefix("spiffe://")?;
    let (trust_domain, path) = match rest.find('/') {
        Some(slash) => (rest.get(..slash)?, rest.get(slash..)?),
        None => (rest, ""),
    };
    (valid_trust_domain(trust_domain) && valid_path(path)).then_some(SpiffeId { trust_domain, path })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn valid_ids() {
        assert_eq!(
            parse("spiffe://example.org/ns/payments/sa/api"),
            Some(SpiffeId { trust_domain: "example.org", path: "/ns/payments/sa/api" })
        );
        assert_eq!(parse("spiffe://example.org"), Some(SpiffeId { trust_domain: "example.org", path: "" }));
        assert!(parse("spiffe://a_b-c.d9/A.b-C_9/x").is_some());
        let long_path = format!("spiffe://example.org/{}", "a".repeat(2048 - 21));
        assert_eq!(long_path.len(), 2048);
        assert!(parse(&long_path).is_some());
        assert!(parse(&format!("{long_path}a")).is_none());
    }

    #[test]
    fn invalid_ids() {
        for bad in [
            "",
            "spiffe://",
            "spiffe:///path",
            "SPIFFE://example.org/x",
            "https://example.org/x",
            "spiffe:/example.org/x",
            "spiffe://Example.org/x",
            "spiffe://example.org:8080/x",
            "spiffe://user@example.org/x",
            "spiffe://example.org/",
            "spiffe://example.org/x/",
            "spiffe://example.org//x",
            "spiffe://example.org/./x",
            "spiffe://example.org/../x",
            "spiffe://example.org/x?y=1",
            "spiffe://example.org/x#y",
            "spiffe://example.org/x%20y",
            "spiffe://example.org/x y",
            "spiffe://exa mple.org/x",
        ] {
            assert_eq!(parse(bad), None, "{bad}");
        }
        assert!(!valid_trust_domain(&"a".repeat(256)));
        assert!(valid_trust_domain(&"a".repeat(255)));
    }
}
