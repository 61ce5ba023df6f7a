//! The pieces of SQL the target writes itself, because PostgreSQL's utility statements
//! (`CREATE ROLE`, `GRANT`, `COMMENT`) take no bind parameters: identifiers quoted as
//! `quote_ident` does, literals quoted as `quote_literal` does, role names made from an
//! identity, random passwords and the SCRAM-SHA-256 verifier sent instead of a password.

use std::num::NonZeroU32;

use aws_lc_rs::{digest, hmac, pbkdf2};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

/// The longest identifier PostgreSQL keeps (`NAMEDATALEN - 1` bytes); longer ones are cut
/// silently, so the target never writes one.
pub const MAX_IDENTIFIER: usize = 63;

/// Characters of a generated password: letters and digits, which need no escaping in a
/// connection string, a password file or a shell.
const PASSWORD_ALPHABET: &[u8; 62] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789";
/// 32 of 62 characters: 190 bits.
pub const PASSWORD_LEN: usize = 32;
/// Characters of the per-login suffix of a role name.
const SUFFIX_ALPHABET: &[u8; 32] = b"abcdefghijklmnopqrstuvwxyz234567";
const SUFFIX_LEN: usize = 6;
/// Hex digits of the identity's hash in a role name (40 bits).
const HASH_LEN: usize = 10;
/// What a role name adds after its readable part: `_`, the hash, `_`, the suffix.
pub const NAME_TAIL: usize = 1 + HASH_LEN + 1 + SUFFIX_LEN;

/// PBKDF2 iterations of the SCRAM verifier: PostgreSQL's default (`scram_iterations`).
pub const SCRAM_ITERATIONS: u32 = 4096;
const SCRAM_SALT_LEN: usize = 16;

/// `name` as a quoted identifier: in double quotes, each `"` doubled. Always quoted, so
/// case is kept and no name is ever read as a keyword. A NUL, which no identifier may
/// hold, or a name PostgreSQL would cut is refused.
pub fn quote_ident(name: &str) -> Result<String, String> {
    if name.is_empty() || name.len() > MAX_IDENTIFIER || name.contains('\0') {
        return Err(format!(
            "`{}` is not a PostgreSQL identifier (1 to 63 bytes, no NUL)",
            name.escape_debug()
        ));
    }
    Ok(format!("\"{}\"", name.replace('"', "\"\"")))
}

/// `text` as a string literal that reads the same whatever `standard_conforming_strings`
/// says: `'...'` with each `'` doubled, and, when it holds a backslash, the escape string
/// form `E'...'` with each `\` doubled too (PostgreSQL's own `quote_literal`). A NUL,
/// which no text value may hold, is refused.
pub fn quote_literal(text: &str) -> Result<String, String> {
    if text.contains('\0') {
        return Err("a string literal cannot hold NUL".into());
    }
    let quoted = text.replace('\'', "''");
    Ok(if quoted.contains('\\') {
        format!("E'{}'", quoted.replace('\\', "\\\\"))
    } else {
        format!("'{quoted}'")
    })
}

/// A name the target accepts for a group role in its config: a plain identifier (a letter
/// or `_`, then letters, digits, `_` or `$`; up to 63 bytes), not one of PostgreSQL's
/// predefined `pg_` roles, whose membership grants server-level powers (reading server
/// files, running programs, signalling backends).
pub fn check_group_name(name: &str) -> Result<(), String> {
    let mut bytes = name.bytes();
    let first_ok = bytes.next().is_some_and(|b| b.is_ascii_alphabetic() || b == b'_');
    let rest_ok = bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'$');
    if !first_ok || !rest_ok || name.len() > MAX_IDENTIFIER {
        return Err(format!(
            "`{}` is not a plain PostgreSQL role name: a letter or _, then letters, digits, _ or $, at most 63 bytes",
            name.escape_debug()
        ));
    }
    if name.to_ascii_lowercase().starts_with("pg_") {
        return Err(format!("`{name}` is a predefined role (pg_*): granting it is refused"));
    }
    Ok(())
}

/// A role name prefix: 1 to 20 of `a-z`, `0-9`, `_`, starting with a letter. Every role the
/// target makes starts with it, and the sweep drops no role that does not.
pub fn check_prefix(prefix: &str) -> Result<(), String> {
    let ok = (1..=20).contains(&prefix.len())
        && prefix.bytes().next().is_some_and(|b| b.is_ascii_lowercase())
        && prefix.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
    if ok {
        Ok(())
    } else {
        Err(format!("role_prefix `{prefix}` must be 1 to 20 of a-z, 0-9 and _, starting with a letter"))
    }
}

/// The part of a role name every login of one identity shares: `prefix`, a readable part
/// (the identity's name, else the last segment of its id, lowercased, other characters
/// as `_`) and, after `_`, the first hex digits of SHA-256 of the identity id, so two
/// identities with one name stay apart. [`role_name`] adds a random suffix per login.
pub fn role_stem(prefix: &str, identity_id: &str, identity_name: Option<&str>) -> String {
    let source = identity_name
        .filter(|n| n.bytes().any(|b| b.is_ascii_alphanumeric()))
        .unwrap_or_else(|| identity_id.rsplit(['/', ':']).find(|s| !s.is_empty()).unwrap_or(identity_id));
    let room = MAX_IDENTIFIER.saturating_sub(prefix.len() + NAME_TAIL);
    let mut readable = String::with_capacity(room);
    for c in source.chars() {
        let c = if c.is_ascii_alphanumeric() { c.to_ascii_lowercase() } else { '_' };
        if c == '_' && (readable.is_empty() || readable.ends_with('_')) {
            continue;
        }
        if readable.len() == room {
            break;
        }
        readable.push(c);
    }
    let readable = readable.trim_end_matches('_');
    let hash = digest::digest(&digest::SHA256, identity_id.as_bytes());
    let hex: String = hash.as_ref().iter().map(|b| format!("{b:02x}")).collect::<String>();
    let short = hex.get(..HASH_LEN).unwrap_or(&hex);
    if readable.is_empty() { format!("{prefix}{short}") } else { format!("{prefix}{readable}_{short}") }
}

/// A new role name: the identity's [`role_stem`], `_` and a random suffix, at most 63 bytes
/// of `a-z`, `0-9` and `_`.
pub fn role_name(stem: &str) -> Result<String, String> {
    let suffix = random_string(SUFFIX_ALPHABET, SUFFIX_LEN)?;
    Ok(format!("{stem}_{suffix}"))
}

/// A password of [`PASSWORD_LEN`] characters from the OS's CSPRNG.
pub fn password() -> Result<String, String> {
    random_string(PASSWORD_ALPHABET, PASSWORD_LEN)
}

/// `len` characters drawn uniformly from `alphabet` (rejection sampling, no modulo bias).
fn random_string(alphabet: &[u8], len: usize) -> Result<String, String> {
    let size = alphabet.len();
    // The largest multiple of the alphabet's size that a byte can reach.
    let limit = 256 - 256 % size;
    let mut out = String::with_capacity(len);
    let mut bytes = [0u8; 64];
    while out.len() < len {
        aws_lc_rs::rand::fill(&mut bytes).map_err(|_| "the system random generator failed".to_string())?;
        for b in bytes.iter().map(|b| usize::from(*b)).filter(|b| *b < limit) {
            if out.len() == len {
                break;
            }
            if let Some(c) = alphabet.get(b % size) {
                out.push(char::from(*c));
            }
        }
    }
    Ok(out)
}

/// The SCRAM-SHA-256 verifier of `password` (RFC 5802 §3, RFC 7677) as PostgreSQL stores
/// it in `pg_authid.rolpassword`: `SCRAM-SHA-256$<iterations>:<salt>$<StoredKey>:<ServerKey>`.
/// Given as a role's `PASSWORD`, PostgreSQL keeps it as it is, so the password itself never
/// reaches the server, its statement log or its statistics (libpq's `PQencryptPasswordConn`
/// and psql's `\password` do the same). The password must be ASCII letters and digits,
/// which SASLprep leaves as they are.
pub fn scram_verifier(password: &str) -> Result<String, String> {
    let mut salt = [0u8; SCRAM_SALT_LEN];
    aws_lc_rs::rand::fill(&mut salt).map_err(|_| "the system random generator failed".to_string())?;
    scram_verifier_with(password, &salt, SCRAM_ITERATIONS)
}

pub(super) fn scram_verifier_with(password: &str, salt: &[u8], iterations: u32) -> Result<String, String> {
    if !password.bytes().all(|b| b.is_ascii_alphanumeric()) {
        return Err("the password must be ASCII letters and digits".into());
    }
    let rounds = NonZeroU32::new(iterations).ok_or_else(|| "zero iterations".to_string())?;
    let mut salted = [0u8; 32];
    pbkdf2::derive(pbkdf2::PBKDF2_HMAC_SHA256, rounds, salt, password.as_bytes(), &mut salted);
    let key = hmac::Key::new(hmac::HMAC_SHA256, &salted);
    let client_key = hmac::sign(&key, b"Client Key");
    let stored_key = digest::digest(&digest::SHA256, client_key.as_ref());
    let server_key = hmac::sign(&key, b"Server Key");
    Ok(format!(
        "SCRAM-SHA-256${iterations}:{}${}:{}",
        STANDARD.encode(salt),
        STANDARD.encode(stored_key.as_ref()),
        STANDARD.encode(server_key.as_ref())
    ))
}
