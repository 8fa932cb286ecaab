//! ISSUE 8, authorization: a socket only ever receives its own user's `user:` / `portfolio:`
//! events whatever it sends; the API needs the key (compared with `subtle`); JWT algorithm
//! pinning. (Expired, not-yet-valid, `alg: none`, wrong signature and missing `sub` tokens
//! are covered by `tests/gateway.rs::bad_jwts_are_refused`; the API's 401 basics by
//! `tests/api.rs::api_needs_the_key`.)

// Tests fail by panicking: expect/unwrap are the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

mod common;

use std::time::Duration;

use common::{jwt, now_secs, start, Client, Msg, TestServer, API_KEY, JWT_SECRET, T};
use serde_json::{json, Value};

/// Publishes one durable event to each of `user`'s private rooms, tagged `tag`.
async fn publish_private(s: &TestServer, user: &str, tag: &str) {
    s.emit(json!({"userId": user, "event": "trade:executed", "data": {"tag": tag}}))
        .await;
    s.emit(
        json!({"room": format!("portfolio:{user}"), "event": "portfolio:update", "data": {"tag": tag}}),
    )
    .await;
}

/// Every text the client gets within `within`.
async fn texts(c: &mut Client, within: Duration) -> Vec<String> {
    c.ws.collect(within)
        .await
        .into_iter()
        .filter_map(|m| match m {
            Msg::Text(t) => Some(t),
            _ => None,
        })
        .collect()
}

/// Sends an event with an ack id and returns the ack's first argument.
async fn ask(c: &mut Client, event: &str, args: &[Value], id: u64) -> Value {
    c.ws.emit(event, args, Some(id));
    c.ws.ack(id, T)
        .await
        .into_iter()
        .next()
        .unwrap_or(Value::Null)
}

#[tokio::test]
async fn a_socket_only_ever_receives_its_own_users_private_rooms() {
    let s = start(&["--event-rate", "1000", "--subscribe-rate", "1000"]).await;
    let mut bob = s.client("bob").await;
    let _ = ask(&mut bob, "subscribe:portfolio", &[json!({})], 1).await;
    let mut alice = s.client("alice").await;
    let trades = ask(&mut alice, "subscribe:trades", &[json!({})], 1).await;
    let epoch = trades["epoch"].clone();
    // history in bob's rooms, so that a replay that went to the wrong room would show
    publish_private(&s, "bob", "bob-before").await;

    // Everything alice could try, each with an ack: every one is answered, none names
    // a room of bob's.
    let attempts: Vec<(&str, Vec<Value>)> = vec![
        ("subscribe:portfolio", vec![json!({"userId": "bob"})]),
        (
            "subscribe:portfolio",
            vec![json!({"room": "portfolio:bob", "user": "bob"})],
        ),
        (
            "subscribe:portfolio",
            vec![json!({}), json!("bob"), json!({"room": "portfolio:bob"})],
        ),
        ("subscribe:portfolio", vec![json!("portfolio:bob")]),
        (
            "subscribe:portfolio",
            vec![json!({"since": {"offset": 0, "epoch": epoch}, "userId": "bob"})],
        ),
        (
            "subscribe:trades",
            vec![json!({"since": {"offset": 0, "epoch": epoch}, "room": "user:bob"})],
        ),
        (
            "subscribe:trades",
            vec![json!({"since": {"offset": 0, "epoch": epoch, "room": "user:bob"}})],
        ),
        (
            "subscribe:trades",
            vec![json!({"since": {"user:bob": {"offset": 0, "epoch": epoch}}})],
        ),
        (
            "subscribe:watchlist",
            vec![json!({"symbols": ["user:bob"]})],
        ),
        (
            "subscribe:watchlist",
            vec![json!({"symbols": ["../user:bob"]})],
        ),
        (
            "subscribe:watchlist",
            vec![json!({"symbols": ["PORTFOLIO:BOB"]})],
        ),
        (
            "subscribe:watchlist",
            vec![
                json!({"symbols": ["AAPL"], "since": {"user:bob": {"offset": 0, "epoch": epoch}}}),
            ],
        ),
        ("subscribe:portfolio:bob", vec![json!({})]),
        ("subscribe:user:bob", vec![json!({})]),
        ("user:bob", vec![json!({})]),
        ("portfolio:bob", vec![json!({})]),
        ("join", vec![json!("user:bob")]),
        ("subscribe", vec![json!({"room": "user:bob"})]),
        ("unsubscribe:portfolio", vec![json!({"userId": "bob"})]),
        (
            "subscribe:portfolio",
            vec![json!({"__proto__": {"userId": "bob"}})],
        ),
    ];
    for (i, (event, args)) in attempts.iter().enumerate() {
        let answer = ask(&mut alice, event, args, 100 + i as u64).await;
        if let Some(err) = answer.get("error") {
            assert!(err["code"].is_string(), "{event}: {answer}");
            continue;
        }
        for key in ["rooms", "recovery", "symbols"] {
            let text = answer.get(key).map(Value::to_string).unwrap_or_default();
            assert!(
                !text.contains("bob"),
                "{event} {args:?} opened a room of bob's: {answer}"
            );
        }
        if let Some(room) = answer.get("room") {
            assert!(
                room == "portfolio:alice" || room == "user:alice",
                "{event}: {answer}"
            );
        }
    }

    // Namespace tricks: another namespace does not exist; events there are ignored.
    alice.ws.send("40/admin,");
    alice
        .ws
        .send(&format!("40/admin,{}", json!({"sessionId": bob.session})));
    alice
        .ws
        .send("42/admin,[\"subscribe:portfolio\",{\"userId\":\"bob\"}]");
    alice.ws.send("42/admin,7[\"subscribe:trades\",{}]");
    // A second CONNECT on `/` with bob's credentials is ignored (one socket per namespace).
    alice
        .ws
        .send(&format!("40{}", json!({"sessionId": bob.session})));
    alice
        .ws
        .send(&format!("40/,{}", json!({"sessionId": bob.session})));
    let _ = texts(&mut alice, Duration::from_millis(300)).await;

    // Now bob's and alice's private rooms get an event each: alice sees hers only.
    publish_private(&s, "bob", "bob-after").await;
    publish_private(&s, "alice", "alice-after").await;
    let got = texts(&mut alice, Duration::from_millis(700)).await;
    let joined = got.join("\n");
    assert!(
        !joined.contains("bob-"),
        "alice received bob's events:\n{joined}"
    );
    assert!(
        joined.contains("alice-after"),
        "alice should still get her own events:\n{joined}"
    );
    // and bob still gets his
    let got = texts(&mut bob, Duration::from_millis(300)).await.join("\n");
    assert!(got.contains("bob-after"), "{got}");
    assert!(!got.contains("alice-"), "{got}");
}

#[tokio::test]
async fn recovery_with_another_users_pid_gives_nothing_of_theirs() {
    let s = start(&[]).await;
    let mut bob = s.client("bob2").await;
    let _ = ask(&mut bob, "subscribe:portfolio", &[json!({})], 1).await;
    let (bob_sid, bob_pid) = (bob.sid.clone(), bob.pid.clone());
    assert!(
        !bob_pid.is_empty(),
        "recovery is on: the CONNECT answer carries a pid"
    );
    bob.ws.kill(); // accidental disconnect: recoverable
    tokio::time::sleep(Duration::from_millis(200)).await;
    publish_private(&s, "bob2", "bob-missed").await;

    let eve_session = s.session("eve").await;
    let mut ws = s.ws().await;
    let ok = ws
        .connect(json!({"sessionId": eve_session, "pid": bob_pid, "offset": "0"}))
        .await
        .expect("eve connects as herself");
    assert_ne!(ok["sid"], json!(bob_sid), "eve took over bob's socket id");
    assert_ne!(
        ok["pid"],
        json!(bob_pid),
        "eve's socket claims to be recovered"
    );
    let connected = ws.event("connected", T).await;
    assert_eq!(connected[0]["userId"], "eve");
    publish_private(&s, "bob2", "bob-live").await;
    let got: Vec<String> = ws
        .collect(Duration::from_millis(700))
        .await
        .into_iter()
        .filter_map(|m| match m {
            Msg::Text(t) => Some(t),
            _ => None,
        })
        .collect();
    let joined = got.join("\n");
    assert!(
        !joined.contains("bob-"),
        "eve received bob's events:\n{joined}"
    );

    // (A wrong-user attempt voids bob's detached socket: he reconnects fresh and recovers
    // with `since`. Confidentiality is what matters here; see docs/security.md.)
}

#[tokio::test]
async fn a_jwt_for_another_user_only_opens_that_users_rooms() {
    // A token is the user it names: a token for carol signed with the right key gets
    // carol's rooms, never those of the session user it is sent alongside.
    let s = start(&[]).await;
    let dave = s.session("dave").await;
    let token = jwt(&json!({"sub": "carol", "exp": now_secs() + 600}));
    let mut ws = s.ws().await;
    let _ = ws
        .connect(json!({"sessionId": dave, "token": token}))
        .await
        .expect("accepted");
    let connected = ws.event("connected", T).await;
    // sessionId takes precedence; either way the socket is exactly one user
    let user = connected[0]["userId"]
        .as_str()
        .unwrap_or_default()
        .to_owned();
    assert!(user == "dave" || user == "carol", "{connected:?}");
    let other = if user == "dave" { "carol" } else { "dave" };
    publish_private(&s, other, "other-user").await;
    publish_private(&s, &user, "own-user").await;
    let got: String = ws
        .collect(Duration::from_millis(600))
        .await
        .into_iter()
        .filter_map(|m| match m {
            Msg::Text(t) => Some(t),
            _ => None,
        })
        .collect::<Vec<_>>()
        .join("\n");
    assert!(got.contains("own-user"), "{got}");
    assert!(!got.contains("other-user"), "{got}");
}

#[tokio::test]
async fn jwt_algorithm_is_pinned_to_hs256() {
    let s = start(&[]).await;
    let claims = json!({"sub": "mallory", "exp": now_secs() + 600});
    for alg in [
        jsonwebtoken::Algorithm::HS384,
        jsonwebtoken::Algorithm::HS512,
    ] {
        let token = jsonwebtoken::encode(
            &jsonwebtoken::Header::new(alg),
            &claims,
            &jsonwebtoken::EncodingKey::from_secret(JWT_SECRET.as_bytes()),
        )
        .expect("jwt");
        let mut ws = s.ws().await;
        let e = ws
            .connect(json!({"token": token}))
            .await
            .expect_err("a token with another algorithm was accepted");
        assert_eq!(e["message"], "UNAUTHORIZED", "{alg:?}: {e}");
    }
    // a token whose sub is not a valid user id
    let token = jwt(&json!({"sub": "a b/../c", "exp": now_secs() + 600}));
    let mut ws = s.ws().await;
    let e = ws
        .connect(json!({"token": token}))
        .await
        .expect_err("bad sub");
    assert_eq!(e["message"], "UNAUTHORIZED", "{e}");
    // a token with an exp far in the past but a huge leeway claim is still expired
    let token = jwt(&json!({"sub": "u", "exp": now_secs() - 60, "leeway": 1_000_000}));
    let mut ws = s.ws().await;
    let e = ws
        .connect(json!({"token": token}))
        .await
        .expect_err("expired");
    assert_eq!(e["message"], "UNAUTHORIZED", "{e}");
}

#[tokio::test]
async fn every_api_route_needs_the_exact_key() {
    let s = start(&[]).await;
    let routes: &[(reqwest::Method, &str, Option<Value>)] = &[
        (
            reqwest::Method::POST,
            "/api/sessions",
            Some(json!({"userId": "x"})),
        ),
        (reqwest::Method::DELETE, "/api/sessions/abc", None),
        (
            reqwest::Method::POST,
            "/api/emit",
            Some(json!({"userId": "x", "event": "e", "data": 1})),
        ),
        (
            reqwest::Method::POST,
            "/api/quotes",
            Some(json!({"symbol": "A", "quote": 1})),
        ),
        (reqwest::Method::GET, "/api/rooms/user:x/history", None),
        (reqwest::Method::GET, "/api/presence/x", None),
        (reqwest::Method::GET, "/api/stats", None),
        (reqwest::Method::GET, "/api/nope", None),
    ];
    let prefix = &API_KEY[..API_KEY.len() - 1];
    let longer = format!("{API_KEY}x");
    let upper = API_KEY.to_uppercase();
    let bearer_variants: Vec<String> = vec![
        String::new(),
        format!("Bearer {prefix}"),
        format!("Bearer {longer}"),
        format!("Bearer {upper}"),
        format!("Bearer  {API_KEY}"),
        format!("bearer{API_KEY}"),
        format!("Basic {API_KEY}"),
        API_KEY.to_owned(),
        "Bearer ".to_owned(),
    ];
    for (method, path, body) in routes {
        for auth in &bearer_variants {
            let mut req = s.http.request(method.clone(), s.url(path));
            if !auth.is_empty() {
                req = req.header("authorization", auth);
            }
            if let Some(b) = body {
                req = req.json(b);
            }
            let r = req.send().await.expect("request");
            assert_eq!(r.status(), 401, "{method} {path} with {auth:?}");
            let v: Value = r.json().await.expect("json");
            assert_eq!(v["code"], "UNAUTHORIZED", "{v}");
        }
    }
    // the operator routes need none and carry no secret
    for path in [
        "/healthz",
        "/readyz",
        "/health/websocket",
        "/metrics",
        "/cluster/status",
    ] {
        let r = s.http.get(s.url(path)).send().await.expect("get");
        assert!(r.status().is_success(), "{path}: {}", r.status());
        let text = r.text().await.unwrap_or_default();
        assert!(!text.contains(API_KEY), "{path} shows the API key");
        assert!(!text.contains(JWT_SECRET), "{path} shows the JWT secret");
    }
}

/// The key check must stay constant-time: `subtle`'s `ct_eq`, never `==` on the key.
#[test]
fn api_key_comparison_uses_subtle() {
    let src = include_str!("../src/http/api.rs");
    assert!(
        src.contains("use subtle::ConstantTimeEq"),
        "api.rs no longer imports subtle"
    );
    let guard = src
        .split("async fn guard(")
        .nth(1)
        .and_then(|rest| rest.split("\nasync fn ").next())
        .expect("api.rs has the guard middleware");
    assert!(
        guard.contains(".ct_eq(state.api_key.as_bytes())"),
        "{guard}"
    );
    for bad in [
        "== state.api_key",
        "state.api_key ==",
        "eq(&state.api_key",
        ".eq(state.api_key",
    ] {
        assert!(
            !guard.contains(bad),
            "non-constant-time comparison `{bad}` in guard"
        );
    }
    // The peer handshake compares MACs with hmac's constant-time verify.
    let auth = include_str!("../raft/src/network/auth.rs");
    assert!(
        auth.contains(".verify_slice("),
        "peer auth no longer uses verify_slice"
    );
    assert!(!auth.contains("== smac") && !auth.contains("== cmac"));
}
