//! The registry service: load a registry version (audited in its own transaction) and read the
//! current one.

use std::sync::Arc;

use suanli_domain::Registry;
use suanli_proto::v1 as pb;
use suanli_store::Principal;
use tonic::{Request, Response, Status};

use super::{CurrentRegistry, Shared, timestamp_of_text, writer_status};

impl CurrentRegistry {
    fn to_proto(&self) -> pb::RegistryVersion {
        pb::RegistryVersion {
            version: self.version,
            content_hash: self.content_hash.clone(),
            loaded_at: timestamp_of_text(&self.loaded_at),
            providers: self.registry.providers.len() as u32,
            skus: self.registry.skus.len() as u32,
            beneficiaries: self.registry.beneficiaries.len() as u32,
            programmes: self.registry.programmes.len() as u32,
        }
    }
}

#[derive(Clone)]
pub struct RegistryService {
    pub shared: Arc<Shared>,
}

#[tonic::async_trait]
impl pb::registry_service_server::RegistryService for RegistryService {
    async fn load_registry(
        &self,
        request: Request<pb::LoadRegistryRequest>,
    ) -> Result<Response<pb::LoadRegistryResponse>, Status> {
        let principal = self.shared.auth.principal(request.extensions()).await?;
        let who =
            crate::auth::actor_of_request(&principal, request.extensions(), request.metadata());
        if !matches!(principal, Principal::Admin | Principal::Finance) {
            return Err(Status::permission_denied(format!(
                "role {} may not load a registry",
                principal.role()
            )));
        }
        let r = request.into_inner();
        let file = if r.file_name.is_empty() {
            "registry".to_owned()
        } else {
            r.file_name.clone()
        };
        let (registry, warnings) = Registry::from_toml(&file, &r.toml_text)
            .map_err(|e| Status::invalid_argument(e.to_string()))?;
        let warnings: Vec<String> = warnings
            .into_iter()
            .map(|w| format!("{}: {}", w.path, w.reason))
            .collect();
        let text = r.toml_text;
        // Decided on the writer thread so concurrent loads get consecutive versions.
        let registry = Arc::new(registry);
        let (row, created) = {
            let registry = registry.clone();
            self.shared
                .writer
                .call(move |store| suanli_app::registry::load(store, &registry, text, &who))
                .await
                .map_err(writer_status)?
                .map_err(|e| Status::unavailable(format!("storage failed: {e}")))?
        };
        suanli_app::registry::remember_registry(&row.content_hash, registry.clone());
        let current = Arc::new(CurrentRegistry {
            version: row.version,
            content_hash: row.content_hash,
            loaded_at: row.loaded_at,
            registry,
        });
        self.shared.install_registry(current.clone());
        if created {
            tracing::info!(version = current.version, hash = %current.content_hash, "registry version loaded");
            super::refresh_programme_gauges(&self.shared).await;
        }
        Ok(Response::new(pb::LoadRegistryResponse {
            current: Some(current.to_proto()),
            created,
            warnings,
        }))
    }

    async fn get_registry(
        &self,
        request: Request<pb::GetRegistryRequest>,
    ) -> Result<Response<pb::GetRegistryResponse>, Status> {
        self.shared.auth.principal(request.extensions()).await?;
        Ok(Response::new(pb::GetRegistryResponse {
            current: self.shared.current().map(|c| c.to_proto()),
        }))
    }
}
