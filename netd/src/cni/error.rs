//! Failures as CNI error objects: the spec's reserved codes where one fits,
//! netd's own (100 and up) for what only netd can say.

use crate::cli::client::ClientError;

/// The codes this plugin answers with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u32)]
pub enum Code {
    IncompatibleVersion = 1,
    UnsupportedField = 2,
    UnknownContainer = 3,
    InvalidEnvironment = 4,
    Io = 5,
    Decode = 6,
    InvalidConfig = 7,
    TryAgainLater = 11,
    /// The daemon cannot be reached: no ADD can be served.
    NotAvailable = 50,
    /// The daemon refused the request; the details are its message.
    Refused = 100,
    /// CHECK: the attachment is not what `prevResult` says.
    Mismatch = 101,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CniError {
    pub code: Code,
    pub msg: String,
    pub details: String,
}

impl CniError {
    pub fn new(code: Code, msg: impl Into<String>, details: impl Into<String>) -> CniError {
        CniError {
            code,
            msg: msg.into(),
            details: details.into(),
        }
    }

    /// A failure of the daemon's API in doing `what`: unreachable is
    /// [`Code::NotAvailable`], a refusal [`Code::Refused`] with the
    /// daemon's message.
    pub fn daemon(what: &str, e: &ClientError) -> CniError {
        let code = match e {
            ClientError::Connect { .. } | ClientError::Permission { .. } => Code::NotAvailable,
            ClientError::Daemon { status, .. } if *status >= 500 => Code::TryAgainLater,
            ClientError::Daemon { .. } => Code::Refused,
            ClientError::Host(_) => Code::InvalidConfig,
            ClientError::Protocol(_) => Code::Decode,
        };
        let details = match e {
            ClientError::Daemon { message, .. } => message.clone(),
            other => other.to_string(),
        };
        CniError::new(code, format!("netd: {what}"), details)
    }
}

pub type Result<T, E = CniError> = std::result::Result<T, E>;
