//! The cache of one-statement writes: their text by the shape of their plan.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// The statements [`Single`] has spelled, by the shape of their plan ([`Assembly::shape`]): the
/// text depends on which CTEs a plan has and which of them hold one row, never on the values,
/// so a statement is spelled once per shape (a twentieth of a small write's time).
///
/// [`Single`]: super::statement::Single
/// [`Assembly::shape`]: super::statement::Assembly::shape
#[derive(Debug, Default)]
pub(super) struct StatementCache(Mutex<HashMap<Vec<u8>, Arc<str>>>);

/// More shapes than any workload has; past it the cache starts over rather than grow.
const MAX_CACHED_STATEMENTS: usize = 1024;

impl StatementCache {
    pub(super) fn get(&self, shape: &[u8]) -> Option<Arc<str>> {
        self.0.lock().ok()?.get(shape).cloned()
    }

    pub(super) fn insert(&self, shape: Vec<u8>, sql: Arc<str>) {
        if let Ok(mut cache) = self.0.lock() {
            if cache.len() >= MAX_CACHED_STATEMENTS {
                cache.clear();
            }
            cache.insert(shape, sql);
        }
    }
}
