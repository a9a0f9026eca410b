//! Maps the SDK's errors to [`StoreError`], keeping the AWS error code and the table, and
//! deciding what is worth retrying.

use aws_sdk_dynamodb::config::http::HttpResponse as Response;
use aws_sdk_dynamodb::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};

use crate::error::StoreError;

/// Codes that mean "slow down" or "try again": retried by the writer.
const RETRYABLE_CODES: &[&str] = &[
    "ProvisionedThroughputExceededException",
    "ThrottlingException",
    "RequestLimitExceeded",
    "InternalServerError",
    "InternalFailure",
    "ServiceUnavailable",
    "LimitExceededException",
];

pub(crate) fn sdk_error<E>(
    operation: &'static str,
    table: &str,
    e: SdkError<E, Response>,
) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let (code, retryable) = match &e {
        SdkError::ServiceError(se) => {
            let code = se.err().code().unwrap_or("Unknown").to_owned();
            let retryable =
                RETRYABLE_CODES.contains(&code.as_str()) || se.raw().status().is_server_error();
            (code, retryable)
        }
        // No (usable) answer: the server is down or the network failed. Try again later.
        SdkError::DispatchFailure(_) => ("DispatchFailure".to_owned(), true),
        SdkError::TimeoutError(_) => ("TimeoutError".to_owned(), true),
        SdkError::ResponseError(_) => ("ResponseError".to_owned(), true),
        SdkError::ConstructionFailure(_) => ("ConstructionFailure".to_owned(), false),
        _ => ("Unknown".to_owned(), true),
    };
    let message = match e.message() {
        Some(m) => m.to_owned(),
        None => DisplayErrorContext(&e).to_string(),
    };
    StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        code,
        message,
        retryable,
    }
}

/// A request the SDK refused to build (a missing required field): a bug, not an outage.
pub(crate) fn build_error(
    operation: &'static str,
    table: &str,
    e: aws_sdk_dynamodb::error::BuildError,
) -> StoreError {
    StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        code: "BuildError".to_owned(),
        message: e.to_string(),
        retryable: false,
    }
}
