//! The broadcast format of Node's `@socket.io/redis-adapter`, so that Node and raftcast
//! servers on one Redis hear each other's room broadcasts.
//!
//! The adapter publishes a broadcast on `socket.io#/#<room>#` when it targets one room and
//! on `socket.io#/#` otherwise, as msgpack `[uid, packet, opts]`: `packet` is the Socket.IO
//! packet object `{ type: 2, data: [event, ...args], nsp: "/" }` with binary arguments as
//! msgpack `bin`, `opts` is `{ rooms: [...], except: [...], flags: {...} }`. Every server
//! ignores its own `uid`.
//!
//! What we publish carries the raftcast `meta` `{ room, offset, epoch, ts }` as the last
//! argument, like our own deliveries; the Lua script that assigns the offset writes it
//! between the two halves this module encodes ([`Halves`]).

use bytes::Bytes;
use rmpv::Value;
use serde_json::Value as Json;

use super::super::Payload;

/// Why an adapter message could not be used.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum InteropError {
    #[error("not msgpack")]
    Msgpack,
    #[error("unexpected shape: {0}")]
    Shape(&'static str),
    #[error("payload data is not JSON")]
    Json,
}

/// An adapter broadcast packet around a missing last argument (the meta): publish
/// `pre ++ msgpack(meta) ++ post`.
#[derive(Debug, Clone)]
pub struct Halves {
    pub pre: Vec<u8>,
    pub post: Vec<u8>,
}

/// A broadcast heard from another (Node) server.
#[derive(Debug, Clone, PartialEq)]
pub struct Broadcast {
    pub uid: String,
    pub rooms: Vec<String>,
    pub except: Vec<String>,
    pub event: String,
    /// The arguments as JSON text separated by commas (`null` when there were none).
    pub payload: Payload,
}

/// Encodes a broadcast of `event` with `payload` to `room`, from `uid`, minus the meta.
pub fn encode(
    uid: &str,
    room: &str,
    event: &str,
    payload: &Payload,
) -> Result<Halves, InteropError> {
    let data: Json = serde_json::from_str(&payload.data).map_err(|_| InteropError::Json)?;
    let mut pre = Vec::with_capacity(payload.data.len() + 64);
    let mut post = Vec::with_capacity(64 + room.len());
    // Writes to a Vec cannot fail.
    let _ = rmp::encode::write_array_len(&mut pre, 3);
    let _ = rmp::encode::write_str(&mut pre, uid);
    let _ = rmp::encode::write_map_len(&mut pre, 3);
    let _ = rmp::encode::write_str(&mut pre, "type");
    let _ = rmp::encode::write_uint(&mut pre, 2);
    let _ = rmp::encode::write_str(&mut pre, "data");
    let _ = rmp::encode::write_array_len(&mut pre, 3);
    let _ = rmp::encode::write_str(&mut pre, event);
    let _ = rmpv::encode::write_value(&mut pre, &to_msgpack(&data, &payload.attachments));
    let _ = rmp::encode::write_str(&mut post, "nsp");
    let _ = rmp::encode::write_str(&mut post, "/");
    let opts = Value::Map(vec![
        (Value::from("rooms"), Value::Array(vec![Value::from(room)])),
        (Value::from("except"), Value::Array(Vec::new())),
        (Value::from("flags"), Value::Map(Vec::new())),
    ]);
    let _ = rmpv::encode::write_value(&mut post, &opts);
    Ok(Halves { pre, post })
}

/// Decodes an adapter message heard on `channel` (`socket.io#/#...`). `Ok(None)` for
/// packets that are not events of namespace `/`.
pub fn decode(channel: &str, mut msg: &[u8]) -> Result<Option<Broadcast>, InteropError> {
    let v = rmpv::decode::read_value(&mut msg).map_err(|_| InteropError::Msgpack)?;
    let Value::Array(items) = v else {
        return Err(InteropError::Shape("not an array"));
    };
    let mut it = items.into_iter();
    let (Some(uid), Some(packet), opts) = (it.next(), it.next(), it.next()) else {
        return Err(InteropError::Shape("expected [uid, packet, opts]"));
    };
    let uid = uid.as_str().unwrap_or_default().to_owned();
    let nsp = get(&packet, "nsp").and_then(Value::as_str).unwrap_or("/");
    let kind = get(&packet, "type").and_then(Value::as_u64);
    if nsp != "/" || !matches!(kind, Some(2 | 5)) {
        return Ok(None);
    }
    let Some(Value::Array(data)) = get(&packet, "data") else {
        return Err(InteropError::Shape("packet without data"));
    };
    let mut data = data.iter();
    let event = data
        .next()
        .and_then(Value::as_str)
        .ok_or(InteropError::Shape("event name"))?
        .to_owned();
    let mut attachments = Vec::new();
    let args: Vec<String> = data
        .map(|a| to_json(a, &mut attachments).to_string())
        .collect();
    let strings = |key| -> Vec<String> {
        opts.as_ref()
            .and_then(|o| get(o, key))
            .and_then(Value::as_array)
            .map(|l| l.iter().filter_map(scalar_text).collect())
            .unwrap_or_default()
    };
    let mut rooms = strings("rooms");
    if rooms.is_empty() {
        let tail = channel
            .strip_prefix(super::keys::ADAPTER_CHANNEL)
            .unwrap_or_default();
        if let Some(room) = tail.strip_suffix('#').filter(|r| !r.is_empty()) {
            rooms.push(room.to_owned());
        }
    }
    Ok(Some(Broadcast {
        uid,
        rooms,
        except: strings("except"),
        event,
        payload: Payload {
            data: if args.is_empty() {
                "null".to_owned()
            } else {
                args.join(",")
            },
            attachments,
        },
    }))
}

fn get<'a>(map: &'a Value, key: &str) -> Option<&'a Value> {
    map.as_map()?
        .iter()
        .find(|(k, _)| k.as_str() == Some(key))
        .map(|(_, v)| v)
}

fn scalar_text(v: &Value) -> Option<String> {
    match v {
        Value::String(s) => s.as_str().map(str::to_owned),
        Value::Integer(i) => Some(i.to_string()),
        _ => None,
    }
}

/// JSON → msgpack, with Socket.IO attachment placeholders replaced by the attachments.
pub fn to_msgpack(v: &Json, attachments: &[Bytes]) -> Value {
    match v {
        Json::Null => Value::Nil,
        Json::Bool(b) => Value::Boolean(*b),
        Json::Number(n) => {
            if let Some(u) = n.as_u64() {
                Value::from(u)
            } else if let Some(i) = n.as_i64() {
                Value::from(i)
            } else {
                Value::F64(n.as_f64().unwrap_or(0.0))
            }
        }
        Json::String(s) => Value::from(s.as_str()),
        Json::Array(l) => Value::Array(l.iter().map(|x| to_msgpack(x, attachments)).collect()),
        Json::Object(m) => {
            if m.get("_placeholder") == Some(&Json::Bool(true)) {
                let bin = m
                    .get("num")
                    .and_then(Json::as_u64)
                    .and_then(|n| attachments.get(usize::try_from(n).ok()?));
                if let Some(b) = bin {
                    return Value::Binary(b.to_vec());
                }
            }
            Value::Map(
                m.iter()
                    .map(|(k, x)| (Value::from(k.as_str()), to_msgpack(x, attachments)))
                    .collect(),
            )
        }
    }
}

/// msgpack → JSON, with binaries moved to `attachments` behind placeholders.
pub fn to_json(v: &Value, attachments: &mut Vec<Bytes>) -> Json {
    match v {
        Value::Nil | Value::Ext(..) => Json::Null,
        Value::Boolean(b) => Json::Bool(*b),
        Value::Integer(i) => i
            .as_u64()
            .map(Json::from)
            .or_else(|| i.as_i64().map(Json::from))
            .unwrap_or(Json::Null),
        Value::F32(f) => {
            serde_json::Number::from_f64(f64::from(*f)).map_or(Json::Null, Json::Number)
        }
        Value::F64(f) => serde_json::Number::from_f64(*f).map_or(Json::Null, Json::Number),
        Value::String(s) => Json::String(String::from_utf8_lossy(s.as_bytes()).into_owned()),
        Value::Binary(b) => {
            attachments.push(Bytes::copy_from_slice(b));
            serde_json::json!({ "_placeholder": true, "num": attachments.len() - 1 })
        }
        Value::Array(l) => Json::Array(l.iter().map(|x| to_json(x, attachments)).collect()),
        Value::Map(m) => Json::Object(
            m.iter()
                .map(|(k, x)| {
                    let key = match k {
                        Value::String(s) => String::from_utf8_lossy(s.as_bytes()).into_owned(),
                        other => other.to_string(),
                    };
                    (key, to_json(x, attachments))
                })
                .collect(),
        ),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn our_broadcast_decodes_as_the_adapter_would() {
        let p = Payload {
            data: r#"{"n":1,"bin":{"_placeholder":true,"num":0}}"#.into(),
            attachments: vec![Bytes::from_static(&[1, 2, 3])],
        };
        let h = encode("rc-x", "watchlist:AAPL", "quote:update", &p).unwrap();
        let mut msg = h.pre.clone();
        rmpv::encode::write_value(
            &mut msg,
            &Value::Map(vec![(Value::from("offset"), Value::from(3))]),
        )
        .unwrap();
        msg.extend(&h.post);
        let b = decode("socket.io#/#watchlist:AAPL#", &msg)
            .unwrap()
            .unwrap();
        assert_eq!(b.uid, "rc-x");
        assert_eq!(b.rooms, vec!["watchlist:AAPL".to_owned()]);
        assert_eq!(b.event, "quote:update");
        assert_eq!(b.payload.attachments, p.attachments);
        assert_eq!(
            b.payload.data,
            r#"{"bin":{"_placeholder":true,"num":0},"n":1},{"offset":3}"#
        );
    }

    #[test]
    fn ignores_other_namespaces_and_rejects_garbage() {
        let v = Value::Array(vec![
            Value::from("abc"),
            Value::Map(vec![
                (Value::from("type"), Value::from(2)),
                (Value::from("data"), Value::Array(vec![Value::from("e")])),
                (Value::from("nsp"), Value::from("/admin")),
            ]),
            Value::Map(Vec::new()),
        ]);
        assert_eq!(
            decode("socket.io#/admin#", &super::super::wire::write(&v)),
            Ok(None)
        );
        assert!(decode("socket.io#/#", &[0xc1]).is_err());
        assert!(decode("socket.io#/#", &super::super::wire::write(&Value::from(1))).is_err());
    }
}
