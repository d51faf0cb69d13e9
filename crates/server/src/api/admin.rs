//! AdminService: config reload (also on SIGHUP).

use crate::api::access::{Authenticator, Grant};
use crate::api::error::ApiError;
use crate::pb;
use crate::pb::admin_service_server::AdminService;
use rapport_core::store::Store;
use std::path::PathBuf;
use std::sync::Arc;
use tonic::{Request, Response, Status};

/// The AdminService implementation.
pub struct AdminApi {
    store: Arc<Store>,
    /// The tokens in force (a reload replaces them).
    auth: Authenticator,
    /// The config file the server started from, if any.
    config_file: Option<PathBuf>,
}

impl AdminApi {
    /// A service reloading `config_file` into `store` and `auth`.
    pub fn new(store: Arc<Store>, auth: Authenticator, config_file: Option<PathBuf>) -> Self {
        Self {
            store,
            auth,
            config_file,
        }
    }
}

/// Reads `config_file` again and puts its segments, rules and `[access]` tokens in force (a
/// removed token is refused from the next call on); on any error (unreadable, not TOML, a key
/// out of range, every token removed) the config in force stays and the error names the key.
/// Other keys apply at the next start. Logged and counted either way.
pub fn reload_config(
    store: &Store,
    auth: &Authenticator,
    config_file: Option<&std::path::Path>,
) -> Result<rapport_core::segments::Policy, ApiError> {
    let Some(path) = config_file else {
        rapport_core::telemetry::config_reloaded(false);
        return Err(ApiError::FailedPrecondition(
            "the server was started without --config: there is no file to reload".into(),
        ));
    };
    let loaded = rapport_core::config::Config::from_file(path)
        .map_err(|error| error.to_string())
        .and_then(|config| auth.check_reload(&config.access).map(|()| config));
    match loaded {
        Ok(config) => {
            let policy = config.policy();
            store.set_policy(policy.clone());
            auth.reload(&config.access);
            rapport_core::telemetry::config_reloaded(true);
            tracing::info!(
                file = %path.display(),
                segments = policy.segments.len(),
                rules = policy.rules.len(),
                tokens = config.access.tokens.len(),
                "config reloaded: segments, rules and tokens in force (other keys apply at the next start)"
            );
            Ok(policy)
        }
        Err(error) => {
            rapport_core::telemetry::config_reloaded(false);
            tracing::error!(file = %path.display(), %error, "config reload refused: the config in force stays");
            Err(ApiError::FailedPrecondition(format!(
                "{error} (the config in force stays)"
            )))
        }
    }
}

#[tonic::async_trait]
impl AdminService for Arc<AdminApi> {
    async fn reload_config(
        &self,
        request: Request<pb::ReloadConfigRequest>,
    ) -> Result<Response<pb::ReloadConfigResponse>, Status> {
        if !matches!(Grant::of(&request)?, Grant::AllTenants) {
            return Err(ApiError::PermissionDenied(
                "ReloadConfig needs a token granting every tenant (\"*\")".into(),
            )
            .into());
        }
        let api = Arc::clone(self);
        let policy = tokio::task::spawn_blocking(move || {
            reload_config(&api.store, &api.auth, api.config_file.as_deref())
        })
        .await
        .map_err(|error| ApiError::Internal(format!("reload failed: {error}")))??;
        Ok(Response::new(pb::ReloadConfigResponse {
            segments: policy.segments.iter().map(|s| s.name.clone()).collect(),
            rules: policy.rules.len() as u32,
        }))
    }
}
