//! Requests waiting for an operator, and operators' standing grants.

use crate::sync::Mutex;
use std::collections::BTreeMap;
use std::fmt;

struct Table<R> {
    waiting: BTreeMap<u64, (R, u64)>,
    next_id: u64,
}

/// Requests waiting for an operator's answer, each under an id.
///
/// Guarantees, whatever the interleaving of the threads that answer
/// (approve, reject), expire (the idle tick) and halt: every waiting
/// request is taken out exactly once, by exactly one of them, so it gets
/// exactly one final answer; ids are never reused; and no more than the
/// capacity ever wait at once.
pub struct Pending<R> {
    capacity: usize,
    table: Mutex<Table<R>>,
}

impl<R> fmt::Debug for Pending<R> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let table = self.table.lock();
        f.debug_struct("Pending")
            .field("capacity", &self.capacity)
            .field("waiting", &table.waiting.keys().collect::<Vec<_>>())
            .field("next_id", &table.next_id)
            .finish()
    }
}

impl<R> Pending<R> {
    /// An empty table that holds at most `capacity` requests.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            table: Mutex::new(Table {
                waiting: BTreeMap::new(),
                next_id: 1,
            }),
        }
    }

    /// Puts `request` to wait until `deadline_ms` and returns its id, or
    /// gives it back when the table is full.
    pub fn wait(&self, request: R, deadline_ms: u64) -> Result<u64, R> {
        let mut table = self.table.lock();
        if table.waiting.len() >= self.capacity {
            return Err(request);
        }
        let id = table.next_id;
        table.next_id = id.saturating_add(1);
        table.waiting.insert(id, (request, deadline_ms));
        Ok(id)
    }

    /// Takes the request waiting under `id`, if it still waits.
    pub fn take(&self, id: u64) -> Option<R> {
        self.table.lock().waiting.remove(&id).map(|(r, _)| r)
    }

    /// Takes every request whose deadline is before `now_ms`, by id.
    pub fn take_expired(&self, now_ms: u64) -> Vec<(u64, R)> {
        let mut table = self.table.lock();
        let expired: Vec<u64> = table
            .waiting
            .iter()
            .filter(|(_, (_, deadline))| now_ms > *deadline)
            .map(|(id, _)| *id)
            .collect();
        expired
            .into_iter()
            .filter_map(|id| table.waiting.remove(&id).map(|(r, _)| (id, r)))
            .collect()
    }

    /// Takes every waiting request, by id.
    pub fn take_all(&self) -> Vec<(u64, R)> {
        let mut table = self.table.lock();
        std::mem::take(&mut table.waiting)
            .into_iter()
            .map(|(id, (r, _))| (id, r))
            .collect()
    }

    /// `show` applied to every waiting request, by id.
    pub fn list<T>(&self, show: impl Fn(u64, &R) -> T) -> Vec<T> {
        let table = self.table.lock();
        table
            .waiting
            .iter()
            .map(|(id, (r, _))| show(*id, r))
            .collect()
    }

    /// How many requests wait.
    pub fn len(&self) -> usize {
        self.table.lock().waiting.len()
    }

    /// Whether none waits.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

struct Grant<K> {
    key: K,
    by: String,
    expires_at_ms: u64,
    uses_left: u32,
}

/// Operators' standing grants: "this action, for this long, this many
/// more times".
///
/// Guarantee, whatever the interleaving of the threads that decide with
/// grants: a grant of `n` uses makes at most `n` decisions `Allow`,
/// because finding a grant, deciding with it and counting the use happen
/// under one lock ([`decide`](Self::decide)).
pub struct Grants<K> {
    capacity: usize,
    grants: Mutex<Vec<Grant<K>>>,
}

impl<K> fmt::Debug for Grants<K> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Grants")
            .field("capacity", &self.capacity)
            .field("grants", &self.grants.lock().len())
            .finish()
    }
}

impl<K: PartialEq> Grants<K> {
    /// No grants; at most `capacity` are kept, the oldest dropped beyond.
    pub fn new(capacity: usize) -> Self {
        Self {
            capacity,
            grants: Mutex::new(Vec::new()),
        }
    }

    /// Grants `key` on behalf of `by` until `expires_at_ms`, for `uses`
    /// more decisions.
    pub fn grant(&self, key: K, by: &str, expires_at_ms: u64, uses: u32) {
        let mut grants = self.grants.lock();
        if grants.len() >= self.capacity.max(1) {
            grants.remove(0);
        }
        grants.push(Grant {
            key,
            by: by.to_owned(),
            expires_at_ms,
            uses_left: uses,
        });
    }

    /// Decides with the first live grant for `key` at `now_ms`, if any:
    /// calls `decide` with who granted it (or `None`), and counts one use
    /// when `decide` says the grant was used. Returns what `decide`
    /// returned.
    pub fn decide<T>(
        &self,
        key: &K,
        now_ms: u64,
        decide: impl FnOnce(Option<&str>) -> (T, bool),
    ) -> T {
        let mut grants = self.grants.lock();
        let live = grants
            .iter()
            .position(|g| g.key == *key && g.uses_left > 0 && now_ms <= g.expires_at_ms);
        let by = live.and_then(|i| grants.get(i)).map(|g| g.by.clone());
        let (result, used) = decide(by.as_deref());
        if used && let Some(grant) = live.and_then(|i| grants.get_mut(i)) {
            grant.uses_left = grant.uses_left.saturating_sub(1);
        }
        result
    }
}

#[cfg(all(test, not(loom)))]
mod tests {
    use super::*;

    #[test]
    fn requests_wait_up_to_the_capacity_and_leave_once() {
        let pending = Pending::new(2);
        assert_eq!(pending.wait("a", 10), Ok(1));
        assert_eq!(pending.wait("b", 20), Ok(2));
        assert_eq!(pending.wait("c", 30), Err("c"));
        assert_eq!(pending.take_expired(15), vec![(1, "a")]);
        assert_eq!(pending.wait("d", 30), Ok(3), "ids are not reused");
        assert_eq!(pending.list(|id, r| (id, *r)), vec![(2, "b"), (3, "d")]);
        assert_eq!(pending.take(2), Some("b"));
        assert_eq!(pending.take(2), None);
        assert_eq!(pending.take_all(), vec![(3, "d")]);
        assert!(pending.is_empty());
    }

    #[test]
    fn a_grant_is_used_only_when_the_decision_used_it() {
        let grants = Grants::new(2);
        grants.grant("deploy", "op", 100, 1);
        assert_eq!(
            grants.decide(&"other", 50, |by| (by.map(str::to_owned), true)),
            None
        );
        // Decided with the grant but not because of it: not counted.
        assert!(grants.decide(&"deploy", 50, |by| (by.is_some(), false)));
        assert!(grants.decide(&"deploy", 50, |by| (by.is_some(), true)));
        assert!(
            !grants.decide(&"deploy", 50, |by| (by.is_some(), true)),
            "used up"
        );
        grants.grant("deploy", "op", 100, 5);
        assert!(
            !grants.decide(&"deploy", 101, |by| (by.is_some(), true)),
            "expired"
        );
        grants.grant("a", "op", 100, 1);
        grants.grant("b", "op", 100, 1);
        assert!(
            !grants.decide(&"deploy", 50, |by| (by.is_some(), true)),
            "oldest dropped"
        );
    }
}
