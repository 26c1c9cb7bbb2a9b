//! Listing instances: filters, order, keyset paging.

use std::collections::HashSet;

use crate::store::{InstanceQuery, InstanceRecord, RuntimeStatus, Store};

use super::{create, get, ids, instance, with_status};

/// Whether `record` passes `query`'s filters (not its paging): what a store may return.
fn passes(query: &InstanceQuery, record: &InstanceRecord) -> bool {
    (query.statuses.is_empty() || query.statuses.contains(&record.status))
        && query.workflow.as_ref().is_none_or(|workflow| *workflow == record.workflow)
        && query.created_after.is_none_or(|after| record.created_at >= after)
        && query.created_before.is_none_or(|before| record.created_at < before)
        && query.updated_before.is_none_or(|before| record.updated_at < before)
        && query.parent_id.as_ref().is_none_or(|parent| record.parent_id.as_ref() == Some(parent))
        && query.after.as_ref().is_none_or(|(created_at, id)| (record.created_at, &record.id) > (*created_at, id))
}

/// Lists every page of `query` (its limit is the page size), each page after the last one's
/// (created_at, id).
pub(super) async fn list_pages(store: &dyn Store, query: &InstanceQuery) -> Vec<Vec<InstanceRecord>> {
    let mut pages = Vec::new();
    let mut after = query.after.clone();
    loop {
        let page = store.list(&InstanceQuery { after: after.clone(), ..query.clone() }).await.unwrap();
        assert!(page.len() <= query.limit, "a page holds at most the limit");
        let Some(last) = page.last() else { return pages };
        after = Some((last.created_at, last.id.clone()));
        let full = page.len() == query.limit;
        pages.push(page);
        if !full {
            return pages;
        }
    }
}

/// `list` returns the instances every given filter passes (statuses: any of them; created_after
/// inclusive; created_before and updated_before exclusive; workflow and parent exact), whole, in
/// (created_at, id) order with ids compared byte for byte (ties on created_at broken by id),
/// strictly after the keyset `after`, at most `limit` (0: none). Paging by the last row's
/// (created_at, id) returns every match exactly once. Newest first is the exact reverse, the
/// keyset then returning what comes before it.
///
/// The store holds other checks' instances too: a query that does not name this check's workflow
/// or parent is checked for returning only what passes, and this check's instances among them
/// exactly.
pub async fn check_list(store: &dyn Store) {
    use RuntimeStatus::{Completed, Failed, Pending, Running, Suspended, Terminated};
    let (wa, wb) = ("list_wf_a", "list_wf_b");
    let p = "list/p";
    // (id, workflow, status, created_at, updated_at, parent)
    let rows = [
        ("list/e", wa, Running, 500, 600, None),
        ("list/c3", wa, Completed, 200, 210, Some(p)),
        ("list/é", wb, Pending, 200, 200, None),
        ("list/p", wa, Running, 100, 150, None),
        ("list/c1", wb, Failed, 200, 205, Some(p)),
        ("list/d", wb, Suspended, 400, 400, Some(p)),
        ("list/C2", wa, Completed, 200, 300, Some(p)),
        ("list/c0", wa, Terminated, 300, 400, Some("list/c1")),
    ];
    let records: Vec<InstanceRecord> = rows
        .iter()
        .map(|(id, workflow, status, created_at, updated_at, parent)| InstanceRecord {
            updated_at: *updated_at,
            parent_id: parent.map(str::to_owned),
            custom_status: Some(format!("\"{id}\"")),
            ..with_status(instance(id, workflow, *created_at), *status)
        })
        .collect();
    store.write(&records.iter().cloned().map(create).collect::<Vec<_>>()).await.unwrap();
    let mine = |found: &[InstanceRecord]| -> Vec<String> {
        found.iter().filter(|r| r.id.starts_with("list/")).map(|r| r.id.clone()).collect()
    };
    let all = |query: InstanceQuery| InstanceQuery { limit: 100_000, ..query };
    let q = InstanceQuery::default;

    // What the store returns passes the filters, in strict (created_at, id) order.
    let listed = |query: InstanceQuery| async move {
        let found = store.list(&query).await.unwrap();
        for record in &found {
            assert!(passes(&query, record), "{query:?} returned {record:?}");
        }
        for pair in found.windows(2) {
            assert!((pair[0].created_at, &pair[0].id) < (pair[1].created_at, &pair[1].id), "out of order: {pair:?}");
        }
        found
    };

    // Ties at 200 by id, byte for byte: upper case before lower case, `é` after ASCII.
    let in_order = ["list/p", "list/C2", "list/c1", "list/c3", "list/é", "list/c0", "list/d", "list/e"];
    assert_eq!(mine(&listed(all(q())).await), in_order);
    let a_only = listed(all(InstanceQuery { workflow: Some(wa.into()), ..q() })).await;
    assert_eq!(ids(&a_only), ["list/p", "list/C2", "list/c3", "list/c0", "list/e"]);
    for record in &a_only {
        assert_eq!(*record, get(store, &record.id).await, "listed whole");
    }
    assert_eq!(
        ids(&listed(all(InstanceQuery { workflow: Some(wb.into()), ..q() })).await),
        ["list/c1", "list/é", "list/d"]
    );
    assert!(listed(all(InstanceQuery { workflow: Some("list_wf_none".into()), ..q() })).await.is_empty());

    // Each filter alone.
    let statuses = |statuses: &[RuntimeStatus]| all(InstanceQuery { statuses: statuses.to_vec(), ..q() });
    assert_eq!(mine(&listed(statuses(&[Completed])).await), ["list/C2", "list/c3"]);
    assert_eq!(mine(&listed(statuses(&[Failed, Completed, Failed])).await), ["list/C2", "list/c1", "list/c3"]);
    assert_eq!(mine(&listed(statuses(&RuntimeStatus::ALL)).await), in_order);
    assert_eq!(mine(&listed(all(InstanceQuery { created_after: Some(200), ..q() })).await), in_order[1..]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_after: Some(201), ..q() })).await), in_order[5..]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_before: Some(200), ..q() })).await), ["list/p"]);
    assert_eq!(mine(&listed(all(InstanceQuery { created_before: Some(201), ..q() })).await), in_order[..5]);
    assert_eq!(
        mine(&listed(all(InstanceQuery { updated_before: Some(210), ..q() })).await),
        ["list/p", "list/c1", "list/é"]
    );
    let children = |parent: &str| all(InstanceQuery { parent_id: Some(parent.into()), ..q() });
    assert_eq!(ids(&listed(children(p)).await), ["list/C2", "list/c1", "list/c3", "list/d"]);
    assert_eq!(ids(&listed(children("list/c1")).await), ["list/c0"]);
    assert!(listed(children("list/nobody")).await.is_empty());
    let after = |created_at: i64, id: &str| all(InstanceQuery { after: Some((created_at, id.into())), ..q() });
    assert_eq!(mine(&listed(after(200, "list/c1")).await), in_order[3..]);
    assert_eq!(mine(&listed(after(200, "list/")).await), in_order[1..], "strictly after, by id within a time");
    assert_eq!(mine(&listed(after(199, "list/zzz")).await), in_order[1..], "by time first");
    assert_eq!(mine(&listed(after(500, "list/e")).await), Vec::<String>::new());
    let limited = |limit: usize| InstanceQuery { workflow: Some(wa.into()), limit, ..q() };
    assert_eq!(ids(&listed(limited(2)).await), ["list/p", "list/C2"]);
    assert!(store.list(&limited(0)).await.unwrap().is_empty());
    assert!(store.list(&q()).await.unwrap().is_empty(), "the default limit is 0");

    // Combined.
    let combined = InstanceQuery {
        workflow: Some(wa.into()),
        statuses: vec![Completed, Running, Terminated],
        created_after: Some(150),
        created_before: Some(500),
        ..all(q())
    };
    assert_eq!(ids(&listed(combined.clone()).await), ["list/C2", "list/c3", "list/c0"]);
    let narrower = InstanceQuery { updated_before: Some(300), ..combined.clone() };
    assert_eq!(ids(&listed(narrower.clone()).await), ["list/c3"]);
    let children_only = InstanceQuery { parent_id: Some(p.into()), updated_before: None, ..combined.clone() };
    assert_eq!(ids(&listed(children_only.clone()).await), ["list/C2", "list/c3"]);
    let paged = InstanceQuery { after: Some((200, "list/C2".into())), ..children_only.clone() };
    assert_eq!(ids(&listed(paged).await), ["list/c3"]);
    let past = InstanceQuery { after: Some((200, "list/c3".into())), ..children_only };
    assert!(listed(past).await.is_empty());
    let statuses_of_b = InstanceQuery { workflow: Some(wb.into()), statuses: vec![Pending, Suspended], ..all(q()) };
    assert_eq!(ids(&listed(statuses_of_b).await), ["list/é", "list/d"]);

    // Several statuses, paged: merged in list order whatever the page size (a store may read a page
    // of each status and merge them).
    let several = InstanceQuery { workflow: Some(wa.into()), statuses: vec![Running, Terminated, Completed], ..q() };
    let unpaged = listed(all(several.clone())).await;
    assert_eq!(ids(&unpaged), ["list/p", "list/C2", "list/c3", "list/c0", "list/e"]);
    for page_size in [1, 2, 3] {
        let paged: Vec<InstanceRecord> = list_pages(store, &InstanceQuery { limit: page_size, ..several.clone() })
            .await
            .into_iter()
            .flatten()
            .collect();
        assert_eq!(ids(&paged), ids(&unpaged), "pages of {page_size}");
    }

    // Paging: exact pages, a boundary inside the tie at 200.
    let pages = list_pages(store, &limited(2)).await;
    let page_ids: Vec<Vec<&str>> = pages.iter().map(|page| ids(page)).collect();
    assert_eq!(page_ids, [vec!["list/p", "list/C2"], vec!["list/c3", "list/c0"], vec!["list/e"]]);
    let pages = list_pages(store, &InstanceQuery { workflow: Some(wb.into()), limit: 1, ..q() }).await;
    assert_eq!(pages.iter().map(|page| ids(page)).collect::<Vec<_>>(), [["list/c1"], ["list/é"], ["list/d"]]);
    // Every instance of the store, whatever its ties (other checks created many at the same
    // times), exactly once, in the order of one unpaged list.
    let everything = listed(all(q())).await;
    for page_size in [1, 3, 7, 64] {
        let paged: Vec<InstanceRecord> =
            list_pages(store, &InstanceQuery { limit: page_size, ..q() }).await.into_iter().flatten().collect();
        assert_eq!(ids(&paged), ids(&everything), "pages of {page_size}");
    }
    let unique: HashSet<&str> = ids(&everything).into_iter().collect();
    assert_eq!(unique.len(), everything.len());

    // Newest first: the reverse of list order, the keyset counting backwards, pages too.
    let newest = |query: InstanceQuery| InstanceQuery { newest_first: true, ..query };
    let reversed =
        |found: &[InstanceRecord]| -> Vec<String> { ids(found).into_iter().rev().map(str::to_owned).collect() };
    for query in [
        all(q()),
        statuses(&[Completed]),
        statuses(&[Running, Terminated, Completed]),
        children(p),
        all(InstanceQuery { workflow: Some(wa.into()), created_after: Some(150), ..q() }),
    ] {
        let forward = listed(query.clone()).await;
        let backward = store.list(&newest(query.clone())).await.unwrap();
        assert_eq!(ids(&backward), reversed(&forward), "newest first: {query:?}");
    }
    let before_c3 = store.list(&newest(after(200, "list/c3"))).await.unwrap();
    assert_eq!(mine(&before_c3), ["list/c1", "list/C2", "list/p"], "strictly before the keyset");
    let unpaged_newest = reversed(&unpaged);
    for page_size in [1, 2, 3] {
        let paged: Vec<InstanceRecord> =
            list_pages(store, &newest(InstanceQuery { limit: page_size, ..several.clone() }))
                .await
                .into_iter()
                .flatten()
                .collect();
        assert_eq!(ids(&paged), unpaged_newest, "newest first in pages of {page_size}");
    }

    // Without payloads: the same records in the same order, input empty, output and custom
    // status left out (with one status, and with several, which some stores merge).
    let bare =
        |record: InstanceRecord| InstanceRecord { input: String::new(), output: None, custom_status: None, ..record };
    for query in [all(q()), statuses(&[Completed]), statuses(&[Terminated, Completed, Pending])] {
        let full = listed(query.clone()).await;
        let without = listed(InstanceQuery { without_payloads: true, ..query }).await;
        assert!(full.iter().any(|record| record.custom_status.is_some()));
        assert_eq!(without, full.into_iter().map(bare).collect::<Vec<_>>());
    }
}
