//! Embedded-store specifics: data dir creation, a corrupt file is an error naming the path
//! (never reinitialised), and the file lock.

use dynamq_store::embedded::{DB_FILE, EmbeddedStore};
use dynamq_store::error::StoreError;
use dynamq_store::store::Store;

#[tokio::test]
async fn missing_data_dir_is_created() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path().join("a/b/c");
    let store = EmbeddedStore::open(&dir).await.expect("open");
    assert!(dir.join(DB_FILE).exists());
    assert!(store.retained_all().await.expect("scan").is_empty());
}

#[tokio::test]
async fn corrupt_file_is_an_error_naming_the_path() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let file = tmp.path().join(DB_FILE);
    let garbage: Vec<u8> = (0..8192u32).map(|i| (i * 7919 % 251) as u8).collect();
    std::fs::write(&file, &garbage).expect("write garbage");
    let err = EmbeddedStore::open(tmp.path())
        .await
        .expect_err("must not open garbage");
    assert!(matches!(err, StoreError::EmbeddedOpen { .. }), "{err:?}");
    let msg = err.to_string();
    assert!(msg.contains(&file.display().to_string()), "{msg}");
    // Never silently reinitialised.
    assert_eq!(std::fs::read(&file).expect("read back"), garbage);
}

#[tokio::test]
async fn second_open_is_refused_while_the_first_is_open() {
    let tmp = tempfile::tempdir().expect("tempdir");
    let first = EmbeddedStore::open(tmp.path()).await.expect("open");
    let err = EmbeddedStore::open(tmp.path()).await.expect_err("locked");
    assert!(err.to_string().contains("already open"), "{err}");
    drop(first);
    EmbeddedStore::open(tmp.path())
        .await
        .expect("reopen after close");
}
