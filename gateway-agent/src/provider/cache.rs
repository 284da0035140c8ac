//! What a provider looked up in its tenant by name (a principal's id, a
//! permission set's ARN), trusted for a while so repeated grants and
//! revokes do not spend the tenant's rate budget on lookups.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct TtlCache<V> {
    ttl: Duration,
    entries: Mutex<HashMap<String, (V, Instant)>>,
}

impl<V: Clone> TtlCache<V> {
    pub fn new(ttl: Duration) -> Self {
        Self {
            ttl,
            entries: Mutex::new(HashMap::new()),
        }
    }

    /// The value for `key`, unless it is older than the TTL.
    pub fn get(&self, key: &str) -> Option<V> {
        let entries = self.entries.lock().ok()?;
        let (value, at) = entries.get(key)?;
        (at.elapsed() < self.ttl).then(|| value.clone())
    }

    pub fn insert(&self, key: impl Into<String>, value: V) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(key.into(), (value, Instant::now()));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn entries_expire_after_the_ttl() {
        let cache = TtlCache::new(Duration::from_millis(50));
        cache.insert("alice", 1);
        assert_eq!(cache.get("alice"), Some(1));
        assert_eq!(cache.get("bob"), None);
        tokio::time::sleep(Duration::from_millis(60)).await;
        assert_eq!(cache.get("alice"), None);
    }
}
