//! Access: bearer tokens per tenant (an admin token for all), UNAUTHENTICATED calls touch nothing,
//! health stays open for probes; TLS and mutual TLS from PEM files made by the test (rcgen).

mod common;

use common::*;
use rapport::api::access::{AccessConfig, TlsConfig, TokenConfig, ALL_TENANTS};
use rapport::pb;
use rapport::pb::ingest_service_client::IngestServiceClient;
use rapport::pb::scoring_service_client::ScoringServiceClient;
use rapport::pb::sentiment_service_client::SentimentServiceClient;
use sha2::{Digest, Sha256};
use std::time::Duration;
use tonic::transport::{Certificate, ClientTlsConfig, Endpoint, Identity};
use tonic::{Code, Request};
use tonic_health::pb::health_client::HealthClient;
use tonic_health::pb::HealthCheckRequest;

const ACME_TOKEN: &str = "acme-token-0123";
const ADMIN_TOKEN: &str = "admin-token-4567";

fn token(tenant: &str, secret: &str) -> TokenConfig {
    TokenConfig {
        tenant: tenant.to_string(),
        token_sha256: format!("{:x}", Sha256::digest(secret.as_bytes())),
    }
}

/// `message` with `authorization: Bearer <bearer>` when given.
fn authed<T>(message: T, bearer: Option<&str>) -> Request<T> {
    let mut request = Request::new(message);
    if let Some(bearer) = bearer {
        request
            .metadata_mut()
            .insert("authorization", format!("Bearer {bearer}").parse().unwrap());
    }
    request
}

fn top_request(tenant: &str, bearer: Option<&str>) -> Request<pb::TopCustomersRequest> {
    authed(
        pb::TopCustomersRequest {
            tenant_id: tenant.into(),
            limit: 10,
            ..Default::default()
        },
        bearer,
    )
}

fn get_request(
    tenant: &str,
    customer: &str,
    bearer: Option<&str>,
) -> Request<pb::GetCustomerRequest> {
    authed(
        pb::GetCustomerRequest {
            tenant_id: tenant.into(),
            customer_id: customer.into(),
            as_of: None,
        },
        bearer,
    )
}

#[tokio::test]
async fn tokens_grant_one_tenant_admin_all_and_no_token_touches_nothing() {
    let mut config = loopback_config();
    config.access = AccessConfig {
        tokens: vec![token("acme", ACME_TOKEN), token(ALL_TENANTS, ADMIN_TOKEN)],
        tls: None,
    };
    let mut t = start_with(config).await;

    // No token, or an unknown one: UNAUTHENTICATED on every service, nothing stored.
    for bearer in [None, Some("not-a-token")] {
        let status = t
            .ingest
            .ingest(authed(
                tokio_stream::iter(vec![event("acme", "intruder", "x1", T0_MS)]),
                bearer,
            ))
            .await
            .expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
        let status = t
            .ingest
            .ingest_batch(authed(
                pb::IngestBatchRequest {
                    interactions: vec![event("acme", "intruder", "x2", T0_MS)],
                },
                bearer,
            ))
            .await
            .expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
        let status = t
            .scoring
            .top_customers(top_request("acme", bearer))
            .await
            .expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
        let status = t
            .sentiment
            .classify(authed(
                pb::ClassifyRequest {
                    texts: vec!["hello".into()],
                },
                bearer,
            ))
            .await
            .expect_err("no valid token");
        assert_eq!(status.code(), Code::Unauthenticated, "{status}");
    }
    // Health stays reachable without a token.
    let health = HealthClient::new(t.channel.clone())
        .check(HealthCheckRequest {
            service: String::new(),
        })
        .await
        .expect("health needs no token")
        .into_inner();
    assert_eq!(health.status, 1, "SERVING");

    // The acme token writes acme; its event for globex is rejected by field, the rest applied.
    let summary = t
        .ingest
        .ingest(authed(
            tokio_stream::iter(vec![
                event("acme", "c1", "a1", T0_MS),
                event("globex", "g1", "a2", T0_MS),
            ]),
            Some(ACME_TOKEN),
        ))
        .await
        .expect("acme token")
        .into_inner();
    assert_eq!((summary.accepted, summary.rejected), (1, 1), "{summary:?}");
    assert!(
        summary.rejections[0].reason.starts_with("tenant_id:"),
        "{summary:?}"
    );
    // RFC 7235: the scheme is case-insensitive (issue 24 item 16: `bearer` was refused).
    for scheme in ["bearer", "BEARER"] {
        let mut request = top_request("acme", None);
        request.metadata_mut().insert(
            "authorization",
            format!("{scheme} {ACME_TOKEN}").parse().unwrap(),
        );
        t.scoring
            .top_customers(request)
            .await
            .unwrap_or_else(|status| panic!("{scheme}: {status}"));
    }
    // It reads acme, and nothing of globex.
    let top = t
        .scoring
        .top_customers(top_request("acme", Some(ACME_TOKEN)))
        .await
        .expect("acme reads acme")
        .into_inner();
    assert_eq!(top.customers.len(), 1);
    for status in [
        t.scoring
            .top_customers(top_request("globex", Some(ACME_TOKEN)))
            .await
            .expect_err("not granted"),
        t.scoring
            .get_customer(get_request("globex", "g1", Some(ACME_TOKEN)))
            .await
            .expect_err("not granted"),
        t.scoring
            .watch_priorities(authed(
                pb::WatchPrioritiesRequest {
                    tenant_id: "globex".into(),
                    min_priority: 0.5,
                    segment: String::new(),
                    channel: 0,
                    intent: String::new(),
                    language: String::new(),
                },
                Some(ACME_TOKEN),
            ))
            .await
            .map(|_| ())
            .expect_err("not granted"),
    ] {
        assert_eq!(status.code(), Code::PermissionDenied, "{status}");
        assert!(status.message().starts_with("tenant_id:"), "{status}");
    }

    // The admin token reads every tenant: the intruder's and the refused events are not there.
    let mut admin = t.scoring.clone();
    admin
        .get_customer(get_request("acme", "c1", Some(ADMIN_TOKEN)))
        .await
        .expect("admin reads acme");
    for (tenant, customer) in [("acme", "intruder"), ("globex", "g1")] {
        let status = admin
            .get_customer(get_request(tenant, customer, Some(ADMIN_TOKEN)))
            .await
            .expect_err("never stored");
        assert_eq!(
            status.code(),
            Code::NotFound,
            "{tenant}/{customer}: {status}"
        );
    }

    // Refusals by the authenticator and by the tenant check are counted like any answer, with
    // the method called and the code returned (one metrics layer around every service).
    let metrics = t.scrape_metrics().await;
    for (method, code) in [
        ("Ingest", "UNAUTHENTICATED"),
        ("IngestBatch", "UNAUTHENTICATED"),
        ("TopCustomers", "UNAUTHENTICATED"),
        ("Classify", "UNAUTHENTICATED"),
        ("TopCustomers", "PERMISSION_DENIED"),
        ("WatchPriorities", "PERMISSION_DENIED"),
        ("GetCustomer", "NOT_FOUND"),
        ("Check", "OK"),
    ] {
        let expected =
            format!("rapport_grpc_requests_total{{method=\"{method}\",code=\"{code}\"}}");
        assert!(
            metrics.contains(&expected),
            "missing {expected} in\n{metrics}"
        );
    }
}

/// A CA, a server certificate for localhost/127.0.0.1 and a client certificate, as PEM files.
struct Pki {
    dir: tempfile::TempDir,
    ca_pem: String,
    client_cert_pem: String,
    client_key_pem: String,
}

fn make_pki() -> Pki {
    use rcgen::{
        BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa, KeyPair,
    };
    let ca_key = KeyPair::generate().unwrap();
    let mut ca_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    ca_params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    ca_params
        .distinguished_name
        .push(DnType::CommonName, "rapport test CA");
    let ca = ca_params.self_signed(&ca_key).unwrap();

    let server_key = KeyPair::generate().unwrap();
    let mut server_params =
        CertificateParams::new(vec!["localhost".to_string(), "127.0.0.1".to_string()]).unwrap();
    server_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ServerAuth];
    let server = server_params.signed_by(&server_key, &ca, &ca_key).unwrap();

    let client_key = KeyPair::generate().unwrap();
    let mut client_params = CertificateParams::new(Vec::<String>::new()).unwrap();
    client_params
        .distinguished_name
        .push(DnType::CommonName, "rapport test client");
    client_params.extended_key_usages = vec![ExtendedKeyUsagePurpose::ClientAuth];
    let client = client_params.signed_by(&client_key, &ca, &ca_key).unwrap();

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("ca.pem"), ca.pem()).unwrap();
    std::fs::write(dir.path().join("server.pem"), server.pem()).unwrap();
    std::fs::write(dir.path().join("server.key"), server_key.serialize_pem()).unwrap();
    Pki {
        dir,
        ca_pem: ca.pem(),
        client_cert_pem: client.pem(),
        client_key_pem: client_key.serialize_pem(),
    }
}

async fn classify_over(endpoint: Endpoint) -> Result<(), String> {
    let channel = endpoint
        .connect_timeout(Duration::from_secs(5))
        .timeout(Duration::from_secs(5))
        .connect()
        .await
        .map_err(|error| format!("connect: {error}"))?;
    SentimentServiceClient::new(channel)
        .classify(pb::ClassifyRequest {
            texts: vec!["love it".into()],
        })
        .await
        .map(|_| ())
        .map_err(|status| format!("call: {status}"))
}

#[tokio::test]
async fn mutual_tls_admits_only_clients_with_a_certificate_from_the_ca() {
    let pki = make_pki();
    let mut config = loopback_config();
    config.access.tls = Some(TlsConfig {
        cert_file: pki.dir.path().join("server.pem"),
        key_file: pki.dir.path().join("server.key"),
        client_ca_file: Some(pki.dir.path().join("ca.pem")),
    });
    let model = rapport::sentiment::load(config.server.sentiment, &config.server.models_dir())
        .expect("model loads");
    let server = rapport::server::start(&config, model)
        .await
        .expect("server starts with TLS");
    let https = format!("https://{}", server.grpc_addr);
    let server_only = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost");

    // With a client certificate from the CA: served, over TLS.
    let mutual = server_only.clone().identity(Identity::from_pem(
        &pki.client_cert_pem,
        &pki.client_key_pem,
    ));
    classify_over(
        Endpoint::from_shared(https.clone())
            .unwrap()
            .tls_config(mutual)
            .unwrap(),
    )
    .await
    .expect("a client with a CA-signed certificate is served");
    // Without one, or in plaintext: refused.
    let no_certificate = classify_over(
        Endpoint::from_shared(https.clone())
            .unwrap()
            .tls_config(server_only)
            .unwrap(),
    )
    .await;
    assert!(
        no_certificate.is_err(),
        "served without a client certificate"
    );
    let plaintext =
        classify_over(Endpoint::from_shared(format!("http://{}", server.grpc_addr)).unwrap()).await;
    assert!(plaintext.is_err(), "served in plaintext");
    // The server still serves the good client afterwards.
    let mutual = ClientTlsConfig::new()
        .ca_certificate(Certificate::from_pem(&pki.ca_pem))
        .domain_name("localhost")
        .identity(Identity::from_pem(
            &pki.client_cert_pem,
            &pki.client_key_pem,
        ));
    let channel = Endpoint::from_shared(https)
        .unwrap()
        .tls_config(mutual)
        .unwrap()
        .connect()
        .await
        .unwrap();
    let summary = IngestServiceClient::new(channel.clone())
        .ingest(tokio_stream::iter(vec![event("acme", "c1", "t1", T0_MS)]))
        .await
        .expect("ingest over mutual TLS")
        .into_inner();
    assert_eq!(summary.accepted, 1);
    let top = ScoringServiceClient::new(channel)
        .top_customers(pb::TopCustomersRequest {
            tenant_id: "acme".into(),
            limit: 5,
            ..Default::default()
        })
        .await
        .expect("read over mutual TLS")
        .into_inner();
    assert_eq!(top.customers.len(), 1);
}

/// D1: a TLS connection that never handshakes is closed after
/// `server.tls_handshake_timeout_seconds` (before: held for ever, one descriptor each).
#[tokio::test]
async fn a_tls_connection_that_never_handshakes_is_closed() {
    let pki = make_pki();
    let mut config = loopback_config();
    config.server.tls_handshake_timeout_seconds = 1;
    config.access.tls = Some(TlsConfig {
        cert_file: pki.dir.path().join("server.pem"),
        key_file: pki.dir.path().join("server.key"),
        client_ca_file: None,
    });
    let model = rapport::sentiment::load(config.server.sentiment, &config.server.models_dir())
        .expect("model loads");
    let server = rapport::server::start(&config, model)
        .await
        .expect("server starts with TLS");
    let addr = server.grpc_addr;
    let closed = tokio::task::spawn_blocking(move || {
        let mut silent = std::net::TcpStream::connect(addr).unwrap();
        // Far longer than the handshake deadline: the read ends because the server closed.
        silent
            .set_read_timeout(Some(Duration::from_secs(30)))
            .unwrap();
        use std::io::Read;
        let mut buf = [0u8; 16];
        matches!(silent.read(&mut buf), Ok(0))
            || matches!(silent.read(&mut buf), Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset)
    })
    .await
    .unwrap();
    assert!(closed, "the silent connection was closed by the server");
    server.shutdown(Duration::from_secs(5)).await.unwrap();
}

/// Issue 24 item 4: the per-tenant ingest share was charged to the first event's tenant before the
/// token was checked, so streams opened with acme's token whose first event named globex took
/// globex's share and globex's own `IngestBatch` and `Ingest` were refused RESOURCE_EXHAUSTED. A
/// one-tenant token now pays from its own tenant's share, whatever its events name (those naming
/// another tenant are still rejected one by one).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn another_tenants_token_cannot_take_a_tenants_ingest_share() {
    use tokio_stream::wrappers::ReceiverStream;
    const GLOBEX_TOKEN: &str = "globex-token-8901";
    let mut config = loopback_config();
    config.server.max_ingest_in_flight_per_tenant = 2;
    config.access = AccessConfig {
        tokens: vec![token("acme", ACME_TOKEN), token("globex", GLOBEX_TOKEN)],
        tls: None,
    };
    let t = start_with(config).await;
    // acme's token opens as many streams as a share holds, each first event naming globex.
    let mut holders = Vec::new();
    for i in 0..2 {
        let (send, receive) = tokio::sync::mpsc::channel(4);
        send.send(event("globex", &format!("g{i}"), &format!("x{i}"), T0_MS))
            .await
            .unwrap();
        let mut replies = t
            .ingest
            .clone()
            .ingest_scored(authed(ReceiverStream::new(receive), Some(ACME_TOKEN)))
            .await
            .expect("the stream opens")
            .into_inner();
        let first = replies.message().await.unwrap().expect("one reply");
        assert_eq!(
            first.outcome,
            pb::IngestOutcome::Rejected as i32,
            "{first:?}"
        );
        assert!(first.error.starts_with("tenant_id:"), "{first:?}");
        holders.push((send, replies));
    }
    // globex is served on its own token, by batch and by stream.
    let batch = t
        .ingest
        .clone()
        .ingest_batch(authed(
            pb::IngestBatchRequest {
                interactions: vec![event("globex", "g1", "g1", T0_MS)],
            },
            Some(GLOBEX_TOKEN),
        ))
        .await
        .expect("globex keeps its share")
        .into_inner();
    assert_eq!(batch.accepted, 1, "{batch:?}");
    let stream = t
        .ingest
        .clone()
        .ingest(authed(
            tokio_stream::iter(vec![event("globex", "g2", "g2", T0_MS)]),
            Some(GLOBEX_TOKEN),
        ))
        .await
        .expect("globex keeps its share")
        .into_inner();
    assert_eq!(stream.accepted, 1, "{stream:?}");
    // The streams were charged to acme: its own next call is over its share.
    let refused = t
        .ingest
        .clone()
        .ingest_batch(authed(
            pb::IngestBatchRequest {
                interactions: vec![event("acme", "c1", "a1", T0_MS)],
            },
            Some(ACME_TOKEN),
        ))
        .await
        .expect_err("acme's share is held by its streams");
    assert_eq!(refused.code(), Code::ResourceExhausted, "{refused}");
    assert!(
        refused
            .message()
            .contains("max_ingest_in_flight_per_tenant"),
        "{refused}"
    );
    drop(holders);
}

/// Issue 24 item 16: a token removed from the config file kept working after a reload that
/// answered OK. A reload now puts the file's tokens in force (removed ones are refused from the
/// next call on, new ones work), and refuses a file that removes every token.
#[tokio::test]
async fn a_reload_revokes_removed_tokens() {
    use rapport::pb::admin_service_client::AdminServiceClient;
    const NEW_TOKEN: &str = "acme-token-new-2222";
    let tokens = |entries: &[(&str, &str)]| {
        entries
            .iter()
            .map(|(tenant, secret)| {
                format!(
                    "[[access.tokens]]\ntenant = \"{tenant}\"\ntoken_sha256 = \"{}\"\n",
                    token(tenant, secret).token_sha256
                )
            })
            .collect::<String>()
    };
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rapport.toml");
    std::fs::write(&file, tokens(&[("acme", ACME_TOKEN), ("*", ADMIN_TOKEN)])).unwrap();
    let mut config = rapport::config::Config::from_file(&file).unwrap();
    let loopback = loopback_config();
    config.server.grpc_addr = loopback.server.grpc_addr;
    config.server.metrics_addr = loopback.server.metrics_addr;
    let t = start_with(config).await;
    let mut scoring = t.scoring.clone();
    let mut admin = AdminServiceClient::new(t.channel.clone());
    scoring
        .top_customers(top_request("acme", Some(ACME_TOKEN)))
        .await
        .expect("acme's token works");
    // acme's token is replaced.
    std::fs::write(&file, tokens(&[("acme", NEW_TOKEN), ("*", ADMIN_TOKEN)])).unwrap();
    admin
        .reload_config(authed(pb::ReloadConfigRequest {}, Some(ADMIN_TOKEN)))
        .await
        .expect("reloaded");
    let revoked = scoring
        .top_customers(top_request("acme", Some(ACME_TOKEN)))
        .await
        .expect_err("the removed token is refused");
    assert_eq!(revoked.code(), Code::Unauthenticated, "{revoked}");
    scoring
        .top_customers(top_request("acme", Some(NEW_TOKEN)))
        .await
        .expect("the new token works");
    // Removing every token would open the server: refused, the tokens in force stay.
    std::fs::write(&file, "").unwrap();
    let refused = admin
        .reload_config(authed(pb::ReloadConfigRequest {}, Some(ADMIN_TOKEN)))
        .await
        .expect_err("every token removed");
    assert_eq!(refused.code(), Code::FailedPrecondition, "{refused}");
    assert!(refused.message().contains("access.tokens"), "{refused}");
    let still = scoring
        .top_customers(top_request("acme", None))
        .await
        .expect_err("still authenticated");
    assert_eq!(still.code(), Code::Unauthenticated, "{still}");
}
