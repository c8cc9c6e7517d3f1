//! Per-tenant rate limits: 429 with Retry-After, other tenants unaffected.

use reqwest::Method;

use crate::harness::{GLOBEX, Srv, assert_error};

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_tenant_over_its_rate_gets_429_with_retry_after() {
    let s = Srv::start_with(|c| {
        let acme = c.tenants.get_mut("acme").unwrap();
        acme.rate_limit = Some(0.2);
        acme.rate_burst = Some(2);
    })
    .await;
    assert_eq!(s.get("/Users").await.status, 200);
    assert_eq!(s.get("/Users").await.status, 200);
    let r = s.get("/Users").await;
    assert_error(&r, 429, None);
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=5).contains(&wait), "Retry-After {wait}");
    // globex has no limit.
    for _ in 0..5 {
        assert_eq!(
            s.call(Method::GET, "/Users", Some(GLOBEX), None)
                .await
                .status,
            200
        );
    }
}
