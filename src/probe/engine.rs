//! The sans-IO core of `natter probe`: STUN Binding transactions over two local sockets,
//! with the RFC 8489 retransmission schedule, cut short by a per-transaction timeout.
//!
//! The driver starts tests, feeds received datagrams to [`Engine::handle_input`] and
//! timeouts to [`Engine::handle_timeout`], and sends what [`Engine::poll_transmit`] yields.
//! Time is passed in and transaction ids come from a seedable RNG.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::time::{Duration, Instant};

use natter_turn::stun::{self, BindingRequest, Class, Method, TransactionId};
use rand::rngs::StdRng;
use rand::SeedableRng;

/// RFC 8489 §6.2.1: initial retransmission timeout.
const INITIAL_RTO: Duration = Duration::from_millis(500);
/// RFC 8489 §6.2.1: Rc, the most requests sent per transaction.
const MAX_SENDS: u32 = 7;

/// Which local socket a test uses. Mapping tests use `Mapping`; filtering tests use a
/// separate socket so the mapping tests' traffic opens no extra holes in its filter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SocketId {
    /// Socket for the mapping tests (RFC 5780 §4.3).
    Mapping,
    /// Socket for the filtering tests (RFC 5780 §4.4).
    Filtering,
}

/// A test's handle, to read its [`Outcome`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct TestId(usize);

/// One datagram to send.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Transmit {
    /// Socket to send from.
    pub socket: SocketId,
    /// Where to.
    pub to: SocketAddr,
    /// The STUN request.
    pub payload: Vec<u8>,
}

/// How one test ended.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// A Binding success response.
    Answered(Answer),
    /// The server refused the request with an error response.
    Refused {
        /// STUN error code (e.g. 420).
        code: u16,
        /// The server's reason phrase.
        reason: String,
    },
    /// No answer before the timeout.
    TimedOut,
}

/// What a success response told us.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Answer {
    /// XOR-MAPPED-ADDRESS (or MAPPED-ADDRESS from a classic server).
    pub mapped: SocketAddr,
    /// OTHER-ADDRESS (RFC 5780), or CHANGED-ADDRESS from an RFC 3489 server.
    pub other: Option<SocketAddr>,
    /// Where the response datagram came from.
    pub from: SocketAddr,
    /// Time from the first request to this answer.
    pub rtt: Duration,
}

/// Classic RFC 3489 CHANGED-ADDRESS, the predecessor of OTHER-ADDRESS.
const CHANGED_ADDRESS: u16 = 0x0005;

#[derive(Debug)]
struct Transaction {
    socket: SocketId,
    to: SocketAddr,
    tid: TransactionId,
    request: Vec<u8>,
    started: Instant,
    deadline: Instant,
    next_send: Option<Instant>,
    rto: Duration,
    sends: u32,
    outcome: Option<Outcome>,
}

/// Runs any number of concurrent Binding tests.
#[derive(Debug)]
pub struct Engine {
    timeout: Duration,
    rng: StdRng,
    transactions: Vec<Transaction>,
    transmits: VecDeque<Transmit>,
}

impl Engine {
    /// An engine whose tests give up after `timeout`; `seed` drives transaction ids.
    pub fn new(timeout: Duration, seed: u64) -> Self {
        Self {
            timeout,
            rng: StdRng::seed_from_u64(seed),
            transactions: Vec::new(),
            transmits: VecDeque::new(),
        }
    }

    /// Starts a Binding test from `socket` to `to`, with CHANGE-REQUEST flags.
    pub fn start(
        &mut self,
        now: Instant,
        socket: SocketId,
        to: SocketAddr,
        change_ip: bool,
        change_port: bool,
    ) -> TestId {
        let tid = TransactionId::random(&mut self.rng);
        let request = BindingRequest::new(tid)
            .change_ip(change_ip)
            .change_port(change_port)
            .build();
        self.transactions.push(Transaction {
            socket,
            to,
            tid,
            request,
            started: now,
            deadline: now + self.timeout,
            next_send: Some(now),
            rto: INITIAL_RTO,
            sends: 0,
            outcome: None,
        });
        self.handle_timeout(now);
        TestId(self.transactions.len() - 1)
    }

    /// Takes a datagram received on `socket` from `from`. Anything that is not the answer
    /// to one of our open transactions on that socket is ignored.
    pub fn handle_input(&mut self, now: Instant, socket: SocketId, from: SocketAddr, bytes: &[u8]) {
        let Ok(message) = stun::decode(bytes) else {
            return;
        };
        if message.method() != Method::BINDING {
            return;
        }
        let tid = message.transaction_id();
        let open = self
            .transactions
            .iter_mut()
            .find(|t| t.outcome.is_none() && t.socket == socket && t.tid == tid);
        let Some(transaction) = open else { return };
        let outcome = match message.class() {
            Class::Success => match message.reflexive_address() {
                Some(mapped) => {
                    let other = message
                        .other_address()
                        .or_else(|| message.address(CHANGED_ADDRESS));
                    Outcome::Answered(Answer {
                        mapped,
                        other,
                        from,
                        rtt: now - transaction.started,
                    })
                }
                None => return, // a success without an address is useless; keep waiting
            },
            Class::Error => {
                let (code, reason) = message.error_code().map_or((0, String::new()), |error| {
                    (error.code, error.reason.to_owned())
                });
                Outcome::Refused { code, reason }
            }
            Class::Request | Class::Indication => return,
        };
        transaction.outcome = Some(outcome);
    }

    /// Retransmits what is due and ends tests whose time is up.
    pub fn handle_timeout(&mut self, now: Instant) {
        for transaction in self.transactions.iter_mut().filter(|t| t.outcome.is_none()) {
            if now >= transaction.deadline {
                transaction.outcome = Some(Outcome::TimedOut);
                continue;
            }
            if transaction.next_send.is_some_and(|due| now >= due) {
                self.transmits.push_back(Transmit {
                    socket: transaction.socket,
                    to: transaction.to,
                    payload: transaction.request.clone(),
                });
                transaction.sends += 1;
                transaction.next_send =
                    (transaction.sends < MAX_SENDS).then(|| now + transaction.rto);
                transaction.rto *= 2;
            }
        }
    }

    /// The next datagram to send.
    pub fn poll_transmit(&mut self) -> Option<Transmit> {
        self.transmits.pop_front()
    }

    /// When [`Engine::handle_timeout`] must be called next; `None` when all tests ended.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.transactions
            .iter()
            .filter(|t| t.outcome.is_none())
            .map(|t| t.next_send.map_or(t.deadline, |send| send.min(t.deadline)))
            .min()
    }

    /// The outcome of `test`, once it has one.
    pub fn outcome(&self, test: TestId) -> Option<&Outcome> {
        self.transactions.get(test.0)?.outcome.as_ref()
    }

    /// The answer of `test`, if it was answered.
    pub fn answer(&self, test: TestId) -> Option<Answer> {
        match self.outcome(test)? {
            Outcome::Answered(answer) => Some(*answer),
            _ => None,
        }
    }

    /// Requests sent so far for `test` (retransmissions included).
    pub fn sends(&self, test: TestId) -> u32 {
        self.transactions.get(test.0).map_or(0, |t| t.sends)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn server() -> SocketAddr {
        "192.0.2.10:3478".parse().unwrap()
    }

    #[test]
    fn retransmits_on_the_rfc8489_schedule_until_the_timeout() {
        let start = Instant::now();
        let mut engine = Engine::new(Duration::from_secs(40), 1);
        let test = engine.start(start, SocketId::Mapping, server(), false, false);
        let mut send_times = Vec::new();
        let mut now = start;
        loop {
            while engine.poll_transmit().is_some() {
                send_times.push((now - start).as_millis());
            }
            let Some(next) = engine.poll_timeout() else {
                break;
            };
            now = next;
            engine.handle_timeout(now);
        }
        assert_eq!(send_times, [0, 500, 1500, 3500, 7500, 15500, 31500]);
        assert_eq!(engine.outcome(test), Some(&Outcome::TimedOut));
        assert_eq!(now - start, Duration::from_secs(40));
    }

    #[test]
    fn answer_ends_the_transaction_and_other_traffic_is_ignored() {
        let now = Instant::now();
        let mut engine = Engine::new(Duration::from_secs(3), 2);
        let test = engine.start(now, SocketId::Filtering, server(), true, false);
        let request = engine.poll_transmit().unwrap();
        assert_eq!(
            (request.socket, request.to),
            (SocketId::Filtering, server())
        );
        let decoded = stun::decode(&request.payload).unwrap();
        let tid = decoded.transaction_id();
        assert!(decoded.raw_value(stun::attr_type::CHANGE_REQUEST).is_some());

        let mapped: SocketAddr = "203.0.113.2:4000".parse().unwrap();
        let mut answer = stun::MessageBuilder::new(Class::Success, Method::BINDING, tid);
        answer.add(&stun::Attribute::XorMappedAddress(mapped));
        let answer = answer.finish();
        engine.handle_input(now, SocketId::Mapping, server(), &answer); // wrong socket
        engine.handle_input(now, SocketId::Filtering, server(), b"garbage");
        assert!(engine.outcome(test).is_none());
        let later = now + Duration::from_millis(20);
        engine.handle_input(later, SocketId::Filtering, server(), &answer);
        let got = engine.answer(test).unwrap();
        assert_eq!((got.mapped, got.rtt), (mapped, Duration::from_millis(20)));
        assert!(engine.poll_timeout().is_none(), "no open transaction left");
    }
}
