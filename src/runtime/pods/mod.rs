//! Pod sandboxes, one file per CRI operation: `run` (pinned namespaces,
//! the pod's files, the network, the record), `stop` (containers stopped,
//! namespaces released, the record kept), `remove`, `status` (status and
//! list).

mod remove;
mod run;
mod status;
mod stop;

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
