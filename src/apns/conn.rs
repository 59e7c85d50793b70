//! One TLS connection to APNs, authenticated with a push certificate, with
//! HTTP/2 on it (ALPN `h2`), and one push sent on it. Many pushes share a
//! connection: each is a stream, and h2 keeps the number of open streams
//! within the server's `SETTINGS_MAX_CONCURRENT_STREAMS`.

use super::wire::Answer;
use crate::dep::allowlist::Allowlist;
use bytes::{Bytes, BytesMut};
use h2::client::SendRequest;
use openssl::pkey::{PKey, Private};
use openssl::ssl::{SslConnector, SslMethod};
use openssl::x509::X509;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;
use time::OffsetDateTime;

/// Where pushes go: `https://host[:port]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Endpoint {
    /// The base URL, without a trailing slash.
    pub base: String,
    pub host: String,
    pub port: u16,
}

impl Endpoint {
    pub fn parse(url: &str) -> Result<Endpoint, ConnectError> {
        let bad = || ConnectError::Url(crate::daemon::redact::url(url));
        let uri: http::Uri = url.trim_end_matches('/').parse().map_err(|_| bad())?;
        if uri.scheme_str() != Some("https")
            || !matches!(uri.path(), "" | "/")
            || uri.query().is_some()
        {
            return Err(bad());
        }
        let auth = uri.authority().ok_or_else(bad)?;
        if auth.as_str().contains('@') {
            return Err(bad());
        }
        let host = auth.host().trim_matches(['[', ']']).to_owned();
        Ok(Endpoint {
            base: format!("https://{}", auth.as_str()),
            host,
            port: auth.port_u16().unwrap_or(443),
        })
    }
}

/// A push certificate and its key.
#[derive(Clone)]
pub struct Identity {
    pub cert: X509,
    pub key: PKey<Private>,
}

impl std::fmt::Debug for Identity {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Identity").finish_non_exhaustive()
    }
}

#[derive(Debug, Clone, thiserror::Error)]
pub enum ConnectError {
    #[error("the APNs URL {0:?} is not https://host[:port]")]
    Url(String),
    #[error("connecting to {host}: {reason}")]
    Refused { host: String, reason: String },
    #[error("connecting to {host}: {reason}")]
    Io { host: String, reason: String },
    #[error("TLS with {host}: {reason}")]
    Tls { host: String, reason: String },
    #[error("{0} did not agree to HTTP/2 (ALPN h2)")]
    NotH2(String),
    #[error("HTTP/2 with {host}: {reason}")]
    H2 { host: String, reason: String },
    #[error("connecting to {0}: timed out")]
    Timeout(String),
}

/// An open connection: the handle streams are opened on, the task that
/// drives the connection (the caller spawns it; it ends when the
/// connection does, with the reason), and the stream limit the server
/// last advertised.
pub struct Opened {
    pub sender: SendRequest<Bytes>,
    pub driver: Pin<Box<dyn Future<Output = Option<String>> + Send>>,
    pub max_streams: Arc<AtomicUsize>,
}

/// Opens a connection to `endpoint` with `identity`, trusting the system's
/// roots and `extra_roots`. Every address the host resolves to is checked
/// against `allow` first.
pub async fn open(
    endpoint: &Endpoint,
    identity: &Identity,
    extra_roots: &[X509],
    allow: &Allowlist,
    timeout: Duration,
) -> Result<Opened, ConnectError> {
    let host = endpoint.host.clone();
    match tokio::time::timeout(timeout, open_inner(endpoint, identity, extra_roots, allow)).await {
        Ok(r) => r,
        Err(_) => Err(ConnectError::Timeout(host)),
    }
}

async fn open_inner(
    endpoint: &Endpoint,
    identity: &Identity,
    extra_roots: &[X509],
    allow: &Allowlist,
) -> Result<Opened, ConnectError> {
    let host = endpoint.host.clone();
    let tls = |e: &dyn std::fmt::Display| ConnectError::Tls {
        host: host.clone(),
        reason: e.to_string(),
    };
    let addrs = allow
        .resolve_checked(&endpoint.host, endpoint.port)
        .await
        .map_err(|r| ConnectError::Refused {
            host: host.clone(),
            reason: r.to_string(),
        })?;
    let mut last = String::from("no addresses");
    let mut tcp = None;
    for addr in addrs {
        match tokio::net::TcpStream::connect(addr).await {
            Ok(s) => {
                tcp = Some(s);
                break;
            }
            Err(e) => last = format!("{addr}: {e}"),
        }
    }
    let tcp = tcp.ok_or_else(|| ConnectError::Io {
        host: host.clone(),
        reason: last,
    })?;
    let _ = tcp.set_nodelay(true);

    let mut b = SslConnector::builder(SslMethod::tls_client()).map_err(|e| tls(&e))?;
    b.set_certificate(&identity.cert).map_err(|e| tls(&e))?;
    b.set_private_key(&identity.key).map_err(|e| tls(&e))?;
    b.check_private_key().map_err(|e| tls(&e))?;
    b.set_alpn_protos(b"\x02h2").map_err(|e| tls(&e))?;
    for root in extra_roots {
        b.cert_store_mut()
            .add_cert(root.clone())
            .map_err(|e| tls(&e))?;
    }
    let ssl = b
        .build()
        .configure()
        .and_then(|c| c.into_ssl(&endpoint.host))
        .map_err(|e| tls(&e))?;
    let mut stream = tokio_openssl::SslStream::new(ssl, tcp).map_err(|e| tls(&e))?;
    Pin::new(&mut stream).connect().await.map_err(|e| tls(&e))?;
    if stream.ssl().selected_alpn_protocol() != Some(b"h2") {
        return Err(ConnectError::NotH2(host));
    }
    // One stream until the server's SETTINGS say how many: a burst sent
    // before them could pass its limit (APNs starts low and raises it).
    let (sender, mut conn) = h2::client::Builder::new()
        .initial_max_send_streams(1)
        .initial_window_size(1 << 20)
        .initial_connection_window_size(8 << 20)
        .handshake::<_, Bytes>(stream)
        .await
        .map_err(|e| ConnectError::H2 {
            host: host.clone(),
            reason: e.to_string(),
        })?;
    let max_streams = Arc::new(AtomicUsize::new(conn.max_concurrent_send_streams()));
    let seen = max_streams.clone();
    let driver = Box::pin(async move {
        let result = std::future::poll_fn(|cx| {
            let r = Pin::new(&mut conn).poll(cx);
            seen.store(conn.max_concurrent_send_streams(), Ordering::Relaxed);
            r
        })
        .await;
        result.err().map(|e| e.to_string())
    });
    Ok(Opened {
        sender,
        driver,
        max_streams,
    })
}

/// Sends one push on `sender` and reads the answer (its body up to 4 KiB;
/// APNs's error bodies are a few dozen bytes).
pub async fn send(
    sender: &SendRequest<Bytes>,
    request: http::Request<()>,
    body: Bytes,
    now: OffsetDateTime,
) -> Result<Answer, h2::Error> {
    let mut ready = sender.clone().ready().await?;
    let (response, mut stream) = ready.send_request(request, false)?;
    stream.send_data(body, true)?;
    let response = response.await?;
    let (parts, mut recv) = response.into_parts();
    let mut buf = BytesMut::new();
    while let Some(chunk) = recv.data().await {
        let chunk = chunk?;
        let _ = recv.flow_control().release_capacity(chunk.len());
        if buf.len() < 4096 {
            buf.extend_from_slice(&chunk[..chunk.len().min(4096 - buf.len())]);
        }
    }
    let header = |name: &str| {
        parts
            .headers
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    Ok(Answer {
        status: parts.status.as_u16(),
        apns_id: header("apns-id"),
        retry_after: header("retry-after").and_then(|v| crate::dep::retry_after::parse(&v, now)),
        body: buf.freeze(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn endpoints_are_https_origins() {
        let e = Endpoint::parse("https://api.push.apple.com").expect("apple");
        assert_eq!((e.host.as_str(), e.port), ("api.push.apple.com", 443));
        assert_eq!(e.base, "https://api.push.apple.com");
        let e = Endpoint::parse("https://127.0.0.1:8443/").expect("local");
        assert_eq!((e.host.as_str(), e.port), ("127.0.0.1", 8443));
        assert_eq!(e.base, "https://127.0.0.1:8443");
        for bad in [
            "http://api.push.apple.com",
            "https://api.push.apple.com/3/device",
            "https://user:pw@api.push.apple.com",
            "https://x?y=1",
            "not a url",
        ] {
            assert!(Endpoint::parse(bad).is_err(), "{bad}");
        }
    }

    /// An HTTP/2 server that allows 3 concurrent streams, answering each
    /// push after a pause: 30 pushes sent at once never have more than 3
    /// streams open on it, and the limit it advertised is seen.
    #[cfg(feature = "sim")]
    #[tokio::test(flavor = "current_thread")]
    async fn streams_stay_within_the_limit_the_server_advertises() {
        use openssl::ssl::{AlpnError, SslAcceptor};
        use std::sync::atomic::AtomicUsize;
        let sim = crate::sim::apns::ApnsSim::new().expect("certificates");
        let (server_cert, server_key, ca) = sim.server_identity();
        let (cert_pem, key_pem) = sim
            .issue_push_cert("com.apple.mgmt.t", 1)
            .expect("push cert");
        let identity = Identity {
            cert: X509::from_pem(&cert_pem).expect("cert"),
            key: PKey::private_key_from_pem(&key_pem).expect("key"),
        };
        let mut acceptor =
            SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).expect("tls");
        acceptor.set_certificate(&server_cert).expect("cert");
        acceptor.set_private_key(&server_key).expect("key");
        acceptor.set_alpn_select_callback(|_, offered| {
            openssl::ssl::select_next_proto(b"\x02h2", offered).ok_or(AlpnError::NOACK)
        });
        let acceptor = acceptor.build();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let port = listener.local_addr().expect("addr").port();
        let open_now = Arc::new(AtomicUsize::new(0));
        let most = Arc::new(AtomicUsize::new(0));
        let (o, m) = (open_now.clone(), most.clone());
        tokio::spawn(async move {
            let (tcp, _) = listener.accept().await.expect("accept");
            let ssl = openssl::ssl::Ssl::new(acceptor.context()).expect("ssl");
            let mut tls = tokio_openssl::SslStream::new(ssl, tcp).expect("stream");
            Pin::new(&mut tls).accept().await.expect("handshake");
            let mut conn = h2::server::Builder::new()
                .max_concurrent_streams(3)
                .handshake::<_, Bytes>(tls)
                .await
                .expect("h2");
            while let Some(Ok((_, mut respond))) = conn.accept().await {
                let (o, m) = (o.clone(), m.clone());
                tokio::spawn(async move {
                    let now = o.fetch_add(1, Ordering::SeqCst) + 1;
                    m.fetch_max(now, Ordering::SeqCst);
                    tokio::time::sleep(Duration::from_millis(5)).await;
                    o.fetch_sub(1, Ordering::SeqCst);
                    let answer = http::Response::builder()
                        .status(200)
                        .header("apns-id", "X")
                        .body(())
                        .expect("answer");
                    let _ = respond.send_response(answer, true);
                });
            }
        });
        let opened = open(
            &Endpoint::parse(&format!("https://127.0.0.1:{port}")).expect("endpoint"),
            &identity,
            &[ca],
            &Allowlist::default(),
            Duration::from_secs(10),
        )
        .await
        .expect("open");
        tokio::spawn(opened.driver);
        let headers = super::super::wire::PushHeaders {
            topic: "com.apple.mgmt.t".into(),
            expiration_unix: None,
        };
        let base = format!("https://127.0.0.1:{port}");
        let pushes = (0..30).map(|i| {
            let request = super::super::wire::request(&base, &format!("{i:064x}"), &headers)
                .expect("request");
            send(
                &opened.sender,
                request,
                super::super::wire::body("M"),
                OffsetDateTime::now_utc(),
            )
        });
        let answers = futures_util::future::join_all(pushes).await;
        assert!(
            answers
                .iter()
                .all(|a| a.as_ref().is_ok_and(|a| a.status == 200))
        );
        assert!(
            most.load(Ordering::SeqCst) <= 3,
            "{} streams at once",
            most.load(Ordering::SeqCst)
        );
        assert!(
            most.load(Ordering::SeqCst) >= 2,
            "pushes did share the connection"
        );
        assert_eq!(opened.max_streams.load(Ordering::Relaxed), 3);
    }
}
