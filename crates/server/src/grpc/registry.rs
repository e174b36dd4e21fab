//! The registry service: load a registry version (audited in its own transaction) and read the
//! current one.

use std::sync::Arc;

use chrono::Utc;
use suanli_domain::Registry;
use suanli_proto::v1 as pb;
use suanli_store::{Principal, RegistryNames, RegistryVersionRow};
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
        let names = RegistryNames::of(&registry);
        let hash = registry.content_hash.clone();
        let text = r.toml_text;
        // Decided on the writer thread so concurrent loads get consecutive versions.
        let (row, created) = self
            .shared
            .writer
            .call(
                move |store| -> suanli_store::Result<(RegistryVersionRow, bool)> {
                    if let Some(current) = store.registry_current()?
                        && current.content_hash == hash
                    {
                        return Ok((current, false));
                    }
                    let at = Utc::now();
                    // Audited in the transaction that stores the version.
                    let version = store.registry_insert_audited(
                        &hash,
                        &text,
                        &names,
                        at,
                        &mut |tx, version| {
                            let subject = format!("registry:v{version}");
                            who.record(
                                tx,
                                "registry.load",
                                &subject,
                                &[&version.to_string(), &hash],
                            )
                        },
                    )?;
                    Ok((
                        RegistryVersionRow {
                            version,
                            content_hash: hash,
                            toml_text: text,
                            loaded_at: at.to_rfc3339(),
                        },
                        true,
                    ))
                },
            )
            .await
            .map_err(writer_status)?
            .map_err(|e| Status::unavailable(format!("storage failed: {e}")))?;
        let registry = Arc::new(registry);
        suanli_app::settlement::remember_registry(&row.content_hash, registry.clone());
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
