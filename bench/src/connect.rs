//! Opening many clients at once: a bounded number of handshakes in flight, each client
//! subscribed before it is handed back, failures counted and not fatal.

use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use dynamq_codec::QoS;
use tokio::sync::Semaphore;
use tokio::task::JoinSet;

use crate::client::{Client, ClientConfig};
use crate::error::ClientError;
use crate::stats::Stats;

/// Connects clients `0..n` named `{prefix}{index}`, each subscribed to `filter` (with `%i`
/// replaced by its index) if given. Returns the clients that made it, by index; stops
/// waiting at `deadline`.
pub(crate) async fn connect_many(
    cfg: &Arc<ClientConfig>,
    stats: &Arc<Stats>,
    prefix: &str,
    n: u32,
    filter: Option<(&str, QoS)>,
    concurrency: usize,
    deadline: Instant,
) -> Vec<(u32, Client)> {
    let gate = Arc::new(Semaphore::new(concurrency.max(1)));
    let mut set = JoinSet::new();
    let mut clients = Vec::with_capacity(n as usize);
    let spawn_all = async {
        for i in 0..n {
            let Ok(permit) = gate.clone().acquire_owned().await else {
                break;
            };
            let cfg = cfg.clone();
            let id = format!("{prefix}{i}");
            let sub = filter.map(|(f, qos)| (f.replace("%i", &i.to_string()), qos));
            set.spawn(async move {
                let _permit = permit;
                let result = async {
                    let mut client = Client::connect(&cfg, id).await?;
                    if let Some((filter, qos)) = sub {
                        client.subscribe(filter, qos, cfg.handshake_timeout).await?;
                    }
                    Ok::<_, ClientError>(client)
                }
                .await;
                (i, result)
            });
        }
    };
    if tokio::time::timeout_at(deadline.into(), spawn_all)
        .await
        .is_err()
    {
        stats.error(ClientError::Timeout("connections (--max-secs)"));
    }
    loop {
        match tokio::time::timeout_at(deadline.into(), set.join_next()).await {
            Ok(Some(Ok((i, Ok(client))))) => {
                stats.connected.fetch_add(1, Relaxed);
                clients.push((i, client));
            }
            Ok(Some(Ok((_, Err(e))))) => stats.error(e),
            Ok(Some(Err(join))) => stats.error(join),
            Ok(None) => break,
            Err(_) => {
                stats.error(ClientError::Timeout("connections (--max-secs)"));
                break;
            }
        }
    }
    clients.sort_by_key(|(i, _)| *i);
    clients
}
