//! The messages raftcast nodes exchange on the deployment's events channel, and the body
//! kept in each room's history stream.
//!
//! A body is msgpack `[room, event, data, [attachment, ...]]` (`data` is the JSON text of
//! the payload, attachments are binary). On the channel a delivery is
//! `D|V <offset> <index> <ts> <epoch>\n<body>` (`D` durable, `V` volatile): the Lua script
//! that assigns offset, index and time writes the header in front of the body the node
//! encoded. A revocation is `R` followed by msgpack `[sessionId, userId]`.

use bytes::Bytes;
use rmpv::Value;

use super::super::{Delivery, Payload, RecoveredSocket};

/// Why bytes from Redis are not a message of ours.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum WireError {
    #[error("empty message")]
    Empty,
    #[error("unknown message kind {0:?}")]
    Kind(char),
    #[error("bad header: {0}")]
    Header(&'static str),
    #[error("bad body: {0}")]
    Body(&'static str),
}

/// A decoded body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Body {
    pub room: String,
    pub event: String,
    pub payload: Payload,
}

/// What a node heard on the events channel.
#[derive(Debug, Clone)]
pub enum ClusterMsg {
    Delivery(Delivery),
    Revoked { session_id: String, user_id: String },
}

/// Encodes a body.
pub fn encode_body(room: &str, event: &str, payload: &Payload) -> Vec<u8> {
    let v = Value::Array(vec![
        Value::from(room),
        Value::from(event),
        Value::from(payload.data.as_str()),
        Value::Array(
            payload
                .attachments
                .iter()
                .map(|a| Value::Binary(a.to_vec()))
                .collect(),
        ),
    ]);
    write(&v)
}

/// Decodes a body.
pub fn decode_body(mut b: &[u8]) -> Result<Body, WireError> {
    let v = rmpv::decode::read_value(&mut b).map_err(|_| WireError::Body("not msgpack"))?;
    let Value::Array(items) = v else {
        return Err(WireError::Body("not an array"));
    };
    let [room, event, data, atts] =
        <[Value; 4]>::try_from(items).map_err(|_| WireError::Body("expected 4 elements"))?;
    let text = |v: Value, what: &'static str| match v {
        Value::String(s) => s.into_str().ok_or(WireError::Body(what)),
        _ => Err(WireError::Body(what)),
    };
    let Value::Array(atts) = atts else {
        return Err(WireError::Body("attachments"));
    };
    let attachments = atts
        .into_iter()
        .map(|a| match a {
            Value::Binary(b) => Ok(Bytes::from(b)),
            _ => Err(WireError::Body("attachment")),
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Body {
        room: text(room, "room")?,
        event: text(event, "event")?,
        payload: Payload {
            data: text(data, "data")?,
            attachments,
        },
    })
}

/// Encodes a session revocation.
pub fn encode_revoked(session_id: &str, user_id: &str) -> Vec<u8> {
    let mut out = vec![b'R'];
    out.extend(write(&Value::Array(vec![
        Value::from(session_id),
        Value::from(user_id),
    ])));
    out
}

/// Decodes a message of the events channel.
pub fn decode(msg: &[u8]) -> Result<ClusterMsg, WireError> {
    let (&kind, rest) = msg.split_first().ok_or(WireError::Empty)?;
    match kind {
        b'D' | b'V' => {
            let nl = rest
                .iter()
                .position(|&c| c == b'\n')
                .ok_or(WireError::Header("no newline"))?;
            let header =
                std::str::from_utf8(&rest[..nl]).map_err(|_| WireError::Header("utf-8"))?;
            let mut parts = header.split(' ');
            let mut num = |what| {
                parts
                    .next()
                    .and_then(|p| p.parse::<u64>().ok())
                    .ok_or(WireError::Header(what))
            };
            let (offset, index, ts_ms) = (num("offset")?, num("index")?, num("ts")?);
            let epoch = parts.next().ok_or(WireError::Header("epoch"))?.to_owned();
            let body = decode_body(&rest[nl + 1..])?;
            Ok(ClusterMsg::Delivery(Delivery {
                room: body.room,
                event: body.event,
                payload: body.payload,
                durable: kind == b'D',
                offset,
                epoch,
                ts_ms,
                index,
            }))
        }
        b'R' => {
            let mut b = rest;
            let v = rmpv::decode::read_value(&mut b).map_err(|_| WireError::Body("not msgpack"))?;
            let mut it = match v {
                Value::Array(items) => items.into_iter(),
                _ => return Err(WireError::Body("not an array")),
            };
            let mut text = || {
                it.next()
                    .and_then(|v| v.as_str().map(str::to_owned))
                    .ok_or(WireError::Body("revocation"))
            };
            Ok(ClusterMsg::Revoked {
                session_id: text()?,
                user_id: text()?,
            })
        }
        other => Err(WireError::Kind(char::from(other))),
    }
}

/// Encodes a detached socket's recoverable state: msgpack `[sid, user, session, [rooms]]`.
pub fn encode_recovery(sid: &str, user: &str, session: Option<&str>, rooms: &[String]) -> Vec<u8> {
    write(&Value::Array(vec![
        Value::from(sid),
        Value::from(user),
        session.map_or(Value::Nil, Value::from),
        Value::Array(rooms.iter().map(|r| Value::from(r.as_str())).collect()),
    ]))
}

/// Decodes what [`encode_recovery`] wrote.
pub fn decode_recovery(mut b: &[u8]) -> Option<RecoveredSocket> {
    let Value::Array(items) = rmpv::decode::read_value(&mut b).ok()? else {
        return None;
    };
    let [sid, user, session, rooms] = <[Value; 4]>::try_from(items).ok()?;
    Some(RecoveredSocket {
        sid: sid.as_str()?.to_owned(),
        user_id: user.as_str()?.to_owned(),
        session_id: session.as_str().map(str::to_owned),
        rooms: rooms
            .as_array()?
            .iter()
            .filter_map(|r| r.as_str().map(str::to_owned))
            .collect(),
    })
}

pub(crate) fn write(v: &Value) -> Vec<u8> {
    let mut out = Vec::new();
    // Writing to a Vec cannot fail.
    let _ = rmpv::encode::write_value(&mut out, v);
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn delivery_roundtrip() {
        let p = Payload {
            data: r#"{"a":{"_placeholder":true,"num":0}}"#.into(),
            attachments: vec![Bytes::from_static(&[0, 255])],
        };
        let body = encode_body("user:1", "trade:executed", &p);
        let mut msg = b"D7 42 1700000000000 ep0ch\n".to_vec();
        msg.extend(&body);
        let ClusterMsg::Delivery(d) = decode(&msg).unwrap() else {
            panic!("not a delivery")
        };
        assert_eq!(
            (d.room.as_str(), d.event.as_str()),
            ("user:1", "trade:executed")
        );
        assert_eq!(
            (d.offset, d.index, d.ts_ms, d.durable),
            (7, 42, 1_700_000_000_000, true)
        );
        assert_eq!(d.epoch, "ep0ch");
        assert_eq!(d.payload, p);
    }

    #[test]
    fn revoked_roundtrip_and_garbage() {
        let ClusterMsg::Revoked {
            session_id,
            user_id,
        } = decode(&encode_revoked("s", "u")).unwrap()
        else {
            panic!("not a revocation")
        };
        assert_eq!((session_id.as_str(), user_id.as_str()), ("s", "u"));
        assert!(decode(b"").is_err());
        assert!(decode(b"Dx y\n").is_err());
        assert!(decode(b"Z").is_err());
        assert!(decode(b"D1 2 3 e\n\xc1").is_err());
        let r = decode_recovery(&encode_recovery("s1", "u", None, &["user:u".into()])).unwrap();
        assert_eq!(
            (r.sid.as_str(), r.session_id, r.rooms.len()),
            ("s1", None, 1)
        );
        assert!(decode_recovery(b"\x01").is_none());
    }
}
