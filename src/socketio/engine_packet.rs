//! Engine.IO v4 packets: the framing under Socket.IO.
//!
//! Over WebSocket a text frame carries one packet (`<type digit><data>`) and a binary frame
//! carries one binary message packet. Over HTTP long-polling several packets travel in one
//! body, separated by the record separator `\x1e`; binary messages are written as
//! `b<base64>`. Decoding is total: any input gives a packet or a [`EnginePacketError`].

use base64::Engine as _;
use bytes::Bytes;

/// The separator of packets in a long-polling payload.
pub const SEPARATOR: u8 = 0x1e;

/// One Engine.IO packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnginePacket {
    /// `0{json}`: sent by the server once, on handshake.
    Open(String),
    /// `1`: either side closes the session.
    Close,
    /// `2[data]`: heartbeat or upgrade probe (`2probe`).
    Ping(String),
    /// `3[data]`: heartbeat answer or probe answer (`3probe`).
    Pong(String),
    /// `4<text>`: a text message (a Socket.IO packet).
    Message(String),
    /// A binary message (a Socket.IO binary attachment).
    Binary(Bytes),
    /// `5`: the client switches to the new transport.
    Upgrade,
    /// `6`: no operation (used to end a pending long-poll during an upgrade).
    Noop,
}

/// Why bytes could not be read as an Engine.IO packet.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum EnginePacketError {
    #[error("empty packet")]
    Empty,
    #[error("unknown packet type {0:?}")]
    UnknownType(char),
    #[error("invalid base64 in binary packet")]
    Base64,
    #[error("payload is not valid UTF-8")]
    Utf8,
    #[error("payload holds more than {0} packets")]
    TooManyPackets(usize),
}

impl EnginePacket {
    /// Decodes a text packet (a WebSocket text frame or one record of a polling payload).
    pub fn decode_text(text: &str) -> Result<EnginePacket, EnginePacketError> {
        let mut chars = text.chars();
        let kind = chars.next().ok_or(EnginePacketError::Empty)?;
        let rest = chars.as_str();
        Ok(match kind {
            '0' => EnginePacket::Open(rest.to_owned()),
            '1' => EnginePacket::Close,
            '2' => EnginePacket::Ping(rest.to_owned()),
            '3' => EnginePacket::Pong(rest.to_owned()),
            '4' => EnginePacket::Message(rest.to_owned()),
            '5' => EnginePacket::Upgrade,
            '6' => EnginePacket::Noop,
            'b' => {
                let raw = base64::engine::general_purpose::STANDARD
                    .decode(rest)
                    .map_err(|_| EnginePacketError::Base64)?;
                EnginePacket::Binary(Bytes::from(raw))
            }
            other => return Err(EnginePacketError::UnknownType(other)),
        })
    }

    /// Decodes a long-polling POST body into its packets (at most `max_packets`).
    pub fn decode_payload(
        body: &[u8],
        max_packets: usize,
    ) -> Result<Vec<EnginePacket>, EnginePacketError> {
        let text = std::str::from_utf8(body).map_err(|_| EnginePacketError::Utf8)?;
        let mut out = Vec::new();
        for record in text.split(SEPARATOR as char) {
            if out.len() == max_packets {
                return Err(EnginePacketError::TooManyPackets(max_packets));
            }
            out.push(Self::decode_text(record)?);
        }
        Ok(out)
    }

    /// Encodes a text packet (everything but [`EnginePacket::Binary`], which is written
    /// with [`encode_binary_for_polling`] or as a raw WebSocket binary frame).
    pub fn encode_text(&self) -> String {
        match self {
            EnginePacket::Open(s) => format!("0{s}"),
            EnginePacket::Close => "1".to_owned(),
            EnginePacket::Ping(s) => format!("2{s}"),
            EnginePacket::Pong(s) => format!("3{s}"),
            EnginePacket::Message(s) => format!("4{s}"),
            EnginePacket::Upgrade => "5".to_owned(),
            EnginePacket::Noop => "6".to_owned(),
            EnginePacket::Binary(b) => encode_binary_for_polling(b),
        }
    }
}

/// Writes a binary message the way long-polling carries it: `b<base64>`.
pub fn encode_binary_for_polling(data: &[u8]) -> String {
    let mut s = String::with_capacity(1 + data.len().div_ceil(3) * 4);
    s.push('b');
    base64::engine::general_purpose::STANDARD.encode_string(data, &mut s);
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn decodes_every_text_type() {
        assert_eq!(
            EnginePacket::decode_text("0{}"),
            Ok(EnginePacket::Open("{}".into()))
        );
        assert_eq!(EnginePacket::decode_text("1"), Ok(EnginePacket::Close));
        assert_eq!(
            EnginePacket::decode_text("2probe"),
            Ok(EnginePacket::Ping("probe".into()))
        );
        assert_eq!(
            EnginePacket::decode_text("3"),
            Ok(EnginePacket::Pong(String::new()))
        );
        assert_eq!(
            EnginePacket::decode_text("4hello €"),
            Ok(EnginePacket::Message("hello €".into()))
        );
        assert_eq!(EnginePacket::decode_text("5"), Ok(EnginePacket::Upgrade));
        assert_eq!(EnginePacket::decode_text("6"), Ok(EnginePacket::Noop));
        assert_eq!(
            EnginePacket::decode_text("bAQID"),
            Ok(EnginePacket::Binary(Bytes::from_static(&[1, 2, 3])))
        );
    }

    #[test]
    fn rejects_malformed() {
        assert_eq!(EnginePacket::decode_text(""), Err(EnginePacketError::Empty));
        assert_eq!(
            EnginePacket::decode_text("7"),
            Err(EnginePacketError::UnknownType('7'))
        );
        assert_eq!(
            EnginePacket::decode_text("é"),
            Err(EnginePacketError::UnknownType('é'))
        );
        assert_eq!(
            EnginePacket::decode_text("b!!"),
            Err(EnginePacketError::Base64)
        );
        assert_eq!(
            EnginePacket::decode_payload(&[0xff, 0xfe], 10),
            Err(EnginePacketError::Utf8)
        );
    }

    #[test]
    fn payload_roundtrip_and_bound() {
        let body = "4hello\x1e2\x1ebAQID";
        let packets = EnginePacket::decode_payload(body.as_bytes(), 10).unwrap();
        assert_eq!(
            packets,
            vec![
                EnginePacket::Message("hello".into()),
                EnginePacket::Ping(String::new()),
                EnginePacket::Binary(Bytes::from_static(&[1, 2, 3])),
            ]
        );
        let encoded: Vec<String> = packets.iter().map(|p| p.encode_text()).collect();
        assert_eq!(encoded.join("\x1e"), body);
        assert_eq!(
            EnginePacket::decode_payload("4a\x1e4b\x1e4c".as_bytes(), 2),
            Err(EnginePacketError::TooManyPackets(2))
        );
        // an empty record is an error, not a silent skip
        assert_eq!(
            EnginePacket::decode_payload("4a\x1e".as_bytes(), 10),
            Err(EnginePacketError::Empty)
        );
    }

    #[test]
    fn any_bytes_decode_without_panic() {
        let mut seed = 0x2545_f491_4f6c_dd1du64;
        for len in 0..200 {
            let bytes: Vec<u8> = (0..len)
                .map(|_| {
                    seed ^= seed << 13;
                    seed ^= seed >> 7;
                    seed ^= seed << 17;
                    (seed % 256) as u8
                })
                .collect();
            let _ = EnginePacket::decode_payload(&bytes, 16);
            if let Ok(s) = std::str::from_utf8(&bytes) {
                let _ = EnginePacket::decode_text(s);
            }
        }
    }
}
