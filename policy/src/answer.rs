//! What a hook is asked about a topic, and what it answers.

use std::time::Duration;

/// What a client wants to do with a topic (WIT `types.action`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Action {
    /// PUBLISH to a topic name.
    Publish,
    /// SUBSCRIBE to a topic filter.
    Subscribe,
}

/// A plugin's (or a chain's) answer (WIT `types.decision`), before the broker's own
/// settings decide what `Ignore` means (`allow_anonymous`, `acl_nomatch`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Decision {
    /// Allowed; stops the chain.
    Allow,
    /// Denied; stops the chain.
    Deny,
    /// Not decided: the next plugin, or the broker's default, decides.
    Ignore,
}

/// How long an authorization answer may be kept (WIT `types.cache-lifetime`, since
/// contract 0.2.0), and what the answers of a chain combine to: a bound in seconds
/// and/or the operator's `[authz_cache]` TTL, whichever is shorter; neither is "for the
/// connection".
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct CacheLifetime {
    /// At most this many seconds (0: not kept).
    pub max_secs: Option<u32>,
    /// At most the operator's TTL.
    pub operator_ttl: bool,
}

impl CacheLifetime {
    /// The operator's TTL (what 0.1.0 plugins' answers and the broker's own get).
    pub const OPERATOR_TTL: CacheLifetime = CacheLifetime {
        max_secs: None,
        operator_ttl: true,
    };
    /// Not kept at all.
    pub const NONE: CacheLifetime = CacheLifetime {
        max_secs: Some(0),
        operator_ttl: false,
    };
    /// For the rest of the connection.
    pub const CONNECTION: CacheLifetime = CacheLifetime {
        max_secs: None,
        operator_ttl: false,
    };

    /// Up to `secs` seconds.
    pub const fn seconds(secs: u32) -> CacheLifetime {
        CacheLifetime {
            max_secs: Some(secs),
            operator_ttl: false,
        }
    }

    /// The shorter of both (what a chain's answer gets from every plugin asked).
    pub fn shortest(self, other: CacheLifetime) -> CacheLifetime {
        CacheLifetime {
            max_secs: match (self.max_secs, other.max_secs) {
                (Some(a), Some(b)) => Some(a.min(b)),
                (a, b) => a.or(b),
            },
            operator_ttl: self.operator_ttl || other.operator_ttl,
        }
    }

    /// How long, given the operator's TTL; `None`: for the connection.
    pub fn duration(self, ttl: Duration) -> Option<Duration> {
        let secs = self.max_secs.map(|s| Duration::from_secs(u64::from(s)));
        let ttl = self.operator_ttl.then_some(ttl);
        match (secs, ttl) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }
}

impl Default for CacheLifetime {
    fn default() -> Self {
        CacheLifetime::OPERATOR_TTL
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::CacheLifetime;

    #[test]
    fn a_chain_keeps_its_answer_for_the_shortest_lifetime_asked() {
        let l = CacheLifetime::CONNECTION;
        assert_eq!(
            l.shortest(CacheLifetime::OPERATOR_TTL),
            CacheLifetime::OPERATOR_TTL
        );
        let five = CacheLifetime::seconds(5);
        assert_eq!(
            five.shortest(CacheLifetime::OPERATOR_TTL),
            CacheLifetime {
                max_secs: Some(5),
                operator_ttl: true,
            }
        );
        assert_eq!(
            CacheLifetime::seconds(120).shortest(five),
            five,
            "the shorter bound in seconds"
        );
        assert_eq!(five.shortest(CacheLifetime::NONE), CacheLifetime::NONE);
    }

    #[test]
    fn a_lifetime_is_the_shorter_of_its_bound_and_the_ttl() {
        let ttl = Duration::from_secs(60);
        let secs = |max_secs, operator_ttl| CacheLifetime {
            max_secs,
            operator_ttl,
        };
        assert_eq!(
            CacheLifetime::CONNECTION.duration(ttl),
            None,
            "for the connection"
        );
        assert_eq!(CacheLifetime::OPERATOR_TTL.duration(ttl), Some(ttl));
        assert_eq!(
            secs(Some(5), true).duration(ttl),
            Some(Duration::from_secs(5))
        );
        assert_eq!(secs(Some(120), true).duration(ttl), Some(ttl));
        assert_eq!(
            secs(Some(120), false).duration(ttl),
            Some(Duration::from_secs(120)),
            "a plugin's own lifetime may be longer than the operator's TTL"
        );
        assert_eq!(CacheLifetime::NONE.duration(ttl), Some(Duration::ZERO));
    }
}
