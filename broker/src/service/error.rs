//! Service errors: what went wrong in words a person can act on, with the
//! class an API maps to a status code.

use crate::domain::catalog::CatalogError;
use crate::domain::grant::GrantError;
use crate::domain::request::RequestError;
use crate::store::StoreError;

#[derive(Debug, Clone, thiserror::Error)]
pub enum ServiceError {
    #[error("{0}")]
    Unauthenticated(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{what} `{id}` not found")]
    NotFound { what: &'static str, id: String },
    #[error("{message}")]
    Invalid {
        field: Option<&'static str>,
        message: String,
    },
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    Unavailable(String),
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl ServiceError {
    pub fn invalid(field: &'static str, message: impl Into<String>) -> Self {
        ServiceError::Invalid {
            field: Some(field),
            message: message.into(),
        }
    }

    pub fn not_found(what: &'static str, id: impl ToString) -> Self {
        ServiceError::NotFound {
            what,
            id: id.to_string(),
        }
    }
}

impl From<RequestError> for ServiceError {
    fn from(e: RequestError) -> Self {
        use RequestError as E;
        let message = e.to_string();
        match e {
            E::ZeroDuration | E::TooLong { .. } => ServiceError::invalid("duration_seconds", message),
            E::JustificationRequired => ServiceError::invalid("justification", message),
            E::TicketRequired { .. } | E::TicketMismatch { .. } => ServiceError::invalid("ticket", message),
            E::StartsInPast { .. } | E::StartsTooLate { .. } => ServiceError::invalid("starts_at", message),
            E::BreakGlassNotAllowed => ServiceError::invalid("break_glass", message),
            E::NotPermitted
            | E::SelfReview
            | E::SamePersonAsRequester { .. }
            | E::NotAnApprover
            | E::NotYours => ServiceError::Forbidden(message),
            E::NotPending { .. }
            | E::PendingExpired { .. }
            | E::AlreadyReviewed { .. }
            | E::AlreadyReviewedAs { .. }
            | E::CannotCancel { .. } => ServiceError::Conflict(message),
        }
    }
}

impl From<GrantError> for ServiceError {
    fn from(e: GrantError) -> Self {
        let message = e.to_string();
        match e {
            GrantError::AlreadyEnded { .. } | GrantError::NotActive { .. } => ServiceError::Conflict(message),
            GrantError::ExtensionNotAllowed => ServiceError::Forbidden(message),
            GrantError::NotYours | GrantError::NoLongerEligible { .. } => ServiceError::Forbidden(message),
            GrantError::ExtensionTooLong { .. } | GrantError::ZeroExtension => {
                ServiceError::invalid("duration_seconds", message)
            }
        }
    }
}

impl From<CatalogError> for ServiceError {
    fn from(e: CatalogError) -> Self {
        let field = match &e {
            CatalogError::SelfFederated { .. } | CatalogError::UnknownDirectory { .. } => "identity_mode",
            CatalogError::UnknownConfiguration { .. } => "configuration",
            CatalogError::UnknownMapping { .. } => "realized_by",
            CatalogError::TargetKindMismatch { .. }
            | CatalogError::EmptyField { .. }
            | CatalogError::BadAccountId { .. } => "target",
        };
        ServiceError::invalid(field, e.to_string())
    }
}
