//! The filters of the List* RPCs as the runtime takes them. Each Stream*
//! RPC carries the same filter message as its List call and goes through
//! the same function here, so both select the same items.

use std::collections::{BTreeMap, HashMap};

use super::{convert, v1};
use crate::runtime::{ContainerFilter, PodFilter};

/// ListPodSandbox and StreamPodSandboxes.
pub(super) fn pods(filter: Option<&v1::PodSandboxFilter>) -> PodFilter {
    match filter {
        Some(f) => PodFilter {
            id: f.id.clone(),
            state: f
                .state
                .as_ref()
                .and_then(|s| convert::pod_state_filter(s.state)),
            labels: selector(&f.label_selector),
        },
        None => PodFilter::default(),
    }
}

/// ListContainers and StreamContainers.
pub(super) fn containers(filter: Option<&v1::ContainerFilter>) -> ContainerFilter {
    match filter {
        Some(f) => ContainerFilter {
            id: f.id.clone(),
            pod_id: f.pod_sandbox_id.clone(),
            state: f
                .state
                .as_ref()
                .and_then(|s| convert::container_state_filter(s.state)),
            labels: selector(&f.label_selector),
        },
        None => ContainerFilter::default(),
    }
}

/// ListContainerStats and StreamContainerStats: no state, stats of
/// containers in every state.
pub(super) fn container_stats(filter: Option<&v1::ContainerStatsFilter>) -> ContainerFilter {
    match filter {
        Some(f) => ContainerFilter {
            id: f.id.clone(),
            pod_id: f.pod_sandbox_id.clone(),
            state: None,
            labels: selector(&f.label_selector),
        },
        None => ContainerFilter::default(),
    }
}

/// ListPodSandboxStats and StreamPodSandboxStats (the runtime keeps to
/// ready pods unless an ID is given).
pub(super) fn pod_stats(filter: Option<&v1::PodSandboxStatsFilter>) -> PodFilter {
    match filter {
        Some(f) => PodFilter {
            id: f.id.clone(),
            state: None,
            labels: selector(&f.label_selector),
        },
        None => PodFilter::default(),
    }
}

/// ListImages and StreamImages: the image reference to look up, if any.
pub(super) fn image(filter: Option<&v1::ImageFilter>) -> Option<&str> {
    filter
        .and_then(|f| f.image.as_ref())
        .map(|s| s.image.as_str())
}

/// A CRI label selector as the runtime's filters take it.
fn selector(labels: &HashMap<String, String>) -> BTreeMap<String, String> {
    labels.iter().map(|(k, v)| (k.clone(), v.clone())).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::container::ContainerState;
    use crate::pod::PodState;

    fn labels() -> HashMap<String, String> {
        HashMap::from([("app".to_owned(), "web".to_owned())])
    }

    #[test]
    fn no_filter_selects_everything() {
        let p = pods(None);
        assert!(p.id.is_empty() && p.state.is_none() && p.labels.is_empty());
        let c = containers(None);
        assert!(c.id.is_empty() && c.pod_id.is_empty() && c.state.is_none());
        assert!(c.labels.is_empty());
        assert!(container_stats(None).state.is_none());
        assert!(pod_stats(None).id.is_empty());
        assert_eq!(image(None), None);
        assert_eq!(image(Some(&v1::ImageFilter { image: None })), None);
    }

    #[test]
    fn pod_filters_carry_id_state_and_labels() {
        let f = pods(Some(&v1::PodSandboxFilter {
            id: "abc".into(),
            state: Some(v1::PodSandboxStateValue {
                state: v1::PodSandboxState::SandboxNotready as i32,
            }),
            label_selector: labels(),
        }));
        assert_eq!(f.id, "abc");
        assert_eq!(f.state, Some(PodState::NotReady));
        assert_eq!(f.labels.get("app").map(String::as_str), Some("web"));
        let s = pod_stats(Some(&v1::PodSandboxStatsFilter {
            id: "abc".into(),
            label_selector: labels(),
        }));
        assert_eq!((s.id.as_str(), s.state), ("abc", None));
        assert_eq!(s.labels, f.labels);
    }

    #[test]
    fn container_filters_carry_ids_state_and_labels() {
        let f = containers(Some(&v1::ContainerFilter {
            id: "c1".into(),
            pod_sandbox_id: "p1".into(),
            state: Some(v1::ContainerStateValue {
                state: v1::ContainerState::ContainerExited as i32,
            }),
            label_selector: labels(),
        }));
        assert_eq!((f.id.as_str(), f.pod_id.as_str()), ("c1", "p1"));
        assert_eq!(f.state, Some(ContainerState::Exited));
        let s = container_stats(Some(&v1::ContainerStatsFilter {
            id: "c1".into(),
            pod_sandbox_id: "p1".into(),
            label_selector: labels(),
        }));
        assert_eq!((s.id.as_str(), s.pod_id.as_str()), ("c1", "p1"));
        assert_eq!(s.state, None);
        assert_eq!(s.labels, f.labels);
    }

    #[test]
    fn image_filter_names_the_reference() {
        let f = v1::ImageFilter {
            image: Some(v1::ImageSpec {
                image: "busybox:1".into(),
                ..Default::default()
            }),
        };
        assert_eq!(image(Some(&f)), Some("busybox:1"));
    }
}
