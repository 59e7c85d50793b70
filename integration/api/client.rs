//! The typed DEP client against depsim: every endpoint, and the errors a
//! caller matches on.

use depd::dep::DepError;
use depd::dep::client::{self, DepClient, DirectSession, Target};
use depd::dep::oauth1::Credentials;
use depd::dep::wire::ActivationLockRequest;
use depd::domain::clock::{SharedClock, SystemClock};
use depd::sim::faults::{AssignFault, AssignOutcome, ResponseFault};
use depd::sim::{SimConfig, SimHandle, Simulator};
use std::sync::Arc;
use std::time::Duration;

fn target(base_url: String, protocol_version: u32) -> Target {
    Target {
        base_url,
        protocol_version,
        user_agent: "depd-test/1".into(),
        connect_timeout: Duration::from_secs(5),
        request_timeout: Duration::from_secs(30),
        allow: Default::default(),
    }
}

fn client_for(sim: &SimHandle, protocol_version: u32) -> DepClient<DirectSession> {
    let t = sim.credentials().into_iter().next().expect("credentials");
    let creds = Credentials {
        consumer_key: t.consumer_key,
        consumer_secret: t.consumer_secret,
        access_token: t.access_token,
        access_secret: t.access_secret,
    };
    let clock: SharedClock = Arc::new(SystemClock);
    let target = target(sim.base_url(), protocol_version);
    DepClient::new(
        target.clone(),
        DirectSession::new(target, creds, clock.clone()),
        clock,
    )
}

#[actix_web::test]
async fn fetch_then_sync_with_typed_cursor_errors() {
    // The test moves the simulator's clock 8 days ahead, so its OAuth
    // timestamp check (against the real clock) is off.
    let sim = Simulator::start(SimConfig {
        devices: 250,
        timestamp_window: None,
        ..SimConfig::default()
    })
    .expect("sim");
    let dep = client_for(&sim, 10);
    let account = dep.account().await.expect("account");
    assert!(!account.server_uuid.is_empty());
    assert_eq!(account.limit_maximum("/server/devices"), Some(1000));

    let mut cursor: Option<String> = None;
    let mut seen = 0;
    loop {
        let page = dep
            .fetch_devices(cursor.as_deref(), Some(100))
            .await
            .expect("page");
        seen += page.devices.len();
        assert!(
            page.devices
                .iter()
                .all(|d| d.op_type.as_deref().unwrap_or("").is_empty())
        );
        cursor = Some(page.cursor);
        if !page.more_to_follow {
            break;
        }
    }
    assert_eq!(seen, 250);
    let done = cursor.expect("cursor");
    assert_eq!(
        dep.fetch_devices(Some(&done), None).await,
        Err(DepError::CursorExhausted)
    );

    sim.event(&depd::sim::SimEvent::Add { count: 2 })
        .expect("add");
    let page = dep.sync_devices(&done, None).await.expect("sync");
    assert_eq!(page.devices.len(), 2);
    assert!(
        page.devices
            .iter()
            .all(|d| d.op_type.as_deref() == Some("added"))
    );

    assert_eq!(
        dep.sync_devices("garbage", None).await,
        Err(DepError::CursorInvalid)
    );
    assert_eq!(
        dep.sync_devices("", None).await,
        Err(DepError::CursorRequired)
    );
    sim.advance_clock(Duration::from_secs(8 * 86_400));
    assert_eq!(
        dep.sync_devices(&done, None).await,
        Err(DepError::CursorExpired)
    );
}

#[actix_web::test]
async fn devices_profiles_and_the_rest() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let dep = client_for(&sim, 10);
    let serials = sim.serials(0, 4);

    let details = dep
        .device_details(&[serials[0].clone(), "NOPE".into()])
        .await
        .expect("details");
    assert_eq!(
        details.devices[&serials[0]].response_status.as_deref(),
        Some("SUCCESS")
    );
    assert_eq!(
        details.devices["NOPE"].response_status.as_deref(),
        Some("NOT_FOUND")
    );

    let err = dep
        .define_profile(&serde_json::json!({"url": "https://x"}))
        .await;
    assert!(
        matches!(err, Err(DepError::Rejected { status: 400, ref code }) if code.contains("CONFIG_NAME_REQUIRED")),
        "{err:?}"
    );
    let defined = dep
        .define_profile(&serde_json::json!({"profile_name": "P", "url": "https://mdm.example/e"}))
        .await
        .expect("define");
    let profile = dep.get_profile(&defined.profile_uuid).await.expect("get");
    assert_eq!(profile["profile_name"], "P");
    assert!(matches!(
        dep.get_profile("00000000000000000000000000000000").await,
        Err(DepError::NotFound { .. })
    ));

    sim.add_assign_fault(AssignFault {
        serial: serials[2].clone(),
        result: AssignOutcome::Throttled,
        retry_after_seconds: Some(600),
        count: None,
    });
    let assigned = dep
        .assign_profile(&defined.profile_uuid, &serials[1..3])
        .await
        .expect("assign");
    assert_eq!(assigned.devices[&serials[1]], "SUCCESS");
    assert_eq!(assigned.devices[&serials[2]], "THROTTLED");
    assert_eq!(assigned.retry_after_seconds, Some(600));
    let removed = dep.remove_profile(&serials[1..2]).await.expect("remove");
    assert_eq!(removed.devices[&serials[1]], "SUCCESS");

    let lock = dep
        .activation_lock(&ActivationLockRequest {
            device: serials[3].clone(),
            escrow_key: Some("abc".into()),
            lost_message: None,
        })
        .await
        .expect("lock");
    assert_eq!(lock.serial_number, serials[3]);
    let disowned = dep.disown(&serials[3..4]).await.expect("disown");
    assert_eq!(disowned.devices[&serials[3]], "SUCCESS");

    dep.os_beta_tokens().await.expect("beta tokens");
    dep.set_ade_profile("https://mdm.example/.well-known/x")
        .await
        .expect("set ade");
    dep.get_ade_profile().await.expect("get ade");
    dep.delete_ade_profile().await.expect("delete ade");
}

#[actix_web::test]
async fn protocol_9_gets_throttled_without_retry_after() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let dep = client_for(&sim, 9);
    let serial = sim.serials(0, 1);
    let defined = dep
        .define_profile(&serde_json::json!({"profile_name": "P", "url": "https://m/e"}))
        .await
        .expect("define");
    sim.add_assign_fault(AssignFault {
        serial: serial[0].clone(),
        result: AssignOutcome::Throttled,
        retry_after_seconds: Some(600),
        count: None,
    });
    let r = dep
        .assign_profile(&defined.profile_uuid, &serial)
        .await
        .expect("assign");
    assert_eq!(
        (r.devices[&serial[0]].as_str(), r.retry_after_seconds),
        ("THROTTLED", None)
    );
}

#[actix_web::test]
async fn upstream_errors_are_typed() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let dep = client_for(&sim, 10);
    dep.account().await.expect("session first");

    sim.add_fault(
        ResponseFault::new(503, "")
            .on_path("/account")
            .header("Retry-After", "120"),
    );
    assert_eq!(
        dep.account().await,
        Err(DepError::Throttled {
            status: 503,
            retry_after: Some(Duration::from_secs(120))
        })
    );
    let date = "Wed, 21 Oct 2099 07:28:00 GMT";
    sim.add_fault(
        ResponseFault::new(503, "")
            .on_path("/account")
            .header("Retry-After", date),
    );
    match dep.account().await {
        Err(DepError::Throttled {
            retry_after: Some(d),
            ..
        }) => {
            assert!(d > Duration::from_secs(86_400 * 365), "{d:?}")
        }
        other => panic!("expected a throttle with a date: {other:?}"),
    }
    sim.add_fault(ResponseFault::new(500, "INTERNAL").on_path("/account"));
    assert!(matches!(
        dep.account().await,
        Err(DepError::Upstream { status: 500, .. })
    ));
    sim.add_fault(ResponseFault::new(403, "T_C_NOT_SIGNED").on_path("/account"));
    assert_eq!(dep.account().await, Err(DepError::TermsNotSigned));

    // An expired session is renewed and the call replayed, invisibly.
    sim.expire_sessions();
    dep.account().await.expect("renewed");
    assert_eq!(sim.stats().session_calls, 2);

    // A wrong secret is a rejected token, a closed port a network error.
    let t = sim.credentials().into_iter().next().expect("creds");
    let clock: SharedClock = Arc::new(SystemClock);
    let bad = Credentials {
        consumer_key: t.consumer_key,
        consumer_secret: "wrong".into(),
        access_token: t.access_token,
        access_secret: t.access_secret,
    };
    let tg = target(sim.base_url(), 10);
    let dep = DepClient::new(
        tg.clone(),
        DirectSession::new(tg, bad.clone(), clock.clone()),
        clock.clone(),
    );
    assert!(matches!(
        dep.account().await,
        Err(DepError::TokenRejected { status: 401, .. })
    ));
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("port")
        .port();
    let tg = target(format!("http://127.0.0.1:{port}"), 10);
    let dep = DepClient::new(
        tg.clone(),
        DirectSession::new(tg, bad, clock.clone()),
        clock,
    );
    assert!(matches!(dep.account().await, Err(DepError::Network(_))));
}

#[actix_web::test]
async fn many_calls_at_once_share_a_bounded_number_of_slots() {
    let sim = Simulator::start(SimConfig::default()).expect("sim");
    let dep = client_for(&sim, 10);
    // Three times as many calls as slots all finish: each call gives its
    // slot back (one that leaked would leave later calls waiting forever).
    let calls = (0..3 * client::APPLE_CALLS_AT_ONCE).map(|_| dep.account());
    let answers = futures_util::future::join_all(calls).await;
    assert!(answers.iter().all(Result::is_ok));
    assert_eq!(
        sim.stats().count("GET", "/account"),
        3 * client::APPLE_CALLS_AT_ONCE as u64
    );
}
