//! The publisher against tiny HTTP servers of its own: headers, bodies,
//! fallbacks, retries, reply shapes and what each reply means.

use super::wire::{encode_path_segment, spec_size, wire_spec};
use super::*;
use super::http::MAX_RETRIES;
use base64::Engine as _;
use serde_json::Value;
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::sync::atomic::AtomicUsize;

const KEY: &str = "appId.keyId:SuperSecretValue123";
const WAIT: Duration = Duration::from_secs(20);

#[derive(Debug, Clone)]
struct Recorded {
    path: String,
    headers: HashMap<String, String>,
    body: String,
}

struct Canned {
    status: u16,
    headers: Vec<(&'static str, String)>,
    body: String,
}

fn reply(status: u16, body: &str) -> Canned {
    Canned {
        status,
        headers: vec![("Content-Type", "application/json".into())],
        body: body.into(),
    }
}

type Handler = Arc<dyn Fn(&Recorded) -> Canned + Send + Sync>;

/// A minimal HTTP/1.1 server with keep-alive that records requests.
struct Server {
    port: u16,
    requests: Arc<Mutex<Vec<Recorded>>>,
}

impl Server {
    fn requests(&self) -> Vec<Recorded> {
        self.requests.lock().unwrap().clone()
    }
}

fn serve(listener: TcpListener, handler: Handler) -> Server {
    let port = listener.local_addr().unwrap().port();
    let requests = Arc::new(Mutex::new(Vec::new()));
    let log = Arc::clone(&requests);
    thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let handler = Arc::clone(&handler);
            let log = Arc::clone(&log);
            thread::spawn(move || serve_connection(stream, &handler, &log));
        }
    });
    Server { port, requests }
}

fn serve_connection(stream: TcpStream, handler: &Handler, log: &Mutex<Vec<Recorded>>) {
    let mut writer = stream.try_clone().unwrap();
    let mut reader = BufReader::new(stream);
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        let path = line.split_whitespace().nth(1).unwrap_or("").to_owned();
        let mut headers = HashMap::new();
        loop {
            let mut h = String::new();
            if reader.read_line(&mut h).unwrap_or(0) == 0 {
                return;
            }
            let h = h.trim_end();
            if h.is_empty() {
                break;
            }
            if let Some((k, v)) = h.split_once(':') {
                headers.insert(k.trim().to_ascii_lowercase(), v.trim().to_owned());
            }
        }
        let len: usize = headers
            .get("content-length")
            .and_then(|l| l.parse().ok())
            .unwrap_or(0);
        let mut body = vec![0; len];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let req = Recorded {
            path,
            headers,
            body: String::from_utf8(body).unwrap(),
        };
        log.lock().unwrap().push(req.clone());
        let canned = handler(&req);
        let mut out = format!(
            "HTTP/1.1 {} X\r\nContent-Length: {}\r\n",
            canned.status,
            canned.body.len()
        );
        for (k, v) in &canned.headers {
            out.push_str(&format!("{k}: {v}\r\n"));
        }
        out.push_str("\r\n");
        out.push_str(&canned.body);
        if writer.write_all(out.as_bytes()).is_err() {
            return;
        }
    }
}

/// Listeners on 127.0.0.{1..=n}, all on one port, because Ably's
/// fallback hosts share the primary's port.
fn listeners(n: u8) -> Vec<TcpListener> {
    'retry: for _ in 0..20 {
        let first = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = first.local_addr().unwrap().port();
        let mut all = vec![first];
        for i in 2..=n {
            match TcpListener::bind(("127.0.0.".to_owned() + &i.to_string(), port)) {
                Ok(l) => all.push(l),
                Err(_) => continue 'retry,
            }
        }
        return all;
    }
    panic!("no free port shared by 127.0.0.1..{n}");
}

fn config(primary: &str, port: u16, fallbacks: &[&str]) -> PublisherConfig {
    let mut cfg = PublisherConfig::from_options(
        KEY,
        None,
        Some(primary),
        Some(port),
        false,
        Some(fallbacks.iter().map(|s| s.to_string()).collect()),
    )
    .unwrap();
    cfg.threads = 2;
    cfg.agent = "ably-pg/test".into();
    cfg.request_timeout = Duration::from_secs(5);
    cfg
}

fn batch(key: i64, channel: &str, n: usize) -> Batch {
    let messages = (0..n)
        .map(|i| OutMessage {
            id: message_id(&format!("b{key}"), i),
            name: (i % 2 == 0).then(|| "insert".to_owned()),
            data: format!(r#"{{"row":{i},"s":"q\"é"}}"#),
        })
        .collect::<Vec<_>>();
    Batch {
        key,
        channel: channel.into(),
        messages: messages.into(),
    }
}

/// Submits one job and waits for its result.
fn run(publisher: &Publisher, job: Job) -> Vec<(i64, Outcome)> {
    publisher.submit(vec![job]);
    publisher
        .results()
        .recv_timeout(WAIT)
        .expect("a result")
        .outcomes
}

fn single(publisher: &Publisher, b: Batch) -> Outcome {
    let mut outcomes = run(publisher, Job::Channel(b));
    assert_eq!(outcomes.len(), 1);
    outcomes.remove(0).1
}

#[test]
fn channel_publish_sends_headers_ids_and_json_encoded_data() {
    let mut l = listeners(1);
    let server = serve(
        l.remove(0),
        Arc::new(|_| reply(201, r#"{"channel":"x","messageId":"b1"}"#)),
    );
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();

    assert_eq!(single(&publisher, batch(1, "a/b c", 3)), Outcome::Delivered);
    assert_eq!(
        single(&publisher, batch(2, "chat:é", 1)),
        Outcome::Delivered
    );

    let reqs = server.requests();
    assert_eq!(reqs.len(), 2);
    assert_eq!(reqs[0].path, "/channels/a%2Fb%20c/messages");
    assert_eq!(reqs[1].path, "/channels/chat%3A%C3%A9/messages");
    let h = &reqs[0].headers;
    let expected_auth = format!(
        "Basic {}",
        base64::engine::general_purpose::STANDARD.encode(KEY)
    );
    assert_eq!(h["authorization"], expected_auth);
    assert_eq!(h["content-type"], "application/json");
    assert_eq!(h["accept"], "application/json");
    assert_eq!(h["x-ably-version"], "6");
    assert_eq!(h["ably-agent"], "ably-pg/test");
    assert_eq!(h["host"], format!("127.0.0.1:{}", server.port));

    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(
        body,
        serde_json::json!([
            {"id": "b1:0", "name": "insert", "data": "{\"row\":0,\"s\":\"q\\\"é\"}", "encoding": "json"},
            {"id": "b1:1", "data": "{\"row\":1,\"s\":\"q\\\"é\"}", "encoding": "json"},
            {"id": "b1:2", "name": "insert", "data": "{\"row\":2,\"s\":\"q\\\"é\"}", "encoding": "json"},
        ])
    );
    // Subscribers decode `data` back into the original object.
    let data: Value = serde_json::from_str(body[1]["data"].as_str().unwrap()).unwrap();
    assert_eq!(data, serde_json::json!({"row": 1, "s": "q\"é"}));
    drop(publisher);
}

#[test]
fn path_segments_are_encoded_like_encode_uri_component() {
    assert_eq!(encode_path_segment("a/b c"), "a%2Fb%20c");
    assert_eq!(encode_path_segment("chat:é"), "chat%3A%C3%A9");
    assert_eq!(encode_path_segment("AZaz09-_.!~*'()"), "AZaz09-_.!~*'()");
    assert_eq!(encode_path_segment("?#%+&"), "%3F%23%25%2B%26");
}

#[test]
fn error_responses_map_to_outcomes() {
    let mut l = listeners(1);
    let handler: Handler = Arc::new(|req: &Recorded| {
        let channel = req
            .path
            .trim_start_matches("/channels/")
            .trim_end_matches("/messages");
        let err = |status: u16, code: u32, msg: &str| {
            let body = format!(
                r#"{{"error":{{"message":"{msg}","code":{code},"statusCode":{status},"href":"x"}}}}"#
            );
            let mut r = reply(status, &body);
            r.headers.push(("X-Ably-ErrorCode", code.to_string()));
            r
        };
        match channel {
            "rate" => err(429, 42913, "channel rate exceeded"),
            "flood" => Canned {
                status: 429,
                headers: vec![
                    ("X-Ably-ErrorCode", "42922".into()),
                    ("X-Ably-ErrorMessage", "edge flood".into()),
                ],
                body: String::new(),
            },
            "bare429" => reply(429, ""),
            "auth" => err(401, 40101, "invalid credentials"),
            "token" => err(401, 40142, "token expired"),
            "capability" => err(401, 40160, "action not permitted"),
            "forbidden" => reply(403, ""),
            "big" => err(413, 40009, "maximum message length exceeded"),
            "badname" => err(400, 40010, "invalid channel name"),
            "badid" => err(400, 40031, "invalid message id"),
            "html" => Canned {
                status: 400,
                headers: vec![("Content-Type", "text/html".into())],
                body: "<html>bad</html>".into(),
            },
            "codestring" => reply(400, r#"{"error":{"message":"m","code":"40013"}}"#),
            "down" => err(500, 50000, "internal error"),
            "http-version" => reply(505, ""),
            "ok-proxy" => reply(200, "ok"),
            "empty-201" => reply(201, "{}"),
            "lb-404" => Canned { status: 404, headers: vec![("Content-Type", "text/html".into())], body: "<html>not found</html>".into() },
            _ => reply(201, r#"{"channel":"x","messageId":"b","serials":["s"]}"#),
        }
    });
    let server = serve(l.remove(0), handler);
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
    let outcome = |channel: &str| single(&publisher, batch(9, channel, 1));

    assert_eq!(outcome("fine"), Outcome::Delivered);
    // Only Ably's own replies count: a proxy's 200 "ok", an empty 201 and
    // a load balancer's 404 page are retried, never delivered or refused.
    assert!(matches!(outcome("ok-proxy"), Outcome::Retry { .. }));
    assert!(matches!(outcome("empty-201"), Outcome::Retry { .. }));
    assert!(matches!(outcome("lb-404"), Outcome::Retry { .. }));
    let err = |status: Option<u16>, code: Option<u32>, message: &str| PublishError {
        status,
        code,
        message: message.into(),
    };

    assert_eq!(
        outcome("rate"),
        Outcome::RateLimited {
            error: err(Some(429), Some(42913), "channel rate exceeded")
        }
    );
    assert_eq!(
        outcome("flood"),
        Outcome::RateLimited {
            error: err(Some(429), Some(42922), "edge flood")
        }
    );
    assert_eq!(
        outcome("bare429"),
        Outcome::RateLimited {
            error: err(Some(429), None, "Ably returned HTTP 429")
        }
    );
    assert_eq!(
        outcome("auth"),
        Outcome::AuthFailed {
            error: err(Some(401), Some(40101), "invalid credentials")
        }
    );
    assert!(
        matches!(outcome("token"), Outcome::AuthFailed { error } if error.code == Some(40142))
    );
    assert!(
        matches!(outcome("capability"), Outcome::Rejected { error } if error.code == Some(40160)),
        "a capability refusal concerns that channel only"
    );
    assert!(
        matches!(outcome("forbidden"), Outcome::Retry { error } if error.status == Some(403)),
        "a bare 403 is not Ably's: retried, it does not pause delivery"
    );
    assert_eq!(
        outcome("big"),
        Outcome::Rejected {
            error: err(Some(413), Some(40009), "maximum message length exceeded")
        }
    );
    assert!(
        matches!(outcome("badname"), Outcome::Rejected { error } if error.code == Some(40010))
    );
    assert!(
        matches!(outcome("badid"), Outcome::Rejected { error } if error.code == Some(40031))
    );
    assert_eq!(
        outcome("html"),
        Outcome::Retry {
            error: err(Some(400), None, "Ably returned HTTP 400")
        }
    );
    assert_eq!(
        outcome("codestring"),
        Outcome::Rejected {
            error: err(Some(400), Some(40013), "m")
        }
    );
    assert_eq!(
        outcome("down"),
        Outcome::Retry {
            error: err(Some(500), Some(50000), "internal error")
        }
    );
    assert!(
        matches!(outcome("http-version"), Outcome::Retry { error } if error.status == Some(505))
    );

    let shown = outcome("rate").error().unwrap().to_string();
    assert_eq!(shown, "channel rate exceeded (HTTP 429, Ably error 42913)");
    drop(publisher);
}

#[test]
fn falls_back_on_503_with_same_body_and_sticks_to_the_fallback() {
    let mut l = listeners(2);
    let primary = serve(l.remove(0), Arc::new(|_| reply(503, "")));
    let fallback = serve(l.remove(0), Arc::new(|_| reply(201, r#"{"channel":"x","messageId":"b","serials":["s"]}"#)));
    let publisher =
        Publisher::start(config("127.0.0.1", primary.port, &["127.0.0.2"])).unwrap();

    assert_eq!(single(&publisher, batch(1, "c", 2)), Outcome::Delivered);
    let (p, f) = (primary.requests(), fallback.requests());
    assert_eq!((p.len(), f.len()), (1, 1));
    assert_eq!(p[0].body, f[0].body, "a retry must resend the same ids");
    assert_eq!(f[0].headers["host"], format!("127.0.0.2:{}", primary.port));

    // The fallback that worked is used first from now on.
    assert_eq!(single(&publisher, batch(2, "c", 1)), Outcome::Delivered);
    assert_eq!(
        (primary.requests().len(), fallback.requests().len()),
        (1, 2)
    );
    drop(publisher);
}

#[test]
fn falls_back_when_the_primary_refuses_connections() {
    let mut l = listeners(2);
    // Nothing listens on 127.0.0.3 at this port.
    drop(l.remove(0));
    let fallback = serve(l.remove(0), Arc::new(|_| reply(201, r#"{"channel":"x","messageId":"b","serials":["s"]}"#)));
    let publisher =
        Publisher::start(config("127.0.0.3", fallback.port, &["127.0.0.2"])).unwrap();
    assert_eq!(single(&publisher, batch(1, "c", 1)), Outcome::Delivered);
    assert_eq!(fallback.requests().len(), 1);
    drop(publisher);
}

#[test]
fn gives_up_after_three_retries_and_reports_retry() {
    let l = listeners(6);
    let port = l[0].local_addr().unwrap().port();
    let servers: Vec<Server> = l
        .into_iter()
        .map(|l| serve(l, Arc::new(|_| reply(503, ""))))
        .collect();
    let fallbacks = [
        "127.0.0.2",
        "127.0.0.3",
        "127.0.0.4",
        "127.0.0.5",
        "127.0.0.6",
    ];
    let publisher = Publisher::start(config("127.0.0.1", port, &fallbacks)).unwrap();
    let outcome = single(&publisher, batch(1, "c", 1));
    assert!(
        matches!(&outcome, Outcome::Retry { error } if error.status == Some(503)),
        "{outcome:?}"
    );
    let total: usize = servers.iter().map(|s| s.requests().len()).sum();
    assert_eq!(total, 1 + MAX_RETRIES);
    assert_eq!(servers[0].requests().len(), 1, "the primary is tried first");

    // Nothing listening anywhere: a network error, no status.
    let refused = config("127.0.0.7", port, &["127.0.0.8"]);
    let publisher = Publisher::start(refused).unwrap();
    let outcome = single(&publisher, batch(1, "c", 1));
    assert!(
        matches!(&outcome, Outcome::Retry { error } if error.status.is_none()),
        "{outcome:?}"
    );
}

#[test]
fn a_silent_server_times_out_as_retry() {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port();
    let held = thread::spawn(move || {
        let conn = listener.accept().map(|(s, _)| s);
        thread::sleep(Duration::from_secs(3));
        drop(conn);
    });
    let mut cfg = config("127.0.0.1", port, &[]);
    cfg.request_timeout = Duration::from_millis(300);
    let publisher = Publisher::start(cfg).unwrap();
    let started = Instant::now();
    let outcome = single(&publisher, batch(1, "c", 1));
    assert!(
        matches!(&outcome, Outcome::Retry { error } if error.status.is_none()),
        "{outcome:?}"
    );
    assert!(started.elapsed() < Duration::from_secs(3));
    drop(publisher);
    held.join().unwrap();
}

#[test]
fn secrets_never_appear_in_debug_or_errors() {
    let secret = "SuperSecretValue123";
    let basic = base64::engine::general_purpose::STANDARD.encode(KEY);
    let cfg = config("127.0.0.1", 1, &[]);
    let debug = format!("{cfg:?}");
    assert!(
        !debug.contains(secret) && !debug.contains(&basic),
        "{debug}"
    );
    assert!(debug.contains("appId.keyId"));

    let bad = PublisherConfig::from_options(
        "appId.keyId-SuperSecretValue123",
        None,
        None,
        None,
        true,
        None,
    );
    let bad = bad.unwrap_err();
    assert!(!format!("{bad} {bad:?}").contains(secret));
    let url = "https://u:hunter2@ably.example";
    for bad in [
        PublisherConfig::from_options(KEY, None, Some(url), None, true, None),
        PublisherConfig::from_options(KEY, Some("u:hunter2@id"), None, None, true, None),
    ] {
        let bad = bad.unwrap_err();
        assert!(!format!("{bad} {bad:?}").contains("hunter2"), "{bad}");
    }

    // A server echoing the key back (or a proxy echoing the header).
    let mut l = listeners(1);
    let echo = format!(
        r#"{{"error":{{"message":"bad key {KEY} / {basic}","code":40101,"statusCode":401}}}}"#
    );
    let server = serve(l.remove(0), Arc::new(move |_| reply(401, &echo)));
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
    let outcome = single(&publisher, batch(1, "c", 1));
    let error = outcome.error().unwrap();
    for shown in [
        format!("{error}"),
        format!("{error:?}"),
        format!("{outcome:?}"),
        format!("{publisher:?}"),
    ] {
        assert!(
            !shown.contains(secret) && !shown.contains(&basic),
            "{shown}"
        );
    }
    assert!(
        error.message.contains("appId.keyId:<redacted>"),
        "{}",
        error.message
    );
    drop(publisher);
}

/// Answers a batch publish per channel, by the channel's name.
fn batch_handler(shape: &'static str) -> Handler {
    Arc::new(move |req: &Recorded| {
        if req.path != "/messages" {
            return reply(201, r#"{"channel":"x","messageId":"b","serials":["s"]}"#);
        }
        let specs: Vec<Value> = serde_json::from_str(&req.body).unwrap();
        let result = |spec: &Value| {
            let channel = spec["channels"].as_str().unwrap();
            let id = spec["messages"][0]["id"]
                .as_str()
                .unwrap()
                .split(':')
                .next()
                .unwrap();
            match channel {
                c if c.starts_with("deny") => serde_json::json!({"channel": c, "error":
                    {"message": "denied", "code": 40160, "statusCode": 401}}),
                c if c.starts_with("slow") => serde_json::json!({"channel": c, "error":
                    {"message": "rate", "code": 42913}}),
                c if c.starts_with("bad") => serde_json::json!({"channel": c, "error":
                    {"message": "bad name", "code": 40010, "statusCode": 400}}),
                c => serde_json::json!({"channel": c, "messageId": id, "serials": ["s1"]}),
            }
        };
        let results: Vec<Value> = specs
            .iter()
            .filter(|s| !s["channels"].as_str().unwrap().starts_with("lost"))
            .map(result)
            .collect();
        let failed = results.iter().any(|r| r.get("error").is_some());
        match shape {
            "current" => {
                let per_spec: Vec<Value> = results
                    .iter()
                    .map(|r| {
                        let ok = r.get("error").is_none();
                        serde_json::json!({"successCount": ok as u8, "failureCount": (!ok) as u8, "results": [r]})
                    })
                    .collect();
                reply(200, &Value::Array(per_spec).to_string())
            }
            _ if failed => reply(
                400,
                &serde_json::json!({"error": {"message": "Batched response includes errors",
                    "code": 40020, "statusCode": 400}, "batchResponse": results})
                .to_string(),
            ),
            _ => reply(201, &Value::Array(results).to_string()),
        }
    })
}

#[test]
fn batch_publish_current_response_shape() {
    let mut l = listeners(1);
    let server = serve(l.remove(0), batch_handler("current"));
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
    let job = Job::Multi(vec![
        batch(1, "ok", 2),
        batch(2, "deny", 1),
        batch(3, "slow", 1),
        batch(4, "bad", 1),
        batch(5, "lost", 1),
    ]);
    let outcomes = run(&publisher, job);
    let keys: Vec<i64> = outcomes.iter().map(|(k, _)| *k).collect();
    assert_eq!(keys, [1, 2, 3, 4, 5]);
    assert_eq!(outcomes[0].1, Outcome::Delivered);
    assert!(
        matches!(&outcomes[1].1, Outcome::Rejected { error } if error.code == Some(40160))
    );
    assert!(
        matches!(&outcomes[2].1, Outcome::RateLimited { error } if error.status == Some(429)),
        "status is derived from the code: {:?}",
        outcomes[2].1
    );
    assert!(matches!(&outcomes[3].1, Outcome::Rejected { error } if error.code == Some(40010)));
    assert!(matches!(&outcomes[4].1, Outcome::Retry { .. }));

    let reqs = server.requests();
    assert_eq!(reqs.len(), 1);
    assert_eq!(reqs[0].path, "/messages");
    assert_eq!(reqs[0].headers["x-ably-version"], "6");
    let body: Value = serde_json::from_str(&reqs[0].body).unwrap();
    assert_eq!(body[0]["channels"], "ok");
    assert_eq!(body[0]["messages"][1]["id"], "b1:1");
    assert_eq!(body[0]["messages"][1]["encoding"], "json");
    assert_eq!(body.as_array().unwrap().len(), 5);

    // Every channel answered, one with an error: only that one refused
    // (the reading of an all-delivered reply must not take it for one).
    let outcomes = run(&publisher, Job::Multi(vec![batch(6, "ok2", 1), batch(7, "deny2", 1), batch(8, "ok3", 1)]));
    assert_eq!(outcomes[0], (6, Outcome::Delivered));
    assert!(matches!(&outcomes[1].1, Outcome::Rejected { error } if error.code == Some(40160)));
    assert_eq!(outcomes[2], (8, Outcome::Delivered));
    drop(publisher);
}

#[test]
fn batch_publish_legacy_response_shapes() {
    let mut l = listeners(1);
    let server = serve(l.remove(0), batch_handler("legacy"));
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();

    // 201 with a flat array.
    let outcomes = run(
        &publisher,
        Job::Multi(vec![batch(1, "a", 1), batch(2, "b", 1)]),
    );
    assert_eq!(
        outcomes,
        vec![(1, Outcome::Delivered), (2, Outcome::Delivered)]
    );

    // 400 {error, batchResponse}: per-channel, not the 40020 wrapper.
    let outcomes = run(
        &publisher,
        Job::Multi(vec![
            batch(3, "a", 1),
            batch(4, "bad", 1),
            batch(5, "lost", 1),
        ]),
    );
    assert_eq!(outcomes[0], (3, Outcome::Delivered));
    assert!(matches!(&outcomes[1].1, Outcome::Rejected { error } if error.code == Some(40010)));
    assert!(matches!(&outcomes[2].1, Outcome::Retry { .. }));
    drop(publisher);

    // A plain error response applies to every batch.
    let mut l = listeners(1);
    let body = r#"{"error":{"message":"invalid body","code":40001,"statusCode":400}}"#;
    let server = serve(l.remove(0), Arc::new(move |_| reply(400, body)));
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
    let outcomes = run(
        &publisher,
        Job::Multi(vec![batch(1, "a", 1), batch(2, "b", 1)]),
    );
    for (_, outcome) in &outcomes {
        assert!(matches!(outcome, Outcome::Rejected { error } if error.code == Some(40001)));
    }
    drop(publisher);
}

#[test]
fn multi_jobs_are_split_to_fit_batch_limits() {
    let mut l = listeners(1);
    let server = serve(l.remove(0), batch_handler("current"));
    let publisher = Publisher::start(config("127.0.0.1", server.port, &[])).unwrap();
    let mut batches: Vec<Batch> = (0..150).map(|i| batch(i, &format!("c{i}"), 1)).collect();
    batches.push(batch(150, "c120", 1)); // repeats a channel: needs its own request
    let outcomes = run(&publisher, Job::Multi(batches));
    assert_eq!(outcomes.len(), 151);
    assert!(outcomes
        .iter()
        .enumerate()
        .all(|(i, (k, o))| *k == i as i64 && *o == Outcome::Delivered));
    let reqs = server.requests();
    let counts: Vec<usize> = reqs
        .iter()
        .map(|r| {
            serde_json::from_str::<Vec<Value>>(&r.body)
                .map(|v| v.len())
                .unwrap_or(0)
        })
        .collect();
    // The repeated channel went alone, last, to the channel endpoint.
    assert_eq!(counts, [100, 50, 1]);
    assert_eq!(reqs[2].path, "/channels/c120/messages");
    drop(publisher);
}

#[test]
fn pack_respects_channels_count_and_body_size() {
    let big = |key: i64| Batch {
        key,
        channel: format!("big{key}"),
        messages: vec![OutMessage {
            id: message_id("x", 0),
            name: None,
            data: "7".repeat(600_000),
        }]
        .into(),
    };
    let jobs = pack((0..5).map(big).collect());
    let sizes: Vec<usize> = jobs
        .iter()
        .map(|j| match j {
            Job::Multi(b) => b.len(),
            Job::Channel(_) => 1,
        })
        .collect();
    assert_eq!(
        sizes,
        [3, 2],
        "three 600 kB specs fit under 2 MiB, four do not"
    );

    let jobs = pack((0..250).map(|i| batch(i, &format!("c{i}"), 1)).collect());
    let sizes: Vec<usize> = jobs
        .iter()
        .map(|j| if let Job::Multi(b) = j { b.len() } else { 1 })
        .collect();
    assert_eq!(sizes, [100, 100, 50]);

    let jobs = pack(vec![batch(1, "a", 1)]);
    assert!(matches!(&jobs[..], [Job::Channel(b)] if b.key == 1));
    let jobs = pack(vec![batch(1, "a", 1), batch(2, "a", 1), batch(3, "b", 1)]);
    assert!(
        matches!(&jobs[..], [Job::Channel(a), Job::Multi(rest)] if a.key == 1 && rest.len() == 2)
    );
    assert!(pack(Vec::new()).is_empty());

    // The measured size is the real serialized size.
    let b = batch(1, "chat:é", 3);
    assert_eq!(
        spec_size(&b),
        serde_json::to_vec(&wire_spec(&b)).unwrap().len()
    );
    // Also with every escape serde_json writes, with and without a name.
    let every_byte: String = (0u8..0x80).map(char::from).collect();
    let odd = Batch {
        key: 2,
        channel: format!("c\"{every_byte}"),
        messages: vec![
            OutMessage { id: "x:0".into(), name: Some(format!("n\\{every_byte}")), data: format!(r#"{{"a":"\u0001\n{every_byte}é"}}"#) },
            OutMessage { id: "x:1".into(), name: None, data: every_byte.clone() },
        ]
        .into(),
    };
    assert_eq!(spec_size(&odd), serde_json::to_vec(&wire_spec(&odd)).unwrap().len());
}

#[test]
fn message_ids_share_a_base() {
    assert_eq!(message_id("row-17", 3), "row-17:3");
}

#[test]
fn backoff_stays_within_bounds() {
    for attempt in [0, 1, 5, 8, 9, 20, 64, u32::MAX] {
        let cap = (100u64 << attempt.min(20)).min(30_000);
        for _ in 0..200 {
            assert!(
                backoff(attempt) <= Duration::from_millis(cap),
                "attempt {attempt}"
            );
        }
    }
    assert!(
        (0..200)
            .map(|_| backoff(30))
            .any(|d| d > Duration::from_secs(15)),
        "reaches the cap"
    );
    assert!((0..200)
        .map(|_| backoff(0))
        .all(|d| d <= Duration::from_millis(100)));
}

#[test]
fn hosts_follow_ably_endpoint_rules() {
    let hosts =
        |endpoint: Option<&str>, rest_host: Option<&str>, port: Option<u16>, tls: bool| {
            let cfg = PublisherConfig::from_options(KEY, endpoint, rest_host, port, tls, None)
                .unwrap();
            (cfg.rest_host, cfg.port, cfg.fallback_hosts)
        };
    let letters = |id: &str, domain: &str| -> Vec<String> {
        ["a", "b", "c", "d", "e"]
            .iter()
            .map(|l| format!("{id}.{l}.fallback.{domain}"))
            .collect()
    };
    assert_eq!(
        hosts(None, None, None, true),
        (
            "main.realtime.ably.net".into(),
            443,
            letters("main", "ably-realtime.com")
        )
    );
    assert_eq!(
        hosts(Some(""), Some(" "), None, false).1,
        80,
        "empty means unset"
    );
    assert_eq!(
        hosts(Some("acme"), None, None, true),
        (
            "acme.realtime.ably.net".into(),
            443,
            letters("acme", "ably-realtime.com")
        )
    );
    assert_eq!(
        hosts(Some("nonprod:sandbox"), None, None, true),
        (
            "sandbox.realtime.ably-nonprod.net".into(),
            443,
            letters("sandbox", "ably-realtime-nonprod.com")
        )
    );
    assert_eq!(
        hosts(Some("localhost"), None, Some(8080), false),
        ("localhost".into(), 8080, vec![])
    );
    assert_eq!(
        hosts(Some("ably.example.com"), None, None, true),
        ("ably.example.com".into(), 443, vec![])
    );
    assert_eq!(
        hosts(Some("::1"), None, None, false),
        ("::1".into(), 80, vec![])
    );
    assert_eq!(
        hosts(None, Some("127.0.0.1"), None, false),
        ("127.0.0.1".into(), 80, vec![])
    );
    assert_eq!(
        hosts(Some("main"), None, Some(8443), true),
        ("main.realtime.ably.net".into(), 8443, vec![])
    );

    let explicit = PublisherConfig::from_options(
        KEY,
        None,
        None,
        None,
        true,
        Some(vec!["f1.example".into()]),
    );
    assert_eq!(explicit.unwrap().fallback_hosts, ["f1.example"]);
    for disabled in [vec![], vec![String::new()]] {
        let none = PublisherConfig::from_options(KEY, None, None, None, true, Some(disabled));
        assert!(none.unwrap().fallback_hosts.is_empty());
    }

    let err = |endpoint, rest_host, port, fallbacks| {
        PublisherConfig::from_options(KEY, endpoint, rest_host, port, true, fallbacks)
            .unwrap_err()
    };
    assert_eq!(
        hosts(Some("main"), Some("local.test"), None, true),
        ("local.test".into(), 443, vec![]),
        "rest_host overrides endpoint"
    );
    assert!(matches!(
        err(Some("nonprod:"), None, None, None),
        PublisherError::InvalidEndpoint(_)
    ));
    assert!(matches!(
        err(Some("a b"), None, None, None),
        PublisherError::InvalidEndpoint(_)
    ));
    assert!(matches!(
        err(None, Some("user@host"), None, None),
        PublisherError::InvalidHost(_)
    ));
    assert!(matches!(
        err(None, Some("h/path"), None, None),
        PublisherError::InvalidHost(_)
    ));
    assert!(matches!(
        err(None, None, None, Some(vec!["ok".into(), "bad host".into()])),
        PublisherError::InvalidHost(_)
    ));
    assert!(matches!(
        err(None, None, Some(0), None),
        PublisherError::InvalidPort
    ));
}

#[test]
fn threads_block_signals_and_the_caller_mask_is_restored() {
    fn blocked(signal: libc::c_int) -> bool {
        unsafe {
            let mut current: libc::sigset_t = std::mem::zeroed();
            libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut current);
            libc::sigismember(&current, signal) == 1
        }
    }
    let probe_seen = Arc::new(AtomicUsize::new(0));
    let (tx, rx) = crossbeam_channel::unbounded();
    // Run the real worker loop with a wake hook that reports its mask.
    let mut cfg = config("127.0.0.1", 9, &[]);
    let seen = Arc::clone(&probe_seen);
    cfg.wake = Some(Arc::new(move || {
        seen.fetch_add(1, Ordering::SeqCst);
        let _ =
            tx.send(blocked(libc::SIGTERM) && blocked(libc::SIGUSR1) && blocked(libc::SIGINT));
    }));
    cfg.request_timeout = Duration::from_millis(500);
    let was_blocked = blocked(libc::SIGTERM);
    let publisher = Publisher::start(cfg).unwrap();
    assert_eq!(
        blocked(libc::SIGTERM),
        was_blocked,
        "start restores the caller's mask"
    );
    publisher.submit(vec![Job::Channel(batch(1, "c", 1))]);
    assert!(
        rx.recv_timeout(WAIT).unwrap(),
        "publisher threads block all signals"
    );
    assert!(publisher.results().recv_timeout(WAIT).is_ok());
    assert_eq!(probe_seen.load(Ordering::SeqCst), 1);
    drop(publisher);
}

#[test]
fn start_rechecks_hand_edited_config() {
    let mut cfg = config("127.0.0.1", 9, &[]);
    cfg.agent = "bad\r\nX-Injected: 1".into();
    assert!(matches!(
        Publisher::start(cfg),
        Err(PublisherError::InvalidAgent)
    ));
    let mut cfg = config("127.0.0.1", 9, &[]);
    cfg.fallback_hosts.push("evil.example/path?".into());
    assert!(matches!(
        Publisher::start(cfg),
        Err(PublisherError::InvalidHost(_))
    ));
}

#[test]
fn shutdown_returns_promptly_and_empty_batches_need_no_request() {
    let publisher = Publisher::start(config("127.0.0.1", 9, &[])).unwrap();
    let empty = Batch {
        key: 5,
        channel: "c".into(),
        messages: Vec::new().into(),
    };
    assert_eq!(single(&publisher, empty), Outcome::Delivered);
    let started = Instant::now();
    drop(publisher);
    assert!(started.elapsed() < Duration::from_secs(2));
}
