//! Dialogs the proxy record-routed: both parties' flows, so in-dialog
//! requests (ACK, BYE, re-INVITE) go back over the flows the devices opened
//! (their NAT mappings) and only ever between the two parties, never to an
//! address named in the request (no open relay).

use std::collections::{HashMap, HashSet};
use std::time::{Duration, Instant};

use crate::flow::{ConnId, Flow};

/// Idle dialogs are forgotten after this long (a call with no in-dialog
/// request for 12 hours has surely ended without a BYE).
pub(crate) const DIALOG_IDLE: Duration = Duration::from_secs(12 * 3600);

#[derive(Debug, Clone)]
pub(crate) struct Dialog {
    pub caller_tag: String,
    pub caller: Flow,
    pub callee: Flow,
    pub expires: Instant,
    /// The caller's (callee's) connection has closed: the next in-dialog
    /// request from the same address may take its place.
    pub caller_gone: bool,
    pub callee_gone: bool,
}

/// Key: Call-ID and the two tags in sorted order (direction-free).
type Key = (String, String, String);

/// Where a party's dialogs are indexed: its connection for stream flows
/// (so a closed connection finds its dialogs), the flow itself for UDP.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Party {
    Conn(ConnId),
    Udp(Flow),
}

fn party(flow: &Flow) -> Party {
    match flow.conn {
        Some(conn) => Party::Conn(conn),
        None => Party::Udp(*flow),
    }
}

/// All dialogs, by key and by each party's flow: a closed connection or a
/// moved party touches only its own dialogs, never every dialog.
#[derive(Debug, Default)]
pub(crate) struct Dialogs {
    ids: HashMap<Key, u64>,
    map: HashMap<u64, (Key, Dialog)>,
    by_party: HashMap<Party, HashSet<u64>>,
    next_id: u64,
}

fn key(call_id: &str, a: &str, b: &str) -> Key {
    let (lo, hi) = if a <= b { (a, b) } else { (b, a) };
    (call_id.to_owned(), lo.to_owned(), hi.to_owned())
}

impl Dialogs {
    pub(crate) fn insert(
        &mut self,
        call_id: &str,
        caller_tag: &str,
        callee_tag: &str,
        caller: Flow,
        callee: Flow,
        now: Instant,
    ) {
        let dialog = Dialog {
            caller_tag: caller_tag.to_owned(),
            caller,
            callee,
            expires: now + DIALOG_IDLE,
            caller_gone: false,
            callee_gone: false,
        };
        let key = key(call_id, caller_tag, callee_tag);
        if let Some(old) = self.ids.get(&key).copied() {
            self.remove_id(old);
        }
        self.next_id += 1;
        let id = self.next_id;
        self.ids.insert(key.clone(), id);
        self.index(id, &caller);
        self.index(id, &callee);
        self.map.insert(id, (key, dialog));
    }

    /// The dialog of an in-dialog request, refreshed.
    pub(crate) fn touch(
        &mut self,
        call_id: &str,
        from_tag: &str,
        to_tag: &str,
        now: Instant,
    ) -> Option<Dialog> {
        let id = self.ids.get(&key(call_id, from_tag, to_tag))?;
        let (_, d) = self.map.get_mut(id)?;
        d.expires = now + DIALOG_IDLE;
        Some(d.clone())
    }

    /// A party re-registered over `new`: its dialogs on `old` now use `new`.
    pub(crate) fn move_flow(&mut self, old: &Flow, new: Flow) {
        if *old == new {
            return;
        }
        let Some(ids) = self.by_party.get(&party(old)) else {
            return;
        };
        let ids: Vec<u64> = ids.iter().copied().collect();
        for id in ids {
            let Some((_, d)) = self.map.get_mut(&id) else {
                continue;
            };
            let mut moved = false;
            if d.caller == *old {
                d.caller = new;
                d.caller_gone = false;
                moved = true;
            }
            if d.callee == *old {
                d.callee = new;
                d.callee_gone = false;
                moved = true;
            }
            if moved {
                self.unindex_unless_used(id, old);
                self.index(id, &new);
            }
        }
    }

    /// A connection closed: the parties that used it are marked gone.
    pub(crate) fn connection_closed(&mut self, conn: ConnId) {
        let Some(ids) = self.by_party.get(&Party::Conn(conn)) else {
            return;
        };
        for id in ids {
            if let Some((_, d)) = self.map.get_mut(id) {
                d.caller_gone |= d.caller.conn == Some(conn);
                d.callee_gone |= d.callee.conn == Some(conn);
            }
        }
    }

    pub(crate) fn remove(&mut self, call_id: &str, from_tag: &str, to_tag: &str) {
        if let Some(id) = self.ids.get(&key(call_id, from_tag, to_tag)).copied() {
            self.remove_id(id);
        }
    }

    pub(crate) fn expire(&mut self, now: Instant) {
        let expired: Vec<u64> = self
            .map
            .iter()
            .filter(|(_, (_, d))| d.expires <= now)
            .map(|(id, _)| *id)
            .collect();
        for id in expired {
            self.remove_id(id);
        }
    }

    pub(crate) fn len(&self) -> usize {
        self.map.len()
    }

    fn remove_id(&mut self, id: u64) {
        let Some((key, d)) = self.map.remove(&id) else {
            return;
        };
        self.ids.remove(&key);
        for flow in [d.caller, d.callee] {
            self.unindex(id, &flow);
        }
    }

    fn index(&mut self, id: u64, flow: &Flow) {
        self.by_party.entry(party(flow)).or_default().insert(id);
    }

    fn unindex(&mut self, id: u64, flow: &Flow) {
        let p = party(flow);
        if let Some(ids) = self.by_party.get_mut(&p) {
            ids.remove(&id);
            if ids.is_empty() {
                self.by_party.remove(&p);
            }
        }
    }

    /// Drop `id` from `flow`'s entry unless the other party still uses it.
    fn unindex_unless_used(&mut self, id: u64, flow: &Flow) {
        let p = party(flow);
        let used = self
            .map
            .get(&id)
            .is_some_and(|(_, d)| party(&d.caller) == p || party(&d.callee) == p);
        if !used {
            self.unindex(id, flow);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::flow::{ConnId, Transport};
    use std::net::SocketAddr;

    /// A TCP flow from 10.0.0.1:`port` on connection `conn`.
    fn tcp_flow(port: u16, conn: u64) -> Flow {
        Flow {
            transport: Transport::Tcp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: SocketAddr::from(([10, 0, 0, 1], port)),
            conn: Some(ConnId(conn)),
        }
    }

    #[test]
    fn found_from_either_side_and_expires_when_idle() {
        let f = Flow {
            transport: Transport::Udp,
            local: "127.0.0.1:5060".parse().unwrap(),
            remote: "127.0.0.1:5000".parse().unwrap(),
            conn: None,
        };
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("c", "A", "B", f, f, t0);
        assert!(d.touch("c", "B", "A", t0).is_some());
        assert_eq!(d.touch("c", "A", "B", t0).unwrap().caller_tag, "A");
        assert!(d.touch("c", "A", "X", t0).is_none());
        d.expire(t0 + DIALOG_IDLE - Duration::from_secs(1));
        assert_eq!(d.len(), 1, "touched at t0, so it lives until t0 + idle");
        d.expire(t0 + DIALOG_IDLE);
        assert_eq!(d.len(), 0);
    }

    #[test]
    fn a_moved_party_takes_its_dialogs_along() {
        let flow = tcp_flow;
        let (a, b, a2) = (flow(5000, 1), flow(6000, 2), flow(7000, 3));
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("c", "A", "B", a, b, t0);
        d.move_flow(&a, a2);
        let got = d.touch("c", "A", "B", t0).unwrap();
        assert_eq!((got.caller, got.callee), (a2, b));
        d.move_flow(&flow(9999, 9), a);
        assert_eq!(
            d.touch("c", "A", "B", t0).unwrap().caller,
            a2,
            "other flows: no change"
        );
        d.connection_closed(crate::flow::ConnId(2));
        let got = d.touch("c", "A", "B", t0).unwrap();
        assert_eq!((got.caller_gone, got.callee_gone), (false, true));
        d.move_flow(&b, flow(6001, 4));
        assert!(!d.touch("c", "A", "B", t0).unwrap().callee_gone);
    }

    #[test]
    fn a_closed_connection_or_a_moved_party_touches_only_its_own_dialogs() {
        let tcp = tcp_flow;
        let udp = |port: u16| Flow {
            transport: Transport::Udp,
            local: "192.0.2.1:5060".parse().unwrap(),
            remote: SocketAddr::from(([10, 0, 0, 2], port)),
            conn: None,
        };
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("1", "A", "B", tcp(1000, 1), udp(2000), t0);
        d.insert("2", "C", "D", tcp(1001, 2), tcp(1000, 1), t0);
        d.insert("3", "E", "F", udp(3000), udp(2000), t0);
        for n in 0..1000 {
            d.insert(&format!("x{n}"), "G", "H", udp(4000), udp(5000), t0);
        }
        let bucket = |d: &Dialogs, p: Party| d.by_party.get(&p).map_or(0, |ids| ids.len());
        assert_eq!(bucket(&d, Party::Conn(ConnId(1))), 2);
        assert_eq!(bucket(&d, Party::Udp(udp(2000))), 2);

        d.connection_closed(ConnId(1));
        let gone = |d: &mut Dialogs, c: &str, a: &str, b: &str| {
            let x = d.touch(c, a, b, t0).unwrap();
            (x.caller_gone, x.callee_gone)
        };
        assert_eq!(gone(&mut d, "1", "A", "B"), (true, false));
        assert_eq!(gone(&mut d, "2", "C", "D"), (false, true));
        assert_eq!(gone(&mut d, "3", "E", "F"), (false, false));
        assert_eq!(gone(&mut d, "x7", "G", "H"), (false, false));

        // The party on connection 1 reconnects as connection 9.
        d.move_flow(&tcp(1000, 1), tcp(1000, 9));
        assert_eq!(bucket(&d, Party::Conn(ConnId(1))), 0, "entry dropped");
        assert_eq!(bucket(&d, Party::Conn(ConnId(9))), 2);
        assert_eq!(gone(&mut d, "2", "C", "D"), (false, false));
        d.connection_closed(ConnId(1));
        assert_eq!(
            gone(&mut d, "1", "A", "B"),
            (false, false),
            "old id: nothing"
        );

        d.remove("2", "D", "C");
        assert_eq!(bucket(&d, Party::Conn(ConnId(2))), 0);
        assert_eq!(bucket(&d, Party::Conn(ConnId(9))), 1);
        d.expire(t0 + DIALOG_IDLE);
        assert_eq!(d.len(), 0);
        assert!(
            d.by_party.is_empty() && d.ids.is_empty(),
            "no index left over"
        );
    }

    #[test]
    fn a_dialog_inserted_again_is_indexed_once() {
        let f = |port: u16, conn: u64| Flow {
            transport: Transport::Ws,
            local: "192.0.2.1:443".parse().unwrap(),
            remote: SocketAddr::from(([10, 0, 0, 3], port)),
            conn: Some(ConnId(conn)),
        };
        let t0 = Instant::now();
        let mut d = Dialogs::default();
        d.insert("c", "A", "B", f(1, 1), f(2, 2), t0);
        d.insert("c", "B", "A", f(3, 3), f(2, 2), t0);
        assert_eq!(d.len(), 1);
        assert!(!d.by_party.contains_key(&Party::Conn(ConnId(1))));
        d.remove("c", "A", "B");
        assert!(d.by_party.is_empty() && d.ids.is_empty());
    }
}
