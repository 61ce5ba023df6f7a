//! What adapters report about their own upstream traffic, for the broker's metrics. The
//! broker passes an [`Observer`] in the [`BuildContext`](crate::build::BuildContext);
//! adapters never know how it is exported.

use std::fmt::Debug;

/// Told about adapter events as they happen. Calls are cheap and never fail.
pub trait Observer: Send + Sync + Debug {
    /// A source fetched its key set (discovery and JWKS): `ok`, and when, in seconds
    /// since the Unix epoch by the injected clock.
    fn jwks_fetch(&self, source: &str, ok: bool, at: i64);
}

/// Reports nothing: for tools and tests that keep no metrics.
#[derive(Debug, Default, Clone, Copy)]
pub struct NoObserver;

impl Observer for NoObserver {
    fn jwks_fetch(&self, _source: &str, _ok: bool, _at: i64) {}
}
