//! PodSandboxStatus and ListPodSandbox.

use crate::pod::{PodRecord, PodState};
use crate::runtime::error::RuntimeError;
use crate::runtime::Runtime;

use super::find_by_id;

/// Filters of ListPodSandbox; empty fields match everything.
#[derive(Debug, Default)]
pub(crate) struct PodFilter {
    pub id: String,
    pub state: Option<PodState>,
    pub labels: std::collections::BTreeMap<String, String>,
}

impl Runtime {
    pub(crate) fn pod(&self, id: &str) -> Result<PodRecord, RuntimeError> {
        let pods = self.store.list::<PodRecord>()?;
        find_by_id(pods, id, |p| &p.id).ok_or_else(|| RuntimeError::NotFound {
            what: "pod sandbox",
            id: id.to_owned(),
        })
    }

    /// The pod, which must be ready for `purpose` (the error's message).
    pub(crate) fn ready_pod(&self, id: &str, purpose: &str) -> Result<PodRecord, RuntimeError> {
        let pod = self.pod(id)?;
        if pod.state != PodState::Ready {
            return Err(RuntimeError::WrongState {
                what: "pod sandbox",
                id: pod.id,
                state: "not ready".into(),
                message: purpose.to_owned(),
            });
        }
        Ok(pod)
    }

    pub(crate) fn list_pods(&self, filter: &PodFilter) -> Result<Vec<PodRecord>, RuntimeError> {
        Ok(self
            .store
            .list::<PodRecord>()?
            .into_iter()
            .filter(|p| filter.id.is_empty() || p.id.starts_with(&filter.id))
            .filter(|p| filter.state.is_none_or(|s| p.state == s))
            .filter(|p| {
                filter
                    .labels
                    .iter()
                    .all(|(k, v)| p.config.labels.get(k) == Some(v))
            })
            .collect())
    }
}
