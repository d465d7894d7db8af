//! Topic names and topic filters: validation on construction, and the one matching rule
//! every part of the broker shares (router, retained store, tests' naive model).

use std::fmt;

use bytestring::ByteString;
use thiserror::Error;

/// Why a topic name or filter is refused.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum TopicError {
    /// Zero-length topic or filter.
    #[error("[MQTT-4.7.3-1] topic names and filters are at least one character long")]
    Empty,
    /// `+` or `#` in a topic name.
    #[error("[MQTT-3.3.2-2] topic name contains a wildcard")]
    WildcardInName,
    /// More levels than `limits.max_topic_levels`.
    #[error("more than {max} topic levels (limits.max_topic_levels)")]
    TooManyLevels {
        /// The limit.
        max: usize,
    },
    /// `#` not alone in the last level, or `+` sharing a level with other characters.
    #[error("[MQTT-4.7.1-1] wildcard does not occupy a whole level (or '#' is not last)")]
    MisplacedWildcard,
    /// `$share/` filter without a group name, with a wildcard in it, or without a filter.
    #[error("[MQTT-4.8.2-1] malformed shared subscription")]
    MalformedShare,
    /// U+0000 (already refused by the codec; kept for names built elsewhere).
    #[error("[MQTT-4.7.3-2] topic contains U+0000")]
    Nul,
}

/// A validated topic name: no wildcards, not empty.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicName(ByteString);

impl TopicName {
    /// Validates `name` as a PUBLISH topic name of at most `max_levels` levels.
    pub fn new(name: ByteString, max_levels: usize) -> Result<Self, TopicError> {
        if name.is_empty() {
            return Err(TopicError::Empty);
        }
        // One pass over the name: this runs for every PUBLISH.
        let (mut separators, mut wildcard, mut nul) = (0, false, false);
        for byte in name.bytes() {
            match byte {
                b'/' => separators += 1,
                b'+' | b'#' => wildcard = true,
                0 => nul = true,
                _ => {}
            }
        }
        if separators >= max_levels {
            return Err(TopicError::TooManyLevels { max: max_levels });
        }
        if wildcard {
            return Err(TopicError::WildcardInName);
        }
        if nul {
            return Err(TopicError::Nul);
        }
        Ok(TopicName(name))
    }

    /// The name as a string.
    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The reference-counted string, cheap to clone into packets.
    pub fn bytestring(&self) -> &ByteString {
        &self.0
    }

    /// The name in an allocation of its own, not a slice of a read buffer (for a message
    /// the broker keeps: [`crate::message::Message::detached`]). Valid already: not
    /// checked again.
    pub(crate) fn copied(&self) -> TopicName {
        TopicName(ByteString::from(self.as_str()))
    }
}

impl fmt::Debug for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.0, f)
    }
}

impl fmt::Display for TopicName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A validated subscription, split into its optional share group and its topic filter.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct TopicFilter {
    /// The whole filter as the client sent it (`$share/g/a/b` included): the key of the
    /// subscription in its session.
    full: ByteString,
    /// Where the matching filter starts in `full` (after `$share/<group>/`).
    filter_start: usize,
    /// The share group, for `$share/<group>/<filter>`.
    group: Option<ByteString>,
}

impl TopicFilter {
    /// Validates a SUBSCRIBE or UNSUBSCRIBE filter of at most `max_levels` levels (the
    /// `$share/GROUP/` prefix not counted).
    pub fn new(full: ByteString, max_levels: usize) -> Result<Self, TopicError> {
        let (group, filter_start) = match full.strip_prefix("$share/") {
            Some(rest) => {
                let (group, filter) = rest.split_once('/').ok_or(TopicError::MalformedShare)?;
                if group.is_empty() || group.contains(['+', '#']) || filter.is_empty() {
                    return Err(TopicError::MalformedShare);
                }
                let start = "$share/".len() + group.len() + 1;
                (Some(full.slice_ref(group)), start)
            }
            None => (None, 0),
        };
        check_levels(&full[filter_start..], max_levels)?;
        validate_filter(&full[filter_start..])?;
        Ok(TopicFilter {
            full,
            filter_start,
            group,
        })
    }

    /// The whole filter as sent (`$share/...` included).
    pub fn full(&self) -> &str {
        &self.full
    }

    /// The filter that is matched against topic names (share prefix removed).
    pub fn filter(&self) -> &str {
        &self.full[self.filter_start..]
    }

    /// The matching filter as a reference-counted string (no copy).
    pub fn filter_bytes(&self) -> ByteString {
        self.full.slice_ref(self.filter())
    }

    /// The share group, if this is a shared subscription.
    pub fn share_group(&self) -> Option<&str> {
        self.group.as_deref()
    }

    /// Whether the filter holds `+` or `#`.
    pub fn has_wildcard(&self) -> bool {
        self.filter().contains(['+', '#'])
    }

    /// Whether `topic` matches this filter.
    pub fn matches(&self, topic: &str) -> bool {
        matches(self.filter(), topic)
    }
}

impl fmt::Debug for TopicFilter {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        fmt::Debug::fmt(&*self.full, f)
    }
}

/// The level limit for filters ([`TopicName::new`] counts in its own pass). It bounds
/// more than memory: the subscription trie is as deep as its
/// deepest filter, and matching and unsubscribing walk it recursively, so one client
/// subscribing and publishing to a topic of 60,000 empty levels (`////...`, well within
/// the packet size) would overflow the stack and abort the whole broker.
fn check_levels(topic: &str, max_levels: usize) -> Result<(), TopicError> {
    if topic.bytes().filter(|&b| b == b'/').count() >= max_levels {
        return Err(TopicError::TooManyLevels { max: max_levels });
    }
    Ok(())
}

fn validate_filter(filter: &str) -> Result<(), TopicError> {
    if filter.is_empty() {
        return Err(TopicError::Empty);
    }
    if filter.contains('\0') {
        return Err(TopicError::Nul);
    }
    let mut levels = filter.split('/').peekable();
    while let Some(level) = levels.next() {
        let last = levels.peek().is_none();
        match level {
            "#" if !last => return Err(TopicError::MisplacedWildcard),
            "#" | "+" => {}
            _ if level.contains(['+', '#']) => return Err(TopicError::MisplacedWildcard),
            _ => {}
        }
    }
    Ok(())
}

/// Whether `topic` matches `filter` (both already valid). `+` matches one level, `#` the
/// rest including none (`a/#` matches `a`); a leading wildcard never matches a topic that
/// starts with `$` [MQTT-4.7.2-1].
pub fn matches(filter: &str, topic: &str) -> bool {
    if topic.starts_with('$') && filter.starts_with(['+', '#']) {
        return false;
    }
    let mut topic_levels = topic.split('/');
    for level in filter.split('/') {
        match level {
            "#" => return true,
            "+" => {
                if topic_levels.next().is_none() {
                    return false;
                }
            }
            _ => {
                if topic_levels.next() != Some(level) {
                    return false;
                }
            }
        }
    }
    topic_levels.next().is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn filter(s: &'static str) -> Result<TopicFilter, TopicError> {
        TopicFilter::new(ByteString::from_static(s), 128)
    }

    #[test]
    fn names_refuse_wildcards_and_empty() {
        assert!(TopicName::new("a/b".into(), 128).is_ok());
        assert!(TopicName::new("/".into(), 128).is_ok());
        assert_eq!(TopicName::new("".into(), 128), Err(TopicError::Empty));
        assert_eq!(
            TopicName::new("a/+".into(), 128),
            Err(TopicError::WildcardInName)
        );
        assert_eq!(
            TopicName::new("a/#".into(), 128),
            Err(TopicError::WildcardInName)
        );
    }

    #[test]
    fn levels_are_counted_against_the_limit() {
        let max = 3;
        let too_many = Some(TopicError::TooManyLevels { max });
        assert!(TopicName::new("a/b/c".into(), max).is_ok());
        assert_eq!(TopicName::new("a/b/c/d".into(), max).err(), too_many);
        assert_eq!(TopicName::new("///".into(), max).err(), too_many);
        assert!(TopicFilter::new("a/+/#".into(), max).is_ok());
        assert_eq!(TopicFilter::new("a/+/b/#".into(), max).err(), too_many);
        // The shared-subscription prefix is not a level of the filter.
        assert!(TopicFilter::new("$share/g/a/b/c".into(), max).is_ok());
        assert_eq!(
            TopicFilter::new("$share/g/a/b/c/d".into(), max).err(),
            too_many
        );
    }

    #[test]
    fn filters_validate_wildcard_placement() {
        for ok in ["#", "+", "a/+/b", "a/#", "+/+", "/", "$SYS/#", "a//b"] {
            assert!(filter(ok).is_ok(), "{ok}");
        }
        for bad in ["", "a/#/b", "a#", "a/b+", "+a", "##"] {
            assert!(filter(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn shared_filters_split_group_and_filter() {
        let f = filter("$share/g1/a/+").unwrap();
        assert_eq!(f.share_group(), Some("g1"));
        assert_eq!(f.filter(), "a/+");
        assert_eq!(f.full(), "$share/g1/a/+");
        for bad in [
            "$share/",
            "$share/g",
            "$share//a",
            "$share/g/",
            "$share/g+/a",
            "$share/#/a",
        ] {
            assert_eq!(filter(bad), Err(TopicError::MalformedShare), "{bad}");
        }
    }

    #[test]
    fn matching_follows_the_specification_examples() {
        let cases = [
            ("sport/tennis/player1/#", "sport/tennis/player1", true),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/ranking",
                true,
            ),
            (
                "sport/tennis/player1/#",
                "sport/tennis/player1/score/wimbledon",
                true,
            ),
            ("sport/#", "sport", true),
            ("sport/tennis/+", "sport/tennis/player1", true),
            ("sport/tennis/+", "sport/tennis/player1/ranking", false),
            ("sport/+", "sport", false),
            ("sport/+", "sport/", true),
            ("+/+", "/finance", true),
            ("/+", "/finance", true),
            ("+", "/finance", false),
            ("#", "$SYS/uptime", false),
            ("+/monitor/Clients", "$SYS/monitor/Clients", false),
            ("$SYS/#", "$SYS/monitor/Clients", true),
            ("$SYS/monitor/+", "$SYS/monitor/Clients", true),
            ("a/b", "a/b", true),
            ("a/b", "a/b/c", false),
        ];
        for (f, t, expected) in cases {
            assert_eq!(matches(f, t), expected, "{f} vs {t}");
        }
    }
}
