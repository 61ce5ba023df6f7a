//! The machine's Redis (127.0.0.1:6379, started by scripts/test.sh), shared by the brokers
//! of one test under a key prefix no other test uses; the test's keys are deleted when it
//! drops.

use redis::Commands as _;

pub const URL: &str = "redis://127.0.0.1:6379";

/// A key prefix of this test's own on the real Redis.
#[derive(Debug)]
pub struct TestRedis {
    pub prefix: String,
    client: redis::Client,
}

impl Default for TestRedis {
    fn default() -> Self {
        Self::new()
    }
}

impl TestRedis {
    pub fn new() -> Self {
        let prefix = format!("tessera-test:{}:", uuid::Uuid::new_v4().simple());
        let client = redis::Client::open(URL).expect("redis url");
        let mut conn = client.get_connection().expect("Redis on 127.0.0.1:6379 (scripts/test.sh starts it)");
        let _: String = redis::cmd("PING").query(&mut conn).expect("redis PING");
        Self { prefix, client }
    }

    /// The `redis:` block of a broker.yaml using this prefix.
    pub fn config(&self) -> String {
        format!("redis:\n  url: {URL}\n  key_prefix: \"{}\"\n", self.prefix)
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
