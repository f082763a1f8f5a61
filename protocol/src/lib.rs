//! Apache RocketMQ's remoting protocol, as mqlab speaks it: frames, both
//! header serializations, the request and response codes, and lenient
//! access to a header's ext fields. Every byte is drawn in
//! `protocol/PROTOCOL.md`.
//!
//! Decoding is lenient where Java's broker (fastjson) is lenient, because
//! real clients differ: the C++ and Node clients omit
//! `serializeTypeCurrentRPC`, put a newline after the JSON header, send
//! numbers where Java sends strings and ordinals where Java sends enum
//! names. Decoding is strict where safety is at stake: a frame's length is
//! capped ([`Limits`]), a header's length is checked against its frame,
//! JSON nesting and sizes are bounded, and nothing read from a socket can
//! panic (`tests/hostile.rs` feeds arbitrary bytes).

#![deny(unsafe_code)]

pub mod body;
pub mod codes;
pub mod command;
pub mod error;
pub mod fields;
pub mod frame;
mod header_binary;
mod header_json;
pub mod headers;

pub use command::{LanguageCode, RemotingCommand, SerializeType, FLAG_ONEWAY, FLAG_RESPONSE};
pub use error::ProtocolError;
pub use fields::ExtFields;
pub use frame::{decode_frame, encode_frame, Limits};
