//! Building the SDK client (timeouts, retries, credentials) and remembering where it sends
//! its requests, so that "cannot reach DynamoDB" can say *where* it tried: the SDK's own
//! config does not give the endpoint back.

use std::fmt;
use std::time::Duration;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::config::{Credentials, Region};

use super::DynamoConfig;

/// Where a client sends its requests, as a person would name it in an error message.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Target {
    /// The endpoint URL from `[store.dynamo] endpoint`, `--endpoint` or `AWS_ENDPOINT_URL`;
    /// `None` when the SDK picks the region's AWS endpoint.
    pub endpoint: Option<String>,
    pub region: String,
}

impl fmt::Display for Target {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.endpoint {
            Some(url) => f.write_str(url),
            None => write!(f, "the AWS endpoint of region {}", self.region),
        }
    }
}

/// An SDK client and where it points. Cloning shares the client (and its connection pool).
#[derive(Clone, Debug)]
pub struct DynamoClient {
    sdk: Client,
    target: Target,
}

impl DynamoClient {
    /// Wraps a client built elsewhere; `target` is only used in error messages.
    pub fn new(sdk: Client, target: Target) -> DynamoClient {
        DynamoClient { sdk, target }
    }

    /// The SDK client, for requests.
    pub fn sdk(&self) -> &Client {
        &self.sdk
    }

    /// Where the requests go, for error messages.
    pub fn target(&self) -> &Target {
        &self.target
    }
}

/// Builds an SDK client from the config (used by the store and by `dynamq tables`).
pub async fn connect(config: &DynamoConfig) -> DynamoClient {
    let timeouts = aws_config::timeout::TimeoutConfig::builder()
        .connect_timeout(Duration::from_secs(3))
        // A hung server must not hold a batch forever: the writer retries on timeout.
        .operation_attempt_timeout(Duration::from_secs(10))
        .build();
    // The writer retries failed writes itself, without limit; the SDK's own retries only
    // delay what a client waits for (a subscription lookup on connect) while DynamoDB is
    // unreachable, so they start at 100 ms instead of the default 1 s.
    let retries = aws_config::retry::RetryConfig::standard()
        .with_max_attempts(3)
        .with_initial_backoff(Duration::from_millis(100));
    let mut loader = aws_config::defaults(aws_config::BehaviorVersion::latest())
        .region(Region::new(config.region.clone()))
        .timeout_config(timeouts)
        .retry_config(retries);
    if let Some(endpoint) = &config.endpoint {
        loader = loader.endpoint_url(endpoint.clone());
    }
    if let (Some(id), Some(secret)) = (&config.access_key_id, &config.secret_access_key) {
        loader = loader.credentials_provider(Credentials::new(
            id.expose(),
            secret.expose(),
            None,
            None,
            "dynamq-config",
        ));
    }
    let sdk_config = loader.load().await;
    // Read back from the loaded config rather than `config.endpoint`: the loader also takes
    // AWS_ENDPOINT_URL from the environment or the profile.
    let target = Target {
        endpoint: sdk_config.endpoint_url().map(str::to_owned),
        region: config.region.clone(),
    };
    DynamoClient::new(Client::new(&sdk_config), target)
}
