//! The store's error type. Every error says which table and which operation failed, and
//! whether retrying can help: the writer retries the retryable ones with backoff and counts
//! and logs the others.

use std::path::PathBuf;

/// An error from a store backend.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB (or a compatible server) answered with an error code, or could not be reached.
    #[error("DynamoDB {operation} on {table}: {code}: {message}")]
    Dynamo {
        operation: &'static str,
        table: String,
        /// The AWS error code (`ProvisionedThroughputExceededException`, ...) or, when no
        /// answer came, the kind of failure (`DispatchFailure`, `TimeoutError`, ...).
        code: String,
        message: String,
        retryable: bool,
    },
    /// BatchWriteItem kept returning these items as unprocessed (throttling).
    #[error("DynamoDB BatchWriteItem: {count} items still unprocessed after retries")]
    Unprocessed { count: usize },
    /// An item read back from a table does not have the tutorial's shape.
    #[error("bad item in {table}: {reason}")]
    BadItem { table: String, reason: String },
    /// The embedded database file could not be opened.
    #[error("embedded store {}: {message}", path.display())]
    EmbeddedOpen { path: PathBuf, message: String },
    /// A read or a commit of the embedded database failed.
    #[error("embedded store {operation} on {table}: {message}")]
    Embedded {
        operation: &'static str,
        table: &'static str,
        message: String,
    },
    /// A blocking task of the embedded store panicked or was cancelled.
    #[error("embedded store task failed: {0}")]
    Task(String),
}

impl StoreError {
    /// Whether the same request may succeed later (throttling, network, server errors).
    pub fn is_retryable(&self) -> bool {
        match self {
            StoreError::Dynamo { retryable, .. } => *retryable,
            StoreError::Unprocessed { .. } => true,
            StoreError::BadItem { .. } => false,
            StoreError::EmbeddedOpen { .. } => false,
            // An I/O error on commit (disk full, ...) may clear; nothing else would fix it.
            StoreError::Embedded { .. } => true,
            StoreError::Task(_) => false,
        }
    }

    /// A short code for logs and metrics labels.
    pub fn code(&self) -> &str {
        match self {
            StoreError::Dynamo { code, .. } => code,
            StoreError::Unprocessed { .. } => "UnprocessedItems",
            StoreError::BadItem { .. } => "BadItem",
            StoreError::EmbeddedOpen { .. } => "EmbeddedOpen",
            StoreError::Embedded { .. } => "Embedded",
            StoreError::Task(_) => "Task",
        }
    }
}
