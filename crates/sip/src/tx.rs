//! Transaction state (RFC 3261 §17) for the proxy, and the response cache
//! that absorbs retransmitted non-INVITE requests answered locally.

use std::collections::{HashMap, VecDeque};
use std::time::{Duration, Instant};

use crate::flow::Flow;
use crate::timers::Timers;
use crate::Message;

/// Most locally generated answers kept for retransmissions (about 10 MB).
const MAX_CACHED: usize = 16_384;

/// Server transaction states (§17.2.1 with RFC 6026's Accepted).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ServerState {
    /// Waiting for the branches; provisional responses may have been sent.
    Proceeding,
    /// A non-2xx final response was sent; waiting for the ACK (Timer G/H).
    Completed,
    /// A 2xx was forwarded, or the ACK arrived: only lingering.
    Done,
}

/// A request we received and forward (INVITE or any in-dialog request).
#[derive(Debug)]
pub(crate) struct ServerTx {
    pub key: (String, bool),
    /// The flow the request came in on; responses go back over it.
    pub flow: Flow,
    /// The request as received, reduced to what responses copy (§8.2.6).
    pub request: Message,
    pub invite: bool,
    pub state: ServerState,
    /// The last response sent, resent when the request is retransmitted.
    pub last: Option<Vec<u8>>,
    pub branches: Vec<u64>,
    /// Final non-2xx responses collected from finished branches.
    pub finals: Vec<Message>,
    pub cancelled: bool,
    /// Timer G interval.
    pub interval: Duration,
}

/// Client transaction states (§17.1).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum ClientState {
    /// Request sent, nothing heard (Timer A/E running).
    Calling,
    /// A provisional response arrived.
    Proceeding,
    /// Final response received; lingering to absorb retransmissions.
    Completed,
}

/// One branch we forwarded a request on.
#[derive(Debug)]
pub(crate) struct ClientTx {
    pub branch: String,
    pub server: u64,
    pub flow: Flow,
    pub invite: bool,
    /// The request as sent: retransmitted, and re-read to build CANCEL and
    /// ACK. Emptied once a 2xx passed (nothing more to send).
    pub bytes: Vec<u8>,
    pub state: ClientState,
    /// Timer A/E interval.
    pub interval: Duration,
    /// The CANCEL we sent, for retransmission; `cancel_pending` when it must
    /// wait for a provisional response first (§9.1).
    pub cancel: Option<Vec<u8>>,
    pub cancel_pending: bool,
    pub cancel_interval: Duration,
    pub final_code: Option<u16>,
    /// The UDP flow this branch was moved to TCP from because the request
    /// is large (RFC 3261 §18.1.1); it falls back there if TCP fails.
    pub udp: Option<Flow>,
}

/// All transactions, indexed by id and by branch.
#[derive(Debug, Default)]
pub(crate) struct Transactions {
    servers: HashMap<u64, ServerTx>,
    server_index: HashMap<(String, bool), u64>,
    clients: HashMap<u64, ClientTx>,
    client_index: HashMap<String, u64>,
    next_id: u64,
    cache: HashMap<String, Vec<u8>>,
    cache_expiry: VecDeque<(Instant, String)>,
}

/// The server-transaction key of a request: top Via branch and whether the
/// transaction is an INVITE one (ACK and CANCEL match the INVITE's).
pub(crate) fn server_key(req: &Message, invite: bool) -> Option<(String, bool)> {
    let via = req.top_via()?;
    // Built by hand, not with `format!`: this runs for every request.
    let mut key = String::with_capacity(96);
    match via.branch() {
        Some(b) if b.starts_with("z9hG4bK") => key.push_str(b),
        // RFC 2543 peers: fall back to Call-ID, CSeq number and From tag.
        _ => {
            key.push_str(req.call_id()?);
            key.push('|');
            push_number(&mut key, u64::from(req.cseq()?.seq));
            key.push('|');
            key.push_str(req.from().and_then(|f| f.tag()).unwrap_or_default());
        }
    }
    key.push('|');
    key.push_str(via.host);
    key.push(':');
    push_number(&mut key, u64::from(via.port.unwrap_or(0)));
    Some((key, invite))
}

impl Transactions {
    pub(crate) fn insert_server(&mut self, tx: ServerTx) -> u64 {
        self.next_id += 1;
        self.server_index.insert(tx.key.clone(), self.next_id);
        self.servers.insert(self.next_id, tx);
        self.next_id
    }

    pub(crate) fn insert_client(&mut self, tx: ClientTx) -> u64 {
        self.next_id += 1;
        self.client_index.insert(tx.branch.clone(), self.next_id);
        self.clients.insert(self.next_id, tx);
        self.next_id
    }

    pub(crate) fn find_server(&self, key: &(String, bool)) -> Option<u64> {
        self.server_index.get(key).copied()
    }

    pub(crate) fn find_client(&self, branch: &str) -> Option<u64> {
        self.client_index.get(branch).copied()
    }

    pub(crate) fn server(&mut self, id: u64) -> Option<&mut ServerTx> {
        self.servers.get_mut(&id)
    }

    pub(crate) fn client(&mut self, id: u64) -> Option<&mut ClientTx> {
        self.clients.get_mut(&id)
    }

    /// Forget a server transaction and disarm its timers.
    pub(crate) fn remove_server(&mut self, id: u64, timers: &mut Timers) -> Option<ServerTx> {
        let tx = self.servers.remove(&id)?;
        self.server_index.remove(&tx.key);
        timers.cancel_server(id);
        Some(tx)
    }

    /// Forget a client transaction and disarm its timers.
    pub(crate) fn remove_client(&mut self, id: u64, timers: &mut Timers) -> Option<ClientTx> {
        let tx = self.clients.remove(&id)?;
        self.client_index.remove(&tx.branch);
        timers.cancel_client(id, None);
        Some(tx)
    }

    /// Client transactions sending over `flow`.
    pub(crate) fn clients_on(&self, flow: &Flow) -> Vec<u64> {
        let mut ids: Vec<u64> = self
            .clients
            .iter()
            .filter(|(_, c)| c.flow == *flow)
            .map(|(id, _)| *id)
            .collect();
        ids.sort_unstable();
        ids
    }

    pub(crate) fn server_count(&self) -> usize {
        self.servers.len() + self.cache.len()
    }

    pub(crate) fn client_count(&self) -> usize {
        self.clients.len()
    }

    /// Keep a locally generated final response for `linger`.
    pub(crate) fn cache_response(
        &mut self,
        now: Instant,
        req: &Message,
        linger: Duration,
        bytes: Vec<u8>,
    ) {
        self.expire_cache(now);
        let Some(key) = cache_key(req) else { return };
        // Bounded: under a flood the oldest answers go first (retransmissions
        // come within seconds; an evicted one is simply processed again).
        while self.cache_expiry.len() >= MAX_CACHED {
            if let Some((_, old)) = self.cache_expiry.pop_front() {
                self.cache.remove(&old);
            }
        }
        self.cache_expiry.push_back((now + linger, key.clone()));
        self.cache.insert(key, bytes);
    }

    /// The cached answer to a retransmitted request.
    pub(crate) fn cached_response(&self, req: &Message) -> Option<Vec<u8>> {
        if self.cache.is_empty() {
            return None;
        }
        self.cache.get(&cache_key(req)?).cloned()
    }

    pub(crate) fn expire_cache(&mut self, now: Instant) {
        while let Some((at, _)) = self.cache_expiry.front() {
            if *at > now {
                break;
            }
            if let Some((_, key)) = self.cache_expiry.pop_front() {
                self.cache.remove(&key);
            }
        }
    }
}

fn cache_key(req: &Message) -> Option<String> {
    let (mut key, _) = server_key(req, false)?;
    key.push('|');
    key.push_str(req.method()?.as_str());
    Some(key)
}

/// Append the decimal digits of `n`.
pub(crate) fn push_number(out: &mut String, mut n: u64) {
    let mut digits = [0u8; 20];
    let mut at = digits.len();
    loop {
        at -= 1;
        digits[at] = b'0' + (n % 10) as u8;
        n /= 10;
        if n == 0 {
            break;
        }
    }
    for d in &digits[at..] {
        out.push(char::from(*d));
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn numbers_are_written_in_decimal() {
        for n in [0u64, 7, 10, 5060, 65_535, u64::MAX] {
            let mut s = String::from("x");
            super::push_number(&mut s, n);
            assert_eq!(s, format!("x{n}"));
        }
    }
}
