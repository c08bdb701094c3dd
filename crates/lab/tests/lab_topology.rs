//! Root-only scenario tests of the lab: connectivity, the NAT kinds' real mapping and
//! filtering behaviour, teardown, and userspace impairment.
//!
//! Processes inside the lab are this test binary itself, re-executed in helper mode
//! (`NATTER_LAB_HELPER`), so no external tools are needed.

use std::net::{SocketAddr, UdpSocket};
use std::time::{Duration, Instant};

use natter_lab::{Host, Impairment, Lab, LabProcess, NatKind};

const HELPER_ENV: &str = "NATTER_LAB_HELPER";

macro_rules! require_lab {
    ($test:expr) => {
        if let Err(why) = natter_lab::lab_available() {
            return natter_lab::skip($test, &why);
        }
    };
}

/// Entry point of helper mode; a no-op in a normal test run.
#[test]
fn helper_entry() {
    let Ok(mode) = std::env::var(HELPER_ENV) else {
        return;
    };
    println!(); // libtest printed "test helper_entry ... " without a newline
    let args: Vec<String> = std::env::var("NATTER_LAB_ARGS")
        .unwrap_or_default()
        .split(' ')
        .map(str::to_owned)
        .collect();
    match mode.as_str() {
        "reflect" => reflect(&args),
        "query" => query(&args),
        "stream" => stream(&args),
        "punch" => punch(&args),
        other => panic!("unknown helper mode {other}"),
    }
}

/// Answers each datagram with the source address it came from, on every address in `args`.
fn reflect(args: &[String]) {
    let threads: Vec<_> = args
        .iter()
        .map(|addr| {
            let socket = UdpSocket::bind(addr.as_str()).expect("bind reflector");
            std::thread::spawn(move || {
                let mut buf = [0u8; 2048];
                while let Ok((len, from)) = socket.recv_from(&mut buf) {
                    let mut reply = format!("{from} ").into_bytes();
                    reply.extend_from_slice(&buf[..len]);
                    let _ = socket.send_to(&reply, from);
                }
            })
        })
        .collect();
    println!("ready");
    for thread in threads {
        let _ = thread.join();
    }
}

/// From ONE socket, asks each reflector in `args` what source it sees; prints one line each.
fn query(args: &[String]) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(300)))
        .unwrap();
    for target in args {
        let mut seen = "none".to_owned();
        for _ in 0..5 {
            socket.send_to(b"q", target.as_str()).unwrap();
            let mut buf = [0u8; 256];
            if let Ok((len, _)) = socket.recv_from(&mut buf) {
                let text = String::from_utf8_lossy(&buf[..len]).into_owned();
                seen = text.split(' ').next().unwrap_or_default().to_owned();
                break;
            }
        }
        println!("{target} {seen}");
    }
}

/// Sends `count` numbered datagrams every `interval_ms` to a reflector and prints
/// `received <n> min_rtt_ms <x> max_rtt_ms <y> reordered <k>`.
fn stream(args: &[String]) {
    let (target, count, interval) = (
        &args[0],
        args[1].parse::<u32>().unwrap(),
        args[2].parse::<u64>().unwrap(),
    );
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(1)))
        .unwrap();
    let start = Instant::now();
    let mut sent_at = Vec::new();
    let mut arrivals: Vec<(u32, Duration)> = Vec::new();
    let mut buf = [0u8; 256];
    let tail = Duration::from_millis(500);
    loop {
        // Send everything due (in a burst if this loop was slow), then wait for answers.
        while sent_at.len() < count as usize
            && start.elapsed() >= Duration::from_millis(interval * sent_at.len() as u64)
        {
            let seq = sent_at.len();
            // Taken before sending: a descheduled sender can only make the RTT look longer.
            sent_at.push(start.elapsed());
            socket
                .send_to(seq.to_string().as_bytes(), target.as_str())
                .unwrap();
        }
        if sent_at.len() == count as usize && start.elapsed() >= sent_at[sent_at.len() - 1] + tail {
            break;
        }
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            let text = String::from_utf8_lossy(&buf[..len]).into_owned();
            let seq: u32 = text.split(' ').nth(1).unwrap().parse().unwrap();
            arrivals.push((seq, start.elapsed() - sent_at[seq as usize]));
        }
    }
    let rtts: Vec<f64> = arrivals
        .iter()
        .map(|(_, rtt)| rtt.as_secs_f64() * 1000.0)
        .collect();
    let reordered = arrivals
        .windows(2)
        .filter(|pair| pair[0].0 > pair[1].0)
        .count();
    let min = rtts.iter().copied().fold(f64::INFINITY, f64::min);
    let max = rtts.iter().copied().fold(0.0, f64::max);
    println!(
        "received {} min_rtt_ms {min:.1} max_rtt_ms {max:.1} reordered {reordered}",
        arrivals.len()
    );
}

/// Hole punching between two hosts: learns its mapping from the reflector at `args[0]`,
/// publishes it in file `args[1]`, waits for the peer's in `args[2]`, sleeps `args[3]` ms,
/// then sends to the peer's mapping every 20 ms for 1.5 s. Prints `mine <addr>` and one
/// `from <addr>` per distinct source it heard the peer from.
fn punch(args: &[String]) {
    let socket = UdpSocket::bind("0.0.0.0:0").unwrap();
    socket
        .set_read_timeout(Some(Duration::from_millis(5)))
        .unwrap();
    let mut buf = [0u8; 256];
    let mine = loop {
        socket.send_to(b"q", args[0].as_str()).unwrap();
        if let Ok((len, _)) = socket.recv_from(&mut buf) {
            break String::from_utf8_lossy(&buf[..len])
                .split(' ')
                .next()
                .unwrap()
                .to_owned();
        }
    };
    std::fs::write(&args[1], &mine).unwrap();
    println!("mine {mine}");
    let peer: SocketAddr = loop {
        if let Ok(text) = std::fs::read_to_string(&args[2]) {
            if let Ok(addr) = text.trim().parse() {
                break addr;
            }
        }
        std::thread::sleep(Duration::from_millis(5));
    };
    std::thread::sleep(Duration::from_millis(args[3].parse().unwrap()));
    let start = Instant::now();
    let mut heard = Vec::new();
    let mut next_send = start;
    while start.elapsed() < Duration::from_millis(1500) {
        if Instant::now() >= next_send {
            socket.send_to(b"punch", peer).unwrap();
            next_send += Duration::from_millis(20);
        }
        if let Ok((_, from)) = socket.recv_from(&mut buf) {
            if from != args[0].parse().unwrap() && !heard.contains(&from) {
                heard.push(from);
                println!("from {from}");
            }
        }
    }
}

fn helper(host: &Host, mode: &str, args: &[String]) -> LabProcess {
    let exe = std::env::current_exe().unwrap();
    let env_mode = format!("{HELPER_ENV}={mode}");
    let env_args = format!("NATTER_LAB_ARGS={}", args.join(" "));
    let exe = exe.to_str().unwrap();
    host.spawn(
        "env",
        &[
            &env_mode,
            &env_args,
            exe,
            "--exact",
            "helper_entry",
            "--nocapture",
            "--test-threads=1",
        ],
    )
    .unwrap()
}

fn start_reflector(lab: &Lab) -> (LabProcess, Vec<String>) {
    let (a, b) = lab.server_ips();
    let targets: Vec<String> = [(a, 4000), (a, 4001), (b, 4000)]
        .iter()
        .map(|(ip, port)| format!("{ip}:{port}"))
        .collect();
    let mut process = helper(lab.server_host(), "reflect", &targets);
    process
        .wait_for_output("ready", Duration::from_secs(10))
        .unwrap();
    (process, targets)
}

/// Runs `query` in `client` and returns the source address each target saw.
fn mappings(client: &Host, targets: &[String]) -> Vec<SocketAddr> {
    let out = helper(client, "query", targets)
        .finish(Duration::from_secs(20))
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    targets
        .iter()
        .map(|target| {
            let line = stdout
                .lines()
                .find(|line| line.starts_with(&format!("{target} ")))
                .unwrap_or_else(|| panic!("no answer for {target}: {stdout}"));
            line.split(' ')
                .nth(1)
                .unwrap()
                .parse()
                .unwrap_or_else(|_| panic!("{target} unreachable: {stdout}"))
        })
        .collect()
}

#[test]
fn cone_nat_keeps_one_mapping_for_every_destination() {
    require_lab!("cone_nat_keeps_one_mapping_for_every_destination");
    let mut lab = Lab::new("cone").unwrap();
    let nat = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let (_reflector, targets) = start_reflector(&lab);
    let seen = mappings(&client, &targets);
    assert!(
        seen.iter().all(|addr| addr.ip() == nat.wan_ip()),
        "{seen:?}"
    );
    assert!(
        seen.iter().all(|addr| *addr == seen[0]),
        "MASQUERADE should map endpoint-independently: {seen:?}"
    );
}

#[test]
fn symmetric_nat_maps_each_destination_anew() {
    require_lab!("symmetric_nat_maps_each_destination_anew");
    let mut lab = Lab::new("symmetric").unwrap();
    let nat = lab.add_nat(NatKind::Symmetric).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let (_reflector, targets) = start_reflector(&lab);
    let seen = mappings(&client, &targets);
    assert!(
        seen.iter().all(|addr| addr.ip() == nat.wan_ip()),
        "{seen:?}"
    );
    assert_ne!(
        seen[0].port(),
        seen[1].port(),
        "same IP, other port: {seen:?}"
    );
    assert_ne!(seen[0].port(), seen[2].port(), "other IP: {seen:?}");
}

#[test]
fn udp_blocked_nat_lets_no_datagram_out() {
    require_lab!("udp_blocked_nat_lets_no_datagram_out");
    let mut lab = Lab::new("udp-blocked").unwrap();
    let nat = lab.add_nat(NatKind::UdpBlocked).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let (_reflector, targets) = start_reflector(&lab);
    let out = helper(&client, "query", &targets[..1])
        .finish(Duration::from_secs(20))
        .unwrap();
    assert!(String::from_utf8_lossy(&out.stdout).contains(&format!("{} none", targets[0])));
}

#[test]
fn public_host_carrier_nat_and_shared_nat_are_reachable() {
    require_lab!("public_host_carrier_nat_and_shared_nat_are_reachable");
    let mut lab = Lab::new("mixed").unwrap();
    let public = lab.add_public_host().unwrap();
    let carrier = lab.add_carrier_nat(NatKind::PortRestrictedCone).unwrap();
    let home = lab
        .add_nat_behind(&carrier, NatKind::PortRestrictedCone)
        .unwrap();
    let behind_both = lab.add_host_behind(&home).unwrap();
    let shared = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let first = lab.add_host_behind(&shared).unwrap();
    let second = lab.add_host_behind(&shared).unwrap();
    let (_reflector, targets) = start_reflector(&lab);

    assert_eq!(
        mappings(&public, &targets[..1])[0].ip(),
        public.ip(),
        "no NAT: seen as itself"
    );
    assert!(home.wan_ip().octets()[0] == 100 && (64..128).contains(&home.wan_ip().octets()[1]));
    assert_eq!(
        mappings(&behind_both, &targets[..1])[0].ip(),
        carrier.wan_ip(),
        "two NATs: seen as the carrier"
    );
    assert_ne!(first.ip(), second.ip());
    assert_eq!(mappings(&first, &targets[..1])[0].ip(), shared.wan_ip());
    assert_eq!(mappings(&second, &targets[..1])[0].ip(), shared.wan_ip());
}

#[test]
fn dropping_the_lab_removes_namespaces_and_processes() {
    require_lab!("dropping_the_lab_removes_namespaces_and_processes");
    let lab = Lab::new("teardown").unwrap();
    let server = lab.server_host().clone();
    let sleeper = server.spawn("sleep", &["600"]).unwrap();
    let pid = sleeper.id();
    std::mem::forget(sleeper); // leak the handle: the lab must still kill the process
    drop(lab);
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    assert!(!String::from_utf8_lossy(&list.stdout).contains(server.namespace()));
    // The leaked child is killed but not reaped by us; it is gone or a zombie.
    let deadline = Instant::now() + Duration::from_secs(2);
    let mut state = String::new();
    while Instant::now() < deadline {
        state = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
        if state.is_empty() || state.contains(") Z") {
            return;
        }
        std::thread::sleep(Duration::from_millis(10));
    }
    panic!("sleep still alive after the lab was dropped: {state}");
}

#[test]
fn teardown_also_happens_when_a_test_panics() {
    require_lab!("teardown_also_happens_when_a_test_panics");
    let names = std::sync::Arc::new(std::sync::Mutex::new(String::new()));
    let seen = names.clone();
    let result = std::panic::catch_unwind(move || {
        let lab = Lab::new("panic").unwrap();
        *seen.lock().unwrap() = lab.server_host().namespace().to_owned();
        panic!("test failure inside a lab");
    });
    assert!(result.is_err());
    let list = std::process::Command::new("ip")
        .args(["netns", "list"])
        .output()
        .unwrap();
    let ns = names.lock().unwrap().clone();
    assert!(!ns.is_empty() && !String::from_utf8_lossy(&list.stdout).contains(&ns));
}

fn parse_stream(out: &str) -> (u32, f64, f64, u32) {
    let fields: Vec<&str> = out
        .lines()
        .find(|line| line.starts_with("received"))
        .unwrap_or_else(|| panic!("{out}"))
        .split(' ')
        .collect();
    (
        fields[1].parse().unwrap(),
        fields[3].parse().unwrap(),
        fields[5].parse().unwrap(),
        fields[7].parse().unwrap(),
    )
}

#[test]
fn impaired_link_adds_delay_jitter_and_loss() {
    if let Err(why) = natter_lab::impairment_available() {
        return natter_lab::skip("impaired_link_adds_delay_jitter_and_loss", &why);
    }
    let mut lab = Lab::new("impair").unwrap();
    let nat = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let client = lab.add_host_behind(&nat).unwrap();
    let (_reflector, targets) = start_reflector(&lab);
    let up = Impairment::none()
        .with_delay(Duration::from_millis(40), Duration::from_millis(10))
        .with_loss(0.2);
    let link = lab
        .impair_nat_link(
            &nat,
            up,
            Impairment::none().with_delay(Duration::from_millis(20), Duration::ZERO),
        )
        .unwrap();

    let args = vec![targets[0].clone(), "300".to_owned(), "5".to_owned()];
    let out = helper(&client, "stream", &args)
        .finish(Duration::from_secs(30))
        .unwrap();
    let (received, min_rtt, max_rtt, reordered) =
        parse_stream(&String::from_utf8_lossy(&out.stdout));
    let stats = link.stats();
    eprintln!(
        "received {received}/300, rtt {min_rtt}..{max_rtt} ms, reordered {reordered}, {stats:?}"
    );
    assert!(
        (200..=280).contains(&received),
        "20 % loss upstream: received {received}/300"
    );
    // Up 40 ± 10 ms plus down 20 ms: 50..70 ms, plus scheduling noise on a busy machine.
    assert!((50.0..70.0).contains(&min_rtt), "min rtt {min_rtt}");
    assert!((62.0..300.0).contains(&max_rtt), "max rtt {max_rtt}");
    assert!(reordered > 0, "10 ms jitter on a 5 ms stream reorders");
    assert_eq!(
        stats.up.received, 300,
        "every datagram went through the TUN"
    );
    assert_eq!(stats.up.dropped + stats.up.sent, 300);
    assert_eq!(
        u64::from(received),
        stats.down.sent,
        "every answer came back"
    );

    link.set_up(Impairment::none()).unwrap();
    link.set_down(Impairment::none()).unwrap();
    let args = vec![targets[0].clone(), "100".to_owned(), "2".to_owned()];
    let out = helper(&client, "stream", &args)
        .finish(Duration::from_secs(30))
        .unwrap();
    let (received, min_rtt, _, _) = parse_stream(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(received, 100, "impairment lifted");
    assert!(min_rtt < 10.0, "no delay any more: {min_rtt}");

    link.stop();
    let (received, min_rtt, _, _) = parse_stream(&String::from_utf8_lossy(
        &helper(&client, "stream", &args)
            .finish(Duration::from_secs(30))
            .unwrap()
            .stdout,
    ));
    assert_eq!(
        (received, min_rtt < 10.0),
        (100, true),
        "stopped: plain forwarding again"
    );
    let cut = Impairment::none().with_loss(1.0);
    let again = lab.impair_nat_link(&nat, cut, Impairment::none()).unwrap();
    let out = helper(&client, "stream", &args)
        .finish(Duration::from_secs(30))
        .unwrap();
    assert!(
        String::from_utf8_lossy(&out.stdout).contains("received 0 "),
        "re-impaired with 100 % loss"
    );
    assert_eq!(again.stats().up.dropped, 100, "{:?}", again.stats());
}

#[test]
fn impaired_links_compose_along_a_path() {
    if let Err(why) = natter_lab::impairment_available() {
        return natter_lab::skip("impaired_links_compose_along_a_path", &why);
    }
    let mut lab = Lab::new("compose").unwrap();
    let client = lab.add_public_host().unwrap();
    let (_reflector, targets) = start_reflector(&lab);
    let ms = Duration::from_millis;
    let client_link = lab
        .impair_public_host_link(
            &client,
            Impairment::none().with_delay(ms(10), Duration::ZERO),
            Impairment::none().with_delay(ms(5), Duration::ZERO),
        )
        .unwrap();
    let server_link = lab
        .impair_server_link(
            Impairment::none(),
            Impairment::none().with_delay(ms(20), Duration::ZERO),
        )
        .unwrap();
    let args = vec![targets[0].clone(), "50".to_owned(), "4".to_owned()];
    let out = helper(&client, "stream", &args)
        .finish(Duration::from_secs(30))
        .unwrap();
    let (received, min_rtt, _, _) = parse_stream(&String::from_utf8_lossy(&out.stdout));
    assert_eq!(received, 50);
    // 10 (client up) + 20 (server down) + 0 (server up) + 5 (client down) = 35 ms.
    assert!((35.0..50.0).contains(&min_rtt), "min rtt {min_rtt}");
    assert_eq!(client_link.stats().up.sent, 50);
    assert_eq!(
        server_link.stats().down.sent,
        50,
        "the client's packets also crossed the server's link"
    );
    assert_eq!(server_link.stats().up.sent, 50);
    assert_eq!(client_link.stats().down.sent, 50);
}

/// Runs `punch` on both hosts (b starts sending `b_delay_ms` later, so a's packets reach
/// b's NAT unsolicited first) and returns (b's mapping, where a heard b from).
fn punch_pair(lab: &Lab, a: &Host, b: &Host, b_delay_ms: u64) -> (String, Vec<String>) {
    let (reflector, targets) = start_reflector(lab);
    let dir = std::env::temp_dir().join(format!("natter-punch-{}", a.namespace()));
    std::fs::create_dir_all(&dir).unwrap();
    let file = |name: &str| dir.join(name).to_string_lossy().into_owned();
    let a_args = vec![targets[0].clone(), file("a"), file("b"), "0".to_owned()];
    let b_args = vec![
        targets[0].clone(),
        file("b"),
        file("a"),
        b_delay_ms.to_string(),
    ];
    let a_run = helper(a, "punch", &a_args);
    let b_run = helper(b, "punch", &b_args);
    let a_out = String::from_utf8_lossy(&a_run.finish(Duration::from_secs(20)).unwrap().stdout)
        .into_owned();
    let b_out = String::from_utf8_lossy(&b_run.finish(Duration::from_secs(20)).unwrap().stdout)
        .into_owned();
    drop(reflector);
    let _ = std::fs::remove_dir_all(&dir);
    let b_mine = b_out
        .lines()
        .find_map(|l| l.strip_prefix("mine "))
        .unwrap_or_else(|| panic!("{b_out}"))
        .to_owned();
    let heard = a_out
        .lines()
        .filter_map(|l| l.strip_prefix("from "))
        .map(str::to_owned)
        .collect();
    (b_mine, heard)
}

#[test]
fn cone_nats_keep_their_mapping_while_hole_punching() {
    require_lab!("cone_nats_keep_their_mapping_while_hole_punching");
    let mut lab = Lab::new("punch").unwrap();
    let (nat_a, nat_b) = (
        lab.add_nat(NatKind::PortRestrictedCone).unwrap(),
        lab.add_nat(NatKind::PortRestrictedCone).unwrap(),
    );
    let (a, b) = (
        lab.add_host_behind(&nat_a).unwrap(),
        lab.add_host_behind(&nat_b).unwrap(),
    );
    let (b_mapping, heard) = punch_pair(&lab, &a, &b, 300);
    assert_eq!(
        heard,
        vec![b_mapping],
        "a must hear b from the mapping b learned from the server"
    );
}

#[test]
fn symmetric_nat_defeats_hole_punching() {
    require_lab!("symmetric_nat_defeats_hole_punching");
    let mut lab = Lab::new("punch-sym").unwrap();
    let cone = lab.add_nat(NatKind::PortRestrictedCone).unwrap();
    let symmetric = lab.add_nat(NatKind::Symmetric).unwrap();
    let (a, b) = (
        lab.add_host_behind(&cone).unwrap(),
        lab.add_host_behind(&symmetric).unwrap(),
    );
    let (b_mapping, heard) = punch_pair(&lab, &a, &b, 300);
    // b's NAT uses a new port toward a; a's port-restricted NAT only admits b's old one.
    assert!(heard.is_empty(), "b ({b_mapping}) got through: {heard:?}");
}
