//! Space-Saving (Metwally, Agrawal and El Abbadi, 2005): the heaviest keys of a stream of
//! weighted increments in a fixed number of slots, each with a bound on its error.
//!
//! A tracked key adds its weight to its slot. An untracked key takes the slot of the smallest
//! count when every slot is taken, inheriting that count as its error. So for each tracked key
//! `count - error <= true sum <= count`, and `error <= total / capacity`, where `total` is the sum
//! of the positive weights seen: any key whose true sum exceeds `total / capacity` is tracked.
//! The period leaderboards publish `count - error`, the part of a sum that is certain.
//!
//! Slots live in an indexed binary min-heap on `count`, so an update or an eviction is
//! `O(log capacity)` with at most three hash lookups.

use hashbrown::HashMap;

use crate::domain::CounterKey;

/// One tracked key, and where it sits in the heap.
#[derive(Debug, Clone)]
struct Slot {
    key: CounterKey,
    count: i64,
    error: i64,
    at: usize,
}

/// The heaviest keys of one ranking's period, as seen by this process.
#[derive(Debug)]
pub struct HeavyHitters {
    capacity: usize,
    slots: Vec<Slot>,
    /// Slot numbers, a min-heap on their counts. Sifting moves these numbers and the slots'
    /// `at`, never a key, so it hashes nothing.
    heap: Vec<usize>,
    slot_of: HashMap<CounterKey, usize>,
}

impl HeavyHitters {
    pub fn new(capacity: usize) -> Self {
        let capacity = capacity.max(1);
        Self {
            capacity,
            slots: Vec::with_capacity(capacity),
            heap: Vec::with_capacity(capacity),
            slot_of: HashMap::with_capacity(capacity),
        }
    }

    /// Adds `weight` to `key` and returns what is certain of its sum (`count - error`), and
    /// whether that is all of it (the key was tracked from its first weight on).
    pub fn add(&mut self, key: &CounterKey, weight: i64) -> (i64, bool) {
        let s = if let Some(&s) = self.slot_of.get(key) {
            let slot = &mut self.slots[s];
            slot.count = slot.count.saturating_add(weight);
            s
        } else if self.slots.len() < self.capacity {
            let s = self.slots.len();
            self.slots.push(Slot {
                key: key.clone(),
                count: weight,
                error: 0,
                at: s,
            });
            self.heap.push(s);
            self.slot_of.insert(key.clone(), s);
            s
        } else {
            // Every slot is taken: the smallest count gives its slot up.
            let s = self.heap[0];
            let slot = &mut self.slots[s];
            let floor = slot.count.max(0);
            let evicted = std::mem::replace(&mut slot.key, key.clone());
            slot.count = floor.saturating_add(weight);
            slot.error = floor;
            self.slot_of.remove(&evicted);
            self.slot_of.insert(key.clone(), s);
            s
        };
        let at = self.slots[s].at;
        let at = self.sift_up(at);
        self.sift_down(at);
        let slot = &self.slots[s];
        (slot.count - slot.error, slot.error == 0)
    }

    /// Forgets `key` (its counter was reset).
    pub fn remove(&mut self, key: &CounterKey) {
        let Some(s) = self.slot_of.remove(key) else {
            return;
        };
        // The heap's last entry takes the removed one's place...
        let at = self.slots[s].at;
        let last = self.heap.pop().expect("a tracked key is in the heap");
        if at < self.heap.len() {
            self.heap[at] = last;
            self.slots[last].at = at;
            let at = self.sift_up(at);
            self.sift_down(at);
        }
        // ...and the last slot moves into the removed one's.
        let moved = self.slots.len() - 1;
        self.slots.swap_remove(s);
        if s < moved {
            let at = self.slots[s].at;
            self.heap[at] = s;
            *self
                .slot_of
                .get_mut(&self.slots[s].key)
                .expect("a slot's key is tracked") = s;
        }
    }

    /// How many keys it tracks at most.
    pub fn capacity(&self) -> usize {
        self.capacity
    }

    /// Each tracked key with the certain part of its sum, in no order.
    pub fn tracked(&self) -> impl Iterator<Item = (&CounterKey, i64)> {
        self.slots.iter().map(|s| (&s.key, s.count - s.error))
    }

    /// The certain part of `key`'s sum, if it is tracked.
    #[cfg(test)]
    pub fn certain(&self, key: &CounterKey) -> Option<i64> {
        self.slot_of
            .get(key)
            .map(|&s| self.slots[s].count - self.slots[s].error)
    }

    fn count_at(&self, at: usize) -> i64 {
        self.slots[self.heap[at]].count
    }

    fn sift_up(&mut self, mut at: usize) -> usize {
        while at > 0 {
            let parent = (at - 1) / 2;
            if self.count_at(parent) <= self.count_at(at) {
                break;
            }
            self.swap(at, parent);
            at = parent;
        }
        at
    }

    fn sift_down(&mut self, mut at: usize) -> usize {
        loop {
            let (left, right) = (2 * at + 1, 2 * at + 2);
            let mut smallest = at;
            if left < self.heap.len() && self.count_at(left) < self.count_at(smallest) {
                smallest = left;
            }
            if right < self.heap.len() && self.count_at(right) < self.count_at(smallest) {
                smallest = right;
            }
            if smallest == at {
                return at;
            }
            self.swap(at, smallest);
            at = smallest;
        }
    }

    fn swap(&mut self, a: usize, b: usize) {
        self.heap.swap(a, b);
        self.slots[self.heap[a]].at = a;
        self.slots[self.heap[b]].at = b;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    fn key(i: u32) -> CounterKey {
        CounterKey::new("view", &format!("post:{i}"))
    }

    #[test]
    fn with_room_for_every_key_the_sums_are_exact() {
        let mut hh = HeavyHitters::new(8);
        for (i, w) in [(1, 5), (2, 1), (1, 2), (3, 4), (2, -1)] {
            hh.add(&key(i), w);
        }
        assert_eq!(hh.certain(&key(1)), Some(7));
        assert_eq!(hh.certain(&key(2)), Some(0));
        assert_eq!(hh.certain(&key(3)), Some(4));
    }

    #[test]
    fn a_new_key_takes_the_smallest_slot_and_its_count_as_error() {
        let mut hh = HeavyHitters::new(2);
        hh.add(&key(1), 10);
        hh.add(&key(2), 3);
        assert_eq!(
            hh.add(&key(3), 1),
            (1, false),
            "only its own weight is certain"
        );
        assert_eq!(hh.certain(&key(2)), None, "the smallest slot went");
        assert_eq!(hh.certain(&key(1)), Some(10));
    }

    #[test]
    fn a_removed_key_is_forgotten_and_the_rest_keep_their_sums() {
        let mut hh = HeavyHitters::new(4);
        for i in 0..4 {
            hh.add(&key(i), i64::from(i) + 1);
        }
        hh.remove(&key(0));
        hh.remove(&key(9));
        assert_eq!(hh.certain(&key(0)), None);
        for i in 1..4 {
            assert_eq!(hh.certain(&key(i)), Some(i64::from(i) + 1));
        }
        assert_eq!(hh.add(&key(0), 1), (1, true));
    }

    proptest! {
        /// Adds and removals in any order, with room for every key: exact sums, and the heap's
        /// smallest is the smallest count.
        #[test]
        fn adds_and_removals_keep_exact_sums_with_room(
            ops in prop::collection::vec((0u32..30, -5i64..20, prop::bool::weighted(0.2)), 1..400),
        ) {
            let mut hh = HeavyHitters::new(64);
            let mut exact: HashMap<u32, i64> = HashMap::new();
            for &(k, w, remove) in &ops {
                if remove {
                    hh.remove(&key(k));
                    exact.remove(&k);
                } else {
                    hh.add(&key(k), w);
                    *exact.entry(k).or_default() += w;
                }
                for k in 0..30 {
                    prop_assert_eq!(hh.certain(&key(k)), exact.get(&k).copied());
                }
                if let Some(min) = exact.values().min() {
                    prop_assert_eq!(hh.count_at(0), *min);
                }
            }
        }

        /// Against exact sums: what is certain never exceeds the truth and misses at most
        /// total / capacity of it, and every key above total / capacity is tracked.
        #[test]
        fn certain_sums_are_lower_bounds_within_total_over_capacity(
            stream in prop::collection::vec((0u32..60, 1i64..20), 1..600),
            capacity in 1usize..24,
        ) {
            let mut hh = HeavyHitters::new(capacity);
            let mut exact: HashMap<u32, i64> = HashMap::new();
            let mut total = 0i64;
            for &(k, w) in &stream {
                let (certain, _) = hh.add(&key(k), w);
                *exact.entry(k).or_default() += w;
                total += w;
                prop_assert!(certain <= exact[&k]);
            }
            let bound = total / capacity as i64;
            for (&k, &sum) in &exact {
                match hh.certain(&key(k)) {
                    Some(certain) => prop_assert!(sum - certain <= bound, "{k}: {sum} vs {certain}"),
                    None => prop_assert!(sum <= bound, "{k} with {sum} > {bound} is not tracked"),
                }
            }
        }
    }
}
