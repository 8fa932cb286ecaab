//! The Lua scripts that make a publish one atomic step in Redis, and the reads of a room.
//!
//! A durable publish increments the global index and the room offset, appends the event to
//! the room's stream (entry id `<index>-0`, capped at the history size, with a TTL), and
//! publishes it to the events channel and to the Node adapter's room channel, all inside one
//! script: Redis runs scripts one at a time, so the global index order is the publish order
//! every subscriber sees. A volatile publish only reads the offset and publishes.

use fred::clients::Client;
use fred::interfaces::{ClientLike, LuaInterface};
use fred::types::{ClusterHash, CustomCommand, Value};
use parking_lot::Mutex;

use super::super::{Payload, StoredEvent};
use super::interop::Halves;
use super::keys::Keys;
use super::mirror::Snapshot;
use super::wire;

/// Why a script call failed.
#[derive(Debug, thiserror::Error)]
pub enum ScriptError {
    #[error("redis: {0}")]
    Redis(#[from] fred::error::Error),
    #[error("unexpected reply from a script: {0}")]
    Reply(&'static str),
    #[error("could not queue a pipelined command: {0}")]
    Queue(String),
}

const EPOCH: &str = r"
local epoch = redis.call('GET', KEYS[1])
if not epoch then
  epoch = ARGV[1]
  redis.call('SET', KEYS[1], epoch)
end
";

/// KEYS: epoch, seq, room offset, room history.
/// ARGV: epoch candidate, body, history size, history ttl ms, events channel,
///       adapter channel ('' for none), adapter pre, adapter post, room.
const PUBLISH_DURABLE: &str = r"
local index = redis.call('INCR', KEYS[2])
local offset = redis.call('INCR', KEYS[3])
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local id = string.format('%d-0', index)
local ok = redis.pcall('XADD', KEYS[4], 'MAXLEN', ARGV[3], id, 'o', offset, 'i', index, 't', ts, 'b', ARGV[2])
if type(ok) == 'table' and ok.err then
  redis.call('DEL', KEYS[4])
  redis.call('XADD', KEYS[4], 'MAXLEN', ARGV[3], id, 'o', offset, 'i', index, 't', ts, 'b', ARGV[2])
end
redis.call('PEXPIRE', KEYS[4], ARGV[4])
redis.call('PUBLISH', ARGV[5], string.format('D%d %d %d %s\n', offset, index, ts, epoch) .. ARGV[2])
if ARGV[6] ~= '' then
  local meta = cmsgpack.pack({room = ARGV[9], offset = offset, epoch = epoch, ts = ts})
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. meta .. ARGV[8])
end
return {offset, index, ts, epoch}
";

/// KEYS: epoch, room offset. ARGV: as for the durable script (size and ttl unused).
const PUBLISH_VOLATILE: &str = r"
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
local t = redis.call('TIME')
local ts = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('PUBLISH', ARGV[5], string.format('V%d 0 %d %s\n', offset, ts, epoch) .. ARGV[2])
if ARGV[6] ~= '' then
  local meta = cmsgpack.pack({room = ARGV[9], offset = offset, epoch = epoch, ts = ts})
  redis.call('PUBLISH', ARGV[6], ARGV[7] .. meta .. ARGV[8])
end
return {offset, 0, ts, epoch}
";

/// KEYS: epoch, room offset, room history. ARGV: epoch candidate.
const LOAD_ROOM: &str = r"
local offset = tonumber(redis.call('GET', KEYS[2]) or '0')
return {epoch, offset, redis.call('XRANGE', KEYS[3], '-', '+')}
";

/// A script: its source and, once loaded, its SHA1.
struct Lua {
    src: String,
    sha: Mutex<Option<String>>,
}

impl Lua {
    fn new(body: &str) -> Lua {
        Lua {
            src: format!("{EPOCH}{body}"),
            sha: Mutex::new(None),
        }
    }

    async fn call(
        &self,
        client: &Client,
        keys: Vec<String>,
        args: Vec<Value>,
    ) -> Result<Value, ScriptError> {
        for _ in 0..2 {
            let sha = self.sha.lock().clone();
            let sha = match sha {
                Some(s) => s,
                None => {
                    let s: String = client.script_load(self.src.as_str()).await?;
                    *self.sha.lock() = Some(s.clone());
                    s
                }
            };
            match client
                .evalsha::<Value, _, _, _>(sha, keys.clone(), args.clone())
                .await
            {
                Err(e) if e.details().starts_with("NOSCRIPT") => *self.sha.lock() = None,
                other => return Ok(other?),
            }
        }
        Err(ScriptError::Reply("script could not be loaded"))
    }
}

/// The scripts of one deployment.
pub struct Scripts {
    durable: Lua,
    volatile: Lua,
    load: Lua,
}

/// What a publish script answered.
#[derive(Debug, Clone)]
pub struct Assigned {
    pub offset: u64,
    pub index: u64,
    pub ts_ms: u64,
    pub epoch: String,
}

/// Settings a publish needs besides the event.
pub struct PublishArgs<'a> {
    pub keys: &'a Keys,
    pub epoch_candidate: &'a str,
    pub history_size: usize,
    pub history_ttl_ms: u64,
    pub adapter: Option<(String, Halves)>,
}

impl Default for Scripts {
    fn default() -> Self {
        Scripts {
            durable: Lua::new(PUBLISH_DURABLE),
            volatile: Lua::new(PUBLISH_VOLATILE),
            load: Lua::new(LOAD_ROOM),
        }
    }
}

impl Scripts {
    /// Publishes an event (see the module docs).
    pub async fn publish(
        &self,
        client: &Client,
        a: PublishArgs<'_>,
        room: &str,
        event: &str,
        payload: &Payload,
        durable: bool,
    ) -> Result<Assigned, ScriptError> {
        let (lua, keys, args) = self.publish_call(a, room, event, payload, durable);
        assigned(lua.call(client, keys, args).await?)
    }

    /// Publishes several events in one round trip: a pipeline of `EVAL`s on the one
    /// connection, which Redis runs in the order sent (so each room's offsets follow the
    /// order given). `EVAL` with the source rather than `EVALSHA`: a pipeline cannot reload
    /// a script half-way, and a script cache flushed (or refilled by another node) between
    /// two of its commands would fail some of them out of order. One answer per item.
    pub async fn publish_pipelined(
        &self,
        client: &Client,
        items: Vec<(PublishArgs<'_>, &str, &str, &Payload, bool)>,
    ) -> Vec<Result<Assigned, ScriptError>> {
        let n = items.len();
        let pipe = client.pipeline();
        for (a, room, event, payload, durable) in items {
            let (lua, keys, args) = self.publish_call(a, room, event, payload, durable);
            let mut line: Vec<Value> = Vec::with_capacity(2 + keys.len() + args.len());
            line.push(lua.src.as_str().into());
            line.push(Value::Integer(
                i64::try_from(keys.len()).unwrap_or(i64::MAX),
            ));
            line.extend(keys.into_iter().map(Value::from));
            line.extend(args);
            let eval = CustomCommand::new_static("EVAL", ClusterHash::FirstKey, false);
            if let Err(e) = pipe.custom::<(), Value>(eval, line).await {
                // Only queued so far: nothing has been sent, so nothing is written.
                let msg = e.to_string();
                return (0..n)
                    .map(|_| Err(ScriptError::Queue(msg.clone())))
                    .collect();
            }
        }
        let mut out: Vec<Result<Assigned, ScriptError>> = pipe
            .try_all::<Value>()
            .await
            .into_iter()
            .map(|r| r.map_err(ScriptError::from).and_then(assigned))
            .collect();
        // A pipeline answers once per command; should it not, the missing ones are unknown.
        out.resize_with(n, || Err(ScriptError::Reply("no answer in the pipeline")));
        out
    }

    /// The script, keys and arguments of one publish.
    fn publish_call(
        &self,
        a: PublishArgs<'_>,
        room: &str,
        event: &str,
        payload: &Payload,
        durable: bool,
    ) -> (&Lua, Vec<String>, Vec<Value>) {
        let body = wire::encode_body(room, event, payload);
        let (channel, pre, post) = match a.adapter {
            Some((c, h)) => (c, h.pre, h.post),
            None => (String::new(), Vec::new(), Vec::new()),
        };
        let args: Vec<Value> = vec![
            a.epoch_candidate.into(),
            Value::Bytes(body.into()),
            Value::Integer(i64::try_from(a.history_size.max(1)).unwrap_or(i64::MAX)),
            Value::Integer(i64::try_from(a.history_ttl_ms.max(1)).unwrap_or(i64::MAX)),
            a.keys.events_channel().into(),
            channel.into(),
            Value::Bytes(pre.into()),
            Value::Bytes(post.into()),
            room.into(),
        ];
        if durable {
            let keys = vec![
                a.keys.epoch(),
                a.keys.seq(),
                a.keys.room_offset(room),
                a.keys.room_history(room),
            ];
            (&self.durable, keys, args)
        } else {
            let keys = vec![a.keys.epoch(), a.keys.room_offset(room)];
            (&self.volatile, keys, args)
        }
    }

    /// Reads a room's epoch, offset and retained history in one step.
    pub async fn load_room(
        &self,
        client: &Client,
        keys: &Keys,
        epoch_candidate: &str,
        room: &str,
    ) -> Result<Snapshot, ScriptError> {
        let reply = self
            .load
            .call(
                client,
                vec![
                    keys.epoch(),
                    keys.room_offset(room),
                    keys.room_history(room),
                ],
                vec![epoch_candidate.into()],
            )
            .await?;
        let Value::Array(items) = reply else {
            return Err(ScriptError::Reply("not an array"));
        };
        let [epoch, offset, entries] =
            <[Value; 3]>::try_from(items).map_err(|_| ScriptError::Reply("expected 3 items"))?;
        Ok(Snapshot {
            epoch: epoch.as_string().ok_or(ScriptError::Reply("epoch"))?,
            last_offset: offset.as_u64().unwrap_or(0),
            events: parse_entries(entries),
        })
    }
}

/// What a publish script's reply says.
fn assigned(reply: Value) -> Result<Assigned, ScriptError> {
    let Value::Array(items) = reply else {
        return Err(ScriptError::Reply("not an array"));
    };
    let [offset, index, ts, epoch] =
        <[Value; 4]>::try_from(items).map_err(|_| ScriptError::Reply("expected 4 items"))?;
    Ok(Assigned {
        offset: offset.as_u64().ok_or(ScriptError::Reply("offset"))?,
        index: index.as_u64().ok_or(ScriptError::Reply("index"))?,
        ts_ms: ts.as_u64().ok_or(ScriptError::Reply("ts"))?,
        epoch: epoch.as_string().ok_or(ScriptError::Reply("epoch"))?,
    })
}

/// Parses `XRANGE` entries written by the durable script (skipping any that are not).
pub fn parse_entries(v: Value) -> Vec<StoredEvent> {
    let Value::Array(entries) = v else {
        return Vec::new();
    };
    let mut out = Vec::with_capacity(entries.len());
    for entry in entries {
        let Value::Array(parts) = entry else { continue };
        let Some(Value::Array(fields)) = parts.into_iter().nth(1) else {
            continue;
        };
        let (mut offset, mut index, mut ts, mut body) = (None, None, None, None);
        let mut it = fields.into_iter();
        while let (Some(k), Some(v)) = (it.next(), it.next()) {
            match k.as_str().as_deref() {
                Some("o") => offset = v.as_u64(),
                Some("i") => index = v.as_u64(),
                Some("t") => ts = v.as_u64(),
                Some("b") => body = v.as_bytes().and_then(|b| wire::decode_body(b).ok()),
                _ => {}
            }
        }
        match (offset, index, ts, body) {
            (Some(offset), Some(index), Some(ts_ms), Some(b)) => out.push(StoredEvent {
                offset,
                index,
                event: b.event,
                payload: b.payload,
                ts_ms,
            }),
            _ => tracing::warn!("skipping a malformed history entry in Redis"),
        }
    }
    out
}
