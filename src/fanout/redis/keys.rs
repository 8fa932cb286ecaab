//! Names of the Redis keys and channels of one deployment (all under `--redis-prefix`), and
//! of the channels of Node's `@socket.io/redis-adapter` (key `socket.io`, namespace `/`).

/// The adapter's default key and our only namespace: channel `socket.io#/#[room#]`.
pub const ADAPTER_CHANNEL: &str = "socket.io#/#";
/// The pattern the adapter subscribes to (and we do too).
pub const ADAPTER_PATTERN: &str = "socket.io#/#*";

/// Key and channel names under one prefix.
#[derive(Debug, Clone)]
pub struct Keys {
    prefix: String,
}

impl Keys {
    pub fn new(prefix: &str) -> Keys {
        Keys {
            prefix: prefix.to_owned(),
        }
    }

    pub fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The global event index (the order of every event of the deployment).
    pub fn seq(&self) -> String {
        format!("{}:seq", self.prefix)
    }

    /// The epoch naming the history offsets belong to.
    pub fn epoch(&self) -> String {
        format!("{}:epoch", self.prefix)
    }

    /// The channel every node subscribes to: deliveries and session revocations.
    pub fn events_channel(&self) -> String {
        format!("{}:events", self.prefix)
    }

    /// A room's durable offset counter.
    pub fn room_offset(&self, room: &str) -> String {
        format!("{}:room:{room}:offset", self.prefix)
    }

    /// A room's bounded history (a stream whose entry ids are the events' global indexes).
    pub fn room_history(&self, room: &str) -> String {
        format!("{}:room:{room}:history", self.prefix)
    }

    pub fn session(&self, id: &str) -> String {
        format!("{}:session:{id}", self.prefix)
    }

    /// The set of node ids that have ever registered (dead ones are swept).
    pub fn nodes(&self) -> String {
        format!("{}:nodes", self.prefix)
    }

    /// A node's heartbeat key (expires a few heartbeats after the node stops).
    pub fn node_alive(&self, node: u64) -> String {
        format!("{}:node:{node}:alive", self.prefix)
    }

    /// A node's live sockets: hash sid → user id.
    pub fn node_sockets(&self, node: u64) -> String {
        format!("{}:node:{node}:sockets", self.prefix)
    }

    /// A node's users: hash user id → live socket count.
    pub fn node_users(&self, node: u64) -> String {
        format!("{}:node:{node}:users", self.prefix)
    }

    /// A node's rooms: hash room → live member count.
    pub fn node_rooms(&self, node: u64) -> String {
        format!("{}:node:{node}:rooms", self.prefix)
    }

    /// Where a user is connected: hash `<node>:<sid>` → `1`.
    pub fn presence(&self, user: &str) -> String {
        format!("{}:presence:{user}", self.prefix)
    }

    /// A detached socket's recoverable state (expires with the recovery window).
    pub fn recovery(&self, pid: &str) -> String {
        format!("{}:recovery:{pid}", self.prefix)
    }
}

/// The adapter channel of a broadcast to one room.
pub fn adapter_room_channel(room: &str) -> String {
    format!("{ADAPTER_CHANNEL}{room}#")
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn names() {
        let k = Keys::new("rc");
        assert_eq!(k.room_history("user:1"), "rc:room:user:1:history");
        assert_eq!(k.events_channel(), "rc:events");
        assert_eq!(
            adapter_room_channel("watchlist:AAPL"),
            "socket.io#/#watchlist:AAPL#"
        );
    }
}
