//! The issuer's keys, fetched from a real JWKS server on 127.0.0.1:
//! fetched on first use, refetched once for an unknown key (rate-limited),
//! rotated, discovered from RFC 8414 metadata, and kept when the issuer
//! fails.

use jsonwebtoken::Algorithm;
use moat::auth::keys::IssuerKeys;
use moat::auth::token::{TokenError, TokenRules};
use moat_tests::auth::{TestIssuer, TestKey, claims};
use std::time::Duration;

const RESOURCE: &str = "http://127.0.0.1/mcp";

fn rules(issuer: &str) -> TokenRules {
    TokenRules {
        issuer: issuer.into(),
        resource: RESOURCE.into(),
        algorithms: vec![Algorithm::EdDSA],
        leeway_s: 5,
        roles_claim: None,
        hmac_secret: None,
        require_at_jwt: false,
        max_lifetime_s: None,
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keys_are_fetched_once_and_refetched_once_per_interval_for_unknown_kids() {
    let old = TestKey::new("old", 1);
    let new = TestKey::new("new", 2);
    let issuer = TestIssuer::start(&[&old]).await;
    let base = issuer.base.clone();
    let keys = IssuerKeys::new(
        &base,
        Some(&format!("{base}/keys")),
        Duration::from_secs(3600),
    );
    let rules = rules(&base);

    let caller = keys
        .validate(&old.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();
    assert_eq!(caller.subject, "svc-account");
    keys.validate(&old.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();
    assert_eq!(keys.fetches(), 1, "a cached key needs no fetch");

    // The issuer rotates, but the refetch budget was spent on the first
    // fetch: an unknown kid is refused without another fetch.
    issuer.serve_keys(&[&old, &new]);
    assert_eq!(
        keys.validate(&new.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
            .await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(keys.fetches(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rotation_is_picked_up_and_a_failing_issuer_keeps_the_cache() {
    let old = TestKey::new("old", 1);
    let new = TestKey::new("new", 2);
    let issuer = TestIssuer::start(&[&old]).await;
    let base = issuer.base.clone();
    let keys = IssuerKeys::new(&base, None, Duration::from_millis(200));
    let rules = rules(&base);
    keys.validate(&old.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();

    tokio::time::sleep(Duration::from_millis(250)).await;
    issuer.serve_keys(&[&old, &new]);
    keys.validate(&new.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();
    assert_eq!(keys.fetches(), 2);

    // The issuer breaks: an unknown kid triggers a failing fetch, and the
    // keys already cached keep working.
    tokio::time::sleep(Duration::from_millis(250)).await;
    *issuer.jwks.lock().unwrap() = None;
    let stranger = TestKey::new("stranger", 3);
    assert_eq!(
        keys.validate(
            &stranger.sign(&claims(&base, RESOURCE, "tools:read")),
            &rules
        )
        .await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(keys.fetches(), 3);
    keys.validate(&old.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();
    keys.validate(&new.sign(&claims(&base, RESOURCE, "tools:read")), &rules)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_that_arrive_during_the_first_fetch_all_use_its_keys() {
    let key = TestKey::new("k1", 3);
    let issuer = TestIssuer::start(&[&key]).await;
    let base = issuer.base.clone();
    let keys = std::sync::Arc::new(IssuerKeys::new(
        &base,
        Some(&format!("{base}/keys")),
        Duration::from_secs(3600),
    ));
    // A burst at startup: one request fetches, the others wait for it.
    let burst: Vec<_> = (0..16)
        .map(|_| {
            let (keys, rules) = (keys.clone(), rules(&base));
            let token = key.sign(&claims(&base, RESOURCE, "tools:read"));
            tokio::spawn(async move { keys.validate(&token, &rules).await })
        })
        .collect();
    for request in burst {
        assert_eq!(request.await.unwrap().unwrap().subject, "svc-account");
    }
    assert_eq!(keys.fetches(), 1, "one fetch served the whole burst");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn discovered_metadata_that_names_another_issuer_is_not_used() {
    // A server whose metadata points at a real issuer's keys but names
    // that issuer, not itself (RFC 8414 §3.3): Moat must not use them.
    let key = TestKey::new("k1", 4);
    let real = TestIssuer::start(&[&key]).await;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let base = format!("http://{}", listener.local_addr().unwrap());
    let metadata =
        serde_json::json!({ "issuer": real.base, "jwks_uri": format!("{}/keys", real.base) });
    let app = axum::Router::new().route(
        "/.well-known/oauth-authorization-server",
        axum::routing::get(move || async move { axum::Json(metadata) }),
    );
    tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });

    let keys = IssuerKeys::new(&base, None, Duration::from_secs(3600));
    let token = key.sign(&claims(&base, RESOURCE, "tools:read"));
    assert_eq!(
        keys.validate(&token, &rules(&base)).await,
        Err(TokenError::UnknownKey)
    );
    assert_eq!(keys.fetches(), 1);
    // The same keys, discovered through metadata that names its issuer
    // correctly, are used.
    let honest = IssuerKeys::new(&real.base, None, Duration::from_secs(3600));
    let token = key.sign(&claims(&real.base, RESOURCE, "tools:read"));
    assert!(honest.validate(&token, &rules(&real.base)).await.is_ok());
}
