//! A deterministic simulated network and playout clock for jitter-buffer
//! scenarios: a sender emits one packet per frame, each packet gets a seeded
//! delay (or is lost / duplicated), and the receiver pops once per frame.

use std::time::{Duration, Instant};

use natter_media::jitter::{JitterBuffer, JitterConfig, JitterStats, Playout};
use rand::rngs::StdRng;
use rand::{Rng, SeedableRng};

pub const FRAME_TICKS: u32 = 960;
pub const FRAME: Duration = Duration::from_millis(20);

/// One packet as sent.
#[derive(Debug, Clone)]
pub struct Sent {
    pub seq: u16,
    pub ts: u32,
    pub at: Duration,
}

/// A stream of `count` packets, 20 ms apart, from the given first seq/ts.
pub fn stream(count: usize, first_seq: u16, first_ts: u32) -> Vec<Sent> {
    (0..count)
        .map(|i| Sent {
            seq: first_seq.wrapping_add(i as u16),
            ts: first_ts.wrapping_add(i as u32 * FRAME_TICKS),
            at: FRAME * i as u32,
        })
        .collect()
}

/// Network behaviour.
#[derive(Debug, Clone)]
pub struct Net {
    pub base: Duration,
    /// Extra delay uniformly drawn from 0..=jitter.
    pub jitter: Duration,
    /// Independent loss probability.
    pub loss: f64,
    /// Burst loss: probability a burst starts, and its length in packets.
    pub burst_start: f64,
    pub burst_len: usize,
    pub duplicate: bool,
    pub seed: u64,
}

impl Default for Net {
    fn default() -> Self {
        Self {
            base: Duration::from_millis(30),
            jitter: Duration::ZERO,
            loss: 0.0,
            burst_start: 0.0,
            burst_len: 0,
            duplicate: false,
            seed: 7,
        }
    }
}

/// What the receiver saw.
#[derive(Debug)]
pub struct Run {
    pub playouts: Vec<Playout>,
    pub stats: JitterStats,
    pub lost_on_wire: usize,
}

impl Run {
    pub fn frame_seqs(&self) -> Vec<u16> {
        self.playouts
            .iter()
            .filter_map(|p| match p {
                Playout::Frame { seq, .. } => Some(*seq),
                _ => None,
            })
            .collect()
    }

    pub fn count(&self, f: impl Fn(&Playout) -> bool) -> usize {
        self.playouts.iter().filter(|p| f(p)).count()
    }
}

/// Sends `packets` through `net` and pops every 20 ms for `duration`.
pub fn run(packets: &[Sent], net: &Net, config: JitterConfig, duration: Duration) -> Run {
    let mut rng = StdRng::seed_from_u64(net.seed);
    let mut arrivals: Vec<(Duration, u16, u32)> = Vec::new();
    let mut burst_left = 0usize;
    let mut lost_on_wire = 0;
    for p in packets {
        if burst_left == 0 && net.burst_start > 0.0 && rng.gen_bool(net.burst_start) {
            burst_left = net.burst_len;
        }
        let lost = if burst_left > 0 {
            burst_left -= 1;
            true
        } else {
            net.loss > 0.0 && rng.gen_bool(net.loss)
        };
        if lost {
            lost_on_wire += 1;
            continue;
        }
        let copies = if net.duplicate { 2 } else { 1 };
        for _ in 0..copies {
            let extra = rng.gen_range(0..=net.jitter.as_micros() as u64);
            arrivals.push((p.at + net.base + Duration::from_micros(extra), p.seq, p.ts));
        }
    }
    arrivals.sort_by_key(|a| a.0);
    drive(&arrivals, config, duration, lost_on_wire)
}

/// Feeds timed arrivals and pops every 20 ms (pops start 3 ms after the first arrival).
pub fn drive(
    arrivals: &[(Duration, u16, u32)],
    config: JitterConfig,
    duration: Duration,
    lost_on_wire: usize,
) -> Run {
    let t0 = Instant::now();
    let mut jb = JitterBuffer::new(config);
    let mut playouts = Vec::new();
    let mut next = arrivals.first().map_or(Duration::ZERO, |a| a.0) + Duration::from_millis(3);
    let mut i = 0;
    while next <= duration {
        while i < arrivals.len() && arrivals[i].0 <= next {
            let (at, seq, ts) = arrivals[i];
            jb.push(t0 + at, seq, ts, vec![seq as u8, (seq >> 8) as u8]);
            i += 1;
        }
        playouts.push(jb.pop(t0 + next));
        if std::env::var_os("JB_TRACE_ALL").is_some() && playouts.len() % 25 == 0 {
            let st = jb.stats();
            eprintln!(
                "t={:?} len={} target={:?} delay={:?} shrunk={:?}",
                next,
                jb.len(),
                st.target_delay,
                st.playout_delay,
                st.shrunk
            );
        }
        next += FRAME;
    }
    let stats = jb.stats();
    if std::env::var_os("JB_TRACE").is_some() {
        eprintln!("lost on wire {lost_on_wire}: {stats:?}");
    }
    Run {
        playouts,
        stats,
        lost_on_wire,
    }
}

/// Jitter config for Opus's 48 kHz clock.
pub fn opus_config() -> JitterConfig {
    JitterConfig::new(48_000)
}

pub fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}
