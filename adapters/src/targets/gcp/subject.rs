//! What the subject token tells Google about the workload: `sub`, which the provider maps
//! to `google.subject` (at most 127 bytes), the full identity id and the rule that granted
//! the exchange, which it maps to custom attributes for `principalSet` bindings.

use std::borrow::Cow;

use base64::Engine as _;

/// Google's limit on `google.subject` (IAM API, `WorkloadIdentityPoolProvider.attributeMapping`).
pub const MAX_SUBJECT_BYTES: usize = 127;
/// The claim carrying the full identity id; mapped as `attribute.tessera_id`.
pub const ID_CLAIM: &str = "tessera_id";
/// The claim carrying the name of the rule that granted the exchange; mapped as
/// `attribute.tessera_rule`.
pub const RULE_CLAIM: &str = "tessera_rule";
/// The attribute mapping a provider needs for these claims.
pub const ATTRIBUTE_MAPPING: &[(&str, &str)] = &[
    ("google.subject", "assertion.sub"),
    ("attribute.tessera_id", "assertion.tessera_id"),
    ("attribute.tessera_rule", "assertion.tessera_rule"),
];

/// Characters of the unpadded base64url SHA-256 that ends a compacted subject.
const HASH_CHARS: usize = 43;
/// Between the readable prefix and the hash: a URL-safe character, so a principal
/// identifier needs no escaping.
const SEPARATOR: char = '~';

/// The `sub` of the subject token for identity `id`: the id itself when it fits in
/// [`MAX_SUBJECT_BYTES`], else a readable prefix of it, `~` and the base64url SHA-256 of
/// the whole id. An id that is short but already ends the way a compacted one does is
/// compacted too, so no identity can present the compacted subject of another: the map
/// from ids to subjects is one-to-one.
pub fn google_subject(id: &str) -> Cow<'_, str> {
    if id.len() <= MAX_SUBJECT_BYTES && !looks_compacted(id) {
        return Cow::Borrowed(id);
    }
    let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, id.as_bytes());
    let hash = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(digest.as_ref());
    let mut cut = MAX_SUBJECT_BYTES - SEPARATOR.len_utf8() - HASH_CHARS;
    while !id.is_char_boundary(cut) {
        cut -= 1;
    }
    Cow::Owned(format!("{}{SEPARATOR}{hash}", id.get(..cut).unwrap_or_default()))
}

fn looks_compacted(text: &str) -> bool {
    let Some(split) = text.len().checked_sub(HASH_CHARS + 1) else { return false };
    let (head, hash) = text.as_bytes().split_at(split);
    head.len() <= MAX_SUBJECT_BYTES
        && hash.first() == Some(&(SEPARATOR as u8))
        && hash.iter().skip(1).all(|b| b.is_ascii_alphanumeric() || *b == b'-' || *b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn short_ids_are_their_own_subject_and_long_ones_compact_to_127_bytes() {
        assert_eq!(google_subject("github://octo-org/payments"), "github://octo-org/payments");
        let exact = "k".repeat(MAX_SUBJECT_BYTES);
        assert_eq!(google_subject(&exact), exact.as_str());
        let long = format!("spiffe://example.org/{}", "ns/payments/sa/api/".repeat(8));
        let subject = google_subject(&long);
        assert_eq!(subject.len(), MAX_SUBJECT_BYTES);
        assert!(long.starts_with(subject.split('~').next().unwrap()), "a readable prefix: {subject}");
        assert_eq!(google_subject(&long), subject, "deterministic");
        let other = format!("{long}x");
        assert_ne!(google_subject(&other), subject, "the hash covers the whole id");
        assert_eq!(google_subject(&other).len(), MAX_SUBJECT_BYTES);
    }

    #[test]
    fn a_multibyte_character_is_never_cut() {
        let long = "é".repeat(100);
        let subject = google_subject(&long);
        assert!(subject.len() <= MAX_SUBJECT_BYTES);
        assert!(subject.starts_with("éé"));
    }

    /// An identity whose id is another identity's compacted subject does not get that
    /// subject: its own is compacted again.
    #[test]
    fn no_short_id_presents_a_long_ones_subject() {
        let long = format!("github://octo-org/payments:{}", "ref:refs/heads/main:".repeat(8));
        let victim = google_subject(&long).into_owned();
        let forged = google_subject(&victim);
        assert_ne!(forged, victim);
        assert_eq!(forged.len(), MAX_SUBJECT_BYTES);
        let short_lookalike = format!("x~{}", "A".repeat(HASH_CHARS));
        assert_ne!(google_subject(&short_lookalike), short_lookalike.as_str());
        assert_eq!(google_subject("x~abc"), "x~abc", "a `~` alone is nothing special");
    }
}
