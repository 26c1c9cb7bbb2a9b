//! Listing instances: filters, keyset pages and their continuation tokens.

use std::collections::VecDeque;

use super::{Client, InstanceStatus};
use crate::error::Error;
use crate::store::{InstanceQuery, InstanceRecord, Millis, RuntimeStatus};

/// Which instances [`Client::list`] returns: every filter given must hold.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ListFilter {
    /// Any of these statuses (all statuses when empty).
    pub statuses: Vec<RuntimeStatus>,
    /// Instances of this workflow only.
    pub workflow: Option<String>,
    /// Created at or after this time (ms since the Unix epoch).
    pub created_after: Option<Millis>,
    /// Created before this time (ms since the Unix epoch).
    pub created_before: Option<Millis>,
    /// Children of this instance only.
    pub parent_id: Option<String>,
    /// Newest first ((created, id) descending) instead of oldest first.
    pub newest_first: bool,
    /// Leave the payloads out of the page (not even read from the store): each status's `input`
    /// is empty and its `output` and `custom_status` are `None`. A page of up to
    /// [`MAX_PAGE_SIZE`] instances then costs their metadata only; read one instance's payloads
    /// with [`Client::status`].
    pub without_payloads: bool,
}

/// One page of [`Client::list`], in the filter's order (oldest first unless
/// [`ListFilter::newest_first`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InstancePage {
    /// The instances on this page.
    pub instances: Vec<InstanceStatus>,
    /// Pass it to the next call for the next page; `None` on the last page.
    pub continuation: Option<String>,
}

/// The most instances [`Client::list`] returns per page.
pub const MAX_PAGE_SIZE: usize = 1000;
/// Descendants read per page while walking an instance's children.
const CHILD_PAGE: usize = 500;

fn encode_token(created_at: Millis, id: &str) -> String {
    let raw = format!("{created_at}:{id}");
    raw.bytes().map(|b| format!("{b:02x}")).collect()
}

fn decode_token(token: &str) -> Result<(Millis, String), Error> {
    let bad = || Error::InvalidArgument(format!("invalid continuation token {token:?}"));
    if !token.len().is_multiple_of(2) || !token.is_ascii() {
        return Err(bad());
    }
    let bytes = (0..token.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&token[i..i + 2], 16))
        .collect::<Result<Vec<u8>, _>>()
        .map_err(|_| bad())?;
    let raw = String::from_utf8(bytes).map_err(|_| bad())?;
    let (created_at, id) = raw.split_once(':').ok_or_else(bad)?;
    super::validate_instance_id(id).map_err(|_| bad())?;
    Ok((created_at.parse().map_err(|_| bad())?, id.to_owned()))
}

impl Client {
    /// Instances matching `filter`, oldest first (or newest first, as the filter says), at most `page_size` (1 to
    /// [`MAX_PAGE_SIZE`]) per page; pass the page's `continuation` back for the next.
    pub async fn list(
        &self,
        filter: &ListFilter,
        page_size: usize,
        continuation: Option<&str>,
    ) -> Result<InstancePage, Error> {
        if page_size == 0 || page_size > MAX_PAGE_SIZE {
            return Err(Error::InvalidArgument(format!("page size must be 1 to {MAX_PAGE_SIZE}, got {page_size}")));
        }
        let after = continuation.map(decode_token).transpose()?;
        // Nothing the store cannot hold reaches it (PostgreSQL refuses NUL in text).
        if let Some(workflow) = &filter.workflow {
            super::validate_workflow_name(workflow)?;
        }
        if let Some(parent) = &filter.parent_id {
            super::validate_instance_id(parent)?;
        }
        let query = InstanceQuery {
            statuses: filter.statuses.clone(),
            workflow: filter.workflow.clone(),
            created_after: filter.created_after,
            created_before: filter.created_before,
            parent_id: filter.parent_id.clone(),
            updated_before: None,
            without_payloads: filter.without_payloads,
            newest_first: filter.newest_first,
            after,
            // One more than asked tells whether another page follows.
            limit: page_size + 1,
        };
        let mut records = self.store().list(&query).await?;
        let more = records.len() > page_size;
        records.truncate(page_size);
        let continuation = if more { records.last().map(|last| encode_token(last.created_at, &last.id)) } else { None };
        let mut instances: Vec<InstanceStatus> = records.into_iter().map(InstanceStatus::from).collect();
        self.note_flow(&mut instances).await;
        Ok(InstancePage { instances, continuation })
    }

    /// How many instances have each status, in [`RuntimeStatus::ALL`] order, each counted up to
    /// `at_most` (a count of `at_most` reads "at least"): the cost is bounded by `at_most` per
    /// status however large the store.
    pub async fn status_counts(&self, at_most: u64) -> Result<Vec<(RuntimeStatus, u64)>, Error> {
        Ok(self.store().status_counts(at_most).await?)
    }

    /// Every instance matching `query` (its `after` and `limit` are set here), read a page at
    /// a time.
    pub(super) async fn list_all(&self, mut query: InstanceQuery) -> Result<Vec<InstanceRecord>, Error> {
        let mut found = Vec::new();
        query.limit = CHILD_PAGE;
        loop {
            let page = self.store().list(&query).await?;
            let full = page.len() >= CHILD_PAGE;
            query.after = page.last().map(|last| (last.created_at, last.id.clone()));
            found.extend(page);
            if !full {
                return Ok(found);
            }
        }
    }

    /// Every descendant of `root` (children, their children, ...), parents before children.
    pub(super) async fn descendants(&self, root: &str) -> Result<Vec<InstanceRecord>, Error> {
        let mut found = Vec::new();
        let mut queue = VecDeque::from([root.to_owned()]);
        while let Some(parent) = queue.pop_front() {
            let children = InstanceQuery { parent_id: Some(parent), ..InstanceQuery::default() };
            for child in self.list_all(children).await? {
                queue.push_back(child.id.clone());
                found.push(child);
            }
        }
        Ok(found)
    }
}
