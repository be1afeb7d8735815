//! Pod sandboxes as pvecri keeps them: the record and its configuration.
//! The OS work (namespaces, pod files) is in `crate::sandbox`; the
//! orchestration with containers in `crate::runtime`.

pub(crate) mod record;

pub(crate) use record::{NsMode, PodConfig, PodRecord, PodResources, PodState};
