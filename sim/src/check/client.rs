//! The checker's HTTP client: plain HTTP/1.1 to the one target it was
//! given (no redirects followed, no other host ever contacted), a
//! connection per client kept open between calls, every call bounded in
//! time. It speaks the API the way autumn-js 1.3.13 does (API.md), on the
//! route family and at the API version of the target's [`Profile`], plus
//! `with_autumn_id`, which that client cannot send (in the body on the
//! `rpc` routes, in the query on the `v1` ones, as the modelled server
//! reads it).

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::profile::Profile;
use super::workload::Call;
use cusim::model::{ApiVersion, Family};

/// The most of a response body read (a customer is a few kilobytes).
const MAX_BODY_BYTES: usize = 1 << 20;

/// Where the target is: `http://HOST:PORT`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub host: String,
    pub port: u16,
}

impl Target {
    /// Parses `http://HOST[:PORT][/]` (HTTPS is not spoken).
    pub fn parse(url: &str) -> Result<Target, String> {
        let rest = url.strip_prefix("http://").ok_or_else(|| {
            if url.starts_with("https://") {
                format!("--target {url}: only plain http:// is spoken (put a TLS-terminating proxy in front)")
            } else {
                format!("--target {url}: expected http://HOST:PORT")
            }
        })?;
        let authority = rest.strip_suffix('/').unwrap_or(rest);
        if authority.is_empty() || authority.contains(['/', '?', '#', '@']) {
            return Err(format!("--target {url}: expected http://HOST:PORT, the server's origin (no path)"));
        }
        let (host, port) = match authority.rsplit_once(':') {
            Some((host, port)) if !host.ends_with(']') || host.starts_with('[') => {
                let port = port.parse::<u16>().map_err(|_| format!("--target {url}: bad port {port:?}"))?;
                (host, port)
            }
            _ => (authority, 80),
        };
        if host.is_empty() {
            return Err(format!("--target {url}: no host"));
        }
        Ok(Target { host: host.trim_start_matches('[').trim_end_matches(']').to_owned(), port })
    }

    /// The `Host` header's value.
    pub fn authority(&self) -> String {
        if self.host.contains(':') {
            format!("[{}]:{}", self.host, self.port)
        } else {
            format!("{}:{}", self.host, self.port)
        }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.authority())
    }
}

/// What came back for one call.
#[derive(Debug, Clone, PartialEq)]
pub enum Reply {
    /// An HTTP answer; `body` is its JSON, or why it is not JSON.
    Answered { status: u16, body: Result<Value, String> },
    /// No answer: a timeout, or a connection refused or lost. Whether the
    /// call took effect is unknown.
    Unknown(String),
}

/// One HTTP request: what a call becomes on the wire.
#[derive(Debug, Clone, PartialEq)]
pub struct Wire {
    pub method: hyper::Method,
    /// The path and query.
    pub path: String,
    pub version: ApiVersion,
    pub idempotency_key: Option<String>,
    /// The JSON body (none for a `GET`).
    pub body: Option<Value>,
}

/// One client: one connection at a time to the target.
pub struct Client {
    target: Target,
    secret_key: String,
    timeout: Duration,
    profile: Profile,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(target: Target, secret_key: String, timeout: Duration, profile: Profile) -> Client {
        Client { target, secret_key, timeout, profile, connection: None }
    }

    /// Sends `call` as the profile says and waits for its answer, at most
    /// the client's timeout.
    pub async fn send(&mut self, call: &Call) -> Reply {
        let wire = wire(call, &self.profile);
        self.send_wire(wire).await
    }

    /// Sends one request as it is and waits for its answer, at most the
    /// client's timeout.
    pub async fn send_wire(&mut self, wire: Wire) -> Reply {
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(wire)).await {
            Ok(Ok(reply)) => reply,
            Ok(Err(reason)) => {
                self.connection = None;
                Reply::Unknown(reason)
            }
            Err(_) => {
                // The connection may still carry the late answer: drop it.
                self.connection = None;
                Reply::Unknown(format!("no answer within {} ms", timeout.as_millis()))
            }
        }
    }

    async fn connect(&mut self) -> Result<&mut SendRequest<Full<Bytes>>, String> {
        if self.connection.as_ref().is_some_and(|c| c.is_closed()) {
            self.connection = None;
        }
        if self.connection.is_none() {
            let stream = tokio::net::TcpStream::connect((self.target.host.as_str(), self.target.port))
                .await
                .map_err(|e| format!("cannot connect to {}: {e}", self.target.url()))?;
            let _ = stream.set_nodelay(true);
            let (sender, connection) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
                .await
                .map_err(|e| format!("HTTP handshake with {} failed: {e}", self.target.url()))?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            self.connection = Some(sender);
        }
        Ok(self.connection.as_mut().expect("connected above"))
    }

    async fn exchange(&mut self, wire: Wire) -> Result<Reply, String> {
        let authority = self.target.authority();
        let mut request = hyper::Request::builder()
            .method(wire.method)
            .uri(wire.path.as_str())
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header(hyper::header::ACCEPT, "application/json")
            .header("x-api-version", wire.version.to_string());
        if wire.body.is_some() {
            request = request.header(hyper::header::CONTENT_TYPE, "application/json");
        }
        if let Some(key) = &wire.idempotency_key {
            request = request.header("Idempotency-Key", key.as_str());
        }
        let body = wire.body.map_or_else(Bytes::new, |body| Bytes::from(body.to_string()));
        let request = request.body(Full::new(body)).map_err(|e| format!("cannot build the request: {e}"))?;
        // A kept connection the server closed after its last answer (a
        // `Connection: close` its task has not seen yet) is not ready:
        // nothing was sent on it, so a fresh one takes the request.
        if self.connect().await?.ready().await.is_err() {
            self.connection = None;
        }
        let sender = self.connect().await?;
        sender.ready().await.map_err(|e| format!("connection lost: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("connection lost: {e}"))?;
        let closing = response
            .headers()
            .get(hyper::header::CONNECTION)
            .is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"close"));
        if closing {
            self.connection = None;
        }
        let status = response.status().as_u16();
        let bytes = Limited::new(response.into_body(), MAX_BODY_BYTES)
            .collect()
            .await
            .map_err(|e| format!("the body of a {status} answer could not be read: {e}"))?
            .to_bytes();
        let body = serde_json::from_slice::<Value>(&bytes).map_err(|e| {
            let text = String::from_utf8_lossy(&bytes[..bytes.len().min(200)]).into_owned();
            format!("not JSON ({e}): {text:?}")
        });
        Ok(Reply::Answered { status, body })
    }
}

/// `text` as one path segment: every byte but the unreserved ones
/// (RFC 3986) percent-encoded.
fn path_segment(text: &str) -> String {
    text.bytes()
        .map(|b| match b {
            b'A'..=b'Z' | b'a'..=b'z' | b'0'..=b'9' | b'-' | b'_' | b'.' | b'~' => (b as char).to_string(),
            other => format!("%{other:02X}"),
        })
        .collect()
}

/// What `call` becomes on the wire for a target of `profile`.
pub fn wire(call: &Call, profile: &Profile) -> Wire {
    let post = |path: &str, version: ApiVersion, key: Option<&String>, body: Value| Wire {
        method: hyper::Method::POST,
        path: path.to_owned(),
        version,
        idempotency_key: key.cloned(),
        body: Some(body),
    };
    let newest = profile.api_version;
    match call {
        Call::Create { customer_id, email, name } => {
            let mut body = match profile.routes {
                Family::Rpc => json!({"customer_id": customer_id, "with_autumn_id": true}),
                Family::V1 => json!({"id": customer_id}),
            };
            if let Some(email) = email {
                body["email"] = json!(email);
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            match profile.routes {
                Family::Rpc => post("/v1/customers.get_or_create", newest, None, body),
                Family::V1 => post("/v1/customers?with_autumn_id=true", newest, None, body),
            }
        }
        Call::Get { customer_id } => match profile.reads {
            Family::Rpc => post(
                "/v1/customers.get",
                newest,
                None,
                json!({"customer_id": customer_id, "with_autumn_id": true}),
            ),
            Family::V1 => Wire {
                method: hyper::Method::GET,
                path: format!("/v1/customers/{}?with_autumn_id=true", path_segment(customer_id)),
                version: newest,
                idempotency_key: None,
                body: None,
            },
        },
        Call::Check { customer_id, feature_id, auto_create, customer_data } => {
            let mut body =
                json!({"customer_id": customer_id, "feature_id": feature_id, "required_balance": 1});
            if let Some(data) = customer_data {
                body["customer_data"] = json!({"name": data.name});
            }
            let path = match profile.routes {
                Family::Rpc => "/v1/balances.check",
                Family::V1 => "/v1/check",
            };
            post(path, profile.version_for(*auto_create), None, body)
        }
        Call::Track { customer_id, feature_id, value, auto_create, idempotency_key, .. } => {
            let path = match profile.routes {
                Family::Rpc => "/v1/balances.track",
                Family::V1 => "/v1/track",
            };
            post(
                path,
                profile.version_for(*auto_create),
                idempotency_key.as_ref(),
                json!({"customer_id": customer_id, "feature_id": feature_id, "value": value}),
            )
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_target_is_an_http_origin() {
        assert_eq!(
            Target::parse("http://127.0.0.1:3100").unwrap(),
            Target { host: "127.0.0.1".into(), port: 3100 }
        );
        assert_eq!(
            Target::parse("http://localhost/").unwrap(),
            Target { host: "localhost".into(), port: 80 }
        );
        assert_eq!(Target::parse("http://[::1]:8080").unwrap().authority(), "[::1]:8080");
        for bad in
            ["https://x:1", "127.0.0.1:3100", "http://x:1/v1", "http://x:port", "http://", "http://u@x:1"]
        {
            let error = Target::parse(bad).unwrap_err();
            assert!(error.starts_with(&format!("--target {bad}")), "{error}");
        }
    }

    #[test]
    fn each_family_has_its_routes_and_the_versions_follow_the_profile() {
        use cusim::model::Generation;
        let get = Call::Get { customer_id: "a b".into() };
        let create = Call::Create { customer_id: None, email: Some("e@x.io".into()), name: None };
        let check = |auto_create| Call::Check {
            customer_id: "a".into(),
            feature_id: "words".into(),
            auto_create,
            customer_data: None,
        };
        let current = Profile::default();
        assert_eq!(wire(&get, &current).path, "/v1/customers.get");
        assert_eq!(wire(&create, &current).body.unwrap()["customer_id"], Value::Null);
        assert_eq!(wire(&check(true), &current).version, ApiVersion(2, 0, 0));
        assert_eq!(wire(&check(false), &current).version, ApiVersion(2, 4, 0));
        let feb = Profile::of(Generation::February2026);
        let read = wire(&get, &feb);
        assert_eq!(
            (read.method, read.path.as_str()),
            (hyper::Method::GET, "/v1/customers/a%20b?with_autumn_id=true")
        );
        assert!(read.body.is_none());
        assert_eq!(wire(&check(true), &feb).version, ApiVersion(2, 1, 0));
        let jan = Profile::of(Generation::January2026);
        let made = wire(&create, &jan);
        assert_eq!(made.path, "/v1/customers?with_autumn_id=true");
        assert_eq!(made.body.unwrap(), json!({"id": null, "email": "e@x.io"}));
        assert_eq!(wire(&check(false), &jan).path, "/v1/check");
    }
}
