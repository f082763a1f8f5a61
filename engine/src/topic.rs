//! Topic-name validation. Topic names become directory names under
//! `consumequeue/`, so anything that could escape the data directory must
//! be rejected before a byte is written.

/// Longest topic a V1 record can hold; longer ones need V2.
pub const MAX_TOPIC_LEN_V1: usize = 127;
/// Longest topic accepted at all (RocketMQ's limit).
pub const MAX_TOPIC_LEN: usize = 255;

/// Checks a topic against RocketMQ's pattern `^[%|a-zA-Z0-9_-]+$` and
/// length limit. Returns why it is illegal.
pub fn validate(topic: &str) -> Result<(), String> {
    if topic.is_empty() {
        return Err("topic is empty".into());
    }
    if topic.len() > MAX_TOPIC_LEN {
        return Err(format!(
            "topic is {} bytes, longer than {MAX_TOPIC_LEN}",
            topic.len()
        ));
    }
    if let Some(c) = topic
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '%' | '|' | '_' | '-')))
    {
        return Err(format!(
            "topic {topic:?} contains {c:?}; allowed: letters, digits, %, |, _ and -"
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::validate;

    #[test]
    fn accepts_rocketmq_names() {
        for t in [
            "TopicTest",
            "%RETRY%group",
            "%DLQ%g",
            "a|b",
            "x-y_z9",
            "SCHEDULE_TOPIC_XXXX",
        ] {
            assert!(validate(t).is_ok(), "{t}");
        }
    }

    #[test]
    fn rejects_path_escapes_and_junk() {
        for t in [
            "",
            "..",
            "../x",
            "a/b",
            "a\\b",
            "a b",
            "a.b",
            "ü",
            "a\0b",
            &"x".repeat(256),
        ] {
            assert!(validate(t).is_err(), "{t:?}");
        }
    }
}
