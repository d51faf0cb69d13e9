//! Who may call: bearer tokens per tenant and TLS settings (`[access]` in the config file).
//!
//! Every service except grpc.health.v1 sits behind [`Authenticator`]: a call without a known
//! `authorization: Bearer <token>` is answered UNAUTHENTICATED before any handler runs, so it
//! touches nothing. A known token's [`Grant`] rides in the request's extensions; handlers check it
//! against each tenant a request names (PERMISSION_DENIED, or a per-event rejection in ingest
//! streams). Tokens are configured by their SHA-256, so the config file holds no secret.

use crate::api::convert::FieldError;
use crate::api::error::ApiError;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::path::Path;
use std::sync::Arc;
use tonic::{Request, Status};

pub use crate::config::{AccessConfig, TlsConfig, TokenConfig, ALL_TENANTS};

/// The server's TLS acceptor (HTTP/2 by ALPN; client certificates from `client_ca_file`
/// required when it is set), reading the PEM files; `None` without `[access.tls]`.
pub fn server_tls(access: &AccessConfig) -> anyhow::Result<Option<tokio_rustls::TlsAcceptor>> {
    use tokio_rustls::rustls::{server::WebPkiClientVerifier, RootCertStore, ServerConfig};
    let Some(tls) = &access.tls else {
        return Ok(None);
    };
    let certs = rustls_pemfile::certs(&mut read_pem(&tls.cert_file)?.as_slice())
        .collect::<Result<Vec<_>, _>>()
        .map_err(|error| {
            anyhow::anyhow!("access.tls.cert_file: {}: {error}", tls.cert_file.display())
        })?;
    let key = rustls_pemfile::private_key(&mut read_pem(&tls.key_file)?.as_slice())
        .map_err(|error| anyhow::anyhow!("access.tls.key_file: {error}"))?
        .ok_or_else(|| {
            anyhow::anyhow!(
                "access.tls.key_file: no private key in {}",
                tls.key_file.display()
            )
        })?;
    let builder = ServerConfig::builder();
    let builder = match &tls.client_ca_file {
        None => builder.with_no_client_auth(),
        Some(ca) => {
            let mut roots = RootCertStore::empty();
            for cert in rustls_pemfile::certs(&mut read_pem(ca)?.as_slice()) {
                let cert =
                    cert.map_err(|error| anyhow::anyhow!("access.tls.client_ca_file: {error}"))?;
                roots
                    .add(cert)
                    .map_err(|error| anyhow::anyhow!("access.tls.client_ca_file: {error}"))?;
            }
            builder.with_client_cert_verifier(
                WebPkiClientVerifier::builder(roots.into())
                    .build()
                    .map_err(|error| anyhow::anyhow!("access.tls.client_ca_file: {error}"))?,
            )
        }
    };
    let mut config = builder
        .with_single_cert(certs, key)
        .map_err(|error| anyhow::anyhow!("access.tls: {error}"))?;
    config.alpn_protocols.push(b"h2".to_vec());
    Ok(Some(tokio_rustls::TlsAcceptor::from(std::sync::Arc::new(
        config,
    ))))
}

fn read_pem(path: &Path) -> anyhow::Result<Vec<u8>> {
    std::fs::read(path).map_err(|error| anyhow::anyhow!("cannot read {}: {error}", path.display()))
}

/// What a caller's token lets it touch.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Grant {
    /// Every tenant: an admin token, or a server without tokens.
    AllTenants,
    /// One tenant.
    Tenant(Arc<str>),
}

impl Grant {
    /// Whether the grant covers `tenant_id`.
    pub fn allows(&self, tenant_id: &str) -> bool {
        match self {
            Grant::AllTenants => true,
            Grant::Tenant(granted) => **granted == *tenant_id,
        }
    }

    /// The refusal for `tenant_id`, naming the field.
    pub fn refusal(tenant_id: &str) -> FieldError {
        FieldError::new(
            "tenant_id",
            format!("the caller's token does not grant tenant {tenant_id:?}"),
        )
    }

    /// The grant the authenticator attached to `request`. Missing only if a service was mounted
    /// without the authenticator: then nothing is granted.
    #[allow(clippy::result_large_err)] // tonic's Status is what every handler returns anyway.
    pub fn of<T>(request: &Request<T>) -> Result<Grant, Status> {
        request.extensions().get::<Grant>().cloned().ok_or_else(|| {
            ApiError::Unauthenticated("no credentials were checked for this call".into()).into()
        })
    }

    /// [`Grant::of`] checked against one tenant: PERMISSION_DENIED when it is not covered.
    #[allow(clippy::result_large_err)]
    pub fn check<T>(request: &Request<T>, tenant_id: &str) -> Result<(), Status> {
        if Grant::of(request)?.allows(tenant_id) {
            Ok(())
        } else {
            Err(ApiError::PermissionDenied(Grant::refusal(tenant_id).to_string()).into())
        }
    }
}

/// Token SHA-256 (hex) → grant.
type Grants = HashMap<String, Grant>;

/// Checks the bearer token of every call and attaches its [`Grant`]. Clones share the tokens in
/// force, which a config reload replaces ([`Authenticator::reload`]): a token removed from the
/// file stops working at the reload that answers OK.
#[derive(Clone, Debug)]
pub struct Authenticator {
    /// The tokens in force; empty = authentication off.
    grants: Arc<std::sync::RwLock<Arc<Grants>>>,
}

impl Authenticator {
    /// An authenticator for the configured tokens.
    pub fn new(config: &AccessConfig) -> Self {
        Self {
            grants: Arc::new(std::sync::RwLock::new(Arc::new(Self::grants_of(config)))),
        }
    }

    fn grants_of(config: &AccessConfig) -> Grants {
        config
            .tokens
            .iter()
            .map(|token| {
                let grant = if token.tenant == ALL_TENANTS {
                    Grant::AllTenants
                } else {
                    Grant::Tenant(Arc::from(token.tenant.as_str()))
                };
                (token.token_sha256.clone(), grant)
            })
            .collect()
    }

    /// The tokens in force.
    fn current(&self) -> Arc<Grants> {
        Arc::clone(&self.grants.read().unwrap_or_else(|e| e.into_inner()))
    }

    /// Whether calls need a token.
    pub fn is_enabled(&self) -> bool {
        !self.current().is_empty()
    }

    /// Why `config`'s tokens cannot replace those in force, if they cannot: a reload may add,
    /// change and remove tokens, but not remove the last one (that would open every tenant to
    /// every caller; run without tokens only by a restart, which logs a warning).
    pub fn check_reload(&self, config: &AccessConfig) -> Result<(), String> {
        if self.is_enabled() && config.tokens.is_empty() {
            return Err(
                "access.tokens: a reload cannot remove every token (that would let any \
                        caller read and write every tenant); restart to run without tokens"
                    .into(),
            );
        }
        Ok(())
    }

    /// Puts `config`'s tokens in force (after [`Authenticator::check_reload`]): removed tokens
    /// are refused from the next call on; calls in flight finish.
    pub fn reload(&self, config: &AccessConfig) {
        *self.grants.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(Self::grants_of(config));
    }

    fn grant_for(&self, authorization: Option<&str>) -> Option<Grant> {
        let grants = self.current();
        if grants.is_empty() {
            return Some(Grant::AllTenants);
        }
        let token = bearer_token(authorization?)?;
        let digest = format!("{:x}", Sha256::digest(token.as_bytes()));
        grants.get(&digest).cloned()
    }
}

/// The token of an `authorization` value `Bearer <token>`: the scheme's name is case-insensitive
/// (RFC 7235: `bearer`, `BEARER` too), one or more spaces follow it, and surrounding whitespace
/// is ignored. `None` for another scheme or no token.
fn bearer_token(authorization: &str) -> Option<&str> {
    let (scheme, token) = authorization.trim().split_once(' ')?;
    let token = token.trim();
    (scheme.eq_ignore_ascii_case("bearer") && !token.is_empty()).then_some(token)
}

impl tonic::service::Interceptor for Authenticator {
    fn call(&mut self, mut request: Request<()>) -> Result<Request<()>, Status> {
        let authorization = request
            .metadata()
            .get("authorization")
            .and_then(|value| value.to_str().ok());
        match self.grant_for(authorization) {
            Some(grant) => {
                request.extensions_mut().insert(grant);
                Ok(request)
            }
            None => Err(ApiError::Unauthenticated(
                "missing or unknown bearer token (send `authorization: Bearer <token>`)".into(),
            )
            .into()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(tokens: &[(&str, &str)]) -> AccessConfig {
        AccessConfig {
            tokens: tokens
                .iter()
                .map(|(tenant, token)| TokenConfig {
                    tenant: tenant.to_string(),
                    token_sha256: format!("{:x}", Sha256::digest(token.as_bytes())),
                })
                .collect(),
            tls: None,
        }
    }

    #[test]
    fn tokens_grant_their_tenant_admin_all_others_nothing() {
        let auth = Authenticator::new(&config(&[("acme", "s3cret"), ("*", "root")]));
        assert!(auth.is_enabled());
        assert_eq!(
            auth.grant_for(Some("Bearer s3cret")),
            Some(Grant::Tenant(Arc::from("acme")))
        );
        assert_eq!(auth.grant_for(Some("Bearer root")), Some(Grant::AllTenants));
        assert_eq!(auth.grant_for(Some("Bearer wrong")), None);
        // RFC 7235: the scheme is case-insensitive (issue 24 item 16).
        for authorization in ["bearer s3cret", "BEARER s3cret", "Bearer  s3cret "] {
            assert_eq!(
                auth.grant_for(Some(authorization)),
                Some(Grant::Tenant(Arc::from("acme"))),
                "{authorization:?}"
            );
        }
        assert_eq!(auth.grant_for(Some("Basic s3cret")), None);
        assert_eq!(auth.grant_for(Some("Bearer ")), None);
        assert_eq!(auth.grant_for(Some("Bearers3cret")), None);
        assert_eq!(auth.grant_for(Some("s3cret")), None);
        assert_eq!(auth.grant_for(None), None);
        assert!(Grant::Tenant(Arc::from("acme")).allows("acme"));
        assert!(!Grant::Tenant(Arc::from("acme")).allows("globex"));
        let open = Authenticator::new(&AccessConfig::default());
        assert_eq!(open.grant_for(None), Some(Grant::AllTenants));
    }

    #[test]
    fn token_entries_are_validated_by_key() {
        assert!(config(&[("acme", "x")]).validate().is_ok());
        let mut bad = config(&[("acme", "x")]);
        bad.tokens[0].token_sha256 = "ABC".into();
        let error = bad.validate().unwrap_err().to_string();
        assert!(error.contains("access.tokens[0].token_sha256"), "{error}");
        let error = config(&[("", "x")]).validate().unwrap_err().to_string();
        assert!(error.contains("access.tokens[0].tenant"), "{error}");
    }
}
