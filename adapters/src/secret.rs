//! Values that must never reach a log, an error message or an audit record.

use std::fmt;

use aws_lc_rs::digest;

/// A secret (a token, a private key, a credential). It has no `Display`, and its `Debug`
/// prints `[redacted]`; the only ways to the value are [`Secret::expose`] and
/// [`Secret::fingerprint`].
#[derive(Clone, PartialEq, Eq)]
pub struct Secret<T>(T);

impl<T> Secret<T> {
    pub fn new(value: T) -> Self {
        Self(value)
    }

    /// The value itself. Call sites are the places to audit.
    pub fn expose(&self) -> &T {
        &self.0
    }

    pub fn into_inner(self) -> T {
        self.0
    }
}

impl<T: AsRef<[u8]>> Secret<T> {
    /// `sha256:<hex>` of the value: what logs and audit records carry instead of a token.
    pub fn fingerprint(&self) -> String {
        fingerprint(self.0.as_ref())
    }
}

impl<T> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("[redacted]")
    }
}

impl<T> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Self(value)
    }
}

/// `sha256:<hex>` of some bytes.
pub fn fingerprint(bytes: &[u8]) -> String {
    const HEX: &[u8; 16] = b"0123456789abcdef";
    let d = digest::digest(&digest::SHA256, bytes);
    let mut out = String::with_capacity(7 + 64);
    out.push_str("sha256:");
    for b in d.as_ref() {
        for nibble in [b >> 4, b & 0x0f] {
            // Both nibbles are below 16, so the lookup always hits.
            if let Some(c) = HEX.get(usize::from(nibble)) {
                out.push(char::from(*c));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn debug_is_redacted_and_fingerprint_is_sha256() {
        let s = Secret::new("abc".to_string());
        assert_eq!(format!("{s:?}"), "[redacted]");
        assert_eq!(
            s.fingerprint(),
            "sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }
}
