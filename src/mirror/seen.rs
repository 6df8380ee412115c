//! The event ids this mirror has applied, bounded: redeliveries of recent events are
//! recognised without asking the registry, and memory stays flat however long it runs.

use std::collections::{HashSet, VecDeque};

/// A set of the last `capacity` ids inserted, oldest evicted first.
#[derive(Debug)]
pub struct SeenEvents {
    order: VecDeque<String>,
    ids: HashSet<String>,
    capacity: usize,
}

impl SeenEvents {
    pub fn new(capacity: usize) -> Self {
        SeenEvents { order: VecDeque::new(), ids: HashSet::new(), capacity: capacity.max(1) }
    }

    pub fn contains(&self, id: &str) -> bool {
        self.ids.contains(id)
    }

    /// Remembers `id`, forgetting the oldest id when full.
    pub fn insert(&mut self, id: &str) {
        if !self.ids.insert(id.to_string()) {
            return;
        }
        self.order.push_back(id.to_string());
        if self.order.len() > self.capacity
            && let Some(oldest) = self.order.pop_front()
        {
            self.ids.remove(&oldest);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn remembers_the_most_recent_ids_only() {
        let mut seen = super::SeenEvents::new(2);
        for id in ["a", "b", "a", "c"] {
            seen.insert(id);
        }
        assert_eq!(["a", "b", "c"].map(|id| seen.contains(id)), [false, true, true]);
    }
}
