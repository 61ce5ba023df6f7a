//! The token endpoint answer reader, for the cargo-fuzz target in `fuzz/` (the `fuzzing`
//! feature only).

/// Read `body` as a foreign token endpoint's answer with `status`; `true` when it yields
/// an access token.
pub fn token_answer(status: u16, body: &[u8]) -> bool {
    super::issue::read_answer(status, body).is_ok()
}
