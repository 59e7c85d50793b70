//! Same seed, same world.

use crate::helpers::spawn_with;
use depd::sim::SimEvent;

#[actix_web::test]
async fn the_same_seed_gives_the_same_serials_events_and_credentials() {
    let a = spawn_with(500, |c| c.seed = 42);
    let b = spawn_with(500, |c| c.seed = 42);
    let c = spawn_with(500, |c| c.seed = 43);
    assert_eq!(a.sim.serials(0, 500), b.sim.serials(0, 500));
    assert_ne!(a.sim.serials(0, 500), c.sim.serials(0, 500));
    assert_eq!(a.creds.consumer_key, b.creds.consumer_key);
    assert_ne!(a.creds.consumer_key, c.creds.consumer_key);
    assert_eq!(
        a.sim.event(&SimEvent::Add { count: 3 }).expect("add"),
        b.sim.event(&SimEvent::Add { count: 3 }).expect("add")
    );
    let pa: Vec<_> = a
        .sim
        .profiles()
        .into_iter()
        .map(|p| p.profile_uuid)
        .collect();
    let pb: Vec<_> = b
        .sim
        .profiles()
        .into_iter()
        .map(|p| p.profile_uuid)
        .collect();
    assert_eq!(pa, pb);
    // The same pages over HTTP, cursors included (same clock second).
    let (ta, tb) = (a.session().await, b.session().await);
    let (sa, ca) = a.fetch_all(&ta, 200).await;
    let (sb, cb) = b.fetch_all(&tb, 200).await;
    assert_eq!(sa, sb);
    if a.now() == b.now() {
        assert_eq!(ca, cb);
    }
    let acc_a = a.get("/account", &ta).await.json();
    let acc_b = b.get("/account", &tb).await.json();
    assert_eq!(acc_a, acc_b);
}
