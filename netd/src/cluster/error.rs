//! What cluster calls fail with: a refusal the API shows as it is (Docker's
//! messages and status codes), or a store that cannot be used right now.

use std::time::Duration;

use crate::error::EngineError;

#[derive(Debug, thiserror::Error)]
pub enum ClusterError {
    /// The request is refused (name taken, pool overlapping, network in
    /// use, ...): Docker's message and status, like a local refusal.
    #[error(transparent)]
    Rejected(#[from] EngineError),
    /// etcd did not answer in time or could not be reached. Nothing was
    /// changed, or (for a transaction in flight) it was applied or not as a
    /// whole: a retry finds out which.
    #[error(
        "the cluster store {store} cannot be reached ({cause}): check that etcd runs there \
         and that --cluster-store names it; calls that need the cluster fail until it is back"
    )]
    Unavailable { store: String, cause: String },
    /// etcd answered with an error that no retry fixes (a request too large,
    /// permission denied, ...).
    #[error("the cluster store {store} refused the request: {cause}")]
    Store { store: String, cause: String },
    /// The lease that this host's records are bound to is gone; the
    /// membership task is granting a new one (see `Member::lease`).
    #[error(
        "this host's cluster membership lapsed (its lease expired while etcd was out of reach); \
         it is being renewed, try again in a moment"
    )]
    NotMember,
    /// Optimistic transactions kept losing to concurrent writers.
    #[error("the cluster store is too busy: {what} lost {attempts} races in a row; try again")]
    Contended { what: &'static str, attempts: u32 },
}

impl ClusterError {
    /// Sorts an etcd-client error: a lease that does not exist (any more)
    /// is `NotMember`, transport failures and the gRPC codes of an
    /// unreachable or leaderless cluster are `Unavailable`, the rest is a
    /// refusal of the request itself.
    pub(super) fn from_etcd(store: &str, e: etcd_client::Error) -> ClusterError {
        use etcd_client::Error as E;
        use tonic::Code;
        let lease_gone = match &e {
            E::LeaseKeepAliveError(m) => m == "lease not found",
            E::GRpcStatus(s) => s.message().contains("requested lease not found"),
            _ => false,
        };
        if lease_gone {
            return ClusterError::NotMember;
        }
        let cause = e.to_string();
        let store = store.to_string();
        let unavailable = match &e {
            E::TransportError(_) | E::IoError(_) | E::WatchError(_) | E::LeaseKeepAliveError(_) => {
                true
            }
            E::GRpcStatus(s) => matches!(
                s.code(),
                Code::Unavailable | Code::DeadlineExceeded | Code::Cancelled | Code::Unknown
            ),
            _ => false,
        };
        if unavailable {
            ClusterError::Unavailable { store, cause }
        } else {
            ClusterError::Store { store, cause }
        }
    }

    pub(super) fn timed_out(store: &str, timeout: Duration) -> ClusterError {
        ClusterError::Unavailable {
            store: store.to_string(),
            cause: format!("no answer within {}", humantime::format_duration(timeout)),
        }
    }
}

/// How the API reports a cluster failure: refusals keep their status, the
/// rest is a server-side failure with the message above.
impl From<ClusterError> for EngineError {
    fn from(e: ClusterError) -> EngineError {
        match e {
            ClusterError::Rejected(e) => e,
            other => EngineError::System(other.to_string()),
        }
    }
}
