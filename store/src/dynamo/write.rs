//! Applying a batch of ops to DynamoDB: BatchWriteItem for whole-item puts and deletes (25 per
//! call, unprocessed items retried a few rounds here), UpdateItem for the rest, all of a batch
//! concurrently. Whatever still fails goes back to the writer with its error.

use std::collections::HashMap;
use std::time::Duration;

use aws_sdk_dynamodb::types::{AttributeValue, DeleteRequest, PutRequest, WriteRequest};
use futures_util::future::join_all;

use super::error::{build_error, sdk_error};
use super::item::{self, Item, key_string};
use super::{DynamoClient, TableNames};
use crate::error::StoreError;
use crate::op::{Table, WriteOp};
use crate::store::WriteFailure;

/// DynamoDB's BatchWriteItem limit.
pub(crate) const BATCH_WRITE_MAX: usize = 25;
/// Rounds of UnprocessedItems retries inside one write before handing them back.
const UNPROCESSED_ROUNDS: u32 = 4;

pub(super) async fn write(
    client: &DynamoClient,
    names: &TableNames,
    ops: Vec<WriteOp>,
) -> Vec<WriteFailure> {
    let (mut items, updates): (Vec<WriteOp>, Vec<WriteOp>) =
        ops.into_iter().partition(WriteOp::is_item_write);
    let mut chunks = Vec::new();
    while !items.is_empty() {
        let rest = items.split_off(items.len().min(BATCH_WRITE_MAX));
        chunks.push(std::mem::replace(&mut items, rest));
    }
    let batch_calls = join_all(chunks.into_iter().map(|c| batch_write(client, names, c)));
    let update_calls = join_all(updates.into_iter().map(|op| async move {
        let table = names.get(op.table());
        match update(client, table, &op).await {
            Ok(()) => None,
            Err(error) => Some(WriteFailure {
                ops: vec![op],
                error,
            }),
        }
    }));
    let (batch_failures, update_failures) =
        futures_util::future::join(batch_calls, update_calls).await;
    batch_failures
        .into_iter()
        .flatten()
        .chain(update_failures.into_iter().flatten())
        .collect()
}

fn put(item: Item) -> Result<WriteRequest, aws_sdk_dynamodb::error::BuildError> {
    Ok(WriteRequest::builder()
        .put_request(PutRequest::builder().set_item(Some(item)).build()?)
        .build())
}

fn delete(key: Item) -> Result<WriteRequest, aws_sdk_dynamodb::error::BuildError> {
    Ok(WriteRequest::builder()
        .delete_request(DeleteRequest::builder().set_key(Some(key)).build()?)
        .build())
}

fn request_for(op: &WriteOp) -> Result<WriteRequest, aws_sdk_dynamodb::error::BuildError> {
    match op {
        WriteOp::PutClient(r) => put(item::client_item(r)),
        WriteOp::PutSub(r) => put(item::sub_item(r)),
        WriteOp::DeleteSub { clientid, topic } => {
            delete(item::key2("clientid", clientid, "topic", topic))
        }
        WriteOp::PutRetain(r) | WriteOp::PutMsg(r) => put(item::message_item(r)),
        WriteOp::DeleteRetain { topic } => delete(item::key1("topic", topic)),
        WriteOp::DeleteMsg { msgid } => delete(item::key1("msgid", msgid.encode())),
        WriteOp::PutAcked(r) => put(item::acked_item(r)),
        WriteOp::DeleteAcked { topic, clientid } => {
            delete(item::key2("topic", topic, "clientid", clientid))
        }
        // Not item writes; `write` routes these to `update`.
        WriteOp::ClientOffline { .. }
        | WriteOp::AwaitingRelAdd { .. }
        | WriteOp::AwaitingRelRemove { .. }
        | WriteOp::MapAdd { .. }
        | WriteOp::MapRemove { .. } => delete(Item::new()),
    }
}

fn request_key(table: Table, req: &WriteRequest) -> String {
    if let Some(p) = &req.put_request {
        key_string(table, &p.item)
    } else if let Some(d) = &req.delete_request {
        key_string(table, &d.key)
    } else {
        String::new()
    }
}

/// One BatchWriteItem (<= 25 ops on distinct keys), retrying UnprocessedItems a few rounds.
async fn batch_write(
    client: &DynamoClient,
    names: &TableNames,
    ops: Vec<WriteOp>,
) -> Option<WriteFailure> {
    let table_of: HashMap<&str, Table> = Table::ALL.iter().map(|t| (names.get(*t), *t)).collect();
    // The op of each request, found again by its table and key when it comes back unprocessed.
    let mut by_key: HashMap<(String, String), WriteOp> = HashMap::new();
    let mut requests: HashMap<String, Vec<WriteRequest>> = HashMap::new();
    let mut bad = Vec::new();
    let mut first_error = None;
    for op in ops {
        let table = op.table();
        let name = names.get(table);
        match request_for(&op) {
            Ok(req) => {
                by_key.insert((name.to_owned(), request_key(table, &req)), op);
                requests.entry(name.to_owned()).or_default().push(req);
            }
            Err(e) => {
                first_error.get_or_insert(build_error("BatchWriteItem", name, e));
                bad.push(op);
            }
        }
    }
    if let Some(error) = first_error {
        // Cannot happen with the builders above (every required field is set); kept honest.
        return Some(WriteFailure { ops: bad, error });
    }
    let mut round = 0;
    while !requests.is_empty() {
        let tables: Vec<String> = requests.keys().cloned().collect();
        let call = client
            .sdk()
            .batch_write_item()
            .set_request_items(Some(requests.clone()))
            .send()
            .await;
        let unprocessed = match call {
            Ok(out) => out.unprocessed_items.unwrap_or_default(),
            Err(e) => {
                let error = sdk_error(client.target(), "BatchWriteItem", &tables.join(","), e);
                return Some(WriteFailure {
                    ops: take_ops(&requests, &table_of, &mut by_key),
                    error,
                });
            }
        };
        requests = unprocessed
            .into_iter()
            .filter(|(_, v)| !v.is_empty())
            .collect();
        if requests.is_empty() {
            break;
        }
        round += 1;
        if round > UNPROCESSED_ROUNDS {
            let ops = take_ops(&requests, &table_of, &mut by_key);
            return Some(WriteFailure {
                error: StoreError::Unprocessed { count: ops.len() },
                ops,
            });
        }
        tokio::time::sleep(Duration::from_millis(25 << round)).await;
    }
    None
}

fn take_ops(
    requests: &HashMap<String, Vec<WriteRequest>>,
    table_of: &HashMap<&str, Table>,
    by_key: &mut HashMap<(String, String), WriteOp>,
) -> Vec<WriteOp> {
    let mut ops = Vec::new();
    for (name, reqs) in requests {
        let Some(table) = table_of.get(name.as_str()) else {
            continue;
        };
        for req in reqs {
            if let Some(op) = by_key.remove(&(name.clone(), request_key(*table, req))) {
                ops.push(op);
            }
        }
    }
    ops
}

async fn update(client: &DynamoClient, table: &str, op: &WriteOp) -> Result<(), StoreError> {
    let call = client.sdk().update_item().table_name(table);
    let call = match op {
        WriteOp::ClientOffline {
            clientid,
            offline_at,
            session_expires_at,
        } => {
            let call = call
                .key("clientid", item::s(clientid))
                .expression_attribute_names("#s", "connect_state")
                .expression_attribute_names("#o", "offline_at")
                .expression_attribute_names("#e", "session_expires_at")
                .expression_attribute_values(":s", item::n(0))
                .expression_attribute_values(":o", item::n(offline_at));
            match session_expires_at {
                Some(at) => call
                    .update_expression("SET #s = :s, #o = :o, #e = :e")
                    .expression_attribute_values(":e", item::n(at)),
                None => call.update_expression("SET #s = :s, #o = :o REMOVE #e"),
            }
        }
        WriteOp::MapAdd { topic, msgids } | WriteOp::MapRemove { topic, msgids } => {
            if msgids.is_empty() {
                return Ok(());
            }
            // ADD creates the item and the set as needed; DELETE of the last id drops the
            // attribute and leaves {topic} (readers see an empty set).
            let verb = if matches!(op, WriteOp::MapAdd { .. }) {
                "ADD"
            } else {
                "DELETE"
            };
            let ids = AttributeValue::Ss(msgids.iter().map(|id| id.encode()).collect());
            call.key("topic", item::s(topic))
                .update_expression(format!("{verb} #m :ids"))
                .expression_attribute_names("#m", "MsgId")
                .expression_attribute_values(":ids", ids)
        }
        WriteOp::AwaitingRelAdd {
            clientid,
            packet_ids,
        }
        | WriteOp::AwaitingRelRemove {
            clientid,
            packet_ids,
        } => {
            if packet_ids.is_empty() {
                return Ok(());
            }
            // Set operations: idempotent, so a journal replayed twice ends the same. DELETE of
            // the last id drops the attribute (the item keeps the tutorial's shape).
            let verb = if matches!(op, WriteOp::AwaitingRelAdd { .. }) {
                "ADD"
            } else {
                "DELETE"
            };
            call.key("clientid", item::s(clientid))
                .update_expression(format!("{verb} #r :ids"))
                .expression_attribute_names("#r", "awaiting_rel")
                .expression_attribute_values(":ids", item::packet_id_set(packet_ids))
        }
        _ => return Ok(()),
    };
    call.send()
        .await
        .map(drop)
        .map_err(|e| sdk_error(client.target(), "UpdateItem", table, e))
}
