//! The JSON header (serialize type 0), read leniently (see the crate docs)
//! and written as Java writes it.

use std::collections::BTreeMap;

use serde_json::{Map, Value};

use crate::command::{LanguageCode, RemotingCommand, SerializeType};
use crate::error::ProtocolError;
use crate::fields::ExtFields;

/// Most ext fields in one header.
pub const MAX_EXT_FIELDS: usize = 256;

/// A value as the text a String field gets (taken, not copied: the
/// header's strings move into the command).
fn scalar(v: Value) -> Option<String> {
    match v {
        Value::Null => None,
        Value::String(s) => Some(s),
        Value::Bool(b) => Some(b.to_string()),
        Value::Number(n) => Some(n.to_string()),
        // fastjson would hand a nested value to a String field as its text.
        other => Some(other.to_string()),
    }
}

/// Decodes a JSON header into `cmd` (body untouched).
pub fn decode(bytes: &[u8], cmd: &mut RemotingCommand) -> Result<(), ProtocolError> {
    // The C++ client ends its header with a newline; some writers pad.
    let end = bytes
        .iter()
        .rposition(|b| !matches!(b, b' ' | b'\n' | b'\r' | b'\t' | 0))
        .map_or(0, |i| i + 1);
    let v: Value =
        serde_json::from_slice(&bytes[..end]).map_err(|e| ProtocolError::Json(e.to_string()))?;
    let Value::Object(mut obj) = v else {
        return Err(ProtocolError::Json(
            "the header is not a JSON object".into(),
        ));
    };
    let ext = obj.remove("extFields");
    let mut top = BTreeMap::new();
    for (k, v) in obj {
        if let Some(s) = scalar(v) {
            top.insert(k, s);
        }
    }
    cmd.code = top.i32_opt("code")?.unwrap_or(0);
    cmd.version = top.i32_opt("version")?.unwrap_or(0);
    cmd.opaque = top.i32_opt("opaque")?.unwrap_or(0);
    cmd.flag = top.i32_opt("flag")?.unwrap_or(0);
    cmd.language = top
        .str_opt("language")
        .map_or(LanguageCode::JAVA, LanguageCode::parse);
    cmd.remark = top.str_opt("remark").map(str::to_string);
    cmd.serialize_type = SerializeType::Json;
    cmd.ext_fields.clear();
    match ext {
        None | Some(Value::Null) => {}
        Some(Value::Object(ext)) => {
            if ext.len() > MAX_EXT_FIELDS {
                return Err(ProtocolError::Json(format!(
                    "{} ext fields (at most {MAX_EXT_FIELDS})",
                    ext.len()
                )));
            }
            for (k, v) in ext {
                if let Some(s) = scalar(v) {
                    cmd.ext_fields.insert(k, s);
                }
            }
        }
        Some(_) => return Err(ProtocolError::Json("extFields is not an object".into())),
    }
    Ok(())
}

/// Encodes `cmd`'s header as Java's broker writes it.
pub fn encode(cmd: &RemotingCommand) -> Vec<u8> {
    let mut m = Map::new();
    m.insert("code".into(), cmd.code.into());
    if !cmd.ext_fields.is_empty() {
        let ext: Map<String, Value> = cmd
            .ext_fields
            .iter()
            .map(|(k, v)| (k.clone(), Value::String(v.clone())))
            .collect();
        m.insert("extFields".into(), Value::Object(ext));
    }
    m.insert("flag".into(), cmd.flag.into());
    m.insert("language".into(), cmd.language.name().into());
    m.insert("opaque".into(), cmd.opaque.into());
    if let Some(r) = &cmd.remark {
        m.insert("remark".into(), r.clone().into());
    }
    m.insert(
        "serializeTypeCurrentRPC".into(),
        SerializeType::Json.name().into(),
    );
    m.insert("version".into(), cmd.version.into());
    serde_json::to_vec(&Value::Object(m)).expect("a map of strings and numbers serializes")
}
