//! dynamq's persistent state (docs below are replaced at the end).

pub mod actions;
pub mod backend_conf;
pub mod dynamo;
pub mod embedded;
pub mod error;
pub mod hooks;
pub mod msgid;
pub mod op;
pub mod record;
pub mod store;
pub mod tables;
pub mod writer;
