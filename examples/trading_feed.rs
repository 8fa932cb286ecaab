//! A trading feed for trying raftcast out: simulated trades, portfolio updates and quotes
//! published through the HTTP API, and a browser page that shows them live with the
//! official Socket.IO client.
//!
//! ```sh
//! examples/cluster.sh                     # three local nodes, API key dev-key-change-me-please
//! cargo run --example trading_feed -- --url http://127.0.0.1:5000 --api-key dev-key-change-me-please
//! # open http://127.0.0.1:8090/ (one tab per user: /?user=bob)
//! ```
//!
//! What it does:
//! - every `--quote-ms` (default 200): a quote per symbol (`POST /api/quotes`), which
//!   raftcast coalesces to at most one `quote:update` per symbol per `--quote-throttle-ms`;
//! - every `--trade-ms` (default 1500): a `trade:executed` for a random user
//!   (`POST /api/emit` with `userId`), then that user's `portfolio:update`
//!   (`POST /api/emit` to room `portfolio:<user>`), both durable;
//! - serves, on `--listen` (default 127.0.0.1:8090), a page that gets a session from this
//!   program (`GET /session?user=alice`: the API key stays here), connects to the
//!   raftcast node with `io(url, { auth: { sessionId } })`, subscribes to its trades,
//!   portfolio and watchlist, and resubscribes with `since` after a reconnect so nothing is
//!   missed (kill the node it is on and watch it move to another one).
//!
//! The page loads the official client from this program at `/socket.io.min.js`, read from
//! `tests/js/node_modules/socket.io-client/dist/socket.io.min.js` (`cd tests/js && npm ci`)
//! or from `--client-js PATH`: no CDN is needed.
//!
//! The browser page is on another origin than the nodes, so the nodes must allow it:
//! `CORS_ORIGIN=http://127.0.0.1:8090` (examples/cluster.sh sets it).

use std::collections::HashMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::{Query, State};
use axum::http::{header, StatusCode};
use axum::response::{Html, IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use clap::Parser;
use rand::Rng;
use serde_json::{json, Value};

/// Simulated trading feed published through raftcast's HTTP API, with a live browser page.
#[derive(Debug, Clone, Parser)]
struct Args {
    /// A raftcast node (or the load balancer in front of the nodes).
    #[arg(long, default_value = "http://127.0.0.1:5000")]
    url: String,
    /// The nodes' API key.
    #[arg(long, env = "RAFTCAST_API_KEY")]
    api_key: String,
    /// Where the demo page is served.
    #[arg(long, default_value = "127.0.0.1:8090")]
    listen: String,
    /// The URL browsers use to reach raftcast (default: --url).
    #[arg(long)]
    public_url: Option<String>,
    /// Users that trade.
    #[arg(long, default_value = "alice,bob", value_delimiter = ',')]
    users: Vec<String>,
    /// Quoted symbols.
    #[arg(
        long,
        default_value = "AAPL,MSFT,NVDA,TSLA,AMZN",
        value_delimiter = ','
    )]
    symbols: Vec<String>,
    /// Milliseconds between quote rounds.
    #[arg(long, default_value_t = 200)]
    quote_ms: u64,
    /// Milliseconds between trades.
    #[arg(long, default_value_t = 1500)]
    trade_ms: u64,
    /// The official client's browser bundle.
    #[arg(
        long,
        default_value = "tests/js/node_modules/socket.io-client/dist/socket.io.min.js"
    )]
    client_js: PathBuf,
}

struct Demo {
    args: Args,
    http: reqwest::Client,
}

impl Demo {
    async fn post(&self, path: &str, body: Value) -> Result<(u16, Value), String> {
        let r = self
            .http
            .post(format!("{}{path}", self.args.url.trim_end_matches('/')))
            .bearer_auth(&self.args.api_key)
            .json(&body)
            .send()
            .await
            .map_err(|e| e.to_string())?;
        let code = r.status().as_u16();
        Ok((code, r.json().await.unwrap_or(Value::Null)))
    }
}

#[derive(Default)]
struct Book {
    cash: f64,
    positions: HashMap<String, i64>,
}

async fn publish(demo: Arc<Demo>) {
    let mut prices: HashMap<String, f64> = demo
        .args
        .symbols
        .iter()
        .enumerate()
        .map(|(i, s)| (s.clone(), 100.0 + 75.0 * i as f64))
        .collect();
    let mut books: HashMap<String, Book> = demo
        .args
        .users
        .iter()
        .map(|u| {
            (
                u.clone(),
                Book {
                    cash: 100_000.0,
                    ..Book::default()
                },
            )
        })
        .collect();
    let mut quote_tick = tokio::time::interval(Duration::from_millis(demo.args.quote_ms.max(10)));
    let mut trade_tick = tokio::time::interval(Duration::from_millis(demo.args.trade_ms.max(10)));
    let mut trade_id = 0u64;
    loop {
        tokio::select! {
            _ = quote_tick.tick() => {
                for (symbol, price) in prices.iter_mut() {
                    let step: f64 = rand::rng().random_range(-0.004..0.004);
                    *price = (*price * (1.0 + step)).max(1.0);
                    let p = (*price * 100.0).round() / 100.0;
                    let quote = json!({ "bid": p - 0.01, "ask": p + 0.01, "last": p });
                    if let Err(e) = demo.post("/api/quotes", json!({ "symbol": symbol, "quote": quote })).await {
                        eprintln!("quote: {e}");
                    }
                }
            }
            _ = trade_tick.tick() => {
                trade_id += 1;
                let (user, symbol, side, qty, price) = {
                    let mut rng = rand::rng();
                    let user = demo.args.users[rng.random_range(0..demo.args.users.len())].clone();
                    let symbol = demo.args.symbols[rng.random_range(0..demo.args.symbols.len())].clone();
                    let side = if rng.random_bool(0.5) { "buy" } else { "sell" };
                    let qty: i64 = rng.random_range(1..50);
                    (user, symbol.clone(), side, qty, (prices[&symbol] * 100.0).round() / 100.0)
                };
                let trade = json!({ "tradeId": format!("T{trade_id}"), "symbol": symbol, "side": side, "qty": qty, "price": price, "executedAt": raftcast::util::rfc3339_ms(raftcast::util::now_unix_ms()) });
                match demo.post("/api/emit", json!({ "userId": user, "event": "trade:executed", "data": trade })).await {
                    Ok((200, v)) => println!("trade T{trade_id} {side} {qty} {symbol} @ {price} for {user}: offset {}", v["offset"]),
                    Ok((code, v)) => { eprintln!("trade: HTTP {code} {v}"); continue; }
                    Err(e) => { eprintln!("trade: {e}"); continue; }
                }
                let book = books.entry(user.clone()).or_default();
                let signed = if side == "buy" { qty } else { -qty };
                *book.positions.entry(symbol.clone()).or_default() += signed;
                book.cash -= signed as f64 * price;
                let positions: Vec<Value> = book.positions.iter().filter(|(_, q)| **q != 0).map(|(s, q)| json!({ "symbol": s, "qty": q, "price": (prices[s] * 100.0).round() / 100.0 })).collect();
                let value = book.cash + book.positions.iter().map(|(s, q)| *q as f64 * prices[s]).sum::<f64>();
                let update = json!({ "cash": (book.cash * 100.0).round() / 100.0, "value": (value * 100.0).round() / 100.0, "positions": positions });
                if let Err(e) = demo.post("/api/emit", json!({ "room": format!("portfolio:{user}"), "event": "portfolio:update", "data": update })).await {
                    eprintln!("portfolio: {e}");
                }
            }
        }
    }
}

#[derive(serde::Deserialize)]
struct UserQuery {
    user: Option<String>,
}

async fn session(State(demo): State<Arc<Demo>>, Query(q): Query<UserQuery>) -> Response {
    let user = q.user.filter(|u| !u.is_empty()).unwrap_or_else(|| {
        demo.args
            .users
            .first()
            .cloned()
            .unwrap_or_else(|| "alice".into())
    });
    match demo.post("/api/sessions", json!({ "userId": user })).await {
        Ok((201, v)) => Json(json!({
            "sessionId": v["sessionId"],
            "userId": v["userId"],
            "url": demo.args.public_url.clone().unwrap_or_else(|| demo.args.url.clone()),
            "symbols": demo.args.symbols,
        }))
        .into_response(),
        Ok((code, v)) => (
            StatusCode::BAD_GATEWAY,
            format!("raftcast answered {code}: {v}"),
        )
            .into_response(),
        Err(e) => (
            StatusCode::BAD_GATEWAY,
            format!("raftcast unreachable: {e}"),
        )
            .into_response(),
    }
}

async fn client_js(State(demo): State<Arc<Demo>>) -> Response {
    match tokio::fs::read(&demo.args.client_js).await {
        Ok(b) => ([(header::CONTENT_TYPE, "text/javascript")], b).into_response(),
        Err(e) => (
            StatusCode::NOT_FOUND,
            format!(
                "socket.io.min.js not found at {} ({e}): run `cd tests/js && npm ci`, or pass --client-js",
                demo.args.client_js.display()
            ),
        )
            .into_response(),
    }
}

#[tokio::main]
async fn main() {
    let args = Args::parse();
    let listen = args.listen.clone();
    if !args.client_js.exists() {
        eprintln!(
            "warning: {} is missing: the page cannot load the Socket.IO client (cd tests/js && npm ci)",
            args.client_js.display()
        );
    }
    let demo = Arc::new(Demo {
        args,
        http: reqwest::Client::builder()
            .timeout(Duration::from_secs(5))
            .build()
            .unwrap_or_default(),
    });
    tokio::spawn(publish(demo.clone()));
    let app = Router::new()
        .route("/", get(|| async { Html(PAGE) }))
        .route("/session", get(session))
        .route("/socket.io.min.js", get(client_js))
        .with_state(demo);
    let listener = match tokio::net::TcpListener::bind(&listen).await {
        Ok(l) => l,
        Err(e) => {
            eprintln!("cannot listen on {listen}: {e}");
            std::process::exit(1);
        }
    };
    println!("trading feed: open http://{listen}/ (another user: http://{listen}/?user=bob)");
    println!("the nodes must allow this origin: CORS_ORIGIN=http://{listen}");
    if let Err(e) = axum::serve(listener, app).await {
        eprintln!("server: {e}");
    }
}

const PAGE: &str = r#"<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>raftcast trading feed</title>
<link rel="icon" href="data:,">
<style>
body{margin:0;font:14px/1.4 system-ui,sans-serif;background:#0f1420;color:#e6e9ef}
header{padding:12px 20px;background:#161c2c;display:flex;gap:16px;align-items:center}
h1{font-size:18px;margin:0}.pill{padding:2px 10px;border-radius:99px;background:#334;font-size:12px}
.on{background:#12805c}.off{background:#c53030}
main{display:grid;grid-template-columns:1fr 1fr;gap:16px;padding:16px 20px}
section{background:#161c2c;border-radius:8px;padding:12px 14px}h2{font-size:14px;margin:0 0 8px;color:#9aa4b8}
table{width:100%;border-collapse:collapse}td,th{padding:4px 8px;text-align:right;border-bottom:1px solid #232b3f;font-variant-numeric:tabular-nums}
td:first-child,th:first-child{text-align:left}.up{color:#38c172}.down{color:#e3342f}.buy{color:#38c172}.sell{color:#e3342f}
.mono{font-family:ui-monospace,monospace;font-size:12px;color:#9aa4b8}
</style></head><body>
<header><h1>raftcast trading feed</h1><span id="conn" class="pill off">connecting</span><span id="who" class="mono"></span></header>
<main>
<section><h2>Watchlist (quote:update, volatile, coalesced)</h2><table id="quotes"><thead><tr><th>Symbol</th><th>Bid</th><th>Ask</th><th>Last</th></tr></thead><tbody></tbody></table></section>
<section><h2>Portfolio (portfolio:update, durable)</h2><div id="pf" class="mono">waiting…</div><table id="positions"><thead><tr><th>Symbol</th><th>Qty</th><th>Price</th></tr></thead><tbody></tbody></table></section>
<section style="grid-column:1/3"><h2>Trades (trade:executed, durable; replayed after a reconnect)</h2><table id="trades"><thead><tr><th>Trade</th><th>Side</th><th>Qty</th><th>Symbol</th><th>Price</th><th>Offset</th><th>Node</th></tr></thead><tbody></tbody></table></section>
</main>
<script src="/socket.io.min.js"></script>
<script>
const $ = (s) => document.querySelector(s);
const td = (t, c) => { const e = document.createElement('td'); e.textContent = t; if (c) e.className = c; return e; };
const last = {};           // room -> { offset, epoch }: resubscribe with `since` after a reconnect
const prevLast = {};
let nodeId = '?';
(async () => {
  const user = new URLSearchParams(location.search).get('user') || '';
  const s = await (await fetch('/session?user=' + encodeURIComponent(user))).json();
  $('#who').textContent = 'user ' + s.userId + ' · ' + s.url;
  const socket = io(s.url, { auth: { sessionId: s.sessionId } });
  const since = (room) => last[room] ? { since: last[room] } : {};
  socket.on('connected', (info) => {
    nodeId = info.nodeId;
    $('#conn').textContent = 'connected to node ' + info.nodeId; $('#conn').className = 'pill on';
    socket.emit('subscribe:trades', since('user:' + s.userId));
    socket.emit('subscribe:portfolio', since('portfolio:' + s.userId));
    socket.emit('subscribe:watchlist', { symbols: s.symbols });
  });
  socket.on('disconnect', (why) => { $('#conn').textContent = 'disconnected (' + why + '), reconnecting'; $('#conn').className = 'pill off'; });
  socket.on('connect_error', (e) => { $('#conn').textContent = 'connect_error: ' + e.message; $('#conn').className = 'pill off'; });
  socket.on('server:shutdown', (m) => { $('#conn').textContent = 'node stopping: ' + m.reason; });
  socket.on('subscribed:trades', (a) => console.log('subscribed:trades', a));
  socket.on('trade:executed', (t, meta) => {
    last[meta.room] = { offset: meta.offset, epoch: meta.epoch };
    const tr = document.createElement('tr');
    [t.tradeId, t.side, t.qty, t.symbol, t.price.toFixed(2), meta.offset, nodeId].forEach((v, i) => tr.appendChild(td(String(v), i === 1 ? t.side : '')));
    $('#trades tbody').prepend(tr);
    while ($('#trades tbody').children.length > 15) $('#trades tbody').lastChild.remove();
  });
  socket.on('portfolio:update', (p, meta) => {
    last[meta.room] = { offset: meta.offset, epoch: meta.epoch };
    $('#pf').textContent = 'value ' + p.value.toFixed(2) + ' · cash ' + p.cash.toFixed(2) + ' · offset ' + meta.offset;
    const tb = $('#positions tbody'); tb.replaceChildren();
    for (const pos of p.positions) { const tr = document.createElement('tr'); [pos.symbol, pos.qty, pos.price.toFixed(2)].forEach((v) => tr.appendChild(td(String(v)))); tb.appendChild(tr); }
  });
  const rows = {};
  socket.on('quote:update', (q) => {
    let tr = rows[q.symbol];
    if (!tr) { tr = rows[q.symbol] = document.createElement('tr'); for (let i = 0; i < 4; i++) tr.appendChild(td('')); $('#quotes tbody').appendChild(tr); }
    const old = parseFloat(tr.children[3].textContent) || q.quote.last;
    tr.children[0].textContent = q.symbol; tr.children[1].textContent = q.quote.bid.toFixed(2);
    tr.children[2].textContent = q.quote.ask.toFixed(2); tr.children[3].textContent = q.quote.last.toFixed(2);
    tr.children[3].className = q.quote.last >= old ? 'up' : 'down';
  });
})();
</script></body></html>"#;
