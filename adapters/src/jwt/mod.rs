//! Shared JWT verification.
