//! Userspace link impairment: loss, burst loss, delay, jitter and reordering.
//!
//! This kernel has no netem, so the lab impairs links with a TUN router: policy routing in
//! the core namespace sends one link's packets (per direction) into a TUN device, a thread
//! reads them, runs them through an [`Impairer`] and writes the survivors back into the same
//! TUN at their due time, from where the kernel forwards them on. Packets are never parsed
//! or rewritten, so every protocol (UDP, TCP, ICMP, STUN, RTP, ...) sees real behaviour and
//! the NAT routers behind the link are untouched.
//!
//! [`Impairer`] is the sans-IO core: time is passed in and randomness is seeded, so it is
//! unit-tested deterministically; `link.rs` is the thin driver around a TUN device.

mod link;
mod sys;

use std::cmp::Reverse;
use std::collections::BinaryHeap;
use std::time::{Duration, Instant};

use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub use link::{ImpairedLink, LinkStats};

/// Packets held at once per direction; more are dropped (counted as `overflow`).
const QUEUE_LIMIT: usize = 10_000;

/// What one direction of a link does to packets. The default does nothing.
#[derive(Debug, Clone, Copy, PartialEq, Default)]
#[non_exhaustive]
pub struct Impairment {
    /// Probability (0..=1) that a packet is lost independently of the others.
    pub loss: f64,
    /// Optional bursty loss (Gilbert–Elliott), applied in addition to `loss`.
    pub burst: Option<BurstLoss>,
    /// Fixed one-way delay added to every packet.
    pub delay: Duration,
    /// Each packet's delay varies uniformly in `delay ± jitter` (never below zero); packets
    /// leave in due-time order, so jitter larger than the packet spacing reorders them.
    pub jitter: Duration,
    /// Probability (0..=1) that a packet skips the delay and overtakes those queued
    /// (netem's `reorder` semantics; needs `delay > 0` to have an effect).
    pub reorder: f64,
}

/// Two-state bursty loss: in the "bad" state every packet is lost.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BurstLoss {
    /// Per-packet probability of going from good to bad.
    pub enter_bad: f64,
    /// Per-packet probability of going from bad back to good; mean burst = 1 / leave_bad.
    pub leave_bad: f64,
}

impl Impairment {
    /// No impairment.
    pub fn none() -> Self {
        Self::default()
    }

    /// Independent random loss with probability `loss`.
    pub fn with_loss(self, loss: f64) -> Self {
        Self { loss, ..self }
    }

    /// Bursty loss: bursts start with probability `enter_bad` per packet and last
    /// `mean_burst` packets on average.
    pub fn with_burst_loss(self, enter_bad: f64, mean_burst: f64) -> Self {
        let leave_bad = if mean_burst > 0.0 {
            1.0 / mean_burst
        } else {
            1.0
        };
        Self {
            burst: Some(BurstLoss {
                enter_bad,
                leave_bad,
            }),
            ..self
        }
    }

    /// Fixed delay plus uniform jitter of ± `jitter`.
    pub fn with_delay(self, delay: Duration, jitter: Duration) -> Self {
        Self {
            delay,
            jitter,
            ..self
        }
    }

    /// netem-style reordering: a fraction `reorder` of packets skips the delay.
    pub fn with_reorder(self, reorder: f64) -> Self {
        Self { reorder, ..self }
    }

    /// Checks that probabilities are within 0..=1; the message names the bad field.
    pub fn validate(&self) -> Result<(), String> {
        let mut checks = vec![("loss", self.loss), ("reorder", self.reorder)];
        if let Some(burst) = self.burst {
            checks.extend([
                ("burst enter_bad", burst.enter_bad),
                ("burst leave_bad", burst.leave_bad),
            ]);
        }
        for (name, p) in checks {
            if !(0.0..=1.0).contains(&p) {
                return Err(format!(
                    "impairment {name} = {p} is not a probability in 0..=1"
                ));
            }
        }
        Ok(())
    }
}

/// Counters of one direction.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct ImpairStats {
    /// Packets that entered.
    pub received: u64,
    /// Packets lost on purpose (random or burst loss).
    pub dropped: u64,
    /// Packets dropped because the queue was full.
    pub overflow: u64,
    /// Packets handed back for forwarding.
    pub sent: u64,
}

/// The sans-IO impairment core for one direction of a link.
#[derive(Debug)]
pub struct Impairer {
    rng: StdRng,
    in_burst: bool,
    next_seq: u64,
    queue: BinaryHeap<Reverse<Queued>>,
    stats: ImpairStats,
}

#[derive(Debug, PartialEq, Eq, PartialOrd, Ord)]
struct Queued {
    due: Instant,
    seq: u64,
    packet: Vec<u8>,
}

impl Impairer {
    /// A new impairer whose random choices are determined by `seed`.
    pub fn new(seed: u64) -> Self {
        Self {
            rng: StdRng::seed_from_u64(seed),
            in_burst: false,
            next_seq: 0,
            queue: BinaryHeap::new(),
            stats: ImpairStats::default(),
        }
    }

    /// Takes one packet arriving at `now` and decides its fate under `config`.
    pub fn handle_packet(&mut self, now: Instant, config: &Impairment, packet: Vec<u8>) {
        self.stats.received += 1;
        if self.is_lost(config) {
            self.stats.dropped += 1;
            return;
        }
        if self.queue.len() >= QUEUE_LIMIT {
            self.stats.overflow += 1;
            return;
        }
        let due = now + self.delay_for(config);
        let seq = self.next_seq;
        self.next_seq += 1;
        self.queue.push(Reverse(Queued { due, seq, packet }));
    }

    /// The next packet due at or before `now`, if any.
    pub fn poll_transmit(&mut self, now: Instant) -> Option<Vec<u8>> {
        if self
            .queue
            .peek()
            .is_some_and(|Reverse(head)| head.due <= now)
        {
            let Reverse(head) = self.queue.pop()?;
            self.stats.sent += 1;
            return Some(head.packet);
        }
        None
    }

    /// When the next queued packet is due.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.queue.peek().map(|Reverse(head)| head.due)
    }

    /// Counters so far.
    pub fn stats(&self) -> ImpairStats {
        self.stats
    }

    fn is_lost(&mut self, config: &Impairment) -> bool {
        if let Some(burst) = config.burst {
            let flip = if self.in_burst {
                burst.leave_bad
            } else {
                burst.enter_bad
            };
            if self.rng.gen_bool(flip) {
                self.in_burst = !self.in_burst;
            }
            if self.in_burst {
                return true;
            }
        }
        config.loss > 0.0 && self.rng.gen_bool(config.loss)
    }

    fn delay_for(&mut self, config: &Impairment) -> Duration {
        if config.reorder > 0.0 && self.rng.gen_bool(config.reorder) {
            return Duration::ZERO;
        }
        if config.jitter.is_zero() {
            return config.delay;
        }
        let jitter = config.jitter.as_secs_f64();
        let offset = self.rng.gen_range(-jitter..=jitter);
        Duration::from_secs_f64((config.delay.as_secs_f64() + offset).max(0.0))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn drain(impairer: &mut Impairer, now: Instant) -> Vec<Vec<u8>> {
        std::iter::from_fn(|| impairer.poll_transmit(now)).collect()
    }

    #[test]
    fn no_impairment_passes_everything_at_once_in_order() {
        let now = Instant::now();
        let mut impairer = Impairer::new(1);
        for i in 0..100u8 {
            impairer.handle_packet(now, &Impairment::none(), vec![i]);
        }
        let out = drain(&mut impairer, now);
        assert_eq!(out, (0..100u8).map(|i| vec![i]).collect::<Vec<_>>());
        assert_eq!(impairer.stats().sent, 100);
        assert_eq!(impairer.poll_timeout(), None);
    }

    #[test]
    fn random_loss_matches_its_probability() {
        let now = Instant::now();
        let mut impairer = Impairer::new(7);
        let config = Impairment::none().with_loss(0.2);
        for _ in 0..20_000 {
            impairer.handle_packet(now, &config, vec![0]);
        }
        let lost = impairer.stats().dropped as f64 / 20_000.0;
        assert!((lost - 0.2).abs() < 0.015, "lost {lost}");
    }

    #[test]
    fn burst_loss_comes_in_runs_of_the_configured_mean() {
        let now = Instant::now();
        let mut impairer = Impairer::new(3);
        let config = Impairment::none().with_burst_loss(0.02, 4.0);
        let mut pattern = Vec::new();
        for i in 0..50_000u32 {
            impairer.handle_packet(now, &config, i.to_be_bytes().to_vec());
            let passed = impairer.poll_transmit(now).is_some();
            pattern.push(passed);
        }
        let runs: Vec<usize> = pattern
            .split(|passed| *passed)
            .map(<[bool]>::len)
            .filter(|len| *len > 0)
            .collect();
        let mean = runs.iter().sum::<usize>() as f64 / runs.len() as f64;
        assert!((mean - 4.0).abs() < 0.4, "mean burst {mean}");
        // Stationary loss = p / (p + r) = 0.02 / 0.27 ≈ 7.4 %.
        let lost = impairer.stats().dropped as f64 / 50_000.0;
        assert!((lost - 0.074).abs() < 0.01, "lost {lost}");
    }

    #[test]
    fn delay_holds_packets_until_due() {
        let now = Instant::now();
        let mut impairer = Impairer::new(1);
        let config = Impairment::none().with_delay(Duration::from_millis(50), Duration::ZERO);
        impairer.handle_packet(now, &config, vec![1]);
        assert_eq!(
            impairer.poll_transmit(now + Duration::from_millis(49)),
            None
        );
        assert_eq!(
            impairer.poll_timeout(),
            Some(now + Duration::from_millis(50))
        );
        assert_eq!(
            impairer.poll_transmit(now + Duration::from_millis(50)),
            Some(vec![1])
        );
    }

    #[test]
    fn jitter_stays_within_bounds_and_reorders() {
        let start = Instant::now();
        let mut impairer = Impairer::new(11);
        let config =
            Impairment::none().with_delay(Duration::from_millis(40), Duration::from_millis(20));
        for i in 0..1000u32 {
            impairer.handle_packet(
                start + Duration::from_millis(u64::from(i)),
                &config,
                i.to_be_bytes().to_vec(),
            );
        }
        let mut order = Vec::new();
        let mut last_due = start;
        while let Some(due) = impairer.poll_timeout() {
            assert!(due >= last_due);
            last_due = due;
            let packet = impairer.poll_transmit(due).unwrap();
            let sent_at = u32::from_be_bytes(packet.try_into().unwrap());
            let delay = due - (start + Duration::from_millis(u64::from(sent_at)));
            assert!(
                delay >= Duration::from_millis(20) && delay <= Duration::from_millis(60),
                "{delay:?}"
            );
            order.push(sent_at);
        }
        assert_eq!(order.len(), 1000);
        let inversions = order.windows(2).filter(|pair| pair[0] > pair[1]).count();
        assert!(inversions > 100, "only {inversions} reorderings");
    }

    #[test]
    fn reorder_lets_packets_overtake_the_delayed_ones() {
        let now = Instant::now();
        let mut impairer = Impairer::new(5);
        let config = Impairment::none()
            .with_delay(Duration::from_millis(30), Duration::ZERO)
            .with_reorder(0.25);
        for i in 0..400u32 {
            impairer.handle_packet(now, &config, i.to_be_bytes().to_vec());
        }
        let immediate = drain(&mut impairer, now).len();
        assert!(
            (70..=130).contains(&immediate),
            "{immediate} of 400 skipped the delay"
        );
        assert_eq!(
            drain(&mut impairer, now + Duration::from_millis(30)).len(),
            400 - immediate
        );
    }

    #[test]
    fn same_seed_same_fate() {
        let now = Instant::now();
        let config = Impairment::none()
            .with_loss(0.3)
            .with_delay(Duration::from_millis(10), Duration::from_millis(5));
        let run = |seed| {
            let mut impairer = Impairer::new(seed);
            for i in 0..200u32 {
                impairer.handle_packet(now, &config, i.to_be_bytes().to_vec());
            }
            drain(&mut impairer, now + Duration::from_secs(1))
        };
        assert_eq!(run(42), run(42));
        assert_ne!(run(42), run(43));
    }

    #[test]
    fn validation_names_the_bad_field() {
        assert!(Impairment::none().with_loss(0.5).validate().is_ok());
        let err = Impairment::none().with_loss(1.5).validate().unwrap_err();
        assert!(err.contains("loss"), "{err}");
        let err = Impairment::none()
            .with_reorder(-0.1)
            .validate()
            .unwrap_err();
        assert!(err.contains("reorder"), "{err}");
    }
}
