//! WAV input (16-bit PCM, mono or stereo, 8/16/32/44.1/48 kHz; downmixed to
//! mono and resampled to the codec rate) and incremental 16-bit mono output
//! whose header is rewritten on every flush, so a recording is a valid file
//! while the call is still running.

use std::fs::File;
use std::io::{BufWriter, Read, Seek, SeekFrom, Write};
use std::path::Path;

use crate::resample::resample;
use crate::MediaError;

/// Sample rates accepted on input.
pub const SUPPORTED_RATES: [u32; 5] = [8_000, 16_000, 32_000, 44_100, 48_000];

/// Mono 16-bit audio.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Audio {
    /// Sample rate in Hz.
    pub rate: u32,
    /// Samples.
    pub samples: Vec<i16>,
}

impl Audio {
    /// Length in seconds.
    pub fn seconds(&self) -> f64 {
        self.samples.len() as f64 / f64::from(self.rate.max(1))
    }

    /// The same audio at `rate` Hz.
    pub fn resampled(&self, rate: u32) -> Audio {
        Audio {
            rate,
            samples: resample(&self.samples, self.rate, rate),
        }
    }
}

/// Mixes interleaved frames of `channels` samples down to mono (their mean),
/// appending to `out`; a partial frame at the end is ignored.
pub fn downmix(interleaved: &[i16], channels: usize, out: &mut Vec<i16>) {
    let channels = channels.max(1);
    out.extend(interleaved.chunks_exact(channels).map(|f| {
        let sum: i32 = f.iter().map(|&s| i32::from(s)).sum();
        (sum / channels as i32) as i16
    }));
}

/// Reads a WAV file as mono audio at its own rate.
pub fn read_wav(path: impl AsRef<Path>) -> Result<Audio, MediaError> {
    let path = path.as_ref();
    let file = File::open(path).map_err(|source| MediaError::Open {
        path: path.to_path_buf(),
        source,
    })?;
    read_wav_from(std::io::BufReader::new(file))
}

/// Reads a WAV file as mono audio resampled to `rate` Hz.
pub fn read_wav_at(path: impl AsRef<Path>, rate: u32) -> Result<Audio, MediaError> {
    Ok(read_wav(path)?.resampled(rate))
}

/// Reads WAV data from any reader.
pub fn read_wav_from(mut reader: impl Read) -> Result<Audio, MediaError> {
    let mut bytes = Vec::new();
    reader.read_to_end(&mut bytes)?;
    let mut wav = match hound::WavReader::new(std::io::Cursor::new(&bytes)) {
        Ok(wav) => wav,
        Err(e) => {
            return Err(match sniff_format(&bytes) {
                Some(found) => MediaError::UnsupportedWav { found },
                None => MediaError::NotWav(e.to_string()),
            })
        }
    };
    let spec = wav.spec();
    let supported = spec.sample_format == hound::SampleFormat::Int
        && spec.bits_per_sample == 16
        && (spec.channels == 1 || spec.channels == 2)
        && SUPPORTED_RATES.contains(&spec.sample_rate);
    if !supported {
        return Err(MediaError::UnsupportedWav {
            found: describe(&spec),
        });
    }
    let interleaved = wav
        .samples::<i16>()
        .collect::<Result<Vec<i16>, _>>()
        .map_err(|e| MediaError::NotWav(format!("truncated or corrupt sample data: {e}")))?;
    let samples = if spec.channels == 2 {
        let mut mono = Vec::with_capacity(interleaved.len() / 2);
        downmix(&interleaved, 2, &mut mono);
        mono
    } else {
        interleaved
    };
    Ok(Audio {
        rate: spec.sample_rate,
        samples,
    })
}

fn describe(spec: &hound::WavSpec) -> String {
    let kind = match spec.sample_format {
        hound::SampleFormat::Float => "float",
        hound::SampleFormat::Int => "integer PCM",
    };
    let channels = match spec.channels {
        1 => "mono".to_string(),
        2 => "stereo".to_string(),
        n => format!("{n} channels"),
    };
    format!(
        "{}-bit {kind}, {channels}, {} Hz",
        spec.bits_per_sample, spec.sample_rate
    )
}

/// Describes the `fmt ` chunk of a RIFF/WAVE file hound refused (A-law,
/// 64-bit float, ADPCM, …); `None` when there is no such chunk.
fn sniff_format(bytes: &[u8]) -> Option<String> {
    if bytes.get(0..4)? != b"RIFF" || bytes.get(8..12)? != b"WAVE" {
        return None;
    }
    let mut at = 12usize;
    while at + 8 <= bytes.len() {
        let id = &bytes[at..at + 4];
        let size = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().ok()?) as usize;
        if id == b"fmt " {
            let fmt = bytes.get(at + 8..at + 8 + size.min(16))?;
            let tag = u16::from_le_bytes(fmt.get(0..2)?.try_into().ok()?);
            let channels = u16::from_le_bytes(fmt.get(2..4)?.try_into().ok()?);
            let rate = u32::from_le_bytes(fmt.get(4..8)?.try_into().ok()?);
            let bits = u16::from_le_bytes(fmt.get(14..16)?.try_into().ok()?);
            let kind = match tag {
                1 => "integer PCM".to_string(),
                3 => "float".to_string(),
                6 => "A-law".to_string(),
                7 => "µ-law".to_string(),
                0x11 => "IMA ADPCM".to_string(),
                0xfffe => "extensible".to_string(),
                other => format!("format tag {other:#06x}"),
            };
            let channels = match channels {
                1 => "mono".to_string(),
                2 => "stereo".to_string(),
                n => format!("{n} channels"),
            };
            return Some(format!("{bits}-bit {kind}, {channels}, {rate} Hz"));
        }
        at = at.checked_add(8 + size + (size & 1))?;
    }
    None
}

/// Header size of a canonical PCM WAV file.
const HEADER: u32 = 44;

/// Writes 16-bit mono WAV incrementally; every [`flush`](Self::flush) (and,
/// automatically, every 200 ms of audio) leaves a complete, playable file.
pub struct WavWriter<W: Write + Seek> {
    inner: W,
    rate: u32,
    data_bytes: u32,
    unflushed: usize,
}

impl WavWriter<BufWriter<File>> {
    /// Creates (truncates) `path` for a recording at `rate` Hz.
    pub fn create(path: impl AsRef<Path>, rate: u32) -> Result<Self, MediaError> {
        let path = path.as_ref();
        let file = File::create(path).map_err(|source| MediaError::Open {
            path: path.to_path_buf(),
            source,
        })?;
        WavWriter::new(BufWriter::new(file), rate)
    }
}

impl<W: Write + Seek> WavWriter<W> {
    /// Starts a WAV stream at `rate` Hz on `inner`.
    pub fn new(mut inner: W, rate: u32) -> Result<Self, MediaError> {
        inner.write_all(&header(rate, 0))?;
        inner.flush()?;
        Ok(Self {
            inner,
            rate,
            data_bytes: 0,
            unflushed: 0,
        })
    }

    /// Appends samples; flushes by itself every 200 ms of audio.
    pub fn write(&mut self, samples: &[i16]) -> Result<(), MediaError> {
        let bytes = u32::try_from(samples.len() * 2).ok();
        let total = bytes.and_then(|b| self.data_bytes.checked_add(b));
        let Some(total) = total.filter(|t| *t <= u32::MAX - HEADER) else {
            return Err(MediaError::InvalidSetting(
                "WAV recording reached the 4 GiB format limit: start a new file".into(),
            ));
        };
        let mut buf = Vec::with_capacity(samples.len() * 2);
        for s in samples {
            buf.extend_from_slice(&s.to_le_bytes());
        }
        self.inner.write_all(&buf)?;
        self.data_bytes = total;
        self.unflushed += samples.len();
        if self.unflushed >= self.rate as usize / 5 {
            self.flush()?;
        }
        Ok(())
    }

    /// Rewrites the header sizes and flushes: the file is complete as it stands.
    pub fn flush(&mut self) -> Result<(), MediaError> {
        let end = self.inner.stream_position()?;
        self.inner.seek(SeekFrom::Start(4))?;
        self.inner
            .write_all(&(36 + self.data_bytes).to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(40))?;
        self.inner.write_all(&self.data_bytes.to_le_bytes())?;
        self.inner.seek(SeekFrom::Start(end))?;
        self.inner.flush()?;
        self.unflushed = 0;
        Ok(())
    }

    /// Samples written so far.
    pub fn len(&self) -> usize {
        self.data_bytes as usize / 2
    }

    /// True before any sample is written.
    pub fn is_empty(&self) -> bool {
        self.data_bytes == 0
    }

    /// Flushes and returns the inner writer. (Dropping the writer without it
    /// loses at most the last 200 ms: the file stays valid.)
    pub fn finish(mut self) -> Result<W, MediaError> {
        self.flush()?;
        Ok(self.inner)
    }
}

fn header(rate: u32, data_bytes: u32) -> [u8; HEADER as usize] {
    let mut h = [0u8; HEADER as usize];
    h[0..4].copy_from_slice(b"RIFF");
    h[4..8].copy_from_slice(&(36 + data_bytes).to_le_bytes());
    h[8..16].copy_from_slice(b"WAVEfmt ");
    h[16..20].copy_from_slice(&16u32.to_le_bytes());
    h[20..22].copy_from_slice(&1u16.to_le_bytes()); // PCM
    h[22..24].copy_from_slice(&1u16.to_le_bytes()); // mono
    h[24..28].copy_from_slice(&rate.to_le_bytes());
    h[28..32].copy_from_slice(&(rate * 2).to_le_bytes());
    h[32..34].copy_from_slice(&2u16.to_le_bytes());
    h[34..36].copy_from_slice(&16u16.to_le_bytes());
    h[36..40].copy_from_slice(b"data");
    h[40..44].copy_from_slice(&data_bytes.to_le_bytes());
    h
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::io::Cursor;

    fn wav_bytes(spec: hound::WavSpec, frames: usize) -> Vec<u8> {
        let mut cursor = Cursor::new(Vec::new());
        let mut w = hound::WavWriter::new(&mut cursor, spec).unwrap();
        for i in 0..frames * usize::from(spec.channels) {
            match spec.sample_format {
                hound::SampleFormat::Int if spec.bits_per_sample == 16 => {
                    w.write_sample((i as i16).wrapping_mul(7)).unwrap()
                }
                hound::SampleFormat::Int => w.write_sample(i as i32).unwrap(),
                hound::SampleFormat::Float => w.write_sample(0.1f32).unwrap(),
            }
        }
        w.finalize().unwrap();
        cursor.into_inner()
    }

    fn spec(channels: u16, rate: u32, bits: u16, format: hound::SampleFormat) -> hound::WavSpec {
        hound::WavSpec {
            channels,
            sample_rate: rate,
            bits_per_sample: bits,
            sample_format: format,
        }
    }

    #[test]
    fn reads_every_supported_rate_and_downmixes() {
        for rate in SUPPORTED_RATES {
            let bytes = wav_bytes(spec(2, rate, 16, hound::SampleFormat::Int), 100);
            let audio = read_wav_from(Cursor::new(bytes)).unwrap();
            assert_eq!(audio.rate, rate);
            assert_eq!(audio.samples.len(), 100);
            // frame i holds samples 2i and 2i+1 (×7): the mean is 14i + 3 (integer division).
            assert_eq!(audio.samples[10], ((140 * 2 + 7) / 2) as i16);
        }
    }

    #[test]
    fn unsupported_formats_are_named() {
        let cases = [
            (
                spec(1, 22_050, 16, hound::SampleFormat::Int),
                "16-bit integer PCM, mono, 22050 Hz",
            ),
            (
                spec(2, 48_000, 32, hound::SampleFormat::Float),
                "32-bit float, stereo, 48000 Hz",
            ),
            (
                spec(1, 16_000, 24, hound::SampleFormat::Int),
                "24-bit integer PCM, mono, 16000 Hz",
            ),
            (
                spec(3, 16_000, 16, hound::SampleFormat::Int),
                "16-bit integer PCM, 3 channels, 16000 Hz",
            ),
        ];
        for (spec, found) in cases {
            let err = read_wav_from(Cursor::new(wav_bytes(spec, 10))).unwrap_err();
            let text = err.to_string();
            assert!(text.contains(found), "{text}");
            assert!(text.contains("supported: 16-bit integer PCM"), "{text}");
        }
        let err = read_wav_from(Cursor::new(b"not a wav file at all".to_vec())).unwrap_err();
        assert!(matches!(err, MediaError::NotWav(_)), "{err}");
        let err = read_wav("/nonexistent/natter.wav").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/natter.wav"), "{err}");
    }

    #[test]
    fn formats_hound_refuses_are_still_named() {
        // A-law, 8-bit, mono, 8 kHz: hound cannot read it; the message must say what it is.
        let mut alaw = canonical_header(6, 1, 8_000, 8);
        alaw.extend_from_slice(&[0xd5; 4]);
        let err = read_wav_from(Cursor::new(alaw)).unwrap_err();
        assert!(
            err.to_string().contains("8-bit A-law, mono, 8000 Hz"),
            "{err}"
        );
        let float64 = canonical_header(3, 2, 48_000, 64);
        let err = read_wav_from(Cursor::new(float64)).unwrap_err();
        assert!(
            err.to_string().contains("64-bit float, stereo, 48000 Hz"),
            "{err}"
        );
    }

    #[test]
    fn mangled_files_give_errors_not_panics() {
        use rand::{Rng, SeedableRng};
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let good = wav_bytes(spec(2, 16_000, 16, hound::SampleFormat::Int), 200);
        for _ in 0..2_000 {
            let mut bytes = good.clone();
            match rng.gen_range(0..3) {
                0 => bytes.truncate(rng.gen_range(0..good.len())),
                1 => {
                    for _ in 0..rng.gen_range(1..6) {
                        let i = rng.gen_range(0..60.min(bytes.len()));
                        bytes[i] = rng.gen();
                    }
                }
                _ => bytes = (0..rng.gen_range(0..100)).map(|_| rng.gen()).collect(),
            }
            if let Ok(audio) = read_wav_from(Cursor::new(bytes)) {
                assert!(SUPPORTED_RATES.contains(&audio.rate));
            }
        }
    }

    fn canonical_header(tag: u16, channels: u16, rate: u32, bits: u16) -> Vec<u8> {
        let mut h = header(rate, 0).to_vec();
        h[20..22].copy_from_slice(&tag.to_le_bytes());
        h[22..24].copy_from_slice(&channels.to_le_bytes());
        h[34..36].copy_from_slice(&bits.to_le_bytes());
        h
    }

    #[test]
    fn writer_output_is_valid_after_every_flush() {
        let mut w = WavWriter::new(Cursor::new(Vec::new()), 8_000).unwrap();
        let header_only = w.inner.get_ref().clone();
        assert_eq!(
            read_wav_from(Cursor::new(header_only))
                .unwrap()
                .samples
                .len(),
            0
        );
        w.write(&[1, -2, 3]).unwrap();
        w.flush().unwrap();
        let snapshot = w.inner.get_ref().clone();
        assert_eq!(
            read_wav_from(Cursor::new(snapshot)).unwrap().samples,
            vec![1, -2, 3]
        );
        // 200 ms at 8 kHz = 1600 samples triggers a flush by itself.
        w.write(&vec![5; 1600]).unwrap();
        let snapshot = w.inner.get_ref().clone();
        let audio = read_wav_from(Cursor::new(snapshot)).unwrap();
        assert_eq!((audio.rate, audio.samples.len()), (8_000, 1603));
        let done = w.finish().unwrap().into_inner();
        assert_eq!(done.len(), 44 + 1603 * 2);
    }
}
