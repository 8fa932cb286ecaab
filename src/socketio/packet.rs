//! Socket.IO v5 packets: `<type>[<attachments>-][<nsp>,][<ack id>][<json>]`.
//!
//! Decoding is strict and total: every input gives a [`Packet`] or a [`PacketError`], the
//! attachment count is bounded by the caller, and placeholders must name attachments that
//! exist. Encoding builds the text once; binary attachments follow as separate messages.

use serde_json::Value;

/// The packet types of Socket.IO v5.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PacketType {
    Connect = 0,
    Disconnect = 1,
    Event = 2,
    Ack = 3,
    ConnectError = 4,
    BinaryEvent = 5,
    BinaryAck = 6,
}

impl PacketType {
    fn from_byte(b: u8) -> Option<PacketType> {
        Some(match b {
            b'0' => PacketType::Connect,
            b'1' => PacketType::Disconnect,
            b'2' => PacketType::Event,
            b'3' => PacketType::Ack,
            b'4' => PacketType::ConnectError,
            b'5' => PacketType::BinaryEvent,
            b'6' => PacketType::BinaryAck,
            _ => return None,
        })
    }

    /// The digit that starts a packet of this type.
    pub fn digit(self) -> char {
        (b'0' + self as u8) as char
    }
}

/// A decoded packet from a client. `data` keeps binary placeholders as they came.
#[derive(Debug, Clone, PartialEq)]
pub struct Packet {
    pub kind: PacketType,
    pub nsp: String,
    pub id: Option<u64>,
    pub data: Option<Value>,
    /// How many binary attachments follow (binary packets only).
    pub attachments: usize,
}

/// Why a text could not be read as a Socket.IO packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type")]
    UnknownType,
    #[error("invalid attachment count")]
    BadAttachmentCount,
    #[error("too many attachments (limit {0})")]
    TooManyAttachments(usize),
    #[error("invalid namespace")]
    BadNamespace,
    #[error("invalid ack id")]
    BadAckId,
    #[error("invalid JSON payload")]
    BadJson,
    #[error("payload has the wrong shape for this packet type")]
    BadShape,
    #[error("binary placeholder does not match an attachment")]
    BadPlaceholder,
}

const MAX_NSP_LEN: usize = 256;
const MAX_ACK_DIGITS: usize = 15;

impl Packet {
    /// Decodes a packet sent by a client; binary packets may announce at most
    /// `max_attachments` attachments.
    pub fn decode(text: &str, max_attachments: usize) -> Result<Packet, PacketError> {
        let bytes = text.as_bytes();
        let first = *bytes.first().ok_or(PacketError::Empty)?;
        let kind = PacketType::from_byte(first).ok_or(PacketError::UnknownType)?;
        let mut pos = 1;

        let mut attachments = 0usize;
        if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
            let start = pos;
            while pos < bytes.len() && bytes[pos].is_ascii_digit() {
                pos += 1;
                if pos - start > 6 {
                    return Err(PacketError::BadAttachmentCount);
                }
            }
            if pos == start || bytes.get(pos) != Some(&b'-') {
                return Err(PacketError::BadAttachmentCount);
            }
            attachments = text[start..pos]
                .parse()
                .map_err(|_| PacketError::BadAttachmentCount)?;
            if attachments > max_attachments {
                return Err(PacketError::TooManyAttachments(max_attachments));
            }
            pos += 1;
        }

        let mut nsp = String::from("/");
        if bytes.get(pos) == Some(&b'/') {
            let end = text[pos..]
                .find(',')
                .map(|i| pos + i)
                .unwrap_or(bytes.len());
            if end - pos > MAX_NSP_LEN {
                return Err(PacketError::BadNamespace);
            }
            text[pos..end].clone_into(&mut nsp);
            pos = (end + 1).min(bytes.len());
        }

        let mut id = None;
        let start = pos;
        while pos < bytes.len() && bytes[pos].is_ascii_digit() {
            pos += 1;
            if pos - start > MAX_ACK_DIGITS {
                return Err(PacketError::BadAckId);
            }
        }
        if pos > start {
            id = Some(
                text[start..pos]
                    .parse()
                    .map_err(|_| PacketError::BadAckId)?,
            );
        }

        let rest = &text[pos..];
        let data = if rest.is_empty() {
            None
        } else {
            Some(serde_json::from_str::<Value>(rest).map_err(|_| PacketError::BadJson)?)
        };

        let packet = Packet {
            kind,
            nsp,
            id,
            data,
            attachments,
        };
        packet.check_shape()?;
        Ok(packet)
    }

    fn check_shape(&self) -> Result<(), PacketError> {
        match self.kind {
            PacketType::Connect => match &self.data {
                None | Some(Value::Object(_)) if self.id.is_none() => Ok(()),
                _ => Err(PacketError::BadShape),
            },
            PacketType::Disconnect => match (&self.data, self.id) {
                (None, None) => Ok(()),
                _ => Err(PacketError::BadShape),
            },
            PacketType::Event | PacketType::BinaryEvent => match &self.data {
                Some(Value::Array(items)) if matches!(items.first(), Some(Value::String(_))) => {
                    self.check_placeholders()
                }
                _ => Err(PacketError::BadShape),
            },
            PacketType::Ack | PacketType::BinaryAck => match (&self.data, self.id) {
                (Some(Value::Array(_)), Some(_)) => self.check_placeholders(),
                _ => Err(PacketError::BadShape),
            },
            PacketType::ConnectError => Err(PacketError::BadShape),
        }
    }

    /// Every placeholder names an attachment, and a binary packet names each one.
    fn check_placeholders(&self) -> Result<(), PacketError> {
        let mut seen = vec![false; self.attachments];
        if let Some(data) = &self.data {
            visit_placeholders(data, &mut seen, 0)?;
        }
        if seen.iter().all(|s| *s) {
            Ok(())
        } else {
            Err(PacketError::BadPlaceholder)
        }
    }
}

fn visit_placeholders(v: &Value, seen: &mut [bool], depth: usize) -> Result<(), PacketError> {
    if depth > 64 {
        return Err(PacketError::BadShape);
    }
    match v {
        Value::Object(map) => {
            if map.get("_placeholder") == Some(&Value::Bool(true)) {
                let num = map
                    .get("num")
                    .and_then(Value::as_u64)
                    .ok_or(PacketError::BadPlaceholder)?;
                let slot = usize::try_from(num)
                    .ok()
                    .and_then(|n| seen.get_mut(n))
                    .ok_or(PacketError::BadPlaceholder)?;
                *slot = true;
                return Ok(());
            }
            map.values()
                .try_for_each(|x| visit_placeholders(x, seen, depth + 1))
        }
        Value::Array(items) => items
            .iter()
            .try_for_each(|x| visit_placeholders(x, seen, depth + 1)),
        _ => Ok(()),
    }
}

/// Writes the header of a packet (`<type>[<n>-][<nsp>,][<id>]`) into `out`, choosing the
/// binary type when `attachments > 0`.
pub fn write_header(
    out: &mut String,
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
) {
    use std::fmt::Write as _;
    let kind = match (kind, attachments) {
        (PacketType::Event, n) if n > 0 => PacketType::BinaryEvent,
        (PacketType::Ack, n) if n > 0 => PacketType::BinaryAck,
        (k, _) => k,
    };
    out.push(kind.digit());
    if matches!(kind, PacketType::BinaryEvent | PacketType::BinaryAck) {
        let _ = write!(out, "{attachments}-");
    }
    if nsp != "/" {
        out.push_str(nsp);
        out.push(',');
    }
    if let Some(id) = id {
        let _ = write!(out, "{id}");
    }
}

/// Encodes a whole packet as text (header + JSON), without the Engine.IO prefix.
pub fn encode(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    attachments: usize,
    data: Option<&Value>,
) -> String {
    let mut out = String::with_capacity(32);
    write_header(&mut out, kind, nsp, id, attachments);
    if let Some(data) = data {
        out.push_str(&data.to_string());
    }
    out
}

/// Builds a placeholder object for attachment `num`.
pub fn placeholder(num: usize) -> Value {
    serde_json::json!({ "_placeholder": true, "num": num })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ok(text: &str) -> Packet {
        Packet::decode(text, 10).unwrap_or_else(|e| panic!("{text}: {e}"))
    }

    #[test]
    fn decodes_connect_variants() {
        let p = ok("0");
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.data),
            (PacketType::Connect, "/", None)
        );
        let p = ok("0/admin,{\"token\":\"x\"}");
        assert_eq!(p.nsp, "/admin");
        assert_eq!(p.data, Some(json!({"token": "x"})));
        let p = ok("0/admin,");
        assert_eq!((p.nsp.as_str(), p.data), ("/admin", None));
        assert_eq!(Packet::decode("0[1]", 10), Err(PacketError::BadShape));
    }

    #[test]
    fn decodes_events_and_acks() {
        let p = ok("2[\"hello\",1]");
        assert_eq!(p.data, Some(json!(["hello", 1])));
        let p = ok("2/custom,12[\"x\"]");
        assert_eq!((p.nsp.as_str(), p.id), ("/custom", Some(12)));
        let p = ok("3/custom,7[]");
        assert_eq!((p.kind, p.id), (PacketType::Ack, Some(7)));
        let p = ok("1");
        assert_eq!(p.kind, PacketType::Disconnect);
        let p = ok("1/custom,");
        assert_eq!(p.nsp, "/custom");
    }

    #[test]
    fn decodes_binary_with_placeholders() {
        let p = ok("52-[\"up\",{\"_placeholder\":true,\"num\":0},{\"a\":{\"_placeholder\":true,\"num\":1}}]");
        assert_eq!((p.kind, p.attachments), (PacketType::BinaryEvent, 2));
        let p = ok("61-/nsp,3[{\"_placeholder\":true,\"num\":0}]");
        assert_eq!(
            (p.kind, p.nsp.as_str(), p.id),
            (PacketType::BinaryAck, "/nsp", Some(3))
        );
    }

    #[test]
    fn rejects_malformed() {
        let cases: &[(&str, PacketError)] = &[
            ("", PacketError::Empty),
            ("9", PacketError::UnknownType),
            ("x", PacketError::UnknownType),
            ("5[\"a\"]", PacketError::BadAttachmentCount),
            ("5-[\"a\"]", PacketError::BadAttachmentCount),
            ("599999999-[\"a\"]", PacketError::BadAttachmentCount),
            ("511-[\"a\"]", PacketError::TooManyAttachments(10)),
            ("2[\"a\"", PacketError::BadJson),
            ("2{\"a\":1}", PacketError::BadShape),
            ("2[]", PacketError::BadShape),
            ("2[1]", PacketError::BadShape),
            ("2", PacketError::BadShape),
            ("3[1]", PacketError::BadShape),
            ("31", PacketError::BadShape),
            ("4{}", PacketError::BadShape),
            ("11[]", PacketError::BadShape),
            ("21234567890123456[\"a\"]", PacketError::BadAckId),
            ("51-[\"a\"]", PacketError::BadPlaceholder),
            (
                "51-[\"a\",{\"_placeholder\":true,\"num\":1}]",
                PacketError::BadPlaceholder,
            ),
            (
                "50-[\"a\",{\"_placeholder\":true,\"num\":0}]",
                PacketError::BadPlaceholder,
            ),
            (
                "51-[\"a\",{\"_placeholder\":true,\"num\":-1}]",
                PacketError::BadPlaceholder,
            ),
        ];
        for (text, err) in cases {
            assert_eq!(Packet::decode(text, 10).as_ref().err(), Some(err), "{text}");
        }
        let long_nsp = format!("0/{},", "a".repeat(300));
        assert_eq!(
            Packet::decode(&long_nsp, 10),
            Err(PacketError::BadNamespace)
        );
        let deep = format!("2[\"a\",{}1{}]", "[".repeat(100), "]".repeat(100));
        assert!(Packet::decode(&deep, 10).is_err());
    }

    #[test]
    fn encodes() {
        assert_eq!(
            encode(PacketType::Connect, "/", None, 0, Some(&json!({"sid":"a"}))),
            "0{\"sid\":\"a\"}"
        );
        assert_eq!(
            encode(PacketType::Event, "/x", Some(3), 0, Some(&json!(["e"]))),
            "2/x,3[\"e\"]"
        );
        assert_eq!(
            encode(PacketType::Event, "/", None, 2, Some(&json!(["e"]))),
            "52-[\"e\"]"
        );
        assert_eq!(
            encode(PacketType::Ack, "/", Some(9), 1, Some(&json!([]))),
            "61-9[]"
        );
        assert_eq!(encode(PacketType::Disconnect, "/", None, 0, None), "1");
        let round = encode(
            PacketType::Event,
            "/a",
            Some(1),
            1,
            Some(&json!(["e", placeholder(0)])),
        );
        let p = ok(&round);
        assert_eq!(
            (p.kind, p.attachments, p.id),
            (PacketType::BinaryEvent, 1, Some(1))
        );
    }

    #[test]
    fn any_text_decodes_without_panic() {
        let alphabet = [
            "0",
            "5",
            "2",
            "3",
            "1-",
            "/",
            ",",
            "[",
            "]",
            "{",
            "}",
            "\"",
            "_placeholder",
            ":",
            "true",
            "num",
            "9",
            "é",
            "-",
        ];
        let mut seed = 0x9e37_79b9_7f4a_7c15u64;
        for _ in 0..20_000 {
            let mut s = String::new();
            for _ in 0..(seed % 12) {
                seed ^= seed << 13;
                seed ^= seed >> 7;
                seed ^= seed << 17;
                s.push_str(alphabet[(seed % alphabet.len() as u64) as usize]);
            }
            let _ = Packet::decode(&s, 4);
        }
    }
}
