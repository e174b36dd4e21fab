//! The registry service: load a registry version whole (one message or a stream of chunks) or
//! patch the current one, each audited in its own transaction, and read the current one.
//!
//! Parsing, validating and merging happen on blocking threads and the writer only stores, in
//! slices ([`suanli_app::registry::INTERN_SLICE_NAMES`]), so ingest goes on during a load. Once
//! the whole text has arrived, the load runs in a task of its own to the end: a version is
//! committed and installed on this server, or not committed, whatever becomes of the call.

use std::sync::Arc;

use suanli_app::audit::Actor;
use suanli_app::registry::{INTERN_SLICE_NAMES, LoadError, LoadKind, Loaded};
use suanli_domain::Registry;
use suanli_proto::v1 as pb;
use suanli_store::{Principal, RegistryNames};
use tonic::{Request, Response, Status, Streaming};

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

/// A registry version that went through [`commit`].
struct Committed {
    current: Arc<CurrentRegistry>,
    created: bool,
    warnings: Vec<String>,
}

/// Only admin and finance load or patch registries.
async fn loader<T>(shared: &Shared, request: &Request<T>, what: &str) -> Result<Actor, Status> {
    let identity = shared.auth.identity(request.extensions()).await?;
    let who = crate::auth::actor_of_request(&identity, request.extensions(), request.metadata());
    let principal = identity.principal;
    if !matches!(principal, Principal::Admin | Principal::Finance) {
        return Err(Status::permission_denied(format!(
            "role {} may not {what} a registry",
            principal.role()
        )));
    }
    Ok(who)
}

/// Receives a text sent in chunks; returns its file name and the text. The whole is bounded by
/// `limits.registry_bytes_max`, checked against the announced size before anything is kept.
async fn receive(
    stream: &mut Streaming<pb::RegistryChunk>,
    bytes_max: usize,
) -> Result<(String, String), Status> {
    let too_large = |bytes: u64| {
        Status::resource_exhausted(format!(
            "registry text of {bytes} bytes is over limits.registry_bytes_max ({bytes_max} bytes)"
        ))
    };
    let mut file = String::new();
    let mut announced = 0u64;
    let mut text: Vec<u8> = Vec::new();
    let mut first = true;
    while let Some(chunk) = stream.message().await? {
        if first {
            first = false;
            super::bounded("file_name", &chunk.file_name, super::FILE_NAME_BYTES_MAX)?;
            file = chunk.file_name;
            announced = chunk.total_bytes;
            if announced > bytes_max as u64 {
                return Err(too_large(announced));
            }
            text.reserve(announced as usize);
        }
        if text.len() + chunk.text.len() > bytes_max {
            return Err(too_large((text.len() + chunk.text.len()) as u64));
        }
        text.extend_from_slice(&chunk.text);
        if announced > 0 && text.len() as u64 > announced {
            return Err(Status::invalid_argument(format!(
                "registry text is longer than the {announced} bytes announced in total_bytes"
            )));
        }
    }
    if announced > 0 && (text.len() as u64) < announced {
        return Err(Status::invalid_argument(format!(
            "registry stream ended after {} of the {announced} bytes announced in total_bytes",
            text.len()
        )));
    }
    if file.is_empty() {
        file = "registry".to_owned();
    }
    let text = String::from_utf8(text).map_err(|e| {
        Status::invalid_argument(format!(
            "{file}: not UTF-8 text (byte {})",
            e.utf8_error().valid_up_to()
        ))
    })?;
    Ok((file, text))
}

/// Parses and validates a whole text on a blocking thread (a city's registry takes a second).
async fn parse(file: String, text: Arc<str>) -> Result<(Registry, Vec<String>), Status> {
    tokio::task::spawn_blocking(move || {
        Registry::from_toml(&file, &text)
            .map(|(registry, warnings)| {
                let warnings = warnings
                    .into_iter()
                    .map(|w| format!("{}: {}", w.path, w.reason))
                    .collect();
                (registry, warnings)
            })
            .map_err(|e| Status::invalid_argument(e.to_string()))
    })
    .await
    .map_err(|e| Status::internal(format!("registry parser failed: {e}")))?
}

/// Interns the registry's names in slices, stores the version and installs it. Runs in a task
/// of its own (see [`run_to_end`]).
async fn commit(
    shared: Arc<Shared>,
    registry: Registry,
    warnings: Vec<String>,
    text: Arc<str>,
    kind: LoadKind,
    who: Actor,
) -> Result<Committed, Status> {
    let registry = Arc::new(registry);
    let names = {
        let registry = registry.clone();
        tokio::task::spawn_blocking(move || RegistryNames::of(&registry))
            .await
            .map_err(|e| Status::internal(format!("listing names failed: {e}")))?
    };
    let already = shared
        .current()
        .is_some_and(|c| c.content_hash == registry.content_hash);
    if !already {
        for slice in names.slices(INTERN_SLICE_NAMES) {
            shared
                .writer
                .call(move |store| suanli_app::registry::intern(store, &slice))
                .await
                .map_err(writer_status)?
                .map_err(|e| Status::unavailable(format!("storage failed: {e}")))?;
        }
    }
    let loaded: Loaded = {
        let (registry, text) = (registry.clone(), text.clone());
        shared
            .writer
            .call(move |store| {
                suanli_app::registry::load(store, &registry, &names, &text, &kind, &who)
            })
            .await
            .map_err(writer_status)?
            .map_err(|e| match e {
                LoadError::BaseChanged { .. } => Status::aborted(e.to_string()),
                LoadError::Store(e) => Status::unavailable(format!("storage failed: {e}")),
            })?
    };
    suanli_app::registry::remember_registry(&loaded.content_hash, registry.clone());
    let current = Arc::new(CurrentRegistry {
        version: loaded.version,
        content_hash: loaded.content_hash,
        loaded_at: loaded.loaded_at,
        registry,
        toml_text: text,
    });
    shared.install_registry(current.clone());
    if loaded.created {
        tracing::info!(version = current.version, hash = %current.content_hash, "registry version loaded");
        super::refresh_programme_gauges(&shared).await;
    }
    Ok(Committed {
        current,
        created: loaded.created,
        warnings,
    })
}

/// Runs `work` in a task of its own and waits for it. When the call is dropped (its deadline
/// passed, the client went away), the task goes on: a version it commits is also installed.
async fn run_to_end<T: Send + 'static>(
    work: impl Future<Output = Result<T, Status>> + Send + 'static,
) -> Result<T, Status> {
    tokio::spawn(work)
        .await
        .map_err(|e| Status::internal(format!("registry load failed: {e}")))?
}

/// Loads a whole text: parse, then commit.
async fn load_whole(
    shared: Arc<Shared>,
    file: String,
    text: String,
    who: Actor,
) -> Result<Response<pb::LoadRegistryResponse>, Status> {
    let text: Arc<str> = text.into();
    let committed = run_to_end(async move {
        let (registry, warnings) = parse(file, text.clone()).await?;
        commit(shared, registry, warnings, text, LoadKind::Whole, who).await
    })
    .await?;
    Ok(Response::new(pb::LoadRegistryResponse {
        current: Some(committed.current.to_proto()),
        created: committed.created,
        warnings: committed.warnings,
    }))
}

#[tonic::async_trait]
impl pb::registry_service_server::RegistryService for RegistryService {
    async fn load_registry(
        &self,
        request: Request<pb::LoadRegistryRequest>,
    ) -> Result<Response<pb::LoadRegistryResponse>, Status> {
        let who = loader(&self.shared, &request, "load").await?;
        let r = request.into_inner();
        super::bounded("file_name", &r.file_name, super::FILE_NAME_BYTES_MAX)?;
        let file = if r.file_name.is_empty() {
            "registry".to_owned()
        } else {
            r.file_name
        };
        load_whole(self.shared.clone(), file, r.toml_text, who).await
    }

    async fn load_registry_stream(
        &self,
        request: Request<Streaming<pb::RegistryChunk>>,
    ) -> Result<Response<pb::LoadRegistryResponse>, Status> {
        let who = loader(&self.shared, &request, "load").await?;
        let (file, text) =
            receive(&mut request.into_inner(), self.shared.registry_bytes_max).await?;
        load_whole(self.shared.clone(), file, text, who).await
    }

    async fn patch_registry(
        &self,
        request: Request<Streaming<pb::RegistryChunk>>,
    ) -> Result<Response<pb::PatchRegistryResponse>, Status> {
        let who = loader(&self.shared, &request, "patch").await?;
        let (file, fragment) =
            receive(&mut request.into_inner(), self.shared.registry_bytes_max).await?;
        let base = self.shared.current().ok_or_else(|| {
            Status::failed_precondition(
                "no registry is loaded yet: load a whole one first (suanli registry import)",
            )
        })?;
        let bytes_max = self.shared.registry_bytes_max;
        let shared = self.shared.clone();
        let base_version = base.version;
        let (committed, summary) = run_to_end(async move {
            let merged = tokio::task::spawn_blocking(move || {
                let (text, summary) =
                    suanli_domain::registry_patch::merge(&file, &base.toml_text, &fragment)
                        .map_err(|e| Status::invalid_argument(e.to_string()))?;
                if text.len() > bytes_max {
                    return Err(Status::resource_exhausted(format!(
                        "the patched registry of {} bytes is over limits.registry_bytes_max ({bytes_max} bytes)",
                        text.len()
                    )));
                }
                let (registry, warnings) = Registry::from_toml(
                    &format!("{file} merged onto registry version {}", base.version),
                    &text,
                )
                .map_err(|e| Status::invalid_argument(e.to_string()))?;
                let warnings: Vec<String> = warnings
                    .into_iter()
                    .map(|w| format!("{}: {}", w.path, w.reason))
                    .collect();
                Ok((text, summary, registry, warnings))
            })
            .await
            .map_err(|e| Status::internal(format!("registry patch failed: {e}")))?;
            let (text, summary, registry, warnings) = merged?;
            let kind = LoadKind::Patch {
                base_version,
                summary,
            };
            let committed = commit(shared, registry, warnings, text.into(), kind, who).await?;
            Ok((committed, summary))
        })
        .await?;
        Ok(Response::new(pb::PatchRegistryResponse {
            current: Some(committed.current.to_proto()),
            created: committed.created,
            warnings: committed.warnings,
            base_version,
            beneficiaries_added: summary.beneficiaries_added as u32,
            beneficiaries_changed: summary.beneficiaries_changed as u32,
            grants_added: summary.grants_added as u32,
            grants_changed: summary.grants_changed as u32,
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
