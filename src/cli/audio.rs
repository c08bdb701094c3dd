//! Live sound card audio for `natter phone` (`--audio`, `--audio-in`,
//! `--audio-out`) and `natter audio-devices`. The devices need the `audio`
//! cargo feature; without it these flags say how to get it.

#[cfg(not(feature = "audio"))]
use anyhow::bail;
use natter_phone::audio::{SampleQueue, SpeakerFeed};

/// Sound card flags of `natter phone`.
#[derive(Debug, Clone, clap::Args)]
pub struct LiveAudioArgs {
    /// Talk and listen through the sound card: the default microphone (unless
    /// --play gives one) and the default speaker. Needs a build with `--features audio`.
    #[arg(long)]
    audio: bool,
    /// Microphone device by name (see `natter audio-devices`) [default with --audio: the system's].
    #[arg(long, value_name = "NAME")]
    audio_in: Option<String>,
    /// Speaker device by name (see `natter audio-devices`) [default with --audio: the system's].
    #[arg(long, value_name = "NAME")]
    audio_out: Option<String>,
}

impl LiveAudioArgs {
    fn wanted(&self) -> bool {
        self.audio || self.audio_in.is_some() || self.audio_out.is_some()
    }
}

/// Open sound card streams: keep this alive for the whole call.
pub struct Live {
    #[cfg(feature = "audio")]
    _devices: natter_phone::audio::device::LiveAudio,
    /// Captured audio for the phone's encoder, when the microphone is live.
    pub mic: Option<SampleQueue>,
    /// Heard audio on its way to the speaker, when it is live.
    pub speaker: Option<SpeakerFeed>,
}

/// Opens what the flags ask for (nothing when none is given). With
/// `mic_from_file` (`--play`) the microphone stays the file.
#[cfg(feature = "audio")]
pub fn open(
    args: &LiveAudioArgs,
    mic_from_file: bool,
    mic_rate: u32,
) -> anyhow::Result<Option<Live>> {
    use natter_phone::audio::device::{DeviceChoice, LiveAudio};
    if !args.wanted() {
        return Ok(None);
    }
    // A named device, else the default one with --audio, else none.
    let choice = |name: &Option<String>| match (name, args.audio) {
        (Some(n), _) => DeviceChoice::Named(n.clone()),
        (None, true) => DeviceChoice::Default,
        (None, false) => DeviceChoice::Off,
    };
    let input = match mic_from_file {
        true => DeviceChoice::Off,
        false => choice(&args.audio_in),
    };
    let devices = LiveAudio::open(&input, &choice(&args.audio_out), mic_rate)
        .map_err(|e| anyhow::anyhow!("{e}"))?;
    for d in &devices.described {
        eprintln!("natter phone: {d}");
    }
    Ok(Some(Live {
        mic: devices.mic.clone(),
        speaker: devices.speaker.clone().map(SpeakerFeed::new),
        _devices: devices,
    }))
}

#[cfg(not(feature = "audio"))]
pub fn open(
    args: &LiveAudioArgs,
    _mic_from_file: bool,
    _mic_rate: u32,
) -> anyhow::Result<Option<Live>> {
    if args.wanted() {
        bail!("{NO_FEATURE}");
    }
    Ok(None)
}

#[cfg(not(feature = "audio"))]
const NO_FEATURE: &str = "this natter was built without live audio (--audio, --audio-in, \
    --audio-out, audio-devices): rebuild with `cargo build --release --features audio` \
    (on Debian, `apt-get install libasound2-dev` first), or use --play/--record files";

/// `natter audio-devices`: the sound card devices --audio-in/--audio-out take.
pub fn list() -> anyhow::Result<std::process::ExitCode> {
    #[cfg(feature = "audio")]
    {
        let (inputs, outputs) =
            natter_phone::audio::device::list().map_err(|e| anyhow::anyhow!("{e}"))?;
        for (title, devices) in [
            ("microphones (--audio-in)", inputs),
            ("speakers (--audio-out)", outputs),
        ] {
            println!("{title}:");
            if devices.is_empty() {
                println!("  (none)");
            }
            for (name, description) in devices {
                println!("  {name:<24} {}", description.lines().next().unwrap_or(""));
            }
        }
        Ok(std::process::ExitCode::SUCCESS)
    }
    #[cfg(not(feature = "audio"))]
    bail!("{NO_FEATURE}")
}
