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
        let pods = self.store.list_shared::<PodRecord>()?;
        find_by_id(pods, id, |p| &p.id)
            .map(std::sync::Arc::unwrap_or_clone)
            .ok_or_else(|| RuntimeError::NotFound {
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
            .list_shared::<PodRecord>()?
            .into_iter()
            .filter(|p| filter.matches(p))
            .map(std::sync::Arc::unwrap_or_clone)
            .collect())
    }
}

impl PodFilter {
    /// Whether `p` passes every filter that is set: an ID prefix, a state,
    /// labels (all of them, with equal values).
    fn matches(&self, p: &PodRecord) -> bool {
        (self.id.is_empty() || p.id.starts_with(&self.id))
            && self.state.is_none_or(|s| p.state == s)
            && self
                .labels
                .iter()
                .all(|(k, v)| p.config.labels.get(k) == Some(v))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pod::PodConfig;

    fn pod(id: &str, state: PodState, labels: &[(&str, &str)]) -> PodRecord {
        PodRecord {
            id: id.to_owned(),
            config: PodConfig {
                labels: labels
                    .iter()
                    .map(|(k, v)| (k.to_string(), v.to_string()))
                    .collect(),
                ..Default::default()
            },
            state,
            created_at_ns: 0,
            ns_dir: String::new(),
            net_ns: None,
            ipc_ns: None,
            uts_ns: None,
            files_dir: String::new(),
            ips: Vec::new(),
            pid_ns: None,
            infra_pid: 0,
            infra_start_time: 0,
            user_ns: None,
            resources: None,
        }
    }

    fn matching(filter: &PodFilter, pods: &[PodRecord]) -> Vec<String> {
        pods.iter()
            .filter(|p| filter.matches(p))
            .map(|p| p.id.clone())
            .collect()
    }

    #[test]
    fn list_filters_combine() {
        let pods = [
            pod(
                "aa11",
                PodState::Ready,
                &[("app", "web"), ("tier", "front")],
            ),
            pod("aa22", PodState::NotReady, &[("app", "web")]),
            pod("bb33", PodState::Ready, &[("app", "db")]),
        ];
        assert_eq!(
            matching(&PodFilter::default(), &pods),
            ["aa11", "aa22", "bb33"]
        );
        let by_id = PodFilter {
            id: "aa".into(),
            ..Default::default()
        };
        assert_eq!(matching(&by_id, &pods), ["aa11", "aa22"]);
        let ready = PodFilter {
            state: Some(PodState::Ready),
            ..Default::default()
        };
        assert_eq!(matching(&ready, &pods), ["aa11", "bb33"]);
        let web_ready = PodFilter {
            id: "aa".into(),
            state: Some(PodState::Ready),
            labels: [("app".to_owned(), "web".to_owned())].into(),
        };
        assert_eq!(matching(&web_ready, &pods), ["aa11"]);
        // Every label must be there with the same value.
        let both = PodFilter {
            labels: [
                ("app".to_owned(), "web".to_owned()),
                ("tier".to_owned(), "back".to_owned()),
            ]
            .into(),
            ..Default::default()
        };
        assert!(matching(&both, &pods).is_empty());
    }
}
