//! Listing instance keys: what `list` returns, reduced to (id, created_at, parent).

use crate::store::{InstanceKey, InstanceQuery, InstanceRecord, RuntimeStatus, Store};

use super::{create, instance, with_status};

/// `list_keys` returns, for any query, the keys of exactly the instances `list` returns for it, in
/// the same order: the same filters (statuses, workflow, created and updated bounds, parent), the
/// same keyset and the same limit (0: none), so paging over keys visits every match once.
pub async fn check_list_keys(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Running};
    let (wf, root) = ("keys_wf", "keys/root");
    // (id, status, created_at, updated_at, parent)
    let rows = [
        (root, Running, 100, 100, None),
        ("keys/b", Completed, 200, 210, Some(root)),
        ("keys/a", Completed, 200, 300, Some(root)),
        ("keys/c", Failed, 150, 160, None),
        ("keys/d", Completed, 300, 310, None),
        ("keys/e", Completed, 400, 410, Some("keys/b")),
    ];
    let records: Vec<InstanceRecord> = rows
        .iter()
        .map(|(id, status, created_at, updated_at, parent)| InstanceRecord {
            updated_at: *updated_at,
            parent_id: parent.map(str::to_owned),
            output: Some("1".into()),
            custom_status: Some("\"busy\"".into()),
            ..with_status(instance(id, wf, *created_at), *status)
        })
        .collect();
    store.write(&records.into_iter().map(create).collect::<Vec<_>>()).await.unwrap();

    let mine = |query: InstanceQuery| InstanceQuery { workflow: Some(wf.into()), ..query };
    let q = InstanceQuery::default;
    let queries = [
        InstanceQuery { limit: 100, ..q() },
        mine(InstanceQuery { limit: 100, ..q() }),
        mine(InstanceQuery { statuses: vec![Completed], limit: 100, ..q() }),
        mine(InstanceQuery { statuses: vec![Completed, Failed], updated_before: Some(305), limit: 100, ..q() }),
        mine(InstanceQuery { created_after: Some(150), created_before: Some(400), limit: 100, ..q() }),
        InstanceQuery { parent_id: Some(root.into()), limit: 100, ..q() },
        InstanceQuery { parent_id: Some(root.into()), statuses: vec![Completed], limit: 100, ..q() },
        mine(InstanceQuery { after: Some((200, "keys/a".into())), limit: 2, ..q() }),
        mine(InstanceQuery { limit: 0, ..q() }),
    ];
    for query in queries {
        let listed: Vec<InstanceKey> = store.list(&query).await.unwrap().iter().map(InstanceKey::from).collect();
        assert_eq!(store.list_keys(&query).await.unwrap(), listed, "{query:?}");
    }
    let children = store.list_keys(&InstanceQuery { parent_id: Some(root.into()), limit: 100, ..q() }).await.unwrap();
    let expected = [("keys/a", 200, Some(root)), ("keys/b", 200, Some(root))];
    let found: Vec<(&str, i64, Option<&str>)> =
        children.iter().map(|key| (key.id.as_str(), key.created_at, key.parent_id.as_deref())).collect();
    assert_eq!(found, expected);

    // Paging by the last key returns every match once, in order.
    let mut paged = Vec::new();
    let mut after = None;
    loop {
        let page = store.list_keys(&mine(InstanceQuery { after: after.clone(), limit: 2, ..q() })).await.unwrap();
        assert!(page.len() <= 2);
        let Some(last) = page.last() else { break };
        after = Some((last.created_at, last.id.clone()));
        paged.extend(page.iter().map(|key| key.id.clone()));
    }
    assert_eq!(paged, ["keys/root", "keys/c", "keys/a", "keys/b", "keys/d", "keys/e"]);
}
