//! The checker's HTTP client: plain HTTP/1.1 to the one target it was
//! given (no redirects followed, no other host ever contacted), a
//! connection per client kept open between calls, every call bounded in
//! time. It speaks the API the way autumn-js 1.3.13 does (API.md), plus
//! `with_autumn_id`, which that client cannot send.

use std::time::Duration;

use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Bytes;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;
use serde_json::{json, Value};

use super::workload::Call;

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

/// One client: one connection at a time to the target.
pub struct Client {
    target: Target,
    secret_key: String,
    timeout: Duration,
    connection: Option<SendRequest<Full<Bytes>>>,
}

impl Client {
    pub fn new(target: Target, secret_key: String, timeout: Duration) -> Client {
        Client { target, secret_key, timeout, connection: None }
    }

    /// Sends `call` and waits for its answer, at most the client's timeout.
    pub async fn send(&mut self, call: &Call) -> Reply {
        let (path, version, idempotency_key, body) = wire(call);
        let timeout = self.timeout;
        match tokio::time::timeout(timeout, self.exchange(path, version, idempotency_key, body)).await {
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

    async fn exchange(
        &mut self,
        path: &str,
        version: &str,
        idempotency_key: Option<&str>,
        body: Value,
    ) -> Result<Reply, String> {
        let authority = self.target.authority();
        let mut request = hyper::Request::post(path)
            .header(hyper::header::HOST, authority)
            .header(hyper::header::AUTHORIZATION, format!("Bearer {}", self.secret_key))
            .header(hyper::header::CONTENT_TYPE, "application/json")
            .header(hyper::header::ACCEPT, "application/json")
            .header("x-api-version", version);
        if let Some(key) = idempotency_key {
            request = request.header("Idempotency-Key", key);
        }
        let request = request
            .body(Full::new(Bytes::from(body.to_string())))
            .map_err(|e| format!("cannot build the request: {e}"))?;
        let sender = self.connect().await?;
        sender.ready().await.map_err(|e| format!("connection lost: {e}"))?;
        let response = sender.send_request(request).await.map_err(|e| format!("connection lost: {e}"))?;
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

/// A call's route, API version, `Idempotency-Key` and body.
fn wire(call: &Call) -> (&'static str, &'static str, Option<&str>, Value) {
    const CURRENT: &str = "2.4.0";
    // Below 2.1.0, check and track create a missing customer (API.md).
    let version = |auto_create: bool| if auto_create { "2.0.0" } else { CURRENT };
    match call {
        Call::Create { customer_id, email, name } => {
            let mut body = json!({"customer_id": customer_id, "with_autumn_id": true});
            if let Some(email) = email {
                body["email"] = json!(email);
            }
            if let Some(name) = name {
                body["name"] = json!(name);
            }
            ("/v1/customers.get_or_create", CURRENT, None, body)
        }
        Call::Get { customer_id } => {
            ("/v1/customers.get", CURRENT, None, json!({"customer_id": customer_id, "with_autumn_id": true}))
        }
        Call::Check { customer_id, feature_id, auto_create, customer_data } => {
            let mut body =
                json!({"customer_id": customer_id, "feature_id": feature_id, "required_balance": 1});
            if let Some(data) = customer_data {
                body["customer_data"] = json!({"name": data.name});
            }
            ("/v1/balances.check", version(*auto_create), None, body)
        }
        Call::Track { customer_id, feature_id, value, auto_create, idempotency_key, .. } => (
            "/v1/balances.track",
            version(*auto_create),
            idempotency_key.as_deref(),
            json!({"customer_id": customer_id, "feature_id": feature_id, "value": value}),
        ),
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
}
