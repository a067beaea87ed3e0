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
    /// An error of one named stage of a reconcile, so that metrics and
    /// Events say where it failed, not only what failed.
    #[error("{stage}: {source}")]
    At { stage: Stage, source: Box<Error> },
}

/// The stages of a reconcile that can fail, as the `stage` label of
/// `mcp_operator_reconcile_errors_total` and the first word of a
/// `ReconcileFailed` Event.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stage {
    /// Writing the catalog to Redis (or removing it).
    Publish,
    /// The server's Redis user and its Secret.
    Identity,
    /// Building the router workload.
    Build,
    /// Applying the workload objects.
    Apply,
    /// Writing the object's status.
    Status,
    /// Removing a deleted server's catalog and user.
    Cleanup,
}

impl Stage {
    pub fn as_str(self) -> &'static str {
        match self {
            Stage::Publish => "publish",
            Stage::Identity => "identity",
            Stage::Build => "build",
            Stage::Apply => "apply",
            Stage::Status => "status",
            Stage::Cleanup => "cleanup",
        }
    }

    /// Marks an error as this stage's.
    pub fn of(self, error: impl Into<Error>) -> Error {
        Error::At {
            stage: self,
            source: Box::new(error.into()),
        }
    }
}

/// Names the stage of a result's error where a stage calls out:
/// `publish(..).await.at(Stage::Publish)?`.
pub trait AtStage<T> {
    fn at(self, stage: Stage) -> Result<T, Error>;
}

impl<T, E: Into<Error>> AtStage<T> for Result<T, E> {
    fn at(self, stage: Stage) -> Result<T, Error> {
        self.map_err(|error| stage.of(error))
    }
}

impl std::fmt::Display for Stage {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
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
            Error::At { source, .. } => source.cause(),
            _ => self,
        }
    }

    /// The `stage` label of `mcp_operator_reconcile_errors_total`: the
    /// stage that failed, `finalizer` for adding or removing the finalizer
    /// itself, else `reconcile`.
    pub fn stage_label(&self) -> &'static str {
        match self {
            Error::At { stage, .. } => stage.as_str(),
            Error::Finalizer(inner) => match &**inner {
                kube::runtime::finalizer::Error::ApplyFailed(e)
                | kube::runtime::finalizer::Error::CleanupFailed(e) => e.stage_label(),
                _ => "finalizer",
            },
            _ => "reconcile",
        }
    }

    /// The shard whose fencing token Redis refused, if that is the cause.
    pub fn fenced_shard(&self) -> Option<crate::sharding::shard::ShardId> {
        match self.cause() {
            Error::Fenced(shard) => Some(*shard),
            _ => None,
        }
    }

    /// Whether a status write found the object changed since it was read.
    pub fn is_conflict(&self) -> bool {
        matches!(self.cause(), Error::Conflict)
    }

    /// Whether Redis refused a write for a lower fencing token: the shard
    /// moved to another replica.
    pub fn is_fenced(&self) -> bool {
        self.fenced_shard().is_some()
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
            // cause() never stops at a stage.
            Error::At { source, .. } => source.metric_label(),
        }
    }
}

#[cfg(test)]
mod tests {
    use kube::runtime::finalizer::Error as FinalizerError;

    use super::{Error, Stage};

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
        assert_eq!(unnamed.stage_label(), "finalizer");
    }

    #[test]
    fn a_stage_names_where_and_keeps_what() {
        let shard = crate::sharding::shard::ShardId(3);
        let fenced = Error::Finalizer(Box::new(FinalizerError::ApplyFailed(
            Stage::Publish.of(Error::Fenced(shard)),
        )));
        assert_eq!(fenced.stage_label(), "publish");
        assert_eq!(fenced.metric_label(), "fenced");
        assert_eq!(fenced.fenced_shard(), Some(shard));
        let conflict = Stage::Status.of(Error::Conflict);
        assert!(conflict.is_conflict());
        assert_eq!(conflict.stage_label(), "status");
        assert!(
            conflict
                .to_string()
                .starts_with("status: the object changed")
        );
        assert_eq!(Error::Incomplete("uid").stage_label(), "reconcile");
    }
}
