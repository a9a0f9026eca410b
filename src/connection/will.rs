//! Will messages: published when a connection ends without a normal DISCONNECT
//! [MQTT-3.1.2-8], after the Will Delay Interval if the session outlives the connection
//! [MQTT-3.1.3-9].

use std::sync::Arc;
use std::time::{Duration, Instant};

use dynamq_codec::{LastWill, PublishProperties};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio_util::sync::CancellationToken;

use super::Conn;
use crate::auth::Want;
use crate::message::Message;
use crate::session::PendingWill;

impl<R, W> Conn<R, W>
where
    R: AsyncRead + Unpin,
    W: AsyncWrite + Unpin,
{
    /// Publishes the will now, or after min(Will Delay Interval, `session_expiry`) seconds
    /// unless the client reconnects to the session first.
    pub(super) async fn publish_will(&self, will: LastWill, session_expiry: u32) {
        // The will is a publish of its client's: the ACL's write access is checked when it
        // is published, as Mosquitto does.
        if let Some(rules) = self.broker.auth.rules(&self.session)
            && !rules.allows(&will.topic, Want::Write)
        {
            self.broker.metrics.inc_acl_denied_wills();
            tracing::info!(client = %self.client_id, topic = %will.topic, "will message denied by the ACL: not published");
            return;
        }
        let p = will.properties;
        let delay = p.will_delay_interval.unwrap_or(0).min(session_expiry);
        let msg = Arc::new(Message {
            topic: bytes::Bytes::from(will.topic),
            payload: will.payload,
            qos: will.qos,
            retain: will.retain,
            properties: PublishProperties {
                payload_format_indicator: p.payload_format_indicator,
                message_expiry_interval: p.message_expiry_interval,
                topic_alias: None,
                response_topic: p.response_topic,
                correlation_data: p.correlation_data,
                user_properties: p.user_properties,
                subscription_identifiers: Vec::new(),
                content_type: p.content_type,
            },
            expires_at: p
                .message_expiry_interval
                .map(|s| Instant::now() + Duration::from_secs(u64::from(s))),
            sender: self.client_id.clone(),
            msgid: self.broker.persistence.new_msgid(),
        });
        if delay == 0 {
            self.broker.metrics.inc_wills_published();
            self.broker.publish(msg);
            return;
        }
        let cancel = CancellationToken::new();
        self.session.with_state(|st| {
            st.pending_will = Some(Box::new(PendingWill {
                msg: msg.clone(),
                cancel: cancel.clone(),
            }));
        });
        let broker = self.broker.clone();
        let session = self.session.clone();
        self.broker.tasks.spawn(async move {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(u64::from(delay))) => {}
                _ = cancel.cancelled() => return,
                _ = broker.shutdown.cancelled() => return,
            }
            let still_ours = session.with_state(|st| match &st.pending_will {
                Some(w) if Arc::ptr_eq(&w.msg, &msg) => st.pending_will.take().is_some(),
                _ => false,
            });
            if still_ours {
                broker.metrics.inc_wills_published();
                broker.publish(msg);
            }
        });
    }
}
