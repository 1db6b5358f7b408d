//! The key schema: every key of a customer shares one hash tag.

use antifraud_domain::CustomerId;

/// A customer's keys.
///
/// `af:{<hex of the customer id's UTF-8 bytes>}:<kind>`. Hex encoding keeps any id (braces,
/// colons, spaces, unicode) from breaking the hash tag or colliding with another customer's keys,
/// and the tag puts all of a customer's keys in one Redis Cluster slot, as its scripts require.
/// Two keys in use, not more: each key a script touches costs it calls. Two more are what
/// versions before the index kept: the scripts move what they find there into the two in use.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CustomerKeys {
    /// Sorted set of events: member `amount|transaction id`, score the timestamp in µs. A new
    /// name (`ev2`) for the layout with an index, so that an instance of an earlier version,
    /// during a rolling upgrade, cannot add or remove an event behind the index's back.
    pub events: String,
    /// Hash: `t:<id>` → `fingerprint|timestamp µs`, `a:<id>` → assessment (JSON), and the index
    /// of running sums that makes every window two lookups: `r:<id>`, `p<hour>`, `b`, `n` (see
    /// record.lua and docs/redis.md).
    pub transactions: String,
    /// The sorted set of events of versions before the index (`ev`, same members): its events
    /// move into `events` at the customer's next transaction.
    pub legacy_events: String,
    /// Hash of five-minute and hour buckets that versions before the index kept for busy
    /// customers: deleted with `legacy_events`.
    pub legacy_buckets: String,
    /// A short-lived string written, with `--redis-wait-replicas`, before confirming a replay on
    /// a connection that wrote nothing: `WAIT` covers only the sender's own writes. Never read.
    pub written: String,
}

impl CustomerKeys {
    /// The keys of `customer`.
    pub fn new(customer: &CustomerId) -> Self {
        let tag = super::hex(customer.as_str().as_bytes());
        let key = |kind: &str| format!("af:{{{tag}}}:{kind}");
        CustomerKeys {
            events: key("ev2"),
            transactions: key("tx"),
            legacy_events: key("ev"),
            legacy_buckets: key("bk"),
            written: key("w"),
        }
    }

    /// The keys of the record script, in its order.
    pub(crate) fn record(&self) -> Vec<String> {
        vec![
            self.events.clone(),
            self.transactions.clone(),
            self.legacy_events.clone(),
            self.legacy_buckets.clone(),
        ]
    }

    /// The keys of the commit script, in its order.
    pub(crate) fn commit(&self) -> Vec<String> {
        vec![self.transactions.clone()]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_that_look_alike_get_distinct_keys_with_one_clean_hash_tag() {
        let ids = ["a", "a ", "{a}", "a}:{b", "a:b", "é", "e\u{301}", "A"];
        let keys: Vec<_> = ids
            .iter()
            .map(|id| CustomerKeys::new(&CustomerId::parse(*id).expect("valid")))
            .collect();
        for (i, k) in keys.iter().enumerate() {
            let tag = &k.events
                [k.events.find('{').expect("a tag") + 1..k.events.find('}').expect("a tag")];
            assert!(tag.bytes().all(|b| b.is_ascii_hexdigit()), "{}", k.events);
            for kind in [
                &k.transactions,
                &k.legacy_events,
                &k.legacy_buckets,
                &k.written,
            ] {
                assert!(kind.contains(&format!("{{{tag}}}")), "one tag for all keys");
            }
            for other in &keys[i + 1..] {
                assert_ne!(k.events, other.events);
            }
        }
        assert_eq!(keys[0].events, "af:{61}:ev2");
    }
}
