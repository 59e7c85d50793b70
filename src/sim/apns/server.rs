//! The push service: `POST /3/device/{token}` over HTTP/2 and TLS, with
//! the client's push certificate checked against the simulator's CA.

use super::{ApnsSim, PushRecord};
use crate::sim::Shared;
use actix_web::dev::{Extensions, Server};
use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
use openssl::nid::Nid;
use openssl::ssl::{SslAcceptor, SslMethod, SslVerifyMode};
use openssl::x509::store::{X509Store, X509StoreBuilder};
use std::any::Any;
use std::net::TcpListener;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

/// What the TLS handshake told about the client.
#[derive(Clone, Debug)]
struct Peer {
    /// The certificate chains to the simulator's CA.
    verified: bool,
    /// Its subject's UID: the push topic.
    topic: Option<String>,
    /// Its serial number (hex), to tell a renewed certificate apart.
    serial: Option<String>,
}

fn peer_of(conn: &dyn Any, roots: &X509Store) -> Peer {
    type Tls = actix_tls::accept::openssl::TlsStream<actix_web::rt::net::TcpStream>;
    let cert = conn
        .downcast_ref::<Tls>()
        .and_then(|tls| tls.ssl().peer_certificate());
    let Some(cert) = cert else {
        return Peer {
            verified: false,
            topic: None,
            serial: None,
        };
    };
    let verified = (|| -> Result<bool, openssl::error::ErrorStack> {
        let chain = openssl::stack::Stack::new()?;
        let mut ctx = openssl::x509::X509StoreContext::new()?;
        ctx.init(roots, &cert, &chain, |c| c.verify_cert())
    })()
    .unwrap_or(false);
    let topic = cert
        .subject_name()
        .entries_by_nid(Nid::USERID)
        .next()
        .and_then(|e| e.data().to_string().ok());
    let serial = cert
        .serial_number()
        .to_bn()
        .and_then(|b| b.to_hex_str().map(|h| h.to_string()))
        .ok();
    Peer {
        verified,
        topic,
        serial,
    }
}

/// Serves the push service on `listener` until the server stops.
pub(in crate::sim) fn serve(
    sim: Arc<ApnsSim>,
    shared: Arc<Shared>,
    listener: TcpListener,
    workers: usize,
) -> std::io::Result<Server> {
    let addr = listener.local_addr()?;
    *sim.url
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner) = format!("https://{addr}");
    let tls_err = |e: openssl::error::ErrorStack| std::io::Error::other(e.to_string());
    let mut acceptor =
        SslAcceptor::mozilla_intermediate_v5(SslMethod::tls_server()).map_err(tls_err)?;
    acceptor.set_private_key(&sim.server_key).map_err(tls_err)?;
    acceptor
        .set_certificate(&sim.server_cert)
        .map_err(tls_err)?;
    // Ask for a certificate but take any: the handler answers 403
    // BadCertificate as APNs does, instead of failing the handshake.
    acceptor.set_verify_callback(SslVerifyMode::PEER, |_, _| true);
    let mut roots = X509StoreBuilder::new().map_err(tls_err)?;
    roots.add_cert(sim.ca.clone()).map_err(tls_err)?;
    let roots = Arc::new(roots.build());
    let sim_data = web::Data::from(sim);
    let shared_data = web::Data::from(shared);
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sim_data.clone())
            .app_data(shared_data.clone())
            .app_data(web::PayloadConfig::new(4096))
            .default_service(web::to(push))
    })
    .on_connect(move |conn: &dyn Any, ext: &mut Extensions| {
        ext.insert(peer_of(conn, &roots));
    })
    .workers(workers.max(1))
    .shutdown_timeout(1)
    .disable_signals()
    .listen_openssl(listener, acceptor)?
    .run();
    Ok(server)
}

fn reason(status: u16, reason: &str, timestamp: Option<i64>) -> HttpResponse {
    let body = match timestamp {
        Some(ts) => serde_json::json!({ "reason": reason, "timestamp": ts }),
        None => serde_json::json!({ "reason": reason }),
    };
    HttpResponse::build(
        actix_web::http::StatusCode::from_u16(status)
            .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR),
    )
    .json(body)
}

fn apns_id() -> String {
    let mut b = [0u8; 16];
    if openssl::rand::rand_bytes(&mut b).is_err() {
        b = [0; 16];
    }
    let h: String = b.iter().map(|x| format!("{x:02X}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &h[..8],
        &h[8..12],
        &h[12..16],
        &h[16..20],
        &h[20..]
    )
}

thread_local! {
    /// The client woken devices use on this worker.
    static CLIENT: awc::Client = awc::Client::builder()
        .timeout(Duration::from_secs(60))
        .finish();
}

async fn push(
    req: HttpRequest,
    body: web::Bytes,
    sim: web::Data<ApnsSim>,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let Some(token) = req.path().strip_prefix("/3/device/").map(str::to_owned) else {
        return reason(404, "BadPath", None);
    };
    if req.method() != actix_web::http::Method::POST {
        return reason(405, "MethodNotAllowed", None);
    }
    let header = |name: &str| {
        req.headers()
            .get(name)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned)
    };
    let peer = req.conn_data::<Peer>().cloned().unwrap_or(Peer {
        verified: false,
        topic: None,
        serial: None,
    });
    let now_ms = shared.clock.unix() * 1000;
    let mut record = PushRecord {
        token: token.to_ascii_lowercase(),
        cert_topic: peer.topic.clone(),
        cert_serial: peer.serial.clone(),
        apns_topic: header("apns-topic"),
        apns_push_type: header("apns-push-type"),
        apns_priority: header("apns-priority"),
        apns_expiration: header("apns-expiration"),
        body: String::from_utf8_lossy(&body).into_owned(),
        status: 200,
        reason: None,
        apns_id: apns_id(),
        at_unix_ms: now_ms,
    };
    let latency = sim.latency_ms.load(Ordering::Relaxed);
    if latency > 0 {
        actix_web::rt::time::sleep(Duration::from_millis(latency)).await;
    }
    let fleet = shared.mdm_fleet();
    let device = fleet
        .as_ref()
        .and_then(|f| f.device_by_token(&record.token));
    let magic = serde_json::from_slice::<serde_json::Value>(&body)
        .ok()
        .and_then(|v| v.get("mdm").and_then(|m| m.as_str()).map(str::to_owned));
    let refusal: Option<(u16, String, Option<i64>, Option<u64>)> = if !peer.verified {
        Some((403, "BadCertificate".into(), None, None))
    } else if record
        .apns_topic
        .as_ref()
        .is_some_and(|t| Some(t) != peer.topic.as_ref())
    {
        Some((400, "TopicDisallowed".into(), None, None))
    } else if let Some(f) = sim.take_fault(&record.token) {
        let ts = (f.status == 410).then_some(now_ms);
        Some((f.status, f.reason, ts, f.retry_after))
    } else if token.len() != 64 || !token.bytes().all(|b| b.is_ascii_hexdigit()) {
        Some((400, "BadDeviceToken".into(), None, None))
    } else if magic.is_none() {
        Some((400, "PayloadEmpty".into(), None, None))
    } else if device.is_some() && fleet.as_ref().map(|f| f.topic()) != peer.topic.as_deref() {
        Some((400, "DeviceTokenNotForTopic".into(), None, None))
    } else {
        None
    };
    let id = record.apns_id.clone();
    if let Some((status, why, ts, retry_after)) = refusal {
        record.status = status;
        record.reason = Some(why.clone());
        sim.record(record);
        let mut resp = reason(status, &why, ts);
        resp.headers_mut().insert(
            actix_web::http::header::HeaderName::from_static("apns-id"),
            actix_web::http::header::HeaderValue::from_str(&id)
                .unwrap_or(actix_web::http::header::HeaderValue::from_static("")),
        );
        if let Some(secs) = retry_after
            && let Ok(v) = actix_web::http::header::HeaderValue::from_str(&secs.to_string())
        {
            resp.headers_mut()
                .insert(actix_web::http::header::RETRY_AFTER, v);
        }
        return resp;
    }
    sim.record(record);
    if let (Some(fleet), Some(d), Some(magic)) = (fleet.clone(), device, magic)
        && sim.wake.load(Ordering::Relaxed)
        && d.push_magic() == magic
        && d.state().enrolled
    {
        let udid = d.udid.clone();
        let sim = sim.clone().into_inner();
        actix_web::rt::spawn(async move {
            let client = CLIENT.with(Clone::clone);
            match fleet.connect(&client, &udid).await {
                Ok(_) => sim.woken.fetch_add(1, Ordering::Relaxed),
                Err(e) => {
                    tracing::debug!(udid = %udid, error = %e, "a woken simulated device failed to connect");
                    sim.wake_failed.fetch_add(1, Ordering::Relaxed)
                }
            };
        });
    }
    HttpResponse::Ok().insert_header(("apns-id", id)).finish()
}
