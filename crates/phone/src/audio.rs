//! Live audio between a sound card and a call.
//!
//! The sound card runs on its own clock and thread; the call's encoder and
//! decoder run on the phone's. A [`SampleQueue`] sits between them in each
//! direction: the card's callback pushes captured samples (already mono at
//! the call's rate) and the encoder takes a frame every packet time; the
//! decoder's output is pushed and the card's playback callback takes it.
//! Each queue holds at most a bounded time: when one clock runs faster than
//! the other, the oldest samples are dropped (counted) instead of letting the
//! delay grow without end, and a queue that runs dry yields silence.
//!
//! The devices themselves (cpal, ALSA on Linux) are behind the `audio` cargo
//! feature: [`device`]. Everything here is plain and always built.

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, PoisonError};

use natter_media::resample::Resampler;
pub use natter_media::wav::downmix;

#[cfg(feature = "audio")]
pub mod device;

/// A bounded FIFO of mono 16-bit samples shared between two threads.
#[derive(Clone)]
pub struct SampleQueue {
    inner: Arc<Mutex<Inner>>,
    rate: u32,
    cap: usize,
}

struct Inner {
    samples: VecDeque<i16>,
    dropped: u64,
    underrun: u64,
}

impl SampleQueue {
    /// A queue of audio at `rate` Hz holding at most `max_ms` of it.
    pub fn new(rate: u32, max_ms: u32) -> Self {
        let cap = (u64::from(rate) * u64::from(max_ms) / 1000).max(1) as usize;
        SampleQueue {
            inner: Arc::new(Mutex::new(Inner {
                samples: VecDeque::with_capacity(cap),
                dropped: 0,
                underrun: 0,
            })),
            rate,
            cap,
        }
    }

    /// The sample rate of what the queue carries.
    pub fn rate(&self) -> u32 {
        self.rate
    }

    /// Appends `samples`; beyond the bound the oldest are dropped.
    pub fn push(&self, samples: &[i16]) {
        let mut q = self.lock();
        q.samples.extend(samples);
        let over = q.samples.len().saturating_sub(self.cap);
        if over > 0 {
            q.samples.drain(..over);
            q.dropped += over as u64;
        }
    }

    /// Fills `out` from the front of the queue, silence for what is missing.
    /// Returns how many samples were real.
    pub fn pop_into(&self, out: &mut [i16]) -> usize {
        let mut q = self.lock();
        let n = out.len().min(q.samples.len());
        for (o, s) in out.iter_mut().zip(q.samples.drain(..n)) {
            *o = s;
        }
        out[n..].fill(0);
        if n < out.len() {
            q.underrun += (out.len() - n) as u64;
        }
        n
    }

    /// Takes up to `max` samples from the front.
    pub fn pop_up_to(&self, max: usize, out: &mut Vec<i16>) {
        let mut q = self.lock();
        let n = max.min(q.samples.len());
        out.extend(q.samples.drain(..n));
    }

    /// Samples waiting.
    pub fn len(&self) -> usize {
        self.lock().samples.len()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Samples dropped because the queue was full (the producer's clock runs fast).
    pub fn dropped(&self) -> u64 {
        self.lock().dropped
    }

    /// Samples replaced by silence because the queue was empty.
    pub fn underrun(&self) -> u64 {
        self.lock().underrun
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Inner> {
        // A panic while holding the lock cannot leave the queue inconsistent
        // (every operation is a plain VecDeque call): keep using it.
        self.inner.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// A live microphone as the encoder sees it: frames at the codec's rate,
/// taken from a [`SampleQueue`] at its own rate.
pub struct LiveMic {
    queue: SampleQueue,
    resampler: Option<Resampler>,
    staged: Vec<i16>,
    scratch: Vec<i16>,
}

impl LiveMic {
    /// Frames at `rate` Hz from `queue` (resampled if the rates differ).
    pub fn new(queue: SampleQueue, rate: u32) -> Self {
        let resampler = (queue.rate() != rate).then(|| Resampler::new(queue.rate(), rate));
        LiveMic {
            queue,
            resampler,
            staged: Vec::new(),
            scratch: Vec::new(),
        }
    }

    /// Fills `frame` with the next samples; silence where the card has not
    /// delivered yet.
    pub fn fill(&mut self, frame: &mut [i16]) {
        let Some(r) = self.resampler.as_mut() else {
            self.queue.pop_into(frame);
            return;
        };
        if self.staged.len() < frame.len() {
            self.scratch.clear();
            self.queue.pop_up_to(usize::MAX, &mut self.scratch);
            r.process(&self.scratch, &mut self.staged);
        }
        let n = frame.len().min(self.staged.len());
        frame[..n].copy_from_slice(&self.staged[..n]);
        frame[n..].fill(0);
        self.staged.drain(..n);
    }
}

/// What a call's encoder reads: a clip (`--play`) or a live microphone.
pub enum MicInput {
    /// Sent from the start of the call; silence after it ends.
    Clip {
        samples: Vec<i16>,
        pos: usize,
    },
    Live(LiveMic),
}

impl MicInput {
    /// The next frame of microphone samples.
    pub fn fill(&mut self, frame: &mut [i16]) {
        match self {
            MicInput::Clip { samples, pos } => {
                let start = (*pos).min(samples.len());
                let end = (*pos + frame.len()).min(samples.len());
                frame[..end - start].copy_from_slice(&samples[start..end]);
                frame[end - start..].fill(0);
                *pos += frame.len();
            }
            MicInput::Live(mic) => mic.fill(frame),
        }
    }

    /// True once a clip has been sent whole; a live microphone never is.
    pub fn done(&self) -> bool {
        match self {
            MicInput::Clip { samples, pos } => *pos >= samples.len(),
            MicInput::Live(_) => false,
        }
    }
}

impl From<Vec<i16>> for MicInput {
    fn from(samples: Vec<i16>) -> Self {
        MicInput::Clip { samples, pos: 0 }
    }
}

/// Copies mono samples to every channel of interleaved frames.
pub fn upmix(mono: &[i16], channels: usize, out: &mut [i16]) {
    let channels = channels.max(1);
    for (frame, &s) in out.chunks_exact_mut(channels).zip(mono) {
        frame.fill(s);
    }
}

/// What the call plays goes to a speaker queue at the card's rate.
pub struct SpeakerFeed {
    queue: SampleQueue,
    resampler: Option<(u32, Resampler)>,
    scratch: Vec<i16>,
}

impl SpeakerFeed {
    pub fn new(queue: SampleQueue) -> Self {
        SpeakerFeed {
            queue,
            resampler: None,
            scratch: Vec::new(),
        }
    }

    /// Queues heard audio at `rate` Hz for the card.
    pub fn play(&mut self, rate: u32, samples: &[i16]) {
        if rate == self.queue.rate() {
            self.queue.push(samples);
            return;
        }
        if self.resampler.as_ref().is_none_or(|(r, _)| *r != rate) {
            self.resampler = Some((rate, Resampler::new(rate, self.queue.rate())));
        }
        if let Some((_, r)) = self.resampler.as_mut() {
            self.scratch.clear();
            r.process(samples, &mut self.scratch);
            self.queue.push(&self.scratch);
        }
    }

    pub fn queue(&self) -> &SampleQueue {
        &self.queue
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn queue_is_bounded_and_counts_what_it_drops() {
        let q = SampleQueue::new(16_000, 10); // 160 samples
        q.push(&[1; 100]);
        q.push(&[2; 100]);
        assert_eq!(q.len(), 160);
        assert_eq!(q.dropped(), 40);
        let mut out = [9i16; 200];
        assert_eq!(q.pop_into(&mut out), 160);
        // The oldest went: 60 ones remain before the twos.
        assert_eq!(&out[..60], &[1; 60][..]);
        assert_eq!(&out[60..160], &[2; 100][..]);
        assert_eq!(&out[160..], &[0; 40][..], "silence where nothing came");
        assert_eq!(q.underrun(), 40);
    }

    #[test]
    fn queue_is_shared_across_threads() {
        let q = SampleQueue::new(8_000, 1000);
        let producer = q.clone();
        std::thread::spawn(move || {
            for i in 0..10 {
                producer.push(&[i; 80]);
            }
        })
        .join()
        .expect("producer thread");
        let mut out = [0i16; 800];
        assert_eq!(q.pop_into(&mut out), 800);
        assert_eq!(out[799], 9);
    }

    #[test]
    fn live_mic_at_the_queue_rate_passes_samples_through() {
        let q = SampleQueue::new(16_000, 200);
        let mut mic = LiveMic::new(q.clone(), 16_000);
        let ramp: Vec<i16> = (0..320).collect();
        q.push(&ramp);
        let mut frame = [0i16; 320];
        mic.fill(&mut frame);
        assert_eq!(&frame[..], &ramp[..]);
    }

    #[test]
    fn live_mic_resamples_for_a_narrowband_codec() {
        // 16 kHz card audio for an 8 kHz codec (PCMU): after the resampler's
        // short lag every frame is full and carries the tone.
        let q = SampleQueue::new(16_000, 1000);
        let mut mic = LiveMic::new(q.clone(), 8_000);
        let tone: Vec<i16> = (0..16_000)
            .map(|i| {
                (8000.0 * (2.0 * std::f64::consts::PI * 440.0 * i as f64 / 16_000.0).sin()) as i16
            })
            .collect();
        let mut frame = [0i16; 160];
        let mut energy = Vec::new();
        for chunk in tone.chunks(320) {
            q.push(chunk);
            mic.fill(&mut frame);
            energy.push(frame.iter().map(|&s| f64::from(s).powi(2)).sum::<f64>() / 160.0);
        }
        // RMS of an 8000-peak sine is about 5657; every frame after the first.
        for (i, e) in energy.iter().enumerate().skip(1) {
            assert!(
                (e.sqrt() - 5657.0).abs() < 400.0,
                "frame {i}: rms {}",
                e.sqrt()
            );
        }
    }

    #[test]
    fn a_clip_is_sent_then_silence() {
        let mut mic = MicInput::from(vec![5i16; 300]);
        let mut frame = [9i16; 160];
        mic.fill(&mut frame);
        assert_eq!(frame, [5; 160]);
        assert!(!mic.done());
        mic.fill(&mut frame);
        assert_eq!(&frame[..140], &[5; 140][..]);
        assert_eq!(&frame[140..], &[0; 20][..]);
        assert!(mic.done());
        mic.fill(&mut frame);
        assert_eq!(frame, [0; 160]);
    }

    #[test]
    fn downmix_averages_and_upmix_copies() {
        let mut mono = Vec::new();
        downmix(&[100, 300, -50, -150, 7], 2, &mut mono); // the odd tail is ignored
        assert_eq!(mono, vec![200, -100]);
        let mut stereo = [0i16; 4];
        upmix(&mono, 2, &mut stereo);
        assert_eq!(stereo, [200, 200, -100, -100]);
    }

    #[test]
    fn speaker_feed_resamples_to_the_card_rate() {
        let q = SampleQueue::new(48_000, 1000);
        let mut feed = SpeakerFeed::new(q.clone());
        for _ in 0..50 {
            feed.play(16_000, &[1000; 320]); // 20 ms frames for one second
        }
        // One second at 48 kHz, less the resampler's lag.
        let n = q.len();
        assert!((47_800..=48_000).contains(&n), "{n} samples queued");
    }
}
