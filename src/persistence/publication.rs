//! The broker's message as the store reads it ([`Publication`]): the store's delay line keeps
//! the broker's own `Arc<Message>` while its writes wait, and builds its record only if it
//! is written.

use bytes::Bytes;
use dynamq_store::actions::Publication;
use dynamq_store::msgid::MsgId;
use dynamq_store::record::MessageRecord;

use super::stored_props;
use crate::message::Message;

impl Publication for Message {
    fn topic(&self) -> &str {
        self.topic_str()
    }

    fn sender(&self) -> &str {
        self.sender.as_str()
    }

    fn qos(&self) -> u8 {
        self.qos as u8
    }

    fn retain(&self) -> bool {
        self.retain
    }

    fn payload(&self) -> &Bytes {
        &self.payload
    }

    fn record(&self, msgid: MsgId) -> MessageRecord {
        MessageRecord {
            msgid,
            topic: self.topic_str().to_owned(),
            sender: self.sender.as_str().to_owned(),
            qos: self.qos as u8,
            retain: self.retain,
            payload: self.payload.clone(),
            arrived: msgid.timestamp_secs(),
            props: stored_props(self).boxed(),
        }
    }
}
