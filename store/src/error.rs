//! The store's error type. Every error says which table and which operation failed (or, when
//! no request could be sent, what to fix: credentials, endpoint), and whether retrying can
//! help: the writer retries the retryable ones with backoff and counts and logs the others.
//! Each message is one line, because `dynamq` prints it as the reason it cannot start.

use std::path::PathBuf;

/// An error from a store (DynamoDB or embedded).
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// DynamoDB (or a compatible server) answered with an error code, or the request failed
    /// in a way none of the variants below names.
    #[error("DynamoDB {operation} on {table}: {code}: {message}")]
    Dynamo {
        operation: &'static str,
        table: String,
        /// The AWS error code (`ProvisionedThroughputExceededException`, ...) or, when no
        /// answer came, the kind of failure (`DispatchFailure`, `ResponseError`, ...).
        code: String,
        message: String,
        retryable: bool,
    },
    /// The credentials chain found no AWS credentials, or could not load them: no request
    /// was sent.
    #[error(
        "{problem}: set AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (or AWS_PROFILE), \
         or access_key_id and secret_access_key in [store.dynamo]"
    )]
    NoCredentials {
        /// What went wrong, e.g. `no AWS credentials found (tried ...)`.
        problem: String,
    },
    /// No connection to the endpoint: refused, name not resolved, TLS failed, reset.
    #[error("cannot reach DynamoDB at {endpoint}: {reason}")]
    DynamoUnreachable {
        /// The endpoint URL, or which region's AWS endpoint.
        endpoint: String,
        /// Why, e.g. `connection refused`.
        reason: String,
    },
    /// Connecting, or the answer, took longer than the client's timeouts.
    #[error("no answer from DynamoDB at {endpoint} to {operation} on {table}: {reason}")]
    DynamoTimeout {
        endpoint: String,
        operation: &'static str,
        table: String,
        /// Which timeout, and after how long.
        reason: String,
    },
    /// The table does not exist (ResourceNotFoundException): not created yet, or another
    /// region, endpoint or table prefix than the one it was created with.
    #[error(
        "DynamoDB {operation} on {table}: no such table at {endpoint}: run `dynamq tables create`, \
         or check the region, endpoint and table prefix"
    )]
    NoTable {
        endpoint: String,
        operation: &'static str,
        table: String,
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
            // At start nothing retries them (the tables check fails first); while running,
            // they come from a refresh of expiring credentials, which may succeed next time.
            StoreError::NoCredentials { .. } => true,
            StoreError::DynamoUnreachable { .. } => true,
            StoreError::DynamoTimeout { .. } => true,
            // Creating tables is an operator's decision (`dynamq tables create`).
            StoreError::NoTable { .. } => false,
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
            StoreError::NoCredentials { .. } => "NoCredentials",
            // The names the SDK gives these failures, as logged before they had variants.
            StoreError::DynamoUnreachable { .. } => "DispatchFailure",
            StoreError::DynamoTimeout { .. } => "TimeoutError",
            StoreError::NoTable { .. } => "ResourceNotFoundException",
            StoreError::Unprocessed { .. } => "UnprocessedItems",
            StoreError::BadItem { .. } => "BadItem",
            StoreError::EmbeddedOpen { .. } => "EmbeddedOpen",
            StoreError::Embedded { .. } => "Embedded",
            StoreError::Task(_) => "Task",
        }
    }
}
