//! Tag filtering (RocketMQ's SubscriptionData): an expression `*` (all) or
//! `TagA || TagB`. The broker compares the tags hash code stored in each
//! consume-queue unit, so non-matching messages are never read from the
//! commit log; the client then compares the tag strings, because two tags
//! can share a hash code.

use std::collections::{BTreeSet, HashSet};

use mqlab_engine::queue::tags_code;

/// A subscription to one topic with a tag expression.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Subscription {
    /// Topic.
    pub topic: String,
    /// The expression as given.
    pub expression: String,
    tags: BTreeSet<String>,
    codes: HashSet<i64>,
}

impl Subscription {
    /// Parses `expression`: empty or `*` subscribes to every message,
    /// otherwise tags separated by `||`.
    pub fn new(topic: impl Into<String>, expression: &str) -> Subscription {
        let expr = expression.trim();
        let tags: BTreeSet<String> = if expr.is_empty() || expr == "*" {
            BTreeSet::new()
        } else {
            expr.split("||")
                .map(str::trim)
                .filter(|t| !t.is_empty())
                .map(str::to_string)
                .collect()
        };
        let codes = tags.iter().map(|t| tags_code(Some(t))).collect();
        Subscription {
            topic: topic.into(),
            expression: if expr.is_empty() {
                "*".into()
            } else {
                expr.into()
            },
            tags,
            codes,
        }
    }

    /// True for `*`.
    pub fn is_all(&self) -> bool {
        self.tags.is_empty()
    }

    /// Broker side: may a unit with this tags code match?
    pub fn matches_code(&self, code: i64) -> bool {
        self.is_all() || self.codes.contains(&code)
    }

    /// Client side: does a message with these tags match?
    pub fn matches_tags(&self, tags: Option<&str>) -> bool {
        self.is_all() || tags.is_some_and(|t| self.tags.contains(t))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_expressions() {
        let s = Subscription::new("T", "TagA || TagB");
        assert!(!s.is_all());
        assert!(s.matches_tags(Some("TagA")) && s.matches_tags(Some("TagB")));
        assert!(!s.matches_tags(Some("TagC")) && !s.matches_tags(None));
        assert!(s.matches_code(tags_code(Some("TagB"))));
        assert!(!s.matches_code(tags_code(Some("TagC"))));
        let all = Subscription::new("T", "*");
        assert!(all.is_all() && all.matches_tags(None) && all.matches_code(12345));
        assert!(Subscription::new("T", " ").is_all());
    }
}
