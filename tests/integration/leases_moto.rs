//! The DynamoDB lease table (`src/cloud/aws/leases.rs`) against moto's DynamoDB: the start-up
//! check, `lease.create_table`, and conditional writes, including many at once on one version
//! (moto must let exactly one win for the multi-replica tests to mean anything).

use std::sync::Arc;

use aws_sdk_dynamodb::types::{
    AttributeDefinition, BillingMode, KeySchemaElement, KeyType, ScalarAttributeType,
};
use ecs_reconciler::cloud::ErrorCategory;
use ecs_reconciler::lease::store::{Claim, LeaseStore};

use crate::support::moto::Moto;

#[tokio::test]
async fn a_missing_table_is_one_line_naming_it_and_the_way_out() {
    let moto = Moto::new();
    let store = moto.lease_store("ecs-reconciler-leases");
    let err = store.check(false).await.unwrap_err();
    assert_eq!(err.category, ErrorCategory::NotFound);
    let line = err.to_string();
    assert!(
        line.starts_with("lease table ecs-reconciler-leases: no such table"),
        "{line}"
    );
    assert!(line.contains("lease.create_table = true"), "{line}");
    assert!(!line.contains('\n'), "{line}");
}

#[tokio::test]
async fn create_table_creates_it_once_and_it_then_checks() {
    let moto = Moto::new();
    let store = moto.lease_store("leases");
    store.check(true).await.unwrap();
    store.check(false).await.unwrap();
    store.check(true).await.unwrap();
    let tables = moto.dynamodb().list_tables().send().await.unwrap();
    assert_eq!(tables.table_names(), ["leases"]);
}

#[tokio::test]
async fn a_table_keyed_on_another_attribute_is_refused() {
    let moto = Moto::new();
    moto.dynamodb()
        .create_table()
        .table_name("other")
        .attribute_definitions(
            AttributeDefinition::builder()
                .attribute_name("pk")
                .attribute_type(ScalarAttributeType::S)
                .build()
                .unwrap(),
        )
        .key_schema(
            KeySchemaElement::builder()
                .attribute_name("pk")
                .key_type(KeyType::Hash)
                .build()
                .unwrap(),
        )
        .billing_mode(BillingMode::PayPerRequest)
        .send()
        .await
        .unwrap();
    let err = moto.lease_store("other").check(false).await.unwrap_err();
    assert!(
        err.to_string().contains("its partition key is \"pk\""),
        "{err}"
    );
}

#[tokio::test]
async fn a_write_wins_only_on_the_version_it_expects() {
    let moto = Moto::new();
    let store = moto.lease_store("leases");
    store.check(true).await.unwrap();
    assert_eq!(
        store.write("shard#0", "a", 1, None).await.unwrap(),
        Claim::Won
    );
    assert_eq!(
        store.write("shard#0", "b", 1, None).await.unwrap(),
        Claim::Lost
    );
    assert_eq!(
        store.write("shard#0", "b", 2, Some(7)).await.unwrap(),
        Claim::Lost
    );
    assert_eq!(
        store.write("shard#0", "b", 2, Some(1)).await.unwrap(),
        Claim::Won
    );
    assert_eq!(
        store.write("shard#0", "a", 2, Some(1)).await.unwrap(),
        Claim::Lost
    );
    let records = store.scan().await.unwrap();
    assert_eq!(records.len(), 1);
    assert_eq!((records[0].holder.as_str(), records[0].version), ("b", 2));
    assert_eq!(store.calls().get("PutItem"), Some(&5));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_writes_on_one_version_let_exactly_one_win() {
    const ROUNDS: u64 = 25;
    const WRITERS: usize = 8;
    let moto = Moto::new();
    let store = Arc::new(moto.lease_store("leases"));
    store.check(true).await.unwrap();
    store.write("shard#0", "seed", 1, None).await.unwrap();
    for round in 1..=ROUNDS {
        let mut writers = tokio::task::JoinSet::new();
        for w in 0..WRITERS {
            let store = Arc::clone(&store);
            writers.spawn(async move {
                let claim = store
                    .write("shard#0", &format!("w{w}"), round + 1, Some(round))
                    .await
                    .unwrap();
                (w, claim)
            });
        }
        let won: Vec<usize> = writers
            .join_all()
            .await
            .into_iter()
            .filter(|(_, c)| *c == Claim::Won)
            .map(|(w, _)| w)
            .collect();
        assert_eq!(won.len(), 1, "round {round}: writers {won:?} all won");
        let records = store.scan().await.unwrap();
        assert_eq!(records[0].version, round + 1);
        assert_eq!(records[0].holder, format!("w{}", won[0]));
    }
}
