//! Encoding of outbound Socket.IO packets into shared [`Frame`]s, done once per packet
//! whatever the number of recipients.

use bytes::Bytes;
use serde_json::Value;
use smallvec::SmallVec;

use super::conn::Frame;
use super::packet::{self, PacketType};

/// The frames of one packet: its text, then its binary attachments.
pub type Frames = SmallVec<[Frame; 1]>;

/// Encodes an EVENT (or BINARY_EVENT when there are attachments) from JSON values. Any
/// binary placeholders in `args` must refer to `attachments`.
pub fn event(
    nsp: &str,
    event: &str,
    args: &[Value],
    attachments: &[Bytes],
    ack: Option<u64>,
) -> Frames {
    let mut json = String::with_capacity(64);
    json.push('[');
    push_json_string(&mut json, event);
    for a in args {
        json.push(',');
        json.push_str(&a.to_string());
    }
    json.push(']');
    finish(PacketType::Event, nsp, ack, &json, attachments)
}

/// Encodes an EVENT whose arguments are already JSON text: `args_json` is the
/// comma-separated list of arguments (no brackets), e.g. `{"a":1},{"room":"r"},"42"`.
pub fn event_raw(
    nsp: &str,
    event: &str,
    args_json: &str,
    attachments: &[Bytes],
    ack: Option<u64>,
) -> Frames {
    let mut json = String::with_capacity(event.len() + args_json.len() + 8);
    json.push('[');
    push_json_string(&mut json, event);
    if !args_json.is_empty() {
        json.push(',');
        json.push_str(args_json);
    }
    json.push(']');
    finish(PacketType::Event, nsp, ack, &json, attachments)
}

/// Encodes an ACK answering `id` with `args`.
pub fn ack(nsp: &str, id: u64, args: &[Value], attachments: &[Bytes]) -> Frames {
    let json = Value::Array(args.to_vec()).to_string();
    finish(PacketType::Ack, nsp, Some(id), &json, attachments)
}

/// Encodes a CONNECT answer.
pub fn connect_ok(nsp: &str, sid: &str, pid: Option<&str>) -> Frame {
    let data = match pid {
        Some(pid) => serde_json::json!({ "sid": sid, "pid": pid }),
        None => serde_json::json!({ "sid": sid }),
    };
    Frame::text(format!(
        "4{}",
        packet::encode(PacketType::Connect, nsp, None, 0, Some(&data))
    ))
}

/// Encodes a CONNECT_ERROR with `{message, data?}`.
pub fn connect_error(nsp: &str, message: &str, data: Option<&Value>) -> Frame {
    let mut obj = serde_json::Map::new();
    obj.insert("message".into(), Value::String(message.to_owned()));
    if let Some(d) = data {
        obj.insert("data".into(), d.clone());
    }
    Frame::text(format!(
        "4{}",
        packet::encode(
            PacketType::ConnectError,
            nsp,
            None,
            0,
            Some(&Value::Object(obj))
        )
    ))
}

/// Encodes a DISCONNECT for namespace `nsp`.
pub fn disconnect(nsp: &str) -> Frame {
    Frame::text(format!(
        "4{}",
        packet::encode(PacketType::Disconnect, nsp, None, 0, None)
    ))
}

fn finish(
    kind: PacketType,
    nsp: &str,
    id: Option<u64>,
    json: &str,
    attachments: &[Bytes],
) -> Frames {
    let mut text = String::with_capacity(json.len() + nsp.len() + 12);
    text.push('4');
    packet::write_header(&mut text, kind, nsp, id, attachments.len());
    text.push_str(json);
    let mut frames = Frames::new();
    frames.push(Frame::text(text));
    frames.extend(attachments.iter().cloned().map(Frame::Binary));
    frames
}

/// Appends `s` as a JSON string literal.
pub fn push_json_string(out: &mut String, s: &str) {
    // serde_json's string escaping, without allocating a Value.
    match serde_json::to_string(s) {
        Ok(q) => out.push_str(&q),
        Err(_) => out.push_str("\"\""),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn text(f: &Frame) -> &str {
        match f {
            Frame::Text(t) => t.as_str(),
            Frame::Binary(_) => panic!("binary"),
        }
    }

    #[test]
    fn event_frames() {
        let f = event("/", "hi", &[json!({"a":1}), json!("x")], &[], None);
        assert_eq!(f.len(), 1);
        assert_eq!(text(&f[0]), r#"42["hi",{"a":1},"x"]"#);
        let f = event_raw("/chat", "e\"v", r#"{"a":1},"7""#, &[], Some(4));
        assert_eq!(text(&f[0]), r#"42/chat,4["e\"v",{"a":1},"7"]"#);
        let bin = Bytes::from_static(&[1, 2]);
        let f = event(
            "/",
            "b",
            &[packet::placeholder(0)],
            std::slice::from_ref(&bin),
            None,
        );
        assert_eq!(text(&f[0]), r#"451-["b",{"_placeholder":true,"num":0}]"#);
        assert_eq!(f[1], Frame::Binary(bin));
    }

    #[test]
    fn control_frames() {
        assert_eq!(
            text(&connect_ok("/", "abc", Some("p"))),
            r#"40{"pid":"p","sid":"abc"}"#
        );
        assert_eq!(
            text(&connect_ok("/x", "abc", None)),
            r#"40/x,{"sid":"abc"}"#
        );
        assert_eq!(
            text(&connect_error(
                "/",
                "UNAUTHORIZED",
                Some(&json!({"code":"UNAUTHORIZED"}))
            )),
            r#"44{"data":{"code":"UNAUTHORIZED"},"message":"UNAUTHORIZED"}"#
        );
        assert_eq!(text(&disconnect("/")), "41");
        assert_eq!(text(&ack("/", 3, &[json!(1)], &[])[0]), "433[1]");
    }
}
