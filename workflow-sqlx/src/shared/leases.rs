//! Taking task leases in a write (`Store::write_leasing`), the part every SQL backend shares: which
//! leases to try, given the room each activity and key has left, and which lease a taken row
//! answers. Counting the room and taking the rows are each backend's own statements.

use std::collections::HashMap;

use workflow_core::store::{key_room, ActivityCap, Millis, TaskLease};

/// An activity and a concurrency key.
pub(crate) type LeaseKey<'a> = (&'a str, &'a str);

/// The key `lease` counts under.
pub(crate) fn lease_key(lease: &TaskLease) -> LeaseKey<'_> {
    (lease.cap.activity.as_str(), lease.concurrency_key.as_str())
}

/// The distinct keys of `leases`, in the order they first appear.
pub(crate) fn lease_keys(leases: &[TaskLease]) -> Vec<LeaseKey<'_>> {
    let mut keys: Vec<LeaseKey<'_>> = Vec::new();
    for key in leases.iter().map(lease_key) {
        if !keys.contains(&key) {
            keys.push(key);
        }
    }
    keys
}

/// The activities `leases` are of, in name order (the order their limits' locks are taken in),
/// each with its limits and the latest of its leases' clocks (when its limits are counted).
pub(crate) fn leased_activities(leases: &[TaskLease]) -> Vec<(&ActivityCap, Millis)> {
    let mut activities: Vec<(&ActivityCap, Millis)> = Vec::new();
    for lease in leases {
        match activities.iter_mut().find(|(cap, _)| cap.activity == lease.cap.activity) {
            Some((_, now)) => *now = (*now).max(lease.now),
            None => activities.push((&lease.cap, lease.now)),
        }
    }
    activities.sort_by(|a, b| a.0.activity.cmp(&b.0.activity));
    activities
}

/// The room each key of `cap`'s activity among `leases` has, given its live leases and its
/// window's starts per key (as `key_room` computes a claim's).
pub(crate) fn room_of<'a>(
    leases: &'a [TaskLease],
    cap: &ActivityCap,
    running: &HashMap<String, u64>,
    started: &HashMap<String, u64>,
) -> Vec<(LeaseKey<'a>, u64)> {
    let keys: Vec<LeaseKey<'a>> =
        lease_keys(leases).into_iter().filter(|(activity, _)| *activity == cap.activity).collect();
    let names: Vec<String> = keys.iter().map(|(_, key)| (*key).to_owned()).collect();
    let rooms: HashMap<&str, usize> = key_room(cap, running, started, &names).into_iter().collect();
    keys.into_iter().map(|key| (key, rooms.get(key.1).map_or(0, |room| *room as u64))).collect()
}

/// The indexes of the leases to try, in order, in runs of one owner: as many of each key as
/// `room` (what each key has left under its limits) allows; a key without an entry has none.
pub(crate) fn candidates<'a>(leases: &'a [TaskLease], mut room: HashMap<LeaseKey<'a>, u64>) -> Vec<Vec<usize>> {
    let picked: Vec<usize> = (0..leases.len())
        .filter(|index| match room.get_mut(&lease_key(&leases[*index])) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        })
        .collect();
    picked.chunk_by(|a, b| leases[*a].owner == leases[*b].owner).map(<[usize]>::to_vec).collect()
}

/// Marks taken the first lease of `tried` (not taken yet) on the task and attempt a taking
/// statement returned.
pub(crate) fn mark_taken(
    leases: &[TaskLease],
    tried: &[usize],
    taken: &mut [bool],
    (id, generation, seq, attempt): (&str, i64, i64, i64),
) {
    let lease_of = tried.iter().find(|index| {
        let lease = &leases[**index];
        !taken[**index]
            && lease.instance_id == id
            && i64::from(lease.generation) == generation
            && i64::from(lease.seq) == seq
            && i64::from(lease.attempt) == attempt
    });
    if let Some(index) = lease_of {
        taken[*index] = true;
    }
}
