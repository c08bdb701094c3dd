//! Adaptive jitter buffer, sans-IO.
//!
//! The receive path calls [`JitterBuffer::push`] for every RTP packet and
//! [`JitterBuffer::pop`] whenever the audio device needs the next stretch of
//! audio (each [`Playout`] says how many RTP ticks it covers;
//! [`JitterBuffer::poll_timeout`] says when the next pop is due).
//!
//! Playout runs on an RTP-timestamp cursor. Its *delay* is how long after the
//! fastest possible arrival of a packet (the minimum transit seen in the recent
//! window) that packet is played. The *target* delay is the 95th percentile of
//! the recent transit spread plus a margin, clamped to `min_delay..=max_delay`.
//! The buffer grows its delay by holding the cursor when the next packet has not
//! arrived yet and the delay is below target, and shrinks it by shortening DTX
//! silences or, when far above target, dropping a frame.
//!
//! A gap whose cause is unknown (nothing buffered) is concealed for
//! `blind_conceal`, then filled with silence; once the next packet arrives the
//! gap is classified: consecutive sequence numbers mean DTX (the time counts as
//! silence), a sequence gap means loss (it counts as concealed).

use std::collections::{BTreeMap, VecDeque};
use std::time::{Duration, Instant};

mod transit;
use transit::TransitWindow;

/// Jitter buffer configuration; [`JitterConfig::new`] gives the defaults.
#[derive(Debug, Clone, PartialEq)]
pub struct JitterConfig {
    /// RTP clock rate in Hz (48 000 for Opus, 8 000 for G.711).
    pub clock_rate: u32,
    /// Lowest target delay. Default 20 ms.
    pub min_delay: Duration,
    /// Highest target delay. Default 200 ms.
    pub max_delay: Duration,
    /// Target delay before any jitter is measured. Default 40 ms.
    pub initial_delay: Duration,
    /// Added on top of the measured jitter spread. Default 10 ms.
    pub margin: Duration,
    /// Packet duration assumed until one is measured. Default 20 ms.
    pub frame: Duration,
    /// Packets kept at most; the oldest is dropped beyond it. Default 100.
    pub capacity: usize,
    /// Packets the jitter statistics look back over. Default 150 (3 s at 20 ms).
    pub window: usize,
    /// How long an unexplained gap is concealed before silence. Default 60 ms.
    pub blind_conceal: Duration,
    /// A timestamp this far from where the arrival time puts it restarts playout. Default 1 s.
    pub resync_after: Duration,
    /// Minimum time between two frames dropped to shrink the delay. Default 500 ms.
    pub shrink_interval: Duration,
}

impl JitterConfig {
    /// Defaults for an RTP clock of `clock_rate` Hz.
    pub fn new(clock_rate: u32) -> Self {
        Self {
            clock_rate,
            min_delay: Duration::from_millis(20),
            max_delay: Duration::from_millis(200),
            initial_delay: Duration::from_millis(40),
            margin: Duration::from_millis(10),
            frame: Duration::from_millis(20),
            capacity: 100,
            window: 150,
            blind_conceal: Duration::from_millis(60),
            resync_after: Duration::from_secs(1),
            shrink_interval: Duration::from_millis(500),
        }
    }
}

/// What to play next; each variant covers `ticks` of the RTP clock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Playout {
    /// Decode this packet.
    Frame {
        /// Its RTP sequence number.
        seq: u16,
        /// Its RTP timestamp.
        rtp_ts: u32,
        /// The RTP payload.
        payload: Vec<u8>,
        /// Its duration.
        ticks: u32,
    },
    /// The packet before `next_payload` was lost: rebuild it from that packet's
    /// in-band FEC (the packet itself is played next, as a `Frame`).
    FecRecover {
        /// The packet after the loss.
        next_payload: Vec<u8>,
        /// How much to rebuild.
        ticks: u32,
    },
    /// Nothing to play: conceal (packet loss concealment).
    Conceal {
        /// How much.
        ticks: u32,
    },
    /// The sender is silent (DTX) or playout has not started: play silence.
    ComfortSilence {
        /// How much.
        ticks: u32,
    },
}

impl Playout {
    /// The RTP ticks this playout covers.
    pub fn ticks(&self) -> u32 {
        match self {
            Playout::Frame { ticks, .. }
            | Playout::FecRecover { ticks, .. }
            | Playout::Conceal { ticks }
            | Playout::ComfortSilence { ticks } => *ticks,
        }
    }
}

/// Counters and current figures.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct JitterStats {
    /// Packets pushed.
    pub received: u64,
    /// Packets played as `Frame`.
    pub played: u64,
    /// Packets that arrived after their playout time (dropped).
    pub late: u64,
    /// Duplicate packets (dropped).
    pub duplicate: u64,
    /// Packets dropped because the buffer was full.
    pub overflow: u64,
    /// Packets whose slot was played out without them (lost, or later than the target delay).
    pub lost: u64,
    /// Playout restarts after a timestamp or sequence jump.
    pub resyncs: u64,
    /// Time played as concealment.
    pub concealed: Duration,
    /// Time rebuilt from in-band FEC.
    pub fec_recovered: Duration,
    /// Time played as comfort silence (DTX, start of playout).
    pub silence: Duration,
    /// Time dropped to shrink the delay (frames and shortened silences).
    pub shrunk: Duration,
    /// Time concealed while waiting for a missing packet to grow the delay
    /// (included in `concealed`).
    pub held: Duration,
    /// Current target delay.
    pub target_delay: Duration,
    /// Playout delay of the last frame played (above the fastest arrival).
    pub playout_delay: Duration,
    /// Mean playout delay over all frames played.
    pub mean_playout_delay: Duration,
    /// RFC 3550 interarrival jitter estimate.
    pub jitter: Duration,
}

/// The adaptive jitter buffer. See the module docs.
#[derive(Debug)]
pub struct JitterBuffer {
    config: JitterConfig,
    packets: BTreeMap<i64, Entry>,
    seen: Vec<i64>,
    epoch: Option<Instant>,
    newest: Option<Newest>,
    transit: TransitWindow,
    frame_ticks: i64,
    steps: VecDeque<i64>,
    play: Option<Cursor>,
    blind: Blind,
    /// Frames still to play before a recent loss is forgotten: while it is
    /// remembered the delay keeps room for one more frame (see `target_ticks`).
    loss_hold: usize,
    last_shrink: Option<Instant>,
    next_pop: Option<Instant>,
    delay_sum_ticks: i64,
    /// How far the current pop came after its scheduled time, in ticks.
    lateness_ticks: i64,
    jitter_ticks: f64,
    stats: JitterStats,
}

#[derive(Debug)]
struct Entry {
    seq: u16,
    ts: i64,
    payload: Vec<u8>,
}

#[derive(Debug, Clone, Copy)]
struct Newest {
    seq: i64,
    ts: i64,
    arrival: i64,
    transit: i64,
}

#[derive(Debug, Clone, Copy)]
struct Cursor {
    ts: i64,
    seq: i64,
}

/// The current unexplained gap.
#[derive(Debug, Default, Clone, Copy)]
struct Blind {
    concealed_ticks: i64,
    silence_ticks: i64,
}

/// What the cursor points at.
enum Slot {
    Present,
    DtxGap { until: i64 },
    Lost { seq: i64, ts: i64 },
    Unknown,
}

const SEEN: usize = 1024;
/// A driver more than this late with its pops starts a new schedule.
const MAX_CATCH_UP: Duration = Duration::from_millis(200);
const SEQ_JUMP: i64 = 3000;

impl JitterBuffer {
    /// A new, empty buffer.
    pub fn new(config: JitterConfig) -> Self {
        let frame_ticks = dur_to_ticks(config.frame, config.clock_rate).max(1);
        Self {
            config,
            packets: BTreeMap::new(),
            seen: vec![i64::MIN; SEEN],
            epoch: None,
            newest: None,
            transit: TransitWindow::default(),
            frame_ticks,
            steps: VecDeque::new(),
            play: None,
            blind: Blind::default(),
            loss_hold: 0,
            last_shrink: None,
            next_pop: None,
            delay_sum_ticks: 0,
            lateness_ticks: 0,
            jitter_ticks: 0.0,
            stats: JitterStats::default(),
        }
    }

    /// Takes in one RTP packet that arrived at `now`.
    pub fn push(&mut self, now: Instant, seq: u16, rtp_ts: u32, payload: Vec<u8>) {
        self.stats.received += 1;
        self.accept(now, seq, rtp_ts, payload);
    }

    fn accept(&mut self, now: Instant, seq: u16, rtp_ts: u32, payload: Vec<u8>) {
        let epoch = *self.epoch.get_or_insert(now);
        let arrival = dur_to_ticks(now.saturating_duration_since(epoch), self.config.clock_rate);
        let (ext_seq, ext_ts) = self.unwrap(seq, rtp_ts);
        if self.is_jump(ext_seq, ext_ts, arrival) {
            // After a resync nothing is known, so this cannot recurse again.
            self.resync();
            return self.accept(now, seq, rtp_ts, payload);
        }
        let slot = (ext_seq.rem_euclid(SEEN as i64)) as usize;
        if self.seen[slot] == ext_seq {
            self.stats.duplicate += 1;
            return;
        }
        self.seen[slot] = ext_seq;
        // Late packets still count towards the jitter estimate: that is how
        // the target delay learns it was too small.
        self.observe(ext_seq, ext_ts, arrival);
        if let Some(cursor) = self.play {
            if ext_seq < cursor.seq || ext_ts + self.frame_ticks / 2 <= cursor.ts {
                self.stats.late += 1;
                return;
            }
        }
        self.learn_frame(ext_seq, ext_ts);
        self.packets.insert(
            ext_seq,
            Entry {
                seq,
                ts: ext_ts,
                payload,
            },
        );
        self.classify_blind_gap();
        self.enforce_capacity();
    }

    /// The next stretch of audio to play at `now`.
    ///
    /// A pop a little after [`poll_timeout`](Self::poll_timeout) (a driver
    /// that wakes late, or coalesces this timer with another) is decided as
    /// at its scheduled time: measured at `now`, the buffered audio would look
    /// one lateness longer than it is, the buffer would drop a frame to
    /// shrink, and then conceal the gap that leaves.
    pub fn pop(&mut self, now: Instant) -> Playout {
        // Once playing, keep to the playout schedule, so a driver that wakes
        // up late pops again at once and catches up; after a long stall, or
        // before playout starts, the schedule starts at `now`.
        let scheduled = self.next_pop.filter(|due| {
            self.play.is_some() && now.saturating_duration_since(*due) < MAX_CATCH_UP
        });
        let at = scheduled.map_or(now, |due| due.min(now));
        self.lateness_ticks =
            dur_to_ticks(now.saturating_duration_since(at), self.config.clock_rate);
        let playout = self.next_playout(at);
        let step = ticks_to_dur(i64::from(playout.ticks()), self.config.clock_rate);
        self.next_pop = Some(scheduled.unwrap_or(now) + step);
        self.account(&playout);
        playout
    }

    /// When the next [`pop`](Self::pop) is due; `None` before the first packet.
    pub fn poll_timeout(&self) -> Option<Instant> {
        match (self.next_pop, self.epoch) {
            (Some(t), _) => Some(t),
            (None, Some(epoch)) => Some(epoch + self.target_delay()),
            (None, None) => None,
        }
    }

    /// Counters and current delay figures.
    pub fn stats(&self) -> JitterStats {
        let mut stats = self.stats.clone();
        stats.target_delay = self.target_delay();
        if stats.played > 0 {
            let mean = self.delay_sum_ticks / stats.played as i64;
            stats.mean_playout_delay = ticks_to_dur(mean, self.config.clock_rate);
        }
        stats.jitter = ticks_to_dur(self.jitter_ticks as i64, self.config.clock_rate);
        stats
    }

    /// Packets waiting.
    pub fn len(&self) -> usize {
        self.packets.len()
    }

    /// True when no packet is waiting.
    pub fn is_empty(&self) -> bool {
        self.packets.is_empty()
    }

    /// The delay playout aims for now.
    pub fn target_delay(&self) -> Duration {
        ticks_to_dur(self.target_ticks(), self.config.clock_rate)
    }

    fn target_ticks(&self) -> i64 {
        let clock = self.config.clock_rate;
        let min = dur_to_ticks(self.config.min_delay, clock);
        // A config with max_delay below min_delay gets min_delay (clamp would panic).
        let max = dur_to_ticks(self.config.max_delay, clock).max(min);
        if self.transit.len() < 2 {
            return dur_to_ticks(self.config.initial_delay, clock).clamp(min, max);
        }
        let spread = self.transit.spread();
        // After a loss, room for the next packet as well: it carries the
        // lost one's FEC, and arrives one frame after the lost one would have
        // (at the bare minimum delay it comes just as the gap is played).
        let min = match self.loss_hold > 0 {
            true => min
                .max(self.frame_ticks + dur_to_ticks(self.config.margin, clock))
                .min(max),
            false => min,
        };
        (spread + dur_to_ticks(self.config.margin, clock)).clamp(min, max)
    }

    fn min_transit(&self) -> i64 {
        self.transit.min()
    }

    /// Extends 16-bit sequence numbers and 32-bit timestamps across wraps.
    fn unwrap(&self, seq: u16, ts: u32) -> (i64, i64) {
        match self.newest {
            None => (i64::from(seq), i64::from(ts)),
            Some(n) => {
                let dseq = i64::from(seq.wrapping_sub(n.seq as u16) as i16);
                let dts = i64::from(ts.wrapping_sub(n.ts as u32) as i32);
                (n.seq + dseq, n.ts + dts)
            }
        }
    }

    fn is_jump(&self, ext_seq: i64, ext_ts: i64, arrival: i64) -> bool {
        let Some(n) = self.newest else { return false };
        let limit = dur_to_ticks(self.config.resync_after, self.config.clock_rate);
        let expected_ts = n.ts + (arrival - n.arrival);
        let ts_off = ext_ts - expected_ts;
        (ext_seq - n.seq).abs() > SEQ_JUMP || (ext_seq > n.seq && ts_off.abs() > limit)
    }

    fn resync(&mut self) {
        tracing::debug!("jitter buffer resync after a timestamp or sequence jump");
        self.stats.resyncs += 1;
        self.packets.clear();
        self.seen.fill(i64::MIN);
        self.newest = None;
        self.transit.clear();
        self.play = None;
        self.blind = Blind::default();
        self.epoch = None;
    }

    fn observe(&mut self, ext_seq: i64, ext_ts: i64, arrival: i64) {
        let transit = arrival - ext_ts;
        if let Some(n) = self.newest {
            let d = (transit - n.transit).abs() as f64;
            self.jitter_ticks += (d - self.jitter_ticks) / 16.0;
        }
        self.transit.push(transit, self.config.window.max(2));
        if self.newest.is_none_or(|n| ext_seq > n.seq) {
            self.newest = Some(Newest {
                seq: ext_seq,
                ts: ext_ts,
                arrival,
                transit,
            });
        }
    }

    /// Packet time = the smallest timestamp step between consecutive packets
    /// among the last few (DTX gaps are longer, so they never win).
    fn learn_frame(&mut self, ext_seq: i64, ext_ts: i64) {
        let max = dur_to_ticks(Duration::from_millis(120), self.config.clock_rate);
        let neighbours = [(ext_seq - 1, 1), (ext_seq + 1, -1)];
        for (seq, sign) in neighbours {
            if let Some(e) = self.packets.get(&seq) {
                let diff = (ext_ts - e.ts) * sign;
                if diff > 0 && diff <= max {
                    self.steps.push_back(diff);
                }
            }
        }
        while self.steps.len() > 8 {
            self.steps.pop_front();
        }
        if let Some(&min) = self.steps.iter().min() {
            self.frame_ticks = min;
        }
    }

    /// Drops the oldest packets beyond capacity; playout skips to what is kept
    /// (concealing the dropped stretch would only add more delay).
    fn enforce_capacity(&mut self) {
        let mut dropped = false;
        while self.packets.len() > self.config.capacity.max(1) {
            self.packets.pop_first();
            self.stats.overflow += 1;
            dropped = true;
        }
        let first = self.packets.first_key_value().map(|(&seq, e)| (seq, e.ts));
        if let (true, Some(cursor), Some((seq, ts))) = (dropped, self.play.as_mut(), first) {
            cursor.seq = seq;
            cursor.ts = ts;
        }
    }

    /// A packet arrived: settle how the unexplained gap before it is counted.
    fn classify_blind_gap(&mut self) {
        let (Some(cursor), Some((&first, _))) = (self.play, self.packets.first_key_value()) else {
            return;
        };
        if self.blind.concealed_ticks == 0 && self.blind.silence_ticks == 0 {
            return;
        }
        // The gap held `first - cursor.seq` lost packets (none: DTX or a late
        // packet); that much of it counts as concealment, the rest as silence.
        let clock = self.config.clock_rate;
        let total = self.blind.concealed_ticks + self.blind.silence_ticks;
        let lost_ticks = (first - cursor.seq).max(0) * self.frame_ticks;
        // Lost packets whose slots the gap covered are counted here, and the
        // cursor moves past them so that they are not counted again.
        let lost = (first - cursor.seq).clamp(0, total / self.frame_ticks);
        if lost > 0 {
            self.stats.lost += lost as u64;
            self.loss_hold = self.config.window;
            if let Some(c) = self.play.as_mut() {
                c.seq += lost;
            }
        }
        let should_conceal = total.min(lost_ticks);
        let counted = self.blind.concealed_ticks;
        if should_conceal >= counted {
            let moved = ticks_to_dur(should_conceal - counted, clock);
            self.stats.silence = self.stats.silence.saturating_sub(moved);
            self.stats.concealed += moved;
        } else {
            let moved = ticks_to_dur(counted - should_conceal, clock);
            self.stats.concealed = self.stats.concealed.saturating_sub(moved);
            self.stats.silence += moved;
        }
        self.blind = Blind::default();
    }

    fn slot(&self, cursor: Cursor) -> Slot {
        let Some((&seq, e)) = self.packets.first_key_value() else {
            return Slot::Unknown;
        };
        let half = self.frame_ticks / 2;
        if e.ts <= cursor.ts + half {
            Slot::Present
        } else if seq == cursor.seq {
            Slot::DtxGap { until: e.ts }
        } else {
            Slot::Lost { seq, ts: e.ts }
        }
    }

    fn now_ticks(&self, now: Instant) -> i64 {
        let epoch = self.epoch.unwrap_or(now);
        dur_to_ticks(now.saturating_duration_since(epoch), self.config.clock_rate)
    }

    /// Playout delay of the cursor position at `now`, in ticks.
    fn delay_of(&self, now: Instant, ts: i64) -> i64 {
        self.now_ticks(now) - (ts + self.min_transit())
    }

    fn next_playout(&mut self, now: Instant) -> Playout {
        let frame = self.frame_ticks;
        let Some(cursor) = self.play.or_else(|| self.try_start(now)) else {
            return Playout::ComfortSilence {
                ticks: tick32(frame),
            };
        };
        self.play = Some(cursor);
        match self.slot(cursor) {
            Slot::Present => self.play_present(now),
            Slot::DtxGap { until } => self.play_dtx(now, cursor, until),
            Slot::Lost { .. } if self.delay_of(now, cursor.ts) < self.target_ticks() => {
                // Below target the missing packet may still come (reordering): wait for it.
                self.stats.held += ticks_to_dur(self.frame_ticks, self.config.clock_rate);
                Playout::Conceal {
                    ticks: tick32(self.frame_ticks),
                }
            }
            Slot::Lost { seq, ts } => self.play_lost(cursor, seq, ts),
            Slot::Unknown => self.play_unknown(now, cursor),
        }
    }

    fn try_start(&self, now: Instant) -> Option<Cursor> {
        let (&seq, e) = self.packets.first_key_value()?;
        (self.delay_of(now, e.ts) >= self.target_ticks()).then_some(Cursor { ts: e.ts, seq })
    }

    fn play_present(&mut self, now: Instant) -> Playout {
        // Only called when slot() saw a first packet, and nothing removed it since.
        let (ext_seq, entry) = self
            .packets
            .pop_first()
            .expect("slot() returned Present, so a packet is buffered");
        let duration = self.frame_ticks;
        let delay = self.delay_of(now, entry.ts);
        self.play = Some(Cursor {
            ts: entry.ts + duration,
            seq: ext_seq + 1,
        });
        self.blind = Blind::default();
        if self.should_drop_frame(now, delay) {
            self.stats.shrunk += ticks_to_dur(duration, self.config.clock_rate);
            self.last_shrink = Some(now);
            return self.next_playout(now);
        }
        // What the listener gets includes how late this pop came.
        let heard_delay = delay.max(0) + self.lateness_ticks;
        self.delay_sum_ticks += heard_delay;
        self.stats.playout_delay = ticks_to_dur(heard_delay, self.config.clock_rate);
        Playout::Frame {
            seq: entry.seq,
            rtp_ts: entry.ts as u32,
            payload: entry.payload,
            ticks: tick32(duration),
        }
    }

    /// Far above target with more audio queued: drop this frame (rate limited).
    fn should_drop_frame(&self, now: Instant, delay: i64) -> bool {
        let rested = self
            .last_shrink
            .is_none_or(|t| now.saturating_duration_since(t) >= self.config.shrink_interval);
        rested && !self.packets.is_empty() && delay > self.target_ticks() + self.frame_ticks
    }

    fn play_dtx(&mut self, now: Instant, cursor: Cursor, until: i64) -> Playout {
        let frame = self.frame_ticks;
        let delay = self.delay_of(now, cursor.ts);
        let ticks = frame.min(until - cursor.ts);
        let mut advance = ticks;
        if delay > self.target_ticks() + frame {
            // Shorten the silence: skip an extra frame of it.
            let skip = frame.min(until - cursor.ts - ticks).max(0);
            advance += skip;
            self.stats.shrunk += ticks_to_dur(skip, self.config.clock_rate);
        }
        self.play = Some(Cursor {
            ts: cursor.ts + advance,
            seq: cursor.seq,
        });
        Playout::ComfortSilence {
            ticks: tick32(ticks),
        }
    }

    fn play_lost(&mut self, cursor: Cursor, seq: i64, ts: i64) -> Playout {
        let frame = self.frame_ticks;
        let gap = ts - cursor.ts;
        self.blind = Blind::default();
        self.loss_hold = self.config.window;
        if gap <= frame + frame / 2 {
            self.stats.lost += (seq - cursor.seq).max(1) as u64;
            self.play = Some(Cursor { ts, seq });
            let payload = self
                .packets
                .get(&seq)
                .map(|e| e.payload.clone())
                .unwrap_or_default();
            return Playout::FecRecover {
                next_payload: payload,
                ticks: tick32(gap),
            };
        }
        let next_seq = if seq - cursor.seq > 1 {
            self.stats.lost += 1;
            cursor.seq + 1
        } else {
            cursor.seq
        };
        self.play = Some(Cursor {
            ts: cursor.ts + frame,
            seq: next_seq,
        });
        Playout::Conceal {
            ticks: tick32(frame),
        }
    }

    fn play_unknown(&mut self, now: Instant, cursor: Cursor) -> Playout {
        let frame = self.frame_ticks;
        if self.delay_of(now, cursor.ts) >= self.target_ticks() {
            self.play = Some(Cursor {
                ts: cursor.ts + frame,
                seq: cursor.seq,
            });
        }
        let blind_limit = dur_to_ticks(self.config.blind_conceal, self.config.clock_rate);
        if self.blind.concealed_ticks < blind_limit {
            self.blind.concealed_ticks += frame;
            Playout::Conceal {
                ticks: tick32(frame),
            }
        } else {
            self.blind.silence_ticks += frame;
            Playout::ComfortSilence {
                ticks: tick32(frame),
            }
        }
    }

    fn account(&mut self, playout: &Playout) {
        let d = ticks_to_dur(i64::from(playout.ticks()), self.config.clock_rate);
        match playout {
            Playout::Frame { .. } => {
                self.stats.played += 1;
                self.loss_hold = self.loss_hold.saturating_sub(1);
            }
            Playout::FecRecover { .. } => self.stats.fec_recovered += d,
            Playout::Conceal { .. } => self.stats.concealed += d,
            Playout::ComfortSilence { .. } => self.stats.silence += d,
        }
    }
}

fn dur_to_ticks(d: Duration, clock: u32) -> i64 {
    (d.as_nanos() * u128::from(clock) / 1_000_000_000) as i64
}

fn ticks_to_dur(ticks: i64, clock: u32) -> Duration {
    let nanos = (ticks.max(0) as u128) * 1_000_000_000 / u128::from(clock.max(1));
    Duration::from_nanos(nanos as u64)
}

fn tick32(ticks: i64) -> u32 {
    ticks.clamp(0, i64::from(u32::MAX)) as u32
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(t0: Instant, ms: u64) -> Instant {
        t0 + Duration::from_millis(ms)
    }

    #[test]
    fn poll_timeout_follows_the_first_packet_and_each_pop() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(8_000));
        assert_eq!(jb.poll_timeout(), None);
        jb.push(t0, 1, 160, vec![1]);
        assert_eq!(jb.poll_timeout(), Some(at(t0, 40)));
        let first = jb.pop(at(t0, 40));
        assert!(
            matches!(
                first,
                Playout::Frame {
                    seq: 1,
                    ticks: 160,
                    ..
                }
            ),
            "{first:?}"
        );
        assert_eq!(jb.poll_timeout(), Some(at(t0, 60)));
    }

    #[test]
    fn an_inverted_delay_range_does_not_panic() {
        let config = JitterConfig {
            min_delay: Duration::from_millis(80),
            max_delay: Duration::from_millis(10),
            ..JitterConfig::new(48_000)
        };
        let jb = JitterBuffer::new(config);
        assert_eq!(jb.target_delay(), Duration::from_millis(80));
    }

    #[test]
    fn a_late_driver_catches_up() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        for i in 0..10u16 {
            jb.push(at(t0, 20 * u64::from(i)), i, u32::from(i) * 960, vec![]);
        }
        assert!(matches!(jb.pop(at(t0, 40)), Playout::Frame { seq: 0, .. }));
        // The driver sleeps 50 ms instead of 20: two pops are due at once.
        let now = at(t0, 90);
        let mut popped = 0;
        while jb.poll_timeout().is_some_and(|t| t <= now) {
            jb.pop(now);
            popped += 1;
        }
        assert_eq!(
            popped, 2,
            "the pops due at 60 and 80 ms; the one at 100 is not yet"
        );
        assert_eq!(jb.poll_timeout(), Some(at(t0, 100)));
    }

    #[test]
    fn pops_a_little_late_every_time_neither_shrink_nor_conceal() {
        // Packets every 20 ms with a steady 5 ms transit; the driver pops
        // 1–19 ms after each scheduled time (timers coalesced onto another
        // 20 ms clock). Decided at the scheduled times, every frame plays.
        for late_ms in [1, 10, 19] {
            let t0 = Instant::now();
            let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
            let mut frames = 0;
            for i in 0..250u64 {
                let arrival = at(t0, 20 * i + 5);
                jb.push(arrival, i as u16, (i * 960) as u32, vec![1]);
                let next = at(t0, 20 * (i + 1) + 5);
                while let Some(due) = jb
                    .poll_timeout()
                    .filter(|d| *d + Duration::from_millis(late_ms) < next)
                {
                    if matches!(
                        jb.pop(due + Duration::from_millis(late_ms)),
                        Playout::Frame { .. }
                    ) {
                        frames += 1;
                    }
                }
            }
            let stats = jb.stats();
            assert_eq!(stats.shrunk, Duration::ZERO, "{late_ms} ms late: shrunk");
            assert_eq!(
                stats.concealed,
                Duration::ZERO,
                "{late_ms} ms late: concealed"
            );
            assert!(frames >= 245, "{late_ms} ms late: {frames} frames played");
            // The lateness is part of the delay the listener gets.
            assert!(
                stats.mean_playout_delay >= Duration::from_millis(late_ms),
                "{stats:?}"
            );
        }
    }

    #[test]
    fn silence_before_start_is_not_concealment() {
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        jb.push(t0, 7, 0, vec![]);
        assert_eq!(jb.pop(at(t0, 5)), Playout::ComfortSilence { ticks: 960 });
        assert_eq!(jb.stats().concealed, Duration::ZERO);
        assert!(matches!(jb.pop(at(t0, 45)), Playout::Frame { seq: 7, .. }));
    }

    #[test]
    fn overflow_keeps_the_newest_packets() {
        let t0 = Instant::now();
        let config = JitterConfig {
            capacity: 5,
            ..JitterConfig::new(48_000)
        };
        let mut jb = JitterBuffer::new(config);
        for i in 0..10u16 {
            jb.push(at(t0, u64::from(i)), i, u32::from(i) * 960, vec![]);
        }
        assert_eq!(jb.len(), 5);
        assert_eq!(jb.stats().overflow, 5);
        // Packets 0–4 are gone; playout starts at 5 (or 6, if it drops one to cut the delay).
        let first = jb.pop(at(t0, 400));
        assert!(
            matches!(first, Playout::Frame { seq: 5 | 6, .. }),
            "{first:?}"
        );
    }

    #[test]
    fn hostile_input_never_panics_and_always_yields_audio() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(99);
        let t0 = Instant::now();
        let mut jb = JitterBuffer::new(JitterConfig::new(48_000));
        for step in 0..5_000u64 {
            let now = at(t0, step * 5);
            if rng.gen_bool(0.7) {
                jb.push(now, rng.gen(), rng.gen(), vec![0; rng.gen_range(0..4)]);
            }
            if step % 4 == 0 {
                let ticks = jb.pop(now).ticks();
                assert!(ticks > 0 && ticks <= 48_000 * 120 / 1000, "ticks {ticks}");
            }
        }
        assert!(jb.len() <= 100);
    }
}
