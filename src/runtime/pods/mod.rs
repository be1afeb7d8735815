//! Pod sandboxes, one file per CRI operation: `run` (pinned namespaces,
//! the pod's files, the network, the record), `stop` (containers stopped,
//! namespaces released, the record kept), `remove`, `status` (status and
//! list), `update` (pod-level resources after an in-place resize),
//! `checkpoint` (CheckpointPod and RestorePod).

mod checkpoint;
mod remove;
mod run;
mod status;
mod stop;
mod update;

pub(crate) use checkpoint::PodCheckpointRequest;
pub(crate) use status::PodFilter;

/// Exact ID match, else a unique prefix (crictl accepts truncated IDs).
pub(crate) fn find_by_id<T>(items: Vec<T>, id: &str, key: impl Fn(&T) -> &str) -> Option<T> {
    if id.is_empty() {
        return None;
    }
    let mut prefixed = Vec::new();
    for item in items {
        if key(&item) == id {
            return Some(item);
        }
        if key(&item).starts_with(id) {
            prefixed.push(item);
        }
    }
    (prefixed.len() == 1).then(|| prefixed.pop()).flatten()
}

#[cfg(test)]
mod tests {
    use super::find_by_id;

    fn find(ids: &[&'static str], id: &str) -> Option<&'static str> {
        find_by_id(ids.to_vec(), id, |s| s)
    }

    #[test]
    fn ids_match_exactly_or_by_a_unique_prefix() {
        let ids = ["abc123", "abd456", "abc"];
        assert_eq!(find(&ids, "abd456"), Some("abd456"));
        assert_eq!(find(&ids, "abd"), Some("abd456"));
        // An exact match wins over the prefixes it shares.
        assert_eq!(find(&ids, "abc"), Some("abc"));
        assert_eq!(find(&ids, "abc1"), Some("abc123"));
        // Ambiguous, unknown or empty: nothing.
        assert_eq!(find(&ids, "ab"), None);
        assert_eq!(find(&ids, "x"), None);
        assert_eq!(find(&ids, ""), None);
        assert_eq!(find(&[], "abc"), None);
    }
}
