//! `natter phone`: call anyone by number, answer, or an interactive phone.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::time::{Duration, Instant};

use anyhow::{bail, Context as _};
use natter_phone::driver::{self, Command, DriverEvent, Links};
use natter_phone::media::wav::{read_wav_at, WavWriter};
use natter_phone::sip::{EndReason, UaConfig};
use natter_phone::turn_client::{TurnConfig, TurnTransport};
use natter_phone::voice::OPUS_RATE;
use natter_phone::{CallStats, Phone, PhoneConfig, PhoneEvent, SipTransport};
use natter_store::AccountId;
use tokio::sync::mpsc;

/// Flags of `natter phone`.
#[derive(Debug, clap::Args)]
pub struct PhoneArgs {
    /// The natter server: HOST or HOST:PORT [default port: 5060, 5061 for tls, 8443 for wss].
    #[arg(long, value_name = "HOST[:PORT]")]
    server: String,
    /// Your account: a number (+14155550100) or a username.
    #[arg(long, value_name = "ID")]
    user: String,
    /// Your password (or set NATTER_PASSWORD).
    #[arg(long, env = "NATTER_PASSWORD", hide_env_values = true)]
    password: String,
    /// SIP transport.
    #[arg(long, value_enum, default_value = "tcp")]
    transport: TransportArg,
    /// SIP domain [default: the realm of the server's first challenge].
    #[arg(long, value_name = "NAME")]
    domain: Option<String>,
    /// Dial this number or username, then hang up after --hangup-after.
    #[arg(long, value_name = "ID", conflicts_with = "answer")]
    call: Option<String>,
    /// Answer the first incoming call; exit when the caller hangs up.
    #[arg(long)]
    answer: bool,
    /// 16-bit PCM WAV sent as the microphone once the call connects (silence after).
    #[arg(long, value_name = "FILE.wav")]
    play: Option<PathBuf>,
    /// Write what you hear (concealment included) to this 16-bit mono WAV, in real time.
    #[arg(long, value_name = "FILE.wav")]
    record: Option<PathBuf>,
    /// Seconds from connect to hang-up [default: the --play file's length + 1 s, else 10 s].
    #[arg(long, value_name = "SECS")]
    hangup_after: Option<f64>,
    /// Offer only the relay candidate (media always through TURN).
    #[arg(long)]
    force_relay: bool,
    /// Write the call record (path, setup time, RTT, loss, MOS, …) here at the end.
    #[arg(long, value_name = "FILE.json")]
    stats: Option<PathBuf>,
    /// Trust this PEM certificate (or CA) for TLS.
    #[arg(long, value_name = "FILE", conflicts_with = "insecure")]
    ca: Option<PathBuf>,
    /// Do not check the server's TLS certificate.
    #[arg(long)]
    insecure: bool,
    /// STUN/TURN server HOST:PORT [default: the SIP server's host, port 3478].
    #[arg(long, value_name = "HOST:PORT")]
    turn: Option<String>,
    /// TURN transport [default: udp, or tcp when UDP to the server gets no answer].
    #[arg(long, value_enum)]
    turn_transport: Option<TurnArg>,
    /// Give up when the call is not connected within this many seconds.
    #[arg(long, value_name = "SECS", default_value_t = 30.0)]
    timeout: f64,
    #[command(flatten)]
    live: super::audio::LiveAudioArgs,
    /// Log level (error, warn, info, debug, trace or a filter).
    #[arg(long, value_name = "LEVEL", default_value = "warn")]
    log: String,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TransportArg {
    Tcp,
    Udp,
    Tls,
    Wss,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
enum TurnArg {
    Udp,
    Tcp,
    Tls,
}

pub fn run(args: PhoneArgs) -> anyhow::Result<ExitCode> {
    let filter = tracing_subscriber::EnvFilter::try_new(&args.log)
        .with_context(|| format!("--log {}: not a log level or filter", args.log))?;
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr)
        .try_init();
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start the async runtime")?;
    rt.block_on(main(args))
}

async fn main(args: PhoneArgs) -> anyhow::Result<ExitCode> {
    let user = AccountId::parse(&args.user).map_err(|e| anyhow::anyhow!("--user: {e}"))?;
    let target = match &args.call {
        Some(t) => Some(AccountId::parse(t).map_err(|e| anyhow::anyhow!("--call: {e}"))?),
        None => None,
    };
    let mic = match &args.play {
        Some(p) => {
            read_wav_at(p, OPUS_RATE)
                .map_err(|e| anyhow::anyhow!("--play {}: {e}", p.display()))?
                .samples
        }
        None => Vec::new(),
    };
    // Held to the end of the call: dropping it closes the sound card streams.
    let mut live = super::audio::open(&args.live, args.play.is_some(), OPUS_RATE)?;
    let tls_sip = matches!(args.transport, TransportArg::Tls | TransportArg::Wss);
    let sip_port = match args.transport {
        TransportArg::Tls => 5061,
        TransportArg::Wss => 8443, // the HTTPS listener, WebSocket SIP at /sip
        _ => 5060,
    };
    let (host, sip) = resolve(&args.server, sip_port).await?;
    let turn = match &args.turn {
        Some(t) => resolve(t, 3478).await?.1,
        None => SocketAddr::new(sip.ip(), 3478),
    };
    let turn_transport = match args.turn_transport {
        Some(TurnArg::Udp) => TurnTransport::Udp,
        Some(TurnArg::Tcp) => TurnTransport::Tcp,
        Some(TurnArg::Tls) => TurnTransport::Tls,
        None if udp_answers(turn).await => TurnTransport::Udp,
        None => {
            eprintln!("natter phone: no UDP answer from {turn}: using TURN over TCP");
            TurnTransport::Tcp
        }
    };
    let turn = match (turn_transport, &args.turn) {
        (TurnTransport::Tls, None) => SocketAddr::new(sip.ip(), 5349),
        _ => turn,
    };
    let needs_tls = tls_sip || turn_transport == TurnTransport::Tls;
    let tls = match needs_tls {
        true => Some(natter_phone::tls::client(
            &host,
            args.ca.as_deref(),
            args.insecure,
        )?),
        false => None,
    };
    let sip_transport = match args.transport {
        TransportArg::Udp => SipTransport::Udp,
        TransportArg::Tls => SipTransport::Tls,
        TransportArg::Wss => SipTransport::Wss,
        TransportArg::Tcp => SipTransport::Tcp,
    };
    let links = Links {
        sip,
        sip_transport,
        turn,
        turn_transport,
        tls,
    };
    let (opened, sip_local, media_local) = driver::open(links).await.map_err(|e| {
        let text = e.to_string();
        if text.contains("UnknownIssuer") || text.contains("invalid peer certificate") {
            anyhow::anyhow!("untrusted TLS certificate from {host}: {text}")
        } else {
            anyhow::anyhow!(text)
        }
    })?;

    let mut ua = UaConfig::new(
        user.as_str(),
        &args.password,
        &host,
        sip_transport,
        sip_local,
    );
    ua.domain = args.domain.clone();
    let turn_cfg = TurnConfig::new(turn, turn_transport, user.as_str(), &args.password);
    let mut cfg = PhoneConfig::new(ua, media_local, Some(turn_cfg));
    cfg.force_relay = args.force_relay;
    // DTX: no packets (and no encoding) while the microphone is silent, one
    // every 400 ms to keep the far end's jitter buffer and NAT bindings fed.
    // Each side of a conversation is silent about half the time.
    cfg.encoder.dtx = true;
    let mut phone = Phone::new(cfg);
    let play_secs = mic.len() as f64 / f64::from(OPUS_RATE);
    match live.as_ref().and_then(|l| l.mic.clone()) {
        Some(queue) => phone.set_live_microphone(queue),
        None => phone.set_microphone(mic),
    }
    phone.register(Instant::now());

    let (cmd_tx, cmd_rx) = mpsc::channel(16);
    let (ev_tx, ev_rx) = mpsc::unbounded_channel();
    let driver = tokio::spawn(driver::run(phone, opened, cmd_rx, ev_tx));
    let mode = match (&target, args.answer) {
        (Some(t), _) => Mode::Call(t.as_str().to_owned()),
        (None, true) => Mode::Answer,
        (None, false) => Mode::Interactive,
    };
    let hangup_after = Duration::from_secs_f64(
        args.hangup_after
            .unwrap_or(if args.play.is_some() {
                play_secs + 1.0
            } else {
                10.0
            })
            .max(0.0),
    );
    let mut session = Session {
        mode,
        cmd: cmd_tx,
        record: args.record.clone(),
        wav: None,
        speaker: live.as_mut().and_then(|l| l.speaker.take()),
        stats_path: args.stats.clone(),
        hangup_after,
        connect_timeout: Duration::from_secs_f64(args.timeout.max(1.0)),
        dialled: false,
        connected: false,
        cpu: CpuMeter::default(),
    };
    // The session runs as a task of the runtime, like the driver: waking it from
    // the driver is then a local queue push, where waking the `block_on` future
    // costs an eventfd write and an extra epoll_wait for every event (every frame).
    let session = tokio::spawn(async move {
        let code = session.run(ev_rx).await;
        let _ = session.cmd.send(Command::Quit).await;
        code
    });
    let code = session
        .await
        .unwrap_or_else(|e| Err(anyhow::anyhow!("the phone session failed: {e}")));
    let _ = tokio::time::timeout(Duration::from_secs(2), driver).await;
    drop(live); // closes the sound card streams, after the call
    code
}

/// `HOST[:PORT]` → (host as given, address).
async fn resolve(s: &str, default_port: u16) -> anyhow::Result<(String, SocketAddr)> {
    let (host, port) = match s.rsplit_once(':') {
        Some((h, p)) if !h.contains(':') || h.ends_with(']') => (
            h.trim_matches(['[', ']']).to_owned(),
            p.parse().with_context(|| format!("{s}: bad port"))?,
        ),
        _ => (s.trim_matches(['[', ']']).to_owned(), default_port),
    };
    let addr = tokio::net::lookup_host((host.as_str(), port))
        .await
        .with_context(|| format!("cannot resolve {host}"))?
        .find(|a| a.is_ipv4())
        .with_context(|| format!("{host} has no IPv4 address"))?;
    Ok((host, addr))
}

/// Does the STUN server answer a Binding request over UDP (two tries, 1.2 s)?
async fn udp_answers(server: SocketAddr) -> bool {
    let Ok(ip) = driver::local_ip_towards(server) else {
        return false;
    };
    let Ok(sock) = tokio::net::UdpSocket::bind(SocketAddr::new(ip, 0)).await else {
        return false;
    };
    let req = natter_turn::stun::BindingRequest::new(natter_turn::stun::TransactionId::new(
        rand::random(),
    ))
    .build();
    let mut buf = [0u8; 512];
    for _ in 0..2 {
        if sock.send_to(&req, server).await.is_err() {
            return false;
        }
        let got = tokio::time::timeout(Duration::from_millis(600), sock.recv_from(&mut buf)).await;
        if let Ok(Ok((_, from))) = got {
            if from == server {
                return true;
            }
        }
    }
    false
}

enum Mode {
    Call(String),
    Answer,
    Interactive,
}

struct Session {
    mode: Mode,
    cmd: mpsc::Sender<Command>,
    record: Option<PathBuf>,
    wav: Option<WavWriter<std::io::BufWriter<std::fs::File>>>,
    /// The sound card's speaker (`--audio`), fed with what the call plays.
    speaker: Option<natter_phone::audio::SpeakerFeed>,
    stats_path: Option<PathBuf>,
    hangup_after: Duration,
    connect_timeout: Duration,
    dialled: bool,
    connected: bool,
    cpu: CpuMeter,
}

/// Process CPU time at connect and from 2 s after it: the call's own cost,
/// apart from start-up (TLS, registration, DTLS certificate, ICE).
#[derive(Default)]
struct CpuMeter {
    at_connect: Option<(Instant, Duration)>,
    /// Wall time, process CPU and the call's media time (ms) at the start of
    /// the steady state.
    steady_from: Option<(Instant, Duration, f64)>,
}

/// The steady-state CPU figures of a call, in % of one core.
#[derive(Default)]
struct CallCpu {
    /// The whole process.
    call_pct: Option<f64>,
    /// The media work the issue counts: encode, decode + jitter buffer, RTP/SRTP.
    media_pct: Option<f64>,
}

/// The call's first seconds (DTLS, first RTCP, jitter buffer warm-up) are not steady state.
const STEADY_AFTER: Duration = Duration::from_secs(2);

impl CpuMeter {
    /// The first connect starts the meter; a reconnect after a move is part
    /// of the call and does not restart it.
    fn connected(&mut self) {
        if self.at_connect.is_none() {
            self.at_connect = process_cpu().map(|c| (Instant::now(), c));
        }
    }

    /// Called on every periodic stats event (once a second) with its figures.
    fn tick(&mut self, stats: &CallStats) {
        let since = self.at_connect.map(|(t, _)| t.elapsed());
        if self.steady_from.is_none() && since.is_some_and(|d| d >= STEADY_AFTER) {
            self.steady_from = process_cpu().map(|c| (Instant::now(), c, stats.cpu_media_ms()));
        }
    }

    /// `cpu_setup_ms` and the steady-state figures at the end of the call,
    /// whose final record is `stats`.
    fn figures(&self, stats: &CallStats) -> (Option<f64>, CallCpu) {
        let Some((t0, c0)) = self.at_connect else {
            return (None, CallCpu::default());
        };
        let setup = Some(c0.as_secs_f64() * 1000.0);
        let (t, c, media) = self.steady_from.unwrap_or((t0, c0, 0.0));
        let wall = t.elapsed().as_secs_f64();
        let steady = wall > 0.5;
        let call_pct = process_cpu()
            .filter(|_| steady)
            .map(|now| 100.0 * now.saturating_sub(c).as_secs_f64() / wall);
        let media_pct = steady.then(|| 100.0 * (stats.cpu_media_ms() - media) / 1000.0 / wall);
        (
            setup,
            CallCpu {
                call_pct,
                media_pct,
            },
        )
    }
}

/// CPU time (user + system) this process has used so far; Linux only.
fn process_cpu() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // Fields after the parenthesised command: state is field 3, utime 14, stime 15.
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace().skip(11);
    let utime: u64 = fields.next()?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    // USER_HZ is 100 on every Linux architecture (the kernel's ABI for /proc).
    Some(Duration::from_millis((utime + stime) * 10))
}

impl Session {
    async fn run(
        &mut self,
        mut events: mpsc::UnboundedReceiver<DriverEvent>,
    ) -> anyhow::Result<ExitCode> {
        let mut stdin = match self.mode {
            Mode::Interactive => Some(spawn_stdin()),
            _ => None,
        };
        let far = tokio::time::Instant::now() + Duration::from_secs(365 * 24 * 3600);
        let mut deadline = match self.mode {
            Mode::Call(_) => tokio::time::Instant::now() + self.connect_timeout,
            _ => far,
        };
        loop {
            tokio::select! {
                ev = events.recv() => {
                    let Some(ev) = ev else { bail!("the phone stopped unexpectedly") };
                    if let Some(code) = self.on_event(ev, &mut deadline).await? {
                        return Ok(code);
                    }
                }
                Some(line) = recv_line(&mut stdin) => {
                    if let Some(code) = self.on_line(&line).await {
                        return Ok(code);
                    }
                }
                _ = tokio::time::sleep_until(deadline) => {
                    deadline = far;
                    if self.connected {
                        let _ = self.cmd.send(Command::Hangup).await;
                    } else {
                        bail!("the call did not connect within {} s", self.connect_timeout.as_secs());
                    }
                }
            }
        }
    }

    async fn on_event(
        &mut self,
        ev: DriverEvent,
        deadline: &mut tokio::time::Instant,
    ) -> anyhow::Result<Option<ExitCode>> {
        match ev {
            DriverEvent::Audio { rate, samples } => self.write_audio(rate, &samples)?,
            DriverEvent::SignalingLost(why) => {
                eprintln!("lost the connection to the server ({why}): reconnecting")
            }
            DriverEvent::Phone(e) => return self.on_phone(e, deadline).await,
        }
        Ok(None)
    }

    async fn on_phone(
        &mut self,
        e: PhoneEvent,
        deadline: &mut tokio::time::Instant,
    ) -> anyhow::Result<Option<ExitCode>> {
        match e {
            PhoneEvent::Registered { aor } => {
                eprintln!("registered as {aor}");
                if let (Mode::Call(t), false) = (&self.mode, self.dialled) {
                    self.dialled = true;
                    eprintln!("calling {t}");
                    let _ = self.cmd.send(Command::Dial(t.clone())).await;
                }
            }
            PhoneEvent::RegistrationFailed(f) => bail!("{f}"),
            PhoneEvent::Incoming { from, .. } => {
                eprintln!("incoming call from {from}");
                if let Mode::Answer = self.mode {
                    let _ = self.cmd.send(Command::Answer).await;
                }
            }
            PhoneEvent::Ringing => eprintln!("ringing"),
            PhoneEvent::Connected { path } => {
                let again = std::mem::replace(&mut self.connected, true);
                self.cpu.connected();
                eprintln!(
                    "connected: {} path ({} → {}), {} ↔ {}",
                    path.path_str(),
                    path.local.as_str(),
                    path.remote.as_str(),
                    path.local_addr,
                    path.remote_addr
                );
                // After a reconnect the call keeps its original hang-up time.
                if let (Mode::Call(_), false) = (&self.mode, again) {
                    *deadline = tokio::time::Instant::now() + self.hangup_after;
                }
            }
            PhoneEvent::Reconnecting => eprintln!("reconnecting…"),
            PhoneEvent::PathChanged { path } => eprintln!(
                "path now {} ({} → {})",
                path.path_str(),
                path.local.as_str(),
                path.remote.as_str()
            ),
            PhoneEvent::Stats(s) => {
                self.cpu.tick(&s);
                if let Mode::Interactive = self.mode {
                    eprint!("\r{}   ", status_line(&s));
                }
            }
            PhoneEvent::Ended { reason, stats } => return self.on_ended(reason, &stats),
        }
        Ok(None)
    }

    fn on_ended(
        &mut self,
        reason: EndReason,
        stats: &CallStats,
    ) -> anyhow::Result<Option<ExitCode>> {
        if let Some(w) = self.wav.take() {
            w.finish().context("finishing the --record file")?;
        } else if let Some(p) = &self.record {
            WavWriter::create(p, OPUS_RATE)
                .and_then(|w| w.finish().map(|_| ()))
                .with_context(|| format!("writing {}", p.display()))?;
        }
        if let Some(p) = &self.stats_path {
            let (cpu_setup_ms, cpu) = self.cpu.figures(stats);
            let file = StatsFile {
                call: stats,
                cpu_setup_ms,
                cpu_call_pct: cpu.call_pct,
                cpu_media_pct: cpu.media_pct,
            };
            write_stats(p, &file)?;
        }
        let completed =
            self.connected && matches!(reason, EndReason::LocalHangup | EndReason::RemoteHangup);
        eprintln!("call ended: {reason}");
        if let Mode::Interactive = self.mode {
            self.connected = false;
            return Ok(None);
        }
        if completed {
            Ok(Some(ExitCode::SUCCESS))
        } else {
            bail!("call failed: {reason}")
        }
    }

    fn write_audio(&mut self, rate: u32, samples: &[i16]) -> anyhow::Result<()> {
        if let Some(speaker) = self.speaker.as_mut() {
            speaker.play(rate, samples);
        }
        let Some(path) = &self.record else {
            return Ok(());
        };
        if self.wav.is_none() {
            let w = WavWriter::create(path, rate)
                .with_context(|| format!("cannot write {}", path.display()))?;
            self.wav = Some(w);
        }
        if let Some(w) = self.wav.as_mut() {
            // The writer completes the file on disk every 200 ms of audio by itself:
            // a flush per 20 ms frame cost seven syscalls per frame.
            w.write(samples).context("writing the --record file")?;
        }
        Ok(())
    }

    async fn on_line(&mut self, line: &str) -> Option<ExitCode> {
        let mut words = line.split_whitespace();
        match (words.next(), words.next()) {
            (Some("call"), Some(id)) => match AccountId::parse(id) {
                Ok(id) => {
                    let _ = self.cmd.send(Command::Dial(id.as_str().to_owned())).await;
                }
                Err(e) => eprintln!("{e}"),
            },
            (Some("answer"), None) => {
                let _ = self.cmd.send(Command::Answer).await;
            }
            (Some("hangup"), None) => {
                let _ = self.cmd.send(Command::Hangup).await;
            }
            (Some("quit"), None) => return Some(ExitCode::SUCCESS),
            (None, _) => {}
            _ => eprintln!("commands: call ID | answer | hangup | quit"),
        }
        None
    }
}

fn status_line(s: &CallStats) -> String {
    let kbps = if s.duration_s > 0.0 {
        s.wire_bytes_sent as f64 * 8.0 / s.duration_s / 1000.0
    } else {
        0.0
    };
    format!(
        "in call · {} path · rtt {} · loss {:.1}% · {:.0} kb/s",
        if s.path.is_empty() { "?" } else { &s.path },
        s.rtt_ms.map_or("?".into(), |r| format!("{r:.0} ms")),
        s.loss_pct,
        kbps
    )
}

/// The `--stats` file: the engine's call record and this process's CPU figures.
#[derive(serde::Serialize)]
struct StatsFile<'a> {
    #[serde(flatten)]
    call: &'a CallStats,
    /// CPU time the whole process used from start until media connected
    /// (start-up, TLS, registration, DTLS certificate, gathering, ICE, DTLS), ms.
    cpu_setup_ms: Option<f64>,
    /// Steady-state CPU of the call in % of one core: process CPU time from 2 s
    /// after connect to the end of the call over that wall time (Linux only).
    cpu_call_pct: Option<f64>,
    /// The part of it in the media work the issue counts (`cpu_encode_ms` +
    /// `cpu_decode_ms` + `cpu_rtp_ms` over the same window), % of one core.
    cpu_media_pct: Option<f64>,
}

fn write_stats(path: &Path, stats: &StatsFile<'_>) -> anyhow::Result<()> {
    let json = serde_json::to_string_pretty(stats).context("encoding the stats")?;
    std::fs::write(path, json + "\n").with_context(|| format!("cannot write {}", path.display()))
}

fn spawn_stdin() -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel(8);
    std::thread::spawn(move || {
        let stdin = std::io::stdin();
        let mut line = String::new();
        while stdin.read_line(&mut line).map(|n| n > 0).unwrap_or(false) {
            if tx.blocking_send(line.trim().to_owned()).is_err() {
                return;
            }
            line.clear();
        }
        let _ = tx.blocking_send("quit".to_owned());
    });
    rx
}

async fn recv_line(rx: &mut Option<mpsc::Receiver<String>>) -> Option<String> {
    match rx {
        Some(r) => r.recv().await,
        None => std::future::pending().await,
    }
}
