//! The one error type of every reconcile, with a short label for metrics.

use mcp_operator_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    #[error("Kubernetes API request failed: {0}")]
    Kube(#[from] kube::Error),
    #[error("{0}")]
    Store(#[from] StoreError),
    #[error("building the {what} failed: {source}")]
    Build {
        what: &'static str,
        source: serde_json::Error,
    },
    #[error("finalizer: {0}")]
    Finalizer(#[source] Box<kube::runtime::finalizer::Error<Error>>),
    #[error("the object has no {0}")]
    Incomplete(&'static str),
    #[error("Redis refused the write: a newer holder of shard {0} has written")]
    Fenced(crate::sharding::shard::ShardId),
    #[error("the object changed since this reconcile read it; retrying on the newer version")]
    Conflict,
}

impl Error {
    /// The error a reconcile's own code returned, out of the finalizer's
    /// wrapping.
    fn cause(&self) -> &Error {
        match self {
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.cause(),
                _ => self,
            },
            _ => self,
        }
    }

    /// Whether a status write found the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self.cause(), Error::Conflict)
    }

    /// Whether Redis refused a write for a lower fencing token: the shard
    /// moved to another replica.
    pub fn is_fenced(&self) -> bool {
        matches!(self.cause(), Error::Fenced(_))
    }

    /// The `error` label of `mcp_operator_reconcile_errors_total`.
    pub fn metric_label(&self) -> &'static str {
        match self.cause() {
            Error::Kube(_) => "kube",
            Error::Store(_) => "redis",
            Error::Build { .. } => "build",
            Error::Finalizer(_) => "finalizer",
            Error::Incomplete(_) => "incomplete",
            Error::Fenced(_) => "fenced",
            Error::Conflict => "conflict",
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::finalizer::Error as FinalizerError;

    use super::Error;

    #[test]
    fn a_conflict_is_told_apart_inside_the_finalizer_too() {
        let wrapped = Error::Finalizer(Box::new(FinalizerError::ApplyFailed(Error::Conflict)));
        assert!(wrapped.is_conflict());
        assert_eq!(wrapped.metric_label(), "conflict");
        let other = Error::Finalizer(Box::new(FinalizerError::ApplyFailed(Error::Incomplete(
            "uid",
        ))));
        assert!(!other.is_conflict());
        assert_eq!(other.metric_label(), "incomplete");
        let unnamed = Error::Finalizer(Box::new(FinalizerError::UnnamedObject));
        assert_eq!(unnamed.metric_label(), "finalizer");
    }
}
