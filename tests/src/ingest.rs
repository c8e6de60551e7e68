//! A Pyroscope ingest endpoint for tests: a real HTTP/1.1 server (hyper) on
//! 127.0.0.1 that implements `POST /ingest?name=&from=&until=&format=pprof`,
//! decodes every pprof body it gets (gzip-compressed or not) and records
//! it with the labels parsed from `name` the way Pyroscope parses them.
//!
//! It can be told to answer with an error status, to hang (accept the
//! request and never answer), and be stopped and started again on the same
//! port. With [`IngestReceiver::start_tls`] it speaks HTTPS (rustls). It runs on its own thread and runtime, so stopping it closes every
//! connection at once, as a crashed server would.

use std::collections::{BTreeMap, VecDeque};
use std::convert::Infallible;
use std::io::Read;
use std::net::{SocketAddr, TcpListener};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use http_body_util::{BodyExt, Full};
use hyper::body::{Bytes, Incoming};
use hyper::server::conn::http1;
use hyper::service::service_fn;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;

use crate::{Message, PprofProfile};

/// One profile the receiver took.
#[derive(Clone, Debug)]
pub struct Received {
    /// The `name` parameter as sent.
    pub name: String,
    /// The application name in `name` (before `{`).
    pub app_name: String,
    /// The labels in `name`.
    pub labels: BTreeMap<String, String>,
    pub from: u64,
    pub until: u64,
    /// Every query parameter.
    pub query: BTreeMap<String, String>,
    /// The `Authorization` header, if any.
    pub authorization: Option<String>,
    /// The `X-Scope-OrgID` header, if any.
    pub tenant: Option<String>,
    /// Whether the body was gzip-compressed.
    pub gzip: bool,
    pub profile: PprofProfile,
}

/// How the receiver answers requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Behavior {
    /// Decode and record, answer 200 (400 if the request is not valid).
    Accept,
    /// Answer with this status without looking at the request.
    Status(u16),
    /// Never answer.
    Hang,
}

#[derive(Debug)]
struct State {
    behavior: Behavior,
    /// Statuses to answer the next requests with, before `behavior` applies.
    fail_next: VecDeque<u16>,
    received: Vec<Received>,
    /// Every request, answered or not.
    requests: usize,
    /// Why requests were refused as invalid.
    invalid: Vec<String>,
}

#[derive(Debug)]
struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[derive(Debug)]
struct Server {
    shutdown: tokio::sync::oneshot::Sender<()>,
    thread: JoinHandle<()>,
}

/// The receiver; stopped when dropped.
#[derive(Debug)]
pub struct IngestReceiver {
    addr: SocketAddr,
    shared: Arc<Shared>,
    server: Option<Server>,
    tls: Option<Arc<rustls::ServerConfig>>,
}

impl IngestReceiver {
    /// Starts a receiver on a free port of 127.0.0.1.
    pub fn start() -> IngestReceiver {
        IngestReceiver::start_with(None)
    }

    /// Starts an HTTPS receiver with a certificate chain and its private key
    /// (PEM); the certificate should name `127.0.0.1`.
    pub fn start_tls(cert_chain_pem: &str, key_pem: &str) -> IngestReceiver {
        use rustls::pki_types::pem::PemObject;
        use rustls::pki_types::{CertificateDer, PrivateKeyDer};
        let certs: Vec<CertificateDer<'static>> =
            CertificateDer::pem_slice_iter(cert_chain_pem.as_bytes())
                .collect::<Result<_, _>>()
                .expect("PEM certificates");
        let key = PrivateKeyDer::from_pem_slice(key_pem.as_bytes()).expect("a PEM private key");
        let config = rustls::ServerConfig::builder_with_provider(Arc::new(
            rustls::crypto::ring::default_provider(),
        ))
        .with_safe_default_protocol_versions()
        .expect("TLS versions")
        .with_no_client_auth()
        .with_single_cert(certs, key)
        .expect("a usable certificate and key");
        IngestReceiver::start_with(Some(Arc::new(config)))
    }

    fn start_with(tls: Option<Arc<rustls::ServerConfig>>) -> IngestReceiver {
        let listener = TcpListener::bind("127.0.0.1:0").expect("bind 127.0.0.1:0");
        let addr = listener.local_addr().expect("local address");
        let shared = Arc::new(Shared {
            state: Mutex::new(State {
                behavior: Behavior::Accept,
                fail_next: VecDeque::new(),
                received: Vec::new(),
                requests: 0,
                invalid: Vec::new(),
            }),
            changed: Condvar::new(),
        });
        let server = serve(listener, shared.clone(), tls.clone());
        IngestReceiver {
            addr,
            shared,
            server: Some(server),
            tls,
        }
    }

    /// `http://127.0.0.1:<port>` (`https://` with TLS), the base URL a client is given.
    pub fn url(&self) -> String {
        let scheme = if self.tls.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn is_running(&self) -> bool {
        self.server.is_some()
    }

    pub fn set_behavior(&self, behavior: Behavior) {
        self.shared.lock().behavior = behavior;
    }

    /// Answers the next `n` requests with `status`, then behaves as set.
    pub fn fail_next(&self, n: usize, status: u16) {
        self.shared
            .lock()
            .fail_next
            .extend(std::iter::repeat_n(status, n));
    }

    /// The profiles taken so far, in arrival order.
    pub fn received(&self) -> Vec<Received> {
        self.shared.lock().received.clone()
    }

    /// Requests seen so far, whatever the answer.
    pub fn requests(&self) -> usize {
        self.shared.lock().requests
    }

    /// Why requests were refused as invalid (should stay empty).
    pub fn invalid(&self) -> Vec<String> {
        self.shared.lock().invalid.clone()
    }

    /// Waits until at least `n` profiles were taken; false on timeout.
    pub fn wait_for(&self, n: usize, timeout: Duration) -> bool {
        let deadline = Instant::now() + timeout;
        let mut state = self.shared.lock();
        while state.received.len() < n {
            let Some(left) = deadline.checked_duration_since(Instant::now()) else {
                return false;
            };
            state = self
                .shared
                .changed
                .wait_timeout(state, left)
                .unwrap_or_else(|e| e.into_inner())
                .0;
        }
        true
    }

    /// Stops the server: the port is closed and open connections (hanging
    /// requests included) are cut. What was received is kept.
    pub fn stop(&mut self) {
        if let Some(server) = self.server.take() {
            let _ = server.shutdown.send(());
            server.thread.join().expect("receiver thread panicked");
        }
    }

    /// Starts the server again on the same port.
    pub fn restart(&mut self) {
        self.stop();
        // std sets SO_REUSEADDR, so connections of the previous server in
        // TIME_WAIT do not hold the port; retry briefly all the same.
        let deadline = Instant::now() + Duration::from_secs(5);
        let listener = loop {
            match TcpListener::bind(self.addr) {
                Ok(listener) => break listener,
                Err(e) if Instant::now() < deadline => {
                    eprintln!("receiver: rebinding {}: {e}; retrying", self.addr);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Err(e) => panic!("cannot bind {} again: {e}", self.addr),
            }
        };
        self.server = Some(serve(listener, self.shared.clone(), self.tls.clone()));
    }
}

impl Drop for IngestReceiver {
    fn drop(&mut self) {
        self.stop();
    }
}

fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<Arc<rustls::ServerConfig>>,
) -> Server {
    listener
        .set_nonblocking(true)
        .expect("nonblocking listener");
    let (shutdown, mut shutdown_rx) = tokio::sync::oneshot::channel::<()>();
    let thread = std::thread::Builder::new()
        .name("ingest-receiver".into())
        .spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .expect("receiver runtime");
            runtime.block_on(async move {
                let listener =
                    tokio::net::TcpListener::from_std(listener).expect("tokio listener");
                loop {
                    tokio::select! {
                        _ = &mut shutdown_rx => break,
                        accepted = listener.accept() => {
                            let Ok((stream, _)) = accepted else { continue };
                            let shared = shared.clone();
                            let tls = tls.clone();
                            tokio::spawn(async move {
                                let service = service_fn(move |request| handle(shared.clone(), request));
                                let http = http1::Builder::new();
                                match tls {
                                    None => {
                                        let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                    }
                                    Some(config) => {
                                        let acceptor = tokio_rustls::TlsAcceptor::from(config);
                                        if let Ok(stream) = acceptor.accept(stream).await {
                                            let _ = http.serve_connection(TokioIo::new(stream), service).await;
                                        }
                                    }
                                }
                            });
                        }
                    }
                }
            });
            // Dropping the runtime cancels every connection task, closing
            // their sockets.
            drop(runtime);
        })
        .expect("spawn receiver thread");
    Server { shutdown, thread }
}

fn respond(status: u16, body: impl Into<String>) -> Response<Full<Bytes>> {
    let mut response = Response::new(Full::new(Bytes::from(body.into())));
    *response.status_mut() = StatusCode::from_u16(status).expect("a valid status");
    response
}

async fn handle(
    shared: Arc<Shared>,
    request: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let behavior = {
        let mut state = shared.lock();
        state.requests += 1;
        match state.fail_next.pop_front() {
            Some(status) => Behavior::Status(status),
            None => state.behavior,
        }
    };
    match behavior {
        Behavior::Accept => {}
        Behavior::Status(status) => return Ok(respond(status, "told to fail")),
        Behavior::Hang => std::future::pending::<()>().await,
    }
    let response = match take(request).await {
        Ok(received) => {
            shared.lock().received.push(received);
            respond(200, "")
        }
        Err(why) => {
            shared.lock().invalid.push(why.clone());
            respond(400, why)
        }
    };
    shared.changed.notify_all();
    Ok(response)
}

/// Checks and decodes one ingest request.
async fn take(request: Request<Incoming>) -> Result<Received, String> {
    if request.method() != Method::POST || request.uri().path() != "/ingest" {
        return Err(format!(
            "expected POST /ingest, got {} {}",
            request.method(),
            request.uri().path()
        ));
    }
    let query: BTreeMap<String, String> =
        form_urlencoded::parse(request.uri().query().unwrap_or("").as_bytes())
            .into_owned()
            .collect();
    let header = |name: &str| {
        request
            .headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
    };
    let authorization = header("authorization");
    let tenant = header("x-scope-orgid");
    let param = |key: &str| {
        query
            .get(key)
            .cloned()
            .ok_or_else(|| format!("no `{key}` parameter"))
    };
    let name = param("name")?;
    let number = |key: &str| -> Result<u64, String> {
        param(key)?.parse().map_err(|e| format!("bad `{key}`: {e}"))
    };
    let (from, until) = (number("from")?, number("until")?);
    if from > until {
        return Err(format!("from {from} is after until {until}"));
    }
    if param("format")? != "pprof" {
        return Err(format!("format is {:?}, not pprof", query["format"]));
    }
    let (app_name, labels) = parse_name(&name)?;
    let body = request
        .into_body()
        .collect()
        .await
        .map_err(|e| format!("reading the body: {e}"))?
        .to_bytes();
    let gzip = body.starts_with(&[0x1f, 0x8b]);
    let mut raw = Vec::new();
    let bytes = if gzip {
        flate2::read::GzDecoder::new(&body[..])
            .read_to_end(&mut raw)
            .map_err(|e| format!("bad gzip body: {e}"))?;
        &raw[..]
    } else {
        &body[..]
    };
    let profile = PprofProfile::decode(bytes).map_err(|e| format!("not a pprof body: {e}"))?;
    if profile.string_table.first().is_none_or(|s| !s.is_empty()) {
        return Err("the pprof string table does not start with \"\"".into());
    }
    Ok(Received {
        name,
        app_name,
        labels,
        from,
        until,
        query,
        authorization,
        tenant,
        gzip,
        profile,
    })
}

/// Parses `app{k=v,...}` as Pyroscope does (values end at `,` or `}` and are
/// trimmed; nothing is escaped), but strictly: the app name must be made of
/// ASCII letters, digits, `_`, `-`, `.`; label names of letters, digits and
/// `_`; no label twice; nothing after `}`.
pub fn parse_name(name: &str) -> Result<(String, BTreeMap<String, String>), String> {
    let (app, rest) = match name.split_once('{') {
        Some((app, rest)) => (app.trim(), Some(rest)),
        None => (name.trim(), None),
    };
    if app.is_empty()
        || !app
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '-' | '.'))
    {
        return Err(format!("invalid application name {app:?} in {name:?}"));
    }
    let mut labels = BTreeMap::new();
    if let Some(rest) = rest {
        let body = rest
            .strip_suffix('}')
            .ok_or_else(|| format!("{name:?} does not end with }}"))?;
        for pair in body.split(',').filter(|p| !p.is_empty()) {
            let (key, value) = pair
                .split_once('=')
                .ok_or_else(|| format!("label {pair:?} has no `=` in {name:?}"))?;
            let key = key.trim();
            if key.is_empty() || !key.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
                return Err(format!("invalid label name {key:?} in {name:?}"));
            }
            if value.contains('}') {
                return Err(format!("label value {value:?} holds `}}` in {name:?}"));
            }
            if labels
                .insert(key.to_string(), value.trim().to_string())
                .is_some()
            {
                return Err(format!("label {key:?} given twice in {name:?}"));
            }
        }
    }
    Ok((app.to_string(), labels))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_parse_like_pyroscope() {
        let (app, labels) =
            parse_name("my.app-1{env=staging, region = us-west-1 ,comm=a b}").unwrap();
        assert_eq!(app, "my.app-1");
        assert_eq!(
            labels,
            BTreeMap::from([
                ("env".to_string(), "staging".to_string()),
                ("region".to_string(), "us-west-1".to_string()),
                ("comm".to_string(), "a b".to_string()),
            ])
        );
        assert_eq!(
            parse_name("app{}").unwrap(),
            ("app".into(), BTreeMap::new())
        );
        assert_eq!(parse_name("app").unwrap(), ("app".into(), BTreeMap::new()));
        for bad in [
            "",
            "{a=b}",
            "my app{}",
            "app{a=b",
            "app{a=b}x",
            "app{a}",
            "app{a-b=c}",
            "app{a=1,a=2}",
        ] {
            assert!(parse_name(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn receiver_records_and_refuses() {
        let receiver = IngestReceiver::start();
        // A request from a plain TCP client: the server is a real HTTP server.
        let post = |path: &str, body: &[u8]| -> String {
            use std::io::Write;
            let mut stream = std::net::TcpStream::connect(receiver.addr()).unwrap();
            write!(
                stream,
                "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
                body.len()
            )
            .unwrap();
            stream.write_all(body).unwrap();
            let mut answer = String::new();
            stream.read_to_string(&mut answer).unwrap();
            answer
        };
        let profile = PprofProfile {
            string_table: vec![String::new(), "samples".into()],
            ..Default::default()
        };
        let answer = post(
            "/ingest?name=app%7Bk%3Dv%7D&from=10&until=20&format=pprof",
            &profile.encode_to_vec(),
        );
        assert!(answer.starts_with("HTTP/1.1 200"), "{answer}");
        let received = receiver.received();
        assert_eq!(received.len(), 1);
        assert_eq!(received[0].labels["k"], "v");
        assert_eq!((received[0].from, received[0].until), (10, 20));
        assert!(!received[0].gzip);
        assert_eq!(received[0].profile, profile);

        let answer = post("/ingest?name=app&from=1&until=2&format=pprof", b"\xff\xff");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        let answer = post("/other", b"");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert_eq!(receiver.invalid().len(), 2);
        receiver.fail_next(1, 503);
        let answer = post("/ingest", b"");
        assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
        assert_eq!(receiver.requests(), 4);
    }

    #[test]
    fn stopped_receiver_refuses_connections_and_restarts_on_its_port() {
        let mut receiver = IngestReceiver::start();
        let addr = receiver.addr();
        receiver.stop();
        assert!(std::net::TcpStream::connect(addr).is_err());
        receiver.restart();
        assert_eq!(receiver.addr(), addr);
        assert!(std::net::TcpStream::connect(addr).is_ok());
    }
}
