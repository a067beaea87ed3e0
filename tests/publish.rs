//! Fenced catalog writes against real Redis, a single node and the
//! cluster: the fence holds against an older holder, and a document
//! rewritten behind the operator's back is put back.

mod support;

use mcp_operator_catalog::signature::SigningKey;
use mcp_operator_catalog::{Catalog, Published, ServerId, ServerInfo, keys};
use mcp_operator_controller::{Error, FencingToken, Outcome, ShardId, publish, remove_catalog};
use mcp_operator_store::Store;
use support::redis::{Redis, redis_args};

fn store(cluster: bool) -> Store {
    let redis = if cluster {
        Redis::Cluster
    } else {
        Redis::Single
    };
    Store::new(&redis_args(redis), "test").expect("a store")
}

fn published(server: &ServerId, version: &str) -> Published {
    let catalog = Catalog {
        server: server.clone(),
        server_info: ServerInfo {
            name: version.into(),
            version: version.into(),
            instructions: None,
        },
        tools: vec![],
        prompts: vec![],
        resources: vec![],
    };
    Published::new(catalog)
}

fn token(token: i64, holder: &str) -> FencingToken {
    FencingToken {
        shards: 16,
        shard: ShardId(3),
        token,
        holder: holder.into(),
    }
}

fn key() -> SigningKey {
    SigningKey::from_pkcs8(&SigningKey::generate().expect("a key")).expect("a key")
}

async fn outcome(
    store: &Store,
    published: &Published,
    key: &SigningKey,
    token: &FencingToken,
) -> Result<Outcome, Error> {
    publish(store, published, key, token)
        .await
        .map(|receipt| receipt.outcome)
}

/// The fence, on a single node and on the cluster: a newer holder's
/// write stands against everything the older one tries afterwards.
async fn fence(cluster: bool) {
    let store = store(cluster);
    let key = &key();
    let server = ServerId {
        namespace: format!("fence-{}", std::process::id()),
        name: "s".into(),
    };
    let (old, new) = (token(4, "old"), token(5, "new"));
    let first = outcome(&store, &published(&server, "a"), key, &old).await;
    assert_eq!(first.expect("first"), Outcome::Written);
    let newer = outcome(&store, &published(&server, "b"), key, &new).await;
    assert_eq!(newer.expect("newer"), Outcome::Written);
    let stale = outcome(&store, &published(&server, "c"), key, &old).await;
    assert!(matches!(stale, Err(Error::Fenced(ShardId(3)))), "{stale:?}");
    let stale_delete = remove_catalog(&store, &server, &old).await;
    assert!(
        matches!(stale_delete, Err(Error::Fenced(ShardId(3)))),
        "{stale_delete:?}"
    );
    // The newer holder's content is still there, unchanged.
    let same = outcome(&store, &published(&server, "b"), key, &new).await;
    assert_eq!(same.expect("same"), Outcome::Unchanged);
    assert!(
        remove_catalog(&store, &server, &new)
            .await
            .expect("removed")
    );
}

/// A document rewritten behind the operator's back, version kept, is
/// not "already current": the next publish puts the signed one back.
async fn rewritten(cluster: bool) {
    let store = store(cluster);
    let key = &key();
    let server = ServerId {
        namespace: format!("rewritten-{}", std::process::id()),
        name: "s".into(),
    };
    let token = token(1, "only");
    let catalog = published(&server, "a");
    let receipt = publish(&store, &catalog, key, &token).await.expect("first");
    let mut conn = store.get().await.expect("a connection");
    let forged = receipt
        .stored
        .replace("\"name\":\"a\"", "\"name\":\"forged\"");
    assert_ne!(forged, receipt.stored);
    let () = redis::AsyncCommands::set(&mut conn, keys::catalog(&server), &forged)
        .await
        .expect("SET");
    let again = publish(&store, &catalog, key, &token).await.expect("again");
    assert_eq!(again.outcome, Outcome::Written);
    let stored: String = redis::AsyncCommands::get(&mut conn, keys::catalog(&server))
        .await
        .expect("GET");
    assert_eq!(stored, receipt.stored);
    assert!(
        remove_catalog(&store, &server, &token)
            .await
            .expect("removed")
    );
}

#[tokio::test]
async fn a_rewritten_document_is_written_again_on_a_single_node() {
    rewritten(false).await;
}

#[tokio::test]
async fn a_rewritten_document_is_written_again_on_the_cluster() {
    rewritten(true).await;
}

#[tokio::test]
async fn a_lower_token_is_refused_on_a_single_node() {
    fence(false).await;
}

#[tokio::test]
async fn a_lower_token_is_refused_on_the_cluster() {
    fence(true).await;
}
