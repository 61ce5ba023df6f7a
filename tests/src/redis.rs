//! The machine's Redis (127.0.0.1:6379, started by scripts/test.sh), shared by the brokers
//! of one test under a key prefix no other test uses (its own, or the default of an issuer
//! URL of its own); the test's keys are deleted when it drops.

use redis::Commands as _;

pub const URL: &str = "redis://127.0.0.1:6379";

/// A key prefix of this test's own on the real Redis.
#[derive(Debug)]
pub struct TestRedis {
    pub prefix: String,
    /// Whether the broker is told the prefix (`key_prefix`) or left to its default.
    configured: bool,
    client: redis::Client,
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRedis {
    pub fn new() -> Self {
        Self::with_prefix(format!("tessera-test:{}:", uuid::Uuid::new_v4().simple()), true)
    }

    /// The keys of the deployment whose issuer URL is `issuer_url`, whose brokers are not
    /// told a `key_prefix`: documented as `tessera:` and the first 12 hex digits of the
    /// URL's SHA-256, then `:`. The URL should be the test's own.
    pub fn deployment(issuer_url: &str) -> Self {
        let digest = aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA256, issuer_url.as_bytes());
        let hex: String = digest.as_ref()[..6].iter().map(|b| format!("{b:02x}")).collect();
        Self::with_prefix(format!("tessera:{hex}:"), false)
    }

    fn with_prefix(prefix: String, configured: bool) -> Self {
        let client = redis::Client::open(URL).expect("redis url");
        let mut conn = client.get_connection().expect("Redis on 127.0.0.1:6379 (scripts/test.sh starts it)");
        let _: String = redis::cmd("PING").query(&mut conn).expect("redis PING");
        Self { prefix, configured, client }
    }

    /// The `redis:` block of a broker.yaml using this prefix.
    pub fn config(&self) -> String {
        if self.configured {
            format!("redis:\n  url: {URL}\n  key_prefix: \"{}\"\n", self.prefix)
        } else {
            format!("redis:\n  url: {URL}\n")
        }
    }

    /// Every key under the prefix with its raw value (string keys only).
    pub fn entries(&self) -> Vec<(String, Vec<u8>)> {
        let mut conn = self.client.get_connection().expect("redis");
        let keys: Vec<String> = conn
            .scan_match(format!("{}*", self.prefix))
            .expect("SCAN")
            .collect::<Result<_, _>>()
            .expect("SCAN");
        keys.into_iter()
            .filter_map(|k| conn.get::<_, Option<Vec<u8>>>(&k).ok().flatten().map(|v| (k, v)))
            .collect()
    }
}

impl Drop for TestRedis {
    fn drop(&mut self) {
        let Ok(mut conn) = self.client.get_connection() else { return };
        let keys: Vec<String> = match conn.scan_match(format!("{}*", self.prefix)) {
            Ok(iter) => iter.filter_map(Result::ok).collect(),
            Err(_) => return,
        };
        if !keys.is_empty() {
            let _: Result<(), _> = conn.del(keys);
        }
    }
}
