//! natter's TURN relay against coturn's `turnutils_uclient` (a client nobody
//! here wrote): UDP, TCP, TLS, channels, Send indications, extra requests,
//! client-to-client, REST and account credentials, and the refusals.

mod turn_common;

use turn_common::*;

/// Run uclient with `flags` and assert every message came back.
fn relay_ok(_t: &Turn, flags: &[&str], port: u16, clients: u32, msgs: u32, factor: u64) {
    let p = peer();
    let mut args: Vec<&str> = flags.to_vec();
    let (m, n) = (clients.to_string(), msgs.to_string());
    args.extend(["-m", &m, "-n", &n, "-l", "172", "-z", "5"]);
    let out = uclient(&args, port, p.port);
    let (sent, recv, lost) = totals(&out);
    let expect = u64::from(clients * msgs) * factor;
    assert_eq!(
        (sent, recv, lost),
        (expect, expect, Some(0)),
        "flags {flags:?}:\n{}",
        text(&out)
    );
}

fn account() -> Vec<&'static str> {
    vec!["-u", USER, "-w", PASSWORD]
}

#[test]
fn udp_channels_send_indications_and_extra_requests() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(true, |c| c);
    relay_ok(&t, &account(), t.udp.port(), 4, 30, 1);
    relay_ok(
        &t,
        &[account(), vec!["-s"]].concat(),
        t.udp.port(),
        2,
        30,
        1,
    );
    relay_ok(
        &t,
        &[account(), vec!["-G"]].concat(),
        t.udp.port(),
        2,
        30,
        1,
    );
    relay_ok(
        &t,
        &[account(), vec!["-g"]].concat(),
        t.udp.port(),
        2,
        30,
        1,
    );
    relay_ok(
        &t,
        &[account(), vec!["-y"]].concat(),
        t.udp.port(),
        2,
        30,
        2,
    );
    let c = t.handle.counters();
    assert!(
        c.packets_to_peers >= 300 && c.packets_to_clients >= 300,
        "{c:?}"
    );
    assert_eq!(c.auth_failures, 0);
}

#[test]
fn tcp_and_tls_control_connections() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(true, |c| c);
    relay_ok(
        &t,
        &[account(), vec!["-t"]].concat(),
        t.tcp.port(),
        2,
        30,
        1,
    );
    relay_ok(
        &t,
        &[account(), vec!["-t", "-s"]].concat(),
        t.tcp.port(),
        2,
        30,
        1,
    );
    relay_ok(
        &t,
        &[account(), vec!["-t", "-y"]].concat(),
        t.tcp.port(),
        2,
        30,
        2,
    );
    relay_ok(
        &t,
        &[account(), vec!["-t", "-S"]].concat(),
        t.tls.port(),
        2,
        30,
        1,
    );
}

#[test]
fn rest_secret_credentials_like_coturn() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(true, |c| c);
    relay_ok(&t, &["-W", SECRET], t.udp.port(), 2, 30, 1);
    let p = peer();
    // uclient does not print the code; the server counts the 401 it sent.
    let out = uclient(
        &["-W", "not-the-secret-at-all", "-n", "3"],
        t.udp.port(),
        p.port,
    );
    assert!(
        text(&out).contains("Cannot complete Allocation"),
        "{}",
        text(&out)
    );
    assert!(t.handle.counters().auth_failures > 0);
}

#[test]
fn loopback_peer_is_refused_without_allow_peer() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(false, |c| c);
    let p = peer();
    let out = uclient(&[account(), vec!["-n", "3"]].concat(), t.udp.port(), p.port);
    assert!(text(&out).contains("403"), "{}", text(&out));
    assert_eq!(totals(&out).1, 0, "nothing relayed");
    assert!(t.handle.counters().peers_refused > 0);
}

#[test]
fn wrong_password_gets_401() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(true, |c| c);
    let p = peer();
    let out = uclient(
        &["-u", USER, "-w", "wrong-password", "-n", "3"],
        t.udp.port(),
        p.port,
    );
    assert!(
        text(&out).contains("Cannot complete Allocation"),
        "{}",
        text(&out)
    );
    let c = t.handle.counters();
    assert!(c.auth_failures > 0, "the signed retry got 401: {c:?}");
    assert_eq!((c.allocations_created, t.handle.allocations()), (0, 0));
}

#[test]
fn over_quota_gets_486() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    let t = start(true, |c| c.set_quotas(1, 100).unwrap());
    let p = peer();
    let out = uclient(
        &[account(), vec!["-m", "3", "-n", "3"]].concat(),
        t.udp.port(),
        p.port,
    );
    assert!(text(&out).contains("486"), "{}", text(&out));
    assert!(t.handle.counters().allocations_refused_quota > 0);
}

#[test]
fn http_credentials_work_with_uclient() {
    if !have("turnutils_uclient") || !have("turnutils_peer") {
        return;
    }
    use base64::Engine as _;
    use tower::ServiceExt as _;
    let t = start(true, |c| c);
    let ask = |password: &str| {
        let auth = base64::engine::general_purpose::STANDARD.encode(format!("{USER}:{password}"));
        let req = axum::http::Request::builder()
            .uri("/api/turn-credentials")
            .header("authorization", format!("Basic {auth}"))
            .body(axum::body::Body::empty())
            .unwrap();
        let app = natter_server::turn::http_routes(&t.shared);
        t.rt.block_on(async move {
            let resp = app.oneshot(req).await.unwrap();
            let status = resp.status();
            let body = axum::body::to_bytes(resp.into_body(), 1 << 20)
                .await
                .unwrap();
            (status, body)
        })
    };
    let (status, _) = ask("wrong");
    assert_eq!(status, 401);
    let (status, body) = ask(PASSWORD);
    assert_eq!(status, 200);
    let v: serde_json::Value = serde_json::from_slice(&body).unwrap();
    let (user, cred) = (
        v["username"].as_str().unwrap().to_owned(),
        v["credential"].as_str().unwrap().to_owned(),
    );
    assert!(user.ends_with(":alice"), "{v}");
    assert_eq!(v["iceServers"][0]["username"], v["username"]);
    assert!(v["uris"]
        .as_array()
        .unwrap()
        .iter()
        .any(|u| u.as_str().unwrap().starts_with("turn:127.0.0.1:")));
    assert!(v["ttl"].as_u64().unwrap() > 0);
    relay_ok(&t, &["-u", &user, "-w", &cred], t.udp.port(), 2, 20, 1);
}
