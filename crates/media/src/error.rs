//! The crate's one error type.

/// Everything that can go wrong in natter's media core.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum MediaError {
    /// A WAV file in a format we do not read.
    #[error(
        "unsupported WAV format: {found}; supported: 16-bit integer PCM, mono or stereo, \
         at 8, 16, 32, 44.1 or 48 kHz (convert it, e.g. `sox in.wav -e signed-integer -b 16 out.wav rate 48k`)"
    )]
    UnsupportedWav {
        /// What the file actually holds, e.g. "32-bit float, 2 channels, 96000 Hz".
        found: String,
    },
    /// The file is not a readable WAV file at all.
    #[error("not a readable WAV file: {0}; give a RIFF/WAVE file with 16-bit PCM audio")]
    NotWav(String),
    /// A file could not be opened or created.
    #[error("cannot open {}: {source}", path.display())]
    Open {
        /// The file.
        path: std::path::PathBuf,
        /// Why.
        source: std::io::Error,
    },
    /// Reading or writing a file failed.
    #[error("audio file I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The codec library refused an operation.
    #[error("{codec} codec error: {reason}")]
    Codec {
        /// Which codec.
        codec: &'static str,
        /// What it said.
        reason: &'static str,
    },
    /// A setting outside what the codec supports.
    #[error("invalid codec setting: {0}")]
    InvalidSetting(String),
    /// A frame of the wrong length was handed to an encoder.
    #[error(
        "encoder expects frames of {expected} samples, got {got}: feed exactly one frame per call"
    )]
    FrameSize {
        /// Samples the encoder wants.
        expected: usize,
        /// Samples it was given.
        got: usize,
    },
}
