//! Request and response codes, numbered as RocketMQ's `RequestCode` and
//! `ResponseCode`. Only the codes mqlab handles or answers are listed;
//! anything else is answered with [`response::REQUEST_CODE_NOT_SUPPORTED`].

/// Request codes (`RequestCode.java`).
pub mod request {
    /// SEND_MESSAGE: send with the long-named header.
    pub const SEND_MESSAGE: i32 = 10;
    /// PULL_MESSAGE.
    pub const PULL_MESSAGE: i32 = 11;
    /// QUERY_MESSAGE: by key.
    pub const QUERY_MESSAGE: i32 = 12;
    /// QUERY_CONSUMER_OFFSET.
    pub const QUERY_CONSUMER_OFFSET: i32 = 14;
    /// UPDATE_CONSUMER_OFFSET (one-way from push consumers).
    pub const UPDATE_CONSUMER_OFFSET: i32 = 15;
    /// UPDATE_AND_CREATE_TOPIC (admin).
    pub const UPDATE_AND_CREATE_TOPIC: i32 = 17;
    /// SEARCH_OFFSET_BY_TIMESTAMP.
    pub const SEARCH_OFFSET_BY_TIMESTAMP: i32 = 29;
    /// GET_MAX_OFFSET.
    pub const GET_MAX_OFFSET: i32 = 30;
    /// GET_MIN_OFFSET.
    pub const GET_MIN_OFFSET: i32 = 31;
    /// VIEW_MESSAGE_BY_ID.
    pub const VIEW_MESSAGE_BY_ID: i32 = 33;
    /// HEART_BEAT.
    pub const HEART_BEAT: i32 = 34;
    /// UNREGISTER_CLIENT.
    pub const UNREGISTER_CLIENT: i32 = 35;
    /// CONSUMER_SEND_MSG_BACK: retry a message later.
    pub const CONSUMER_SEND_MSG_BACK: i32 = 36;
    /// END_TRANSACTION (one-way).
    pub const END_TRANSACTION: i32 = 37;
    /// GET_CONSUMER_LIST_BY_GROUP.
    pub const GET_CONSUMER_LIST_BY_GROUP: i32 = 38;
    /// CHECK_TRANSACTION_STATE (broker to producer).
    pub const CHECK_TRANSACTION_STATE: i32 = 39;
    /// NOTIFY_CONSUMER_IDS_CHANGED (broker to consumer).
    pub const NOTIFY_CONSUMER_IDS_CHANGED: i32 = 40;
    /// LOCK_BATCH_MQ.
    pub const LOCK_BATCH_MQ: i32 = 41;
    /// UNLOCK_BATCH_MQ.
    pub const UNLOCK_BATCH_MQ: i32 = 42;
    /// REGISTER_BROKER (broker to name server).
    pub const REGISTER_BROKER: i32 = 103;
    /// UNREGISTER_BROKER (broker to name server).
    pub const UNREGISTER_BROKER: i32 = 104;
    /// GET_ROUTEINFO_BY_TOPIC (client to name server).
    pub const GET_ROUTEINFO_BY_TOPIC: i32 = 105;
    /// GET_BROKER_CLUSTER_INFO.
    pub const GET_BROKER_CLUSTER_INFO: i32 = 106;
    /// SEND_MESSAGE_V2: send with one-letter header fields.
    pub const SEND_MESSAGE_V2: i32 = 310;
    /// SEND_BATCH_MESSAGE.
    pub const SEND_BATCH_MESSAGE: i32 = 320;

    /// The name of a request code, for logs ("UNKNOWN" when not listed).
    pub fn name(code: i32) -> &'static str {
        match code {
            SEND_MESSAGE => "SEND_MESSAGE",
            PULL_MESSAGE => "PULL_MESSAGE",
            QUERY_MESSAGE => "QUERY_MESSAGE",
            QUERY_CONSUMER_OFFSET => "QUERY_CONSUMER_OFFSET",
            UPDATE_CONSUMER_OFFSET => "UPDATE_CONSUMER_OFFSET",
            UPDATE_AND_CREATE_TOPIC => "UPDATE_AND_CREATE_TOPIC",
            SEARCH_OFFSET_BY_TIMESTAMP => "SEARCH_OFFSET_BY_TIMESTAMP",
            GET_MAX_OFFSET => "GET_MAX_OFFSET",
            GET_MIN_OFFSET => "GET_MIN_OFFSET",
            VIEW_MESSAGE_BY_ID => "VIEW_MESSAGE_BY_ID",
            HEART_BEAT => "HEART_BEAT",
            UNREGISTER_CLIENT => "UNREGISTER_CLIENT",
            CONSUMER_SEND_MSG_BACK => "CONSUMER_SEND_MSG_BACK",
            END_TRANSACTION => "END_TRANSACTION",
            GET_CONSUMER_LIST_BY_GROUP => "GET_CONSUMER_LIST_BY_GROUP",
            CHECK_TRANSACTION_STATE => "CHECK_TRANSACTION_STATE",
            NOTIFY_CONSUMER_IDS_CHANGED => "NOTIFY_CONSUMER_IDS_CHANGED",
            LOCK_BATCH_MQ => "LOCK_BATCH_MQ",
            UNLOCK_BATCH_MQ => "UNLOCK_BATCH_MQ",
            REGISTER_BROKER => "REGISTER_BROKER",
            UNREGISTER_BROKER => "UNREGISTER_BROKER",
            GET_ROUTEINFO_BY_TOPIC => "GET_ROUTEINFO_BY_TOPIC",
            GET_BROKER_CLUSTER_INFO => "GET_BROKER_CLUSTER_INFO",
            SEND_MESSAGE_V2 => "SEND_MESSAGE_V2",
            SEND_BATCH_MESSAGE => "SEND_BATCH_MESSAGE",
            _ => "UNKNOWN",
        }
    }
}

/// Response codes (`ResponseCode.java`, `RemotingSysResponseCode.java`).
pub mod response {
    /// SUCCESS.
    pub const SUCCESS: i32 = 0;
    /// SYSTEM_ERROR.
    pub const SYSTEM_ERROR: i32 = 1;
    /// SYSTEM_BUSY: back-pressure; the client retries later.
    pub const SYSTEM_BUSY: i32 = 2;
    /// REQUEST_CODE_NOT_SUPPORTED.
    pub const REQUEST_CODE_NOT_SUPPORTED: i32 = 3;
    /// FLUSH_DISK_TIMEOUT: written, not yet durable within the deadline.
    pub const FLUSH_DISK_TIMEOUT: i32 = 10;
    /// SLAVE_NOT_AVAILABLE.
    pub const SLAVE_NOT_AVAILABLE: i32 = 11;
    /// FLUSH_SLAVE_TIMEOUT.
    pub const FLUSH_SLAVE_TIMEOUT: i32 = 12;
    /// MESSAGE_ILLEGAL.
    pub const MESSAGE_ILLEGAL: i32 = 13;
    /// SERVICE_NOT_AVAILABLE.
    pub const SERVICE_NOT_AVAILABLE: i32 = 14;
    /// NO_PERMISSION.
    pub const NO_PERMISSION: i32 = 16;
    /// TOPIC_NOT_EXIST.
    pub const TOPIC_NOT_EXIST: i32 = 17;
    /// PULL_NOT_FOUND: nothing new.
    pub const PULL_NOT_FOUND: i32 = 19;
    /// PULL_RETRY_IMMEDIATELY.
    pub const PULL_RETRY_IMMEDIATELY: i32 = 20;
    /// PULL_OFFSET_MOVED.
    pub const PULL_OFFSET_MOVED: i32 = 21;
    /// QUERY_NOT_FOUND: no committed offset for the group.
    pub const QUERY_NOT_FOUND: i32 = 22;
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_have_their_java_numbers_and_names() {
        assert_eq!(request::SEND_MESSAGE_V2, 310);
        assert_eq!(request::name(105), "GET_ROUTEINFO_BY_TOPIC");
        assert_eq!(request::name(9_999), "UNKNOWN");
        assert_eq!(response::QUERY_NOT_FOUND, 22);
    }
}
