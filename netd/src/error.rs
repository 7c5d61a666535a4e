//! Errors the engine returns to API callers. Each kind maps to the HTTP
//! status Docker uses for it; the message text follows Docker's wording so
//! that scripts written against Docker keep working.

use thiserror::Error;

#[derive(Debug, Error)]
pub enum EngineError {
    /// 400: the request itself is wrong (bad CIDR, bad name, bad option).
    #[error("{0}")]
    InvalidParameter(String),
    /// 404: no such network, container or service.
    #[error("{0}")]
    NotFound(String),
    /// 409: the name is taken, the address is in use, the port is allocated.
    #[error("{0}")]
    Conflict(String),
    /// 403: the operation is not allowed on this object (predefined network,
    /// network with active endpoints).
    #[error("{0}")]
    Forbidden(String),
    /// 500: the kernel or the store refused; the message says what and why.
    #[error("{0}")]
    System(String),
}

impl EngineError {
    pub fn status(&self) -> u16 {
        match self {
            EngineError::InvalidParameter(_) => 400,
            EngineError::NotFound(_) => 404,
            EngineError::Conflict(_) => 409,
            EngineError::Forbidden(_) => 403,
            EngineError::System(_) => 500,
        }
    }

    pub fn network_not_found(key: &str) -> Self {
        EngineError::NotFound(format!("network {key} not found"))
    }

    pub fn service_not_found(key: &str) -> Self {
        EngineError::NotFound(format!("service {key} not found"))
    }

    pub fn container_not_found(key: &str) -> Self {
        EngineError::NotFound(format!("No such container: {key}"))
    }

    /// Docker's answer when a container name is taken (by container `id`).
    pub fn container_name_in_use(name: &str, id: &str) -> Self {
        EngineError::Conflict(format!(
            "Conflict. The container name \"/{name}\" is already in use by container \"{id}\". \
             You have to remove (or rename) that container to be able to reuse that name."
        ))
    }

    /// Wraps a lower-layer failure with what was being done, so that the
    /// user sees both ("failed to create veth for c1: File exists").
    pub fn system(context: impl std::fmt::Display, err: impl std::fmt::Display) -> Self {
        EngineError::System(format!("{context}: {err}"))
    }
}

pub type Result<T, E = EngineError> = std::result::Result<T, E>;
