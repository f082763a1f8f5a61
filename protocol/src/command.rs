//! `RemotingCommand`: one request or response, header fields plus body.

use std::collections::BTreeMap;

/// Flag bit 0: this command is a response.
pub const FLAG_RESPONSE: i32 = 1;
/// Flag bit 1: a one-way request (no response is sent).
pub const FLAG_ONEWAY: i32 = 1 << 1;

/// How a header is serialized (the high byte of the second frame field).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SerializeType {
    /// JSON text (type 0).
    #[default]
    Json,
    /// RocketMQ's binary layout (type 1).
    RocketMq,
}

impl SerializeType {
    /// The type byte on the wire.
    pub fn code(self) -> u8 {
        match self {
            SerializeType::Json => 0,
            SerializeType::RocketMq => 1,
        }
    }

    /// The name Java writes in `serializeTypeCurrentRPC`.
    pub fn name(self) -> &'static str {
        match self {
            SerializeType::Json => "JSON",
            SerializeType::RocketMq => "ROCKETMQ",
        }
    }
}

/// The client's language (`LanguageCode.java`), a byte on the wire in
/// binary headers and a name in JSON headers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct LanguageCode(pub u8);

impl LanguageCode {
    /// JAVA (0).
    pub const JAVA: LanguageCode = LanguageCode(0);
    /// CPP (1).
    pub const CPP: LanguageCode = LanguageCode(1);
    /// GO (9).
    pub const GO: LanguageCode = LanguageCode(9);
    /// RUST (12): what mqlab sends.
    pub const RUST: LanguageCode = LanguageCode(12);

    const NAMES: [&'static str; 14] = [
        "JAVA", "CPP", "DOTNET", "PYTHON", "DELPHI", "ERLANG", "RUBY", "OTHER", "HTTP", "GO",
        "PHP", "OMS", "RUST", "NODE_JS",
    ];

    /// Java's enum name ("OTHER" for codes it does not know).
    pub fn name(self) -> &'static str {
        Self::NAMES.get(self.0 as usize).copied().unwrap_or("OTHER")
    }

    /// From a name (any case) or an ordinal in a string; unknown names are
    /// OTHER (7), as a lenient broker treats them.
    pub fn parse(s: &str) -> LanguageCode {
        if let Ok(n) = s.trim().parse::<u8>() {
            return LanguageCode(n);
        }
        let up = s.trim().to_ascii_uppercase();
        Self::NAMES
            .iter()
            .position(|n| *n == up)
            .map_or(LanguageCode(7), |i| LanguageCode(i as u8))
    }
}

/// One request or response.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RemotingCommand {
    /// Request code (requests) or response code (responses).
    pub code: i32,
    /// Sender's language.
    pub language: LanguageCode,
    /// Sender's version (RocketMQ's `MQVersion` ordinal).
    pub version: i32,
    /// Matches a response to its request.
    pub opaque: i32,
    /// [`FLAG_RESPONSE`], [`FLAG_ONEWAY`].
    pub flag: i32,
    /// Error text of a response, if any.
    pub remark: Option<String>,
    /// The request or response header's fields, as strings.
    pub ext_fields: BTreeMap<String, String>,
    /// How the header was (or is to be) serialized.
    pub serialize_type: SerializeType,
    /// The body.
    pub body: Vec<u8>,
}

impl RemotingCommand {
    /// A request with `code`, sent as mqlab (RUST).
    pub fn request(code: i32, opaque: i32) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::RUST,
            opaque,
            ..RemotingCommand::default()
        }
    }

    /// The response to `req` with `code`, in the request's serialization.
    pub fn response_to(req: &RemotingCommand, code: i32, remark: Option<String>) -> Self {
        RemotingCommand {
            code,
            language: LanguageCode::RUST,
            version: req.version,
            opaque: req.opaque,
            flag: FLAG_RESPONSE,
            remark,
            serialize_type: req.serialize_type,
            ..RemotingCommand::default()
        }
    }

    /// True for responses.
    pub fn is_response(&self) -> bool {
        self.flag & FLAG_RESPONSE != 0
    }

    /// True for one-way requests.
    pub fn is_oneway(&self) -> bool {
        self.flag & FLAG_ONEWAY != 0
    }

    /// Sets an ext field.
    pub fn with_field(mut self, key: &str, value: impl ToString) -> Self {
        self.ext_fields.insert(key.to_string(), value.to_string());
        self
    }

    /// Sets the body.
    pub fn with_body(mut self, body: Vec<u8>) -> Self {
        self.body = body;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn language_names_and_ordinals() {
        assert_eq!(LanguageCode::parse("CPP"), LanguageCode::CPP);
        assert_eq!(LanguageCode::parse("cpp"), LanguageCode::CPP);
        assert_eq!(LanguageCode::parse("13").name(), "NODE_JS");
        assert_eq!(LanguageCode::parse("COBOL"), LanguageCode(7));
        assert_eq!(LanguageCode(200).name(), "OTHER");
    }
}
