//! The sockets of one room, keyed by socket id.
//!
//! Most rooms are small (a user's own room holds that user's one or two sockets), so a
//! room of up to [`FEW`] members is a short inline list searched linearly: no allocation
//! at all for one or two members, where a hash map allocates its table (~128 B) for the
//! first. Larger rooms switch to a hash map.

use std::collections::HashMap;
use std::sync::Arc;

use smallvec::SmallVec;

use super::socket::Socket;

/// Up to this many members, a room is a list.
const FEW: usize = 8;

/// The members of a room.
pub(crate) enum Members {
    Few(SmallVec<[Arc<Socket>; 2]>),
    Many(HashMap<Arc<str>, Arc<Socket>>),
}

impl Default for Members {
    fn default() -> Self {
        Members::Few(SmallVec::new())
    }
}

impl Members {
    /// Adds `socket` (replacing a member with the same id).
    pub(crate) fn insert(&mut self, socket: Arc<Socket>) {
        match self {
            Members::Few(list) => {
                if let Some(slot) = list.iter_mut().find(|s| s.id() == socket.id()) {
                    *slot = socket;
                } else if list.len() < FEW {
                    list.push(socket);
                } else {
                    let mut map: HashMap<Arc<str>, Arc<Socket>> =
                        list.drain(..).map(|s| (s.id_arc(), s)).collect();
                    map.insert(socket.id_arc(), socket);
                    *self = Members::Many(map);
                }
            }
            Members::Many(map) => {
                map.insert(socket.id_arc(), socket);
            }
        }
    }

    /// Removes `socket` if it is the member under its id.
    pub(crate) fn remove(&mut self, socket: &Arc<Socket>) {
        match self {
            Members::Few(list) => list.retain(|s| !Arc::ptr_eq(s, socket)),
            Members::Many(map) => {
                if map.get(socket.id()).is_some_and(|s| Arc::ptr_eq(s, socket)) {
                    map.remove(socket.id());
                }
            }
        }
    }

    /// The member with this socket id.
    pub(crate) fn get(&self, id: &str) -> Option<&Arc<Socket>> {
        match self {
            Members::Few(list) => list.iter().find(|s| s.id() == id),
            Members::Many(map) => map.get(id),
        }
    }

    /// Whether a socket with this id is a member.
    pub(crate) fn contains(&self, id: &str) -> bool {
        self.get(id).is_some()
    }

    pub(crate) fn len(&self) -> usize {
        match self {
            Members::Few(list) => list.len(),
            Members::Many(map) => map.len(),
        }
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Every member, in no particular order.
    pub(crate) fn iter(&self) -> impl Iterator<Item = &Arc<Socket>> {
        let (few, many) = match self {
            Members::Few(list) => (Some(list.iter()), None),
            Members::Many(map) => (None, Some(map.values())),
        };
        few.into_iter().flatten().chain(many.into_iter().flatten())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::socketio::conn::{Conn, Transport};
    use crate::socketio::handler::{Accept, BoxFuture, ConnectRequest, Event, Handler, Refusal};
    use crate::socketio::namespace::Namespace;

    struct Nop;
    impl Handler for Nop {
        fn connect(&self, _req: ConnectRequest) -> BoxFuture<Result<Accept, Refusal>> {
            Box::pin(async {
                Err(Refusal {
                    message: "no".into(),
                    data: None,
                })
            })
        }
        fn event(&self, _socket: &Arc<Socket>, _event: Event) -> Option<BoxFuture<()>> {
            None
        }
    }

    fn socket(ns: &Arc<Namespace>, id: &str) -> Arc<Socket> {
        let conn = Arc::new(Conn::new(
            Arc::from(id),
            "127.0.0.1:1".parse().expect("addr"),
            Transport::WebSocket,
            Arc::default(),
            1000,
            1 << 20,
        ));
        Arc::new(Socket::new(
            Arc::from(id),
            None,
            ns.clone(),
            conn,
            Arc::new(()),
        ))
    }

    fn ids(m: &Members) -> Vec<String> {
        let mut v: Vec<String> = m.iter().map(|s| s.id().to_owned()).collect();
        v.sort();
        v
    }

    #[test]
    fn a_room_grows_past_the_list_and_shrinks_back_to_empty() {
        let ns = Arc::new(Namespace::new("/", Arc::new(Nop), false));
        let all: Vec<Arc<Socket>> = (0..20).map(|i| socket(&ns, &format!("s{i:02}"))).collect();
        let mut m = Members::default();
        for (i, s) in all.iter().enumerate() {
            m.insert(s.clone());
            m.insert(s.clone()); // twice: still one member
            assert_eq!(m.len(), i + 1);
            assert_eq!(matches!(m, Members::Many(_)), i + 1 > FEW, "at {}", i + 1);
        }
        let mut want: Vec<String> = all.iter().map(|s| s.id().to_owned()).collect();
        want.sort();
        assert_eq!(ids(&m), want);
        assert!(m.contains("s07") && m.contains("s19") && !m.contains("s20"));
        for s in &all {
            m.remove(s);
            assert!(!m.contains(s.id()));
        }
        assert!(m.is_empty());
    }

    #[test]
    fn remove_leaves_a_newer_socket_with_the_same_id() {
        let ns = Arc::new(Namespace::new("/", Arc::new(Nop), false));
        for n in [1, FEW + 1] {
            let mut m = Members::default();
            let others: Vec<Arc<Socket>> =
                (0..n - 1).map(|i| socket(&ns, &format!("o{i}"))).collect();
            for o in &others {
                m.insert(o.clone());
            }
            let old = socket(&ns, "same");
            let new = socket(&ns, "same");
            m.insert(old.clone());
            m.insert(new.clone()); // replaces the old one under its id
            assert_eq!(m.len(), n);
            m.remove(&old);
            assert!(
                m.get("same").is_some_and(|s| Arc::ptr_eq(s, &new)),
                "the newer socket stays (n = {n})"
            );
        }
    }
}
