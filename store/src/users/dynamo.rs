//! mqtt_user and mqtt_acl on DynamoDB: PutItem, GetItem (strongly consistent, so that a
//! `dynamq user del` is seen by the next read), DeleteItem (ReturnValues ALL_OLD, to tell
//! whether there was an item) and paginated Scans.

use std::collections::HashMap;

use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue};

use super::{ACL_TABLE, AclRecord, USER_TABLE, UserRecord};
use crate::dynamo::item::{Item, key1, key2, n, s};
use crate::dynamo::{DynamoClient, sdk_error};
use crate::error::StoreError;

/// The two tables on DynamoDB.
#[derive(Debug, Clone)]
pub struct DynamoUsers {
    client: DynamoClient,
    user_table: String,
    acl_table: String,
}

impl DynamoUsers {
    /// The tables `{prefix}mqtt_user` and `{prefix}mqtt_acl`, reached through `client`.
    pub fn new(client: DynamoClient, prefix: &str) -> DynamoUsers {
        DynamoUsers {
            client,
            user_table: format!("{prefix}{USER_TABLE}"),
            acl_table: format!("{prefix}{ACL_TABLE}"),
        }
    }

    pub(super) async fn put_user(&self, u: &UserRecord) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("username".to_owned(), s(&u.username)),
            ("password_hash".to_owned(), s(&u.password_hash)),
            (
                "is_superuser".to_owned(),
                AttributeValue::Bool(u.is_superuser),
            ),
            ("created".to_owned(), n(u.created)),
        ]);
        self.put(&self.user_table, item).await
    }

    pub(super) async fn user(&self, username: &str) -> Result<Option<UserRecord>, StoreError> {
        let t = &self.user_table;
        let out = self
            .client
            .sdk()
            .get_item()
            .table_name(t)
            .set_key(Some(key1("username", username)))
            .consistent_read(true)
            .send()
            .await
            .map_err(|e| sdk_error(self.client.target(), "GetItem", t, e))?;
        out.item.map(|i| user_from(t, &i)).transpose()
    }

    pub(super) async fn users(&self) -> Result<Vec<UserRecord>, StoreError> {
        let t = &self.user_table;
        self.scan(t)
            .await?
            .iter()
            .map(|i| user_from(t, i))
            .collect()
    }

    pub(super) async fn delete_user(&self, username: &str) -> Result<bool, StoreError> {
        self.delete(&self.user_table, key1("username", username))
            .await
    }

    pub(super) async fn put_rule(&self, r: &AclRecord) -> Result<(), StoreError> {
        let item = HashMap::from([
            ("username".to_owned(), s(&r.username)),
            ("topic".to_owned(), s(&r.topic)),
            ("permission".to_owned(), s(r.permission.as_str())),
            ("action".to_owned(), s(r.action.as_str())),
        ]);
        self.put(&self.acl_table, item).await
    }

    pub(super) async fn rules(&self) -> Result<Vec<AclRecord>, StoreError> {
        let t = &self.acl_table;
        self.scan(t)
            .await?
            .iter()
            .map(|i| rule_from(t, i))
            .collect()
    }

    pub(super) async fn delete_rule(
        &self,
        username: &str,
        topic: &str,
    ) -> Result<bool, StoreError> {
        self.delete(&self.acl_table, key2("username", username, "topic", topic))
            .await
    }

    async fn put(&self, table: &str, item: Item) -> Result<(), StoreError> {
        self.client
            .sdk()
            .put_item()
            .table_name(table)
            .set_item(Some(item))
            .send()
            .await
            .map_err(|e| sdk_error(self.client.target(), "PutItem", table, e))?;
        Ok(())
    }

    async fn delete(&self, table: &str, key: Item) -> Result<bool, StoreError> {
        let out = self
            .client
            .sdk()
            .delete_item()
            .table_name(table)
            .set_key(Some(key))
            .return_values(ReturnValue::AllOld)
            .send()
            .await
            .map_err(|e| sdk_error(self.client.target(), "DeleteItem", table, e))?;
        Ok(out.attributes.is_some_and(|a| !a.is_empty()))
    }

    async fn scan(&self, table: &str) -> Result<Vec<Item>, StoreError> {
        let mut items = Vec::new();
        let mut start: Option<Item> = None;
        loop {
            let out = self
                .client
                .sdk()
                .scan()
                .table_name(table)
                .consistent_read(true)
                .set_exclusive_start_key(start.take())
                .send()
                .await
                .map_err(|e| sdk_error(self.client.target(), "Scan", table, e))?;
            items.extend(out.items.unwrap_or_default());
            match out.last_evaluated_key {
                Some(k) if !k.is_empty() => start = Some(k),
                _ => return Ok(items),
            }
        }
    }
}

fn bad(table: &str, reason: String) -> StoreError {
    StoreError::BadItem {
        table: table.to_owned(),
        reason,
    }
}

fn get_s(table: &str, item: &Item, name: &str) -> Result<String, StoreError> {
    match item.get(name) {
        Some(AttributeValue::S(v)) => Ok(v.clone()),
        Some(other) => Err(bad(table, format!("{name} is not S: {other:?}"))),
        None => Err(bad(table, format!("missing {name}"))),
    }
}

fn user_from(table: &str, item: &Item) -> Result<UserRecord, StoreError> {
    let is_superuser = match item.get("is_superuser") {
        None => false,
        Some(AttributeValue::Bool(b)) => *b,
        Some(other) => return Err(bad(table, format!("is_superuser is not BOOL: {other:?}"))),
    };
    let created = match item.get("created") {
        None => 0,
        Some(AttributeValue::N(v)) => v
            .parse()
            .map_err(|_| bad(table, format!("created is not an integer: {v:?}")))?,
        Some(other) => return Err(bad(table, format!("created is not N: {other:?}"))),
    };
    Ok(UserRecord {
        username: get_s(table, item, "username")?,
        password_hash: get_s(table, item, "password_hash")?,
        is_superuser,
        created,
    })
}

fn rule_from(table: &str, item: &Item) -> Result<AclRecord, StoreError> {
    let word = |name| get_s(table, item, name);
    Ok(AclRecord {
        username: word("username")?,
        topic: word("topic")?,
        permission: word("permission")?
            .parse()
            .map_err(|e| bad(table, format!("{e}")))?,
        action: word("action")?
            .parse()
            .map_err(|e| bad(table, format!("{e}")))?,
    })
}
