//! Taking start leases in a write (`Store::write_leasing`, `Lease::Start`): a flow-controlled
//! workflow's instance created by the write is leased to its creator at once when the workflow's
//! limits have room and nothing of it waits for a claim, behind the workflow's advisory lock that
//! every capped claim of it takes too.
//!
//! The leases are decided before the write's creates ([`decide`]), so a start taken is inserted
//! owned and Running: one write of its row and its indexes, as an uncapped start's, where a lease
//! taken after an unowned insert rewrote the row it had just written (on PostgreSQL, an update
//! that changes indexed columns writes a new version of the row into every index).
//!
//! A start a client assigns to a live worker (`Lease::Assign`) is decided the same way
//! ([`decide_assigns`]), behind its worker's row instead of a workflow's lock.

use std::collections::{HashMap, HashSet};

use sqlx::postgres::PgConnection;
use workflow_core::store::{
    AssignLease, InstanceRecord, Lease, Millis, RuntimeStatus, StartGroup, StartLease, WriteOp,
};

use super::claims::{forget_workflow_starts, per_key};
use super::retry::{failed, Failure};
use super::sql::{
    COUNT_RUNNING, COUNT_RUNNING_OF_KEYS, COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_OF_KEYS, KEYS_OTHERS_WAIT_UNDER,
    LOCK_CAP, LOCK_TAKERS, OTHERS_WAIT, RECORD_WORKFLOW_STARTS_OF_KEYS,
};
use crate::shared::to_i64;

/// Takes the advisory locks of the workflows `leases` are of, in name order, in the open
/// transaction: before any row lock, as a capped claim takes its workflow's.
pub(super) async fn lock_workflows(tx: &mut PgConnection, leases: &[StartLease]) -> Result<(), Failure> {
    let mut workflows: Vec<&str> = leases.iter().map(|lease| lease.cap.workflow.as_str()).collect();
    workflows.sort_unstable();
    workflows.dedup();
    for workflow in workflows {
        sqlx::query(LOCK_CAP).bind(workflow).execute(&mut *tx).await.map_err(failed("locking a workflow's cap"))?;
    }
    Ok(())
}

/// How a create whose start lease is taken is inserted: owned by `owner` until `lease_until`,
/// Running since `at`, with no wake-up; `watched` (see [`CREATE`](super::sql::CREATE)) when its
/// creator is not its runner (an assigned start).
#[derive(Debug, Clone, Copy)]
pub(super) struct LeasedCreate<'a> {
    pub(super) owner: &'a str,
    pub(super) lease_until: Millis,
    pub(super) at: Millis,
    pub(super) watched: bool,
}

impl LeasedCreate<'_> {
    /// `record` as this lease inserts it.
    pub(super) fn apply(&self, record: &InstanceRecord) -> InstanceRecord {
        InstanceRecord {
            owner: Some(self.owner.to_owned()),
            lease_until: Some(self.lease_until),
            status: RuntimeStatus::Running,
            updated_at: self.at,
            wake_at: None,
            ..record.clone()
        }
    }
}

/// The start leases a write takes, decided before its creates, under its workflows' locks.
pub(super) struct Decision<'a> {
    groups: Vec<StartGroup<'a>>,
    /// Per lease (in order): taken, if its create inserts (an id found existing is not).
    chosen: Vec<bool>,
}

impl<'a> Decision<'a> {
    /// The creates to insert owned and Running, by instance id.
    pub(super) fn leased_creates(&self, leases: &'a [StartLease]) -> HashMap<&'a str, LeasedCreate<'a>> {
        let mut creates = HashMap::new();
        for group in &self.groups {
            for index in group.leases.iter().filter(|index| self.chosen[**index]) {
                let lease = &leases[*index];
                let (owner, lease_until, at) = (&lease.owner, lease.lease_until, group.now);
                let create = LeasedCreate { owner, lease_until, at, watched: false };
                creates.insert(lease.instance_id.as_str(), create);
            }
        }
        creates
    }

    /// Which leases were taken once the creates ran (`existing`: the ids they found existing and
    /// left as they were), recording the rated workflows' starts in the open transaction.
    pub(super) async fn taken(
        self,
        tx: &mut PgConnection,
        leases: &[StartLease],
        existing: &HashSet<&str>,
    ) -> Result<Vec<bool>, Failure> {
        let taken: Vec<bool> = (self.chosen.iter().zip(leases))
            .map(|(chosen, lease)| *chosen && !existing.contains(lease.instance_id.as_str()))
            .collect();
        for groups in self.groups.chunk_by(|a, b| a.cap.workflow == b.cap.workflow) {
            let (cap, now) = (groups[0].cap, groups[0].now);
            let begun: Vec<i64> =
                groups.iter().map(|group| to_i64(group.leases.iter().filter(|i| taken[**i]).count())).collect();
            if cap.rate.is_none() || begun.iter().all(|n| *n == 0) {
                continue;
            }
            let keys: Vec<&str> = groups.iter().map(|group| group.key).collect();
            sqlx::query(RECORD_WORKFLOW_STARTS_OF_KEYS)
                .bind(cap.workflow.as_str())
                .bind(now)
                .bind(&begun)
                .bind(&keys)
                .execute(&mut *tx)
                .await
                .map_err(failed("recording rate-limited starts"))?;
        }
        Ok(taken)
    }
}

/// Decides which of `leases` the write of `ops` takes, in the open transaction, which holds their
/// workflows' locks ([`lock_workflows`]), before the creates (see `Store::write_leasing`). A lease
/// is a candidate only if the batch creates its instance unowned, Pending and due, and no other op
/// of the batch names it (a terminate or an event in the same batch leaves it to a claim). Per
/// workflow, a few statements whatever the number of its keys: its live leases and its window's
/// starts counted per counted key, and the keys under which an instance waits for a claim (in the
/// store, or created unleased by this batch): none is taken there. Then the first of each key's
/// group that fit.
pub(super) async fn decide<'a>(
    tx: &mut PgConnection,
    leases: &'a [StartLease],
    batch: &BatchCreates<'_>,
) -> Result<Decision<'a>, Failure> {
    let never: HashSet<&str> =
        (leases.iter().filter(|l| !batch.is_candidate(&l.instance_id, Some(&l.cap.workflow), l.now)))
            .map(|l| l.instance_id.as_str())
            .collect();
    let groups = StartGroup::of(leases, &never);
    let mut chosen = vec![false; leases.len()];
    for groups in groups.chunk_by(|a, b| a.cap.workflow == b.cap.workflow) {
        let (cap, now) = (groups[0].cap, groups[0].now);
        let workflow = cap.workflow.as_str();
        let keys: Vec<&str> = groups.iter().map(|group| group.key).collect();
        let running = match cap.concurrency {
            None => HashMap::new(),
            Some(_) => {
                counted(tx, cap.keyed, (COUNT_RUNNING, COUNT_RUNNING_OF_KEYS), (workflow, Some(now), &keys)).await?
            }
        };
        let started = match cap.rate {
            None => HashMap::new(),
            Some(rate) => {
                forget_workflow_starts(tx, workflow, rate, now).await?;
                let statements = (COUNT_WORKFLOW_STARTS, COUNT_WORKFLOW_STARTS_OF_KEYS);
                counted(tx, cap.keyed, statements, (workflow, None, &keys)).await?
            }
        };
        let waiting: Vec<String> = if cap.keyed {
            let query = sqlx::query_scalar(KEYS_OTHERS_WAIT_UNDER).bind(workflow).bind(now).bind(&keys);
            query.fetch_all(&mut *tx).await.map_err(failed("looking for waiting instances"))?
        } else {
            let query = sqlx::query_scalar(&OTHERS_WAIT).bind(workflow).bind(now);
            let any: bool = query.fetch_one(&mut *tx).await.map_err(failed("looking for waiting instances"))?;
            if any {
                vec![String::new()]
            } else {
                Vec::new()
            }
        };
        let count = |counts: &HashMap<String, u64>, key: &str| counts.get(key).copied().unwrap_or(0);
        for group in groups {
            let key = cap.keyed.then_some(group.key);
            let others_wait = waiting.iter().any(|key| key == group.key) || batch.waits_unleased(workflow, key, now);
            let take = group.to_take(count(&running, group.key), count(&started, group.key), others_wait);
            for index in &group.leases[..take] {
                chosen[*index] = true;
            }
        }
    }
    Ok(Decision { groups, chosen })
}

/// Which of a write's assigned starts (`assigns`, each with its index among the write's leases) it
/// takes, decided in the open transaction before its creates and before it locks any instance:
/// those whose create is a candidate (as a start lease's must be) and whose worker is registered
/// and takes its workflow.
/// The workers' rows stay locked (`FOR KEY SHARE`) until the commit, so the release of a dead
/// worker (which locks its row to forget it, skipping a locked one) comes either before this
/// write, which then finds no row and leaves the start to a claim, or after its commit, and then
/// releases the start with the worker's other leases: none is left with a worker nobody releases.
pub(super) async fn decide_assigns<'a>(
    tx: &mut PgConnection,
    assigns: &[(usize, &'a AssignLease)],
    batch: &BatchCreates<'_>,
) -> Result<HashMap<&'a str, LeasedCreate<'a>>, Failure> {
    let candidates: Vec<(&AssignLease, &str)> = (assigns.iter().map(|(_, assign)| *assign))
        .filter_map(|assign| Some((assign, batch.candidate(&assign.instance_id, None, assign.now)?)))
        .collect();
    if candidates.is_empty() {
        return Ok(HashMap::new());
    }
    let mut owners: Vec<&str> = candidates.iter().map(|(assign, _)| assign.owner.as_str()).collect();
    owners.sort_unstable();
    owners.dedup();
    let live: Vec<(String, Vec<String>)> = sqlx::query_as(LOCK_TAKERS)
        .bind(&owners)
        .fetch_all(&mut *tx)
        .await
        .map_err(failed("locking the workers assigned starts"))?;
    let takes = |owner: &str, workflow: &str| {
        live.iter().any(|(live, takes)| live == owner && takes.iter().any(|name| name == workflow))
    };
    let mut creates = HashMap::new();
    for (assign, _) in candidates.into_iter().filter(|(assign, workflow)| takes(&assign.owner, workflow)) {
        let (owner, lease_until, at) = (assign.owner.as_str(), assign.lease_until, assign.now);
        creates.insert(assign.instance_id.as_str(), LeasedCreate { owner, lease_until, at, watched: true });
    }
    Ok(creates)
}

/// The instances a batch creates, those its other ops name, and how many leases ask for each.
pub(super) struct BatchCreates<'o> {
    /// The first create of each id.
    creates: HashMap<&'o str, &'o InstanceRecord>,
    /// Ids another op names (a second create among them).
    named: HashSet<&'o str>,
    /// The number of instance leases (start and assigned) asked for each id.
    leased: HashMap<&'o str, usize>,
}

impl<'o> BatchCreates<'o> {
    /// `ops`' creates and the ids `leases` (start and assigned) ask for.
    pub(super) fn of(ops: &'o [WriteOp], leases: &'o [Lease]) -> Self {
        let (mut creates, mut named, mut leased) = (HashMap::new(), HashSet::new(), HashMap::new());
        for op in ops {
            match op {
                WriteOp::CreateInstance(record) if !creates.contains_key(record.id.as_str()) => {
                    creates.insert(record.id.as_str(), record);
                }
                op => {
                    named.insert(op.instance_id());
                }
            }
        }
        for lease in leases {
            let id = match lease {
                Lease::Start(start) => start.instance_id.as_str(),
                Lease::Assign(assign) => assign.instance_id.as_str(),
                Lease::Task(_) => continue,
            };
            *leased.entry(id).or_insert(0) += 1;
        }
        Self { creates, named, leased }
    }

    /// Whether a lease on `id` at `now` may be taken: the batch creates the instance (of
    /// `workflow`, when given) unowned, Pending and due at `now`, nothing else in the batch names
    /// it, and it is the only lease of its instance.
    fn is_candidate(&self, id: &str, workflow: Option<&str>, now: Millis) -> bool {
        self.candidate(id, workflow, now).is_some()
    }

    /// The workflow of the instance `id` if a lease on it at `now` may be taken (see
    /// [`BatchCreates::is_candidate`]).
    fn candidate(&self, id: &str, workflow: Option<&str>, now: Millis) -> Option<&'o str> {
        let record = self.creates.get(id)?;
        let fits = workflow.is_none_or(|workflow| record.workflow == workflow)
            && is_waiting(record, now)
            && !self.named.contains(id)
            && self.leased.get(id) == Some(&1);
        fits.then_some(record.workflow.as_str())
    }

    /// Whether the batch creates an instance of `workflow` (under `key`, when the workflow's
    /// limits are keyed) that waits for a claim at `now` with no lease asked for it: a lease taken
    /// beside it would overtake it.
    fn waits_unleased(&self, workflow: &str, key: Option<&str>, now: Millis) -> bool {
        self.creates.values().any(|record| {
            record.workflow == workflow
                && key.is_none_or(|key| record.concurrency_key == key)
                && is_waiting(record, now)
                && !self.leased.contains_key(record.id.as_str())
        })
    }
}

/// Whether `record`, as created, waits for a claim at `now`: unowned, Pending and due.
fn is_waiting(record: &InstanceRecord, now: Millis) -> bool {
    record.owner.is_none() && record.status == RuntimeStatus::Pending && record.wake_at.is_none_or(|at| at <= now)
}

/// Per counted key, what `statements` count for `workflow` (`now` bound second when given): the
/// whole workflow's under `""` with the first (unkeyed), each of `keys`' with the second (keyed,
/// `keys` bound last).
async fn counted(
    tx: &mut PgConnection,
    keyed: bool,
    (whole, each_key): (&str, &str),
    (workflow, now, keys): (&str, Option<Millis>, &[&str]),
) -> Result<HashMap<String, u64>, Failure> {
    if !keyed {
        let query = sqlx::query_scalar(whole).bind(workflow);
        let query = match now {
            Some(now) => query.bind(now),
            None => query,
        };
        let n: i64 = query.fetch_one(&mut *tx).await.map_err(failed("counting a workflow's limits"))?;
        return Ok(per_key(vec![(String::new(), n)]));
    }
    let query = sqlx::query_as(each_key).bind(workflow);
    let query = match now {
        Some(now) => query.bind(now),
        None => query,
    };
    let rows = query.bind(keys).fetch_all(&mut *tx).await.map_err(failed("counting a workflow's limits per key"))?;
    Ok(per_key(rows))
}
