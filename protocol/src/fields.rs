//! Lenient reading of a header's ext fields, the way Java's broker reads
//! them through fastjson: a missing field takes its default, a number may
//! arrive as a string or a bare number (already turned into a string by
//! the header decoder), a boolean as "true"/"false" or "1"/"0", an enum as
//! its name or its ordinal. A value that is present but cannot be read as
//! the wanted type is an error naming the field.

use std::collections::BTreeMap;

use crate::error::ProtocolError;

/// Typed access to ext fields.
pub trait ExtFields {
    /// The raw string, if present.
    fn raw(&self, key: &str) -> Option<&str>;

    /// A string field, if present.
    fn str_opt(&self, key: &str) -> Option<&str> {
        self.raw(key)
    }

    /// A required string field.
    fn str_req(&self, key: &str) -> Result<&str, ProtocolError> {
        self.raw(key).ok_or_else(|| missing(key))
    }

    /// An integer field, if present (a decimal, possibly with surrounding
    /// blanks; a float with no fraction is accepted as fastjson does).
    fn i64_opt(&self, key: &str) -> Result<Option<i64>, ProtocolError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        let t = v.trim();
        if t.is_empty() {
            return Ok(None);
        }
        if let Ok(n) = t.parse::<i64>() {
            return Ok(Some(n));
        }
        match t.parse::<f64>() {
            Ok(f) if f.fract() == 0.0 && f.abs() < 9.0e18 => Ok(Some(f as i64)),
            _ => Err(bad(key, format!("{v:?} is not an integer"))),
        }
    }

    /// A required integer field.
    fn i64_req(&self, key: &str) -> Result<i64, ProtocolError> {
        self.i64_opt(key)?.ok_or_else(|| missing(key))
    }

    /// An i32 field, if present, range-checked.
    fn i32_opt(&self, key: &str) -> Result<Option<i32>, ProtocolError> {
        match self.i64_opt(key)? {
            None => Ok(None),
            Some(n) => i32::try_from(n)
                .map(Some)
                .map_err(|_| bad(key, format!("{n} does not fit 32 bits"))),
        }
    }

    /// A boolean: "true"/"1" are true, "false"/"0"/absent are false;
    /// anything else is an error.
    fn bool_or_false(&self, key: &str) -> Result<bool, ProtocolError> {
        match self.raw(key).map(|v| v.trim().to_ascii_lowercase()) {
            None => Ok(false),
            Some(v) if v == "true" || v == "1" => Ok(true),
            Some(v) if v == "false" || v == "0" || v.is_empty() => Ok(false),
            Some(v) => Err(bad(key, format!("{v:?} is not a boolean"))),
        }
    }

    /// An enum given by name or by ordinal, as its ordinal in `names`.
    fn enum_opt(&self, key: &str, names: &[&str]) -> Result<Option<usize>, ProtocolError> {
        let Some(v) = self.raw(key) else {
            return Ok(None);
        };
        enum_value(key, v, names).map(Some)
    }
}

/// An enum value by name or ordinal.
pub fn enum_value(key: &str, v: &str, names: &[&str]) -> Result<usize, ProtocolError> {
    let t = v.trim();
    if let Ok(n) = t.parse::<usize>() {
        return if n < names.len() {
            Ok(n)
        } else {
            Err(bad(
                key,
                format!("ordinal {n} out of range (0..{})", names.len()),
            ))
        };
    }
    names
        .iter()
        .position(|n| n.eq_ignore_ascii_case(t))
        .ok_or_else(|| bad(key, format!("{v:?} is none of {names:?}")))
}

fn missing(key: &str) -> ProtocolError {
    ProtocolError::Field {
        field: key.to_string(),
        reason: "missing".into(),
    }
}

fn bad(key: &str, reason: String) -> ProtocolError {
    ProtocolError::Field {
        field: key.to_string(),
        reason,
    }
}

impl ExtFields for BTreeMap<String, String> {
    fn raw(&self, key: &str) -> Option<&str> {
        self.get(key).map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn f(pairs: &[(&str, &str)]) -> BTreeMap<String, String> {
        pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect()
    }

    #[test]
    fn numbers_booleans_and_enums_as_clients_send_them() {
        let x = f(&[
            ("queueId", "0"),
            ("sysFlag", " 4 "),
            ("bornTimestamp", "1.7e12"),
            ("unitMode", "1"),
            ("batch", "false"),
            ("consumeType", "1"),
            ("messageModel", "CLUSTERING"),
            ("bad", "x1"),
        ]);
        assert_eq!(x.i32_opt("queueId").unwrap(), Some(0));
        assert_eq!(x.i64_req("sysFlag").unwrap(), 4);
        assert_eq!(x.i64_req("bornTimestamp").unwrap(), 1_700_000_000_000);
        assert!(x.bool_or_false("unitMode").unwrap());
        assert!(!x.bool_or_false("batch").unwrap());
        assert!(!x.bool_or_false("absent").unwrap());
        let types = ["CONSUME_ACTIVELY", "CONSUME_PASSIVELY"];
        assert_eq!(x.enum_opt("consumeType", &types).unwrap(), Some(1));
        let models = ["BROADCASTING", "CLUSTERING"];
        assert_eq!(x.enum_opt("messageModel", &models).unwrap(), Some(1));
        let e = x.i64_req("bad").unwrap_err().to_string();
        assert!(e.contains("bad"), "{e}");
        assert!(x
            .i64_req("absent")
            .unwrap_err()
            .to_string()
            .contains("missing"));
        assert!(f(&[("q", "99999999999")]).i32_opt("q").is_err());
        assert!(enum_value("m", "7", &models).is_err());
    }
}
