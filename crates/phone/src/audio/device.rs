//! Sound card streams (cpal; ALSA on Linux): the card's capture callback
//! feeds a microphone [`SampleQueue`], its playback callback drains a speaker
//! one. Built with the `audio` cargo feature.

use cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use cpal::{
    BufferSize, Device, FromSample, SampleFormat, SizedSample, Stream, StreamConfig,
    SupportedStreamConfig,
};

use super::{downmix, upmix, SampleQueue};
use crate::PhoneError;
use natter_media::resample::Resampler;

/// Which device to use in one direction.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DeviceChoice {
    /// None: the direction is not live.
    Off,
    /// The system's default device.
    Default,
    /// The device with this name (as [`list`] prints it).
    Named(String),
}

/// Most audio a queue holds: enough for a card's period and some jitter,
/// short enough that clock drift never adds audible delay.
const QUEUE_MS: u32 = 120;
/// The card period asked for (10 ms); the card's default when refused.
const PERIOD_MS: u32 = 10;

/// The capture and playback devices there are: `(name, description)`, where
/// the name (ALSA's PCM name, e.g. `default`, `hw:0,0`) is what
/// [`DeviceChoice::Named`] takes.
#[allow(clippy::type_complexity)]
pub fn list() -> Result<(Vec<(String, String)>, Vec<(String, String)>), PhoneError> {
    let host = cpal::default_host();
    let names = |devices: Result<Vec<Device>, cpal::Error>| {
        Ok::<_, PhoneError>(
            devices
                .map_err(card)?
                .iter()
                .map(|d| (name(d), d.to_string()))
                .collect(),
        )
    };
    Ok((
        names(host.input_devices().map(|d| d.collect()))?,
        names(host.output_devices().map(|d| d.collect()))?,
    ))
}

/// Open sound card streams for a call. Dropping it closes them.
pub struct LiveAudio {
    _capture: Option<Stream>,
    _playback: Option<Stream>,
    /// Captured audio, mono at the rate asked for; `None` when input is off.
    pub mic: Option<SampleQueue>,
    /// Audio to play, mono at the card's rate; `None` when output is off.
    pub speaker: Option<SampleQueue>,
    /// What was opened, for the user: e.g. `"default (48000 Hz, 2 ch, f32)"`.
    pub described: Vec<String>,
}

impl LiveAudio {
    /// Opens capture (delivering mono at `mic_rate` Hz) and playback.
    pub fn open(
        input: &DeviceChoice,
        output: &DeviceChoice,
        mic_rate: u32,
    ) -> Result<Self, PhoneError> {
        let host = cpal::default_host();
        let mut described = Vec::new();
        let (capture, mic) = match find(&host, input, Direction::Capture)? {
            Some(device) => {
                let cfg = device.default_input_config().map_err(card)?;
                described.push(format!("microphone {}", describe(&device, &cfg)));
                let queue = SampleQueue::new(mic_rate, QUEUE_MS);
                let stream = capture(&device, &cfg, queue.clone())?;
                (Some(stream), Some(queue))
            }
            None => (None, None),
        };
        let (playback, speaker) = match find(&host, output, Direction::Playback)? {
            Some(device) => {
                let cfg = device.default_output_config().map_err(card)?;
                described.push(format!("speaker {}", describe(&device, &cfg)));
                let queue = SampleQueue::new(cfg.sample_rate(), QUEUE_MS);
                let stream = playback(&device, &cfg, queue.clone())?;
                (Some(stream), Some(queue))
            }
            None => (None, None),
        };
        Ok(LiveAudio {
            _capture: capture,
            _playback: playback,
            mic,
            speaker,
            described,
        })
    }
}

#[derive(Clone, Copy)]
enum Direction {
    Capture,
    Playback,
}

fn find(
    host: &cpal::Host,
    choice: &DeviceChoice,
    dir: Direction,
) -> Result<Option<Device>, PhoneError> {
    let (what, default) = match dir {
        Direction::Capture => ("capture", host.default_input_device()),
        Direction::Playback => ("playback", host.default_output_device()),
    };
    match choice {
        DeviceChoice::Off => Ok(None),
        DeviceChoice::Default => default.map(Some).ok_or_else(|| {
            PhoneError::SoundCard(format!(
                "no default {what} device; pick one by name (natter phone --list-audio)"
            ))
        }),
        DeviceChoice::Named(wanted) => {
            let devices: Vec<Device> = match dir {
                Direction::Capture => host.input_devices().map_err(card)?.collect(),
                Direction::Playback => host.output_devices().map_err(card)?.collect(),
            };
            let names: Vec<String> = devices.iter().map(name).collect();
            match devices.into_iter().find(|d| name(d) == *wanted) {
                Some(d) => Ok(Some(d)),
                None => Err(PhoneError::SoundCard(format!(
                    "no {what} device named {wanted:?}; there are: {}",
                    names.join(", ")
                ))),
            }
        }
    }
}

/// The device's name on its host (e.g. `null`, `hw:0,0`); its description
/// when it has no id.
fn name(device: &Device) -> String {
    device
        .id()
        .map(|id| id.id().to_string())
        .unwrap_or_else(|_| device.to_string())
}

fn describe(device: &Device, cfg: &SupportedStreamConfig) -> String {
    format!(
        "{} ({} Hz, {} ch, {})",
        name(device),
        cfg.sample_rate(),
        cfg.channels(),
        cfg.sample_format()
    )
}

fn card(e: impl std::fmt::Display) -> PhoneError {
    PhoneError::SoundCard(e.to_string())
}

/// The stream config: the card's default with a 10 ms period asked for.
fn config(cfg: &SupportedStreamConfig, fixed: bool) -> StreamConfig {
    let mut c = cfg.config();
    if fixed {
        c.buffer_size = BufferSize::Fixed(cfg.sample_rate() * PERIOD_MS / 1000);
    }
    c
}

/// Builds a stream with the 10 ms period, or the card's own when refused.
fn with_period(
    cfg: &SupportedStreamConfig,
    build: impl Fn(StreamConfig) -> Result<Stream, cpal::Error>,
) -> Result<Stream, PhoneError> {
    let stream = build(config(cfg, true))
        .or_else(|_| build(config(cfg, false)))
        .map_err(card)?;
    stream.play().map_err(card)?;
    Ok(stream)
}

fn capture(
    device: &Device,
    cfg: &SupportedStreamConfig,
    queue: SampleQueue,
) -> Result<Stream, PhoneError> {
    let channels = usize::from(cfg.channels());
    let rate = cfg.sample_rate();
    match cfg.sample_format() {
        SampleFormat::I16 => capture_as::<i16>(device, cfg, channels, rate, queue),
        SampleFormat::I32 => capture_as::<i32>(device, cfg, channels, rate, queue),
        SampleFormat::F32 => capture_as::<f32>(device, cfg, channels, rate, queue),
        SampleFormat::U8 => capture_as::<u8>(device, cfg, channels, rate, queue),
        other => Err(unsupported(other)),
    }
}

fn capture_as<T>(
    device: &Device,
    cfg: &SupportedStreamConfig,
    channels: usize,
    rate: u32,
    queue: SampleQueue,
) -> Result<Stream, PhoneError>
where
    T: SizedSample,
    i16: FromSample<T>,
{
    with_period(cfg, |c| {
        let queue = queue.clone();
        let mut resampler = Resampler::new(rate, queue.rate());
        let (mut pcm, mut mono, mut out) = (Vec::new(), Vec::new(), Vec::new());
        device.build_input_stream::<T, _, _>(
            c,
            move |data: &[T], _| {
                pcm.clear();
                pcm.extend(data.iter().map(|&s| s.to_sample::<i16>()));
                mono.clear();
                downmix(&pcm, channels, &mut mono);
                out.clear();
                resampler.process(&mono, &mut out);
                queue.push(&out);
            },
            |e| tracing::warn!(error = %e, "microphone stream error"),
            None,
        )
    })
}

fn playback(
    device: &Device,
    cfg: &SupportedStreamConfig,
    queue: SampleQueue,
) -> Result<Stream, PhoneError> {
    let channels = usize::from(cfg.channels());
    match cfg.sample_format() {
        SampleFormat::I16 => playback_as::<i16>(device, cfg, channels, queue),
        SampleFormat::I32 => playback_as::<i32>(device, cfg, channels, queue),
        SampleFormat::F32 => playback_as::<f32>(device, cfg, channels, queue),
        SampleFormat::U8 => playback_as::<u8>(device, cfg, channels, queue),
        other => Err(unsupported(other)),
    }
}

fn playback_as<T>(
    device: &Device,
    cfg: &SupportedStreamConfig,
    channels: usize,
    queue: SampleQueue,
) -> Result<Stream, PhoneError>
where
    T: SizedSample + FromSample<i16>,
{
    with_period(cfg, |c| {
        let queue = queue.clone();
        let (mut mono, mut pcm) = (Vec::new(), Vec::new());
        device.build_output_stream::<T, _, _>(
            c,
            move |data: &mut [T], _| {
                let frames = data.len() / channels.max(1);
                mono.resize(frames, 0);
                queue.pop_into(&mut mono);
                pcm.resize(data.len(), 0);
                upmix(&mono, channels, &mut pcm);
                for (d, &s) in data.iter_mut().zip(&pcm) {
                    *d = T::from_sample(s);
                }
            },
            |e| tracing::warn!(error = %e, "speaker stream error"),
            None,
        )
    })
}

fn unsupported(format: SampleFormat) -> PhoneError {
    PhoneError::SoundCard(format!(
        "the device's default sample format {format} is not supported (i16, i32, f32 and u8 are)"
    ))
}
