//! Maps the SDK's errors to [`StoreError`], deciding what is worth retrying and turning each
//! into one line a person can act on: no credentials (and how to give them), the endpoint
//! that could not be reached and why, a timeout, a missing table, or the AWS error code and
//! message. The SDK's `Display` says only "dispatch failure" and its `Debug` dumps the raw
//! response and headers, so the classification reads the typed errors instead
//! ([`ConnectorError`]'s kind, [`CredentialsError`] and [`std::io::Error`] in the causes,
//! [`ProvideErrorMetadata`]); the full `Debug` dump goes to the debug log.

use std::error::Error;
use std::io;

use aws_credential_types::provider::error::CredentialsError;
use aws_sdk_dynamodb::config::http::HttpResponse as Response;
use aws_sdk_dynamodb::error::{ConnectorError, ProvideErrorMetadata, SdkError};

use super::Target;
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

/// Codes that mean the server did not accept the credentials: their AWS messages ("The
/// security token included in the request is invalid") do not say which setting to fix.
const BAD_CREDENTIALS_CODES: &[&str] = &[
    "UnrecognizedClientException",
    "InvalidSignatureException",
    "IncompleteSignature",
    "MissingAuthenticationToken",
    "ExpiredTokenException",
];

/// The error of an SDK call to `target`, for the `operation` on `table`.
pub(crate) fn sdk_error<E>(
    target: &Target,
    operation: &'static str,
    table: &str,
    e: SdkError<E, Response>,
) -> StoreError
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    // The line below is for the operator; whoever debugs the SDK wants all of it.
    tracing::debug!(operation, table, error = ?e, "DynamoDB request failed");
    match &e {
        SdkError::ServiceError(se) => service_error(
            target,
            operation,
            table,
            se.err().code(),
            se.err().message(),
            se.raw().status().is_server_error(),
        ),
        SdkError::DispatchFailure(df) => match df.as_connector_error() {
            Some(c) => dispatch_error(target, operation, table, c),
            None => other(operation, table, "DispatchFailure", &e, true),
        },
        // The attempt (10 s) or operation timeout of the client config.
        SdkError::TimeoutError(_) => StoreError::DynamoTimeout {
            endpoint: target.to_string(),
            operation,
            table: table.to_owned(),
            reason: innermost(&e),
        },
        // An answer that could not be read: a proxy's page, a cut connection. Try again.
        SdkError::ResponseError(_) => other(operation, table, "ResponseError", &e, true),
        SdkError::ConstructionFailure(_) => {
            other(operation, table, "ConstructionFailure", &e, false)
        }
        _ => other(operation, table, "Unknown", &e, true),
    }
}

/// DynamoDB answered with an error code.
fn service_error(
    target: &Target,
    operation: &'static str,
    table: &str,
    code: Option<&str>,
    message: Option<&str>,
    server_error: bool,
) -> StoreError {
    let code = code.unwrap_or("Unknown");
    if code == "ResourceNotFoundException" {
        return StoreError::NoTable {
            endpoint: target.to_string(),
            operation,
            table: table.to_owned(),
        };
    }
    let mut message = one_line(message.unwrap_or("(no message)"));
    if BAD_CREDENTIALS_CODES.contains(&code) {
        message.push_str(
            " (check AWS_ACCESS_KEY_ID/AWS_SECRET_ACCESS_KEY, AWS_PROFILE \
             or [store.dynamo] access_key_id/secret_access_key)",
        );
    }
    StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        code: code.to_owned(),
        message,
        retryable: RETRYABLE_CODES.contains(&code) || server_error,
    }
}

/// No answer: the request was not sent, or the connection failed. All retryable: the server
/// may come back, credentials may be refreshed.
fn dispatch_error(
    target: &Target,
    operation: &'static str,
    table: &str,
    c: &ConnectorError,
) -> StoreError {
    // Credentials are resolved before connecting; their failure comes back as a connector
    // error of kind "other" whose cause is the chain's error.
    if let Some(cred) = find_cause::<CredentialsError>(c) {
        return StoreError::NoCredentials {
            problem: credentials_problem(cred),
        };
    }
    if c.is_timeout() {
        return StoreError::DynamoTimeout {
            endpoint: target.to_string(),
            operation,
            table: table.to_owned(),
            reason: innermost(c),
        };
    }
    if c.is_io() {
        let reason = match find_cause::<io::Error>(c) {
            Some(io) => io_reason(io),
            None => causes(c),
        };
        return StoreError::DynamoUnreachable {
            endpoint: target.to_string(),
            reason,
        };
    }
    // User errors (an invalid request) and what the SDK does not classify, such as an
    // identity resolver that timed out.
    StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        code: "DispatchFailure".to_owned(),
        message: format!("request to {target} not sent: {}", causes(c)),
        retryable: true,
    }
}

/// What is wrong with the credentials, without the fix (the error's message adds it).
fn credentials_problem(e: &CredentialsError) -> String {
    match e {
        // The names of the default chain's providers, in its order (aws-config's
        // DefaultCredentialsChain).
        CredentialsError::CredentialsNotLoaded(_) => {
            "no AWS credentials found (tried environment, profile, web identity, ECS, IMDS)"
                .to_owned()
        }
        CredentialsError::ProviderTimedOut(t) => format!(
            "no AWS credentials: the provider did not answer within {:?}",
            t.timeout_duration()
        ),
        CredentialsError::InvalidConfiguration(_) => {
            format!("AWS credentials are misconfigured: {}", causes(e))
        }
        _ => format!("cannot load AWS credentials: {}", causes(e)),
    }
}

/// An I/O error as the reason a connection failed: the common kinds in plain words, the
/// others (DNS, TLS) by their own message.
fn io_reason(e: &io::Error) -> String {
    match e.kind() {
        io::ErrorKind::ConnectionRefused => "connection refused".to_owned(),
        io::ErrorKind::ConnectionReset => "connection reset".to_owned(),
        io::ErrorKind::ConnectionAborted => "connection aborted".to_owned(),
        io::ErrorKind::TimedOut => "connection timed out".to_owned(),
        _ => one_line(&e.to_string()),
    }
}

/// A failure without a variant of its own, with its causes as the message.
fn other(
    operation: &'static str,
    table: &str,
    code: &str,
    e: &(dyn Error + 'static),
    retryable: bool,
) -> StoreError {
    StoreError::Dynamo {
        operation,
        table: table.to_owned(),
        code: code.to_owned(),
        message: causes(e),
        retryable,
    }
}

/// The first cause of `e` (itself included) of type `T`.
fn find_cause<'a, T: Error + 'static>(e: &'a (dyn Error + 'static)) -> Option<&'a T> {
    let mut next = Some(e);
    while let Some(err) = next {
        if let Some(found) = err.downcast_ref::<T>() {
            return Some(found);
        }
        next = err.source();
    }
    None
}

/// `e`'s causes below `e` itself, as one line `a: b: c`. `e`'s own text is left out: the
/// SDK's wrappers say only "dispatch failure" or "io error". A cause whose text its parent
/// already contains is skipped (wrappers often repeat their source).
fn causes(e: &(dyn Error + 'static)) -> String {
    let mut parts: Vec<String> = Vec::new();
    let mut next = e.source();
    while let Some(err) = next {
        let text = one_line(&err.to_string());
        if !text.is_empty() && !parts.last().is_some_and(|p| p.contains(&text)) {
            parts.push(text);
        }
        next = err.source();
    }
    if parts.is_empty() {
        one_line(&e.to_string())
    } else {
        parts.join(": ")
    }
}

/// The text of the deepest cause of `e`: for a timeout, which one and after how long.
fn innermost(e: &(dyn Error + 'static)) -> String {
    let mut last = e;
    while let Some(next) = last.source() {
        last = next;
    }
    one_line(&last.to_string())
}

/// `s` on one line: an error message is printed as one line with its causes.
fn one_line(s: &str) -> String {
    s.split_whitespace().collect::<Vec<_>>().join(" ")
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

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use aws_sdk_dynamodb::error::ErrorMetadata;
    use aws_sdk_dynamodb::operation::describe_table::DescribeTableError;

    use super::*;

    type DescribeError = SdkError<DescribeTableError, Response>;

    fn local() -> Target {
        Target {
            endpoint: Some("http://127.0.0.1:1".into()),
            region: "us-west-2".into(),
        }
    }

    fn aws() -> Target {
        Target {
            endpoint: None,
            region: "eu-west-1".into(),
        }
    }

    fn describe(target: &Target, e: DescribeError) -> StoreError {
        sdk_error(target, "DescribeTable", "mqtt_client", e)
    }

    fn service(code: &str, message: &str, status: u16) -> DescribeError {
        let meta = ErrorMetadata::builder().code(code).message(message).build();
        let status = status.try_into().expect("a valid status code");
        SdkError::service_error(
            DescribeTableError::generic(meta),
            Response::new(status, "{}".into()),
        )
    }

    /// What hyper's connector wraps a refused connect in: the io::Error two causes down.
    #[derive(Debug)]
    struct Wrapper(&'static str, io::Error);
    impl std::fmt::Display for Wrapper {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str(self.0)
        }
    }
    impl Error for Wrapper {
        fn source(&self) -> Option<&(dyn Error + 'static)> {
            Some(&self.1)
        }
    }

    #[test]
    fn refused_connection_names_the_endpoint() {
        let io = io::Error::from(io::ErrorKind::ConnectionRefused);
        let c = ConnectorError::io(Box::new(Wrapper("tcp connect error", io)));
        let e = describe(&local(), SdkError::dispatch_failure(c));
        assert_eq!(
            e.to_string(),
            "cannot reach DynamoDB at http://127.0.0.1:1: connection refused"
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), "DispatchFailure");
    }

    #[test]
    fn dns_failure_keeps_the_resolvers_message() {
        let io = io::Error::other("failed to lookup address information:\nName unknown");
        let c = ConnectorError::io(Box::new(Wrapper("dns error", io)));
        let e = describe(&aws(), SdkError::dispatch_failure(c));
        assert_eq!(
            e.to_string(),
            "cannot reach DynamoDB at the AWS endpoint of region eu-west-1: \
             failed to lookup address information: Name unknown"
        );
    }

    #[test]
    fn missing_credentials_name_the_fix() {
        let cred = CredentialsError::not_loaded("no providers in chain provided credentials");
        let c = ConnectorError::other(Box::new(cred), None);
        let e = describe(&local(), SdkError::dispatch_failure(c));
        let text = e.to_string();
        assert!(matches!(e, StoreError::NoCredentials { .. }), "{e:?}");
        assert!(
            text.starts_with("no AWS credentials found (tried "),
            "{text}"
        );
        for fix in [
            "AWS_ACCESS_KEY_ID",
            "AWS_SECRET_ACCESS_KEY",
            "access_key_id",
        ] {
            assert!(text.contains(fix), "{fix} missing from: {text}");
        }
        assert!(!text.contains('\n'), "{text}");
    }

    #[test]
    fn misconfigured_credentials_say_what_is_wrong() {
        let cred = CredentialsError::invalid_configuration("profile `x` is not defined");
        let c = ConnectorError::other(Box::new(cred), None);
        let text = describe(&local(), SdkError::dispatch_failure(c)).to_string();
        assert!(
            text.starts_with(
                "AWS credentials are misconfigured: profile `x` is not defined: set AWS_ACCESS_KEY_ID"
            ),
            "{text}"
        );
    }

    #[test]
    fn credentials_timeout_is_not_called_missing() {
        let cred = CredentialsError::provider_timed_out(Duration::from_secs(5));
        let c = ConnectorError::other(Box::new(cred), None);
        let text = describe(&local(), SdkError::dispatch_failure(c)).to_string();
        assert!(
            text.starts_with("no AWS credentials: the provider did not answer within 5s"),
            "{text}"
        );
    }

    #[test]
    fn connect_timeout_says_which_timeout() {
        let c = ConnectorError::timeout("HTTP connect timeout occurred after 3s".into());
        let e = describe(&local(), SdkError::dispatch_failure(c));
        assert_eq!(
            e.to_string(),
            "no answer from DynamoDB at http://127.0.0.1:1 to DescribeTable on mqtt_client: \
             HTTP connect timeout occurred after 3s"
        );
        assert!(e.is_retryable());
    }

    #[test]
    fn attempt_timeout_says_which_timeout() {
        let e = describe(
            &local(),
            SdkError::timeout_error("operation attempt timeout occurred after 10s"),
        );
        assert_eq!(
            e.to_string(),
            "no answer from DynamoDB at http://127.0.0.1:1 to DescribeTable on mqtt_client: \
             operation attempt timeout occurred after 10s"
        );
        assert_eq!(e.code(), "TimeoutError");
    }

    #[test]
    fn throttling_shows_code_and_message_and_is_retried() {
        let e = describe(&aws(), service("ThrottlingException", "Rate exceeded", 400));
        assert_eq!(
            e.to_string(),
            "DynamoDB DescribeTable on mqtt_client: ThrottlingException: Rate exceeded"
        );
        assert!(e.is_retryable());
        assert_eq!(e.code(), "ThrottlingException");
    }

    #[test]
    fn a_server_error_is_retried_whatever_its_code() {
        let e = describe(&aws(), service("SomethingNew", "oops", 503));
        assert!(e.is_retryable());
        let e = describe(&aws(), service("ValidationException", "bad key", 400));
        assert!(!e.is_retryable());
        assert_eq!(
            e.to_string(),
            "DynamoDB DescribeTable on mqtt_client: ValidationException: bad key"
        );
    }

    #[test]
    fn rejected_credentials_name_the_settings() {
        let e = describe(
            &aws(),
            service(
                "UnrecognizedClientException",
                "The security token included in the request is invalid.",
                400,
            ),
        );
        let text = e.to_string();
        assert!(text.contains("UnrecognizedClientException: The security token"));
        assert!(text.contains("access_key_id"), "{text}");
    }

    #[test]
    fn unknown_table_says_how_to_create_it() {
        let e = describe(
            &aws(),
            service(
                "ResourceNotFoundException",
                "Requested resource not found",
                400,
            ),
        );
        assert_eq!(
            e.to_string(),
            "DynamoDB DescribeTable on mqtt_client: no such table at the AWS endpoint of \
             region eu-west-1: run `dynamq tables create`, or check the region, endpoint and \
             table prefix"
        );
        assert!(!e.is_retryable());
    }

    #[test]
    fn causes_skip_repeats_and_join_on_one_line() {
        #[derive(Debug)]
        struct Outer(Wrapper);
        impl std::fmt::Display for Outer {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("dispatch failure")
            }
        }
        impl Error for Outer {
            fn source(&self) -> Option<&(dyn Error + 'static)> {
                Some(&self.0)
            }
        }
        let e = Outer(Wrapper(
            "bad certificate: expired",
            io::Error::other("expired"),
        ));
        assert_eq!(causes(&e), "bad certificate: expired");
        let e = Outer(Wrapper("tls handshake", io::Error::other("line\none")));
        assert_eq!(causes(&e), "tls handshake: line one");
    }
}
