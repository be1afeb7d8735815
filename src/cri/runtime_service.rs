//! `runtime.v1.RuntimeService`.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::stub::{unimplemented, unimplemented_rpcs, NoStream};
use super::v1;
use crate::config::CgroupDriver;
use crate::runtime::Runtime;
use crate::version;

pub struct RuntimeService {
    runtime: Arc<Runtime>,
}

impl RuntimeService {
    pub fn new(runtime: Arc<Runtime>) -> Self {
        Self { runtime }
    }

    pub fn into_server(self) -> v1::runtime_service_server::RuntimeServiceServer<Self> {
        v1::runtime_service_server::RuntimeServiceServer::new(self)
    }
}

#[tonic::async_trait]
impl v1::runtime_service_server::RuntimeService for RuntimeService {
    async fn version(
        &self,
        _request: Request<v1::VersionRequest>,
    ) -> Result<Response<v1::VersionResponse>, Status> {
        Ok(Response::new(v1::VersionResponse {
            version: version::KUBELET_API_VERSION.to_owned(),
            runtime_name: version::RUNTIME_NAME.to_owned(),
            runtime_version: version::runtime_version(),
            runtime_api_version: version::CRI_API_VERSION.to_owned(),
        }))
    }

    async fn status(
        &self,
        request: Request<v1::StatusRequest>,
    ) -> Result<Response<v1::StatusResponse>, Status> {
        let conditions = self
            .runtime
            .conditions()
            .into_iter()
            .map(|c| v1::RuntimeCondition {
                r#type: c.kind.as_str().to_owned(),
                status: c.ready,
                reason: c.reason,
                message: c.message,
            })
            .collect();
        let info = if request.get_ref().verbose {
            verbose_info(&self.runtime)
        } else {
            HashMap::new()
        };
        Ok(Response::new(v1::StatusResponse {
            status: Some(v1::RuntimeStatus { conditions }),
            info,
            runtime_handlers: vec![v1::RuntimeHandler {
                name: String::new(),
                features: Some(v1::RuntimeHandlerFeatures {
                    recursive_read_only_mounts: false,
                    user_namespaces: false,
                }),
            }],
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: false,
                ..Default::default()
            }),
        }))
    }

    async fn runtime_config(
        &self,
        _request: Request<v1::RuntimeConfigRequest>,
    ) -> Result<Response<v1::RuntimeConfigResponse>, Status> {
        let driver = match self.runtime.config().cgroup_driver {
            CgroupDriver::Cgroupfs => v1::CgroupDriver::Cgroupfs,
            CgroupDriver::Systemd => v1::CgroupDriver::Systemd,
        };
        Ok(Response::new(v1::RuntimeConfigResponse {
            linux: Some(v1::LinuxRuntimeConfiguration {
                cgroup_driver: driver as i32,
            }),
        }))
    }

    type StreamPodSandboxesStream = NoStream<v1::StreamPodSandboxesResponse>;
    type StreamContainersStream = NoStream<v1::StreamContainersResponse>;
    type StreamContainerStatsStream = NoStream<v1::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = NoStream<v1::StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = NoStream<v1::ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = NoStream<v1::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandboxes(
        &self,
        _request: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        Err(unimplemented("stream_pod_sandboxes"))
    }

    async fn stream_containers(
        &self,
        _request: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        Err(unimplemented("stream_containers"))
    }

    async fn stream_container_stats(
        &self,
        _request: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        Err(unimplemented("stream_container_stats"))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        _request: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        Err(unimplemented("stream_pod_sandbox_stats"))
    }

    async fn get_container_events(
        &self,
        _request: Request<v1::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        Err(unimplemented("get_container_events"))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        Err(unimplemented("stream_pod_sandbox_metrics"))
    }

    unimplemented_rpcs! {
        run_pod_sandbox(v1::RunPodSandboxRequest) -> v1::RunPodSandboxResponse;
        stop_pod_sandbox(v1::StopPodSandboxRequest) -> v1::StopPodSandboxResponse;
        remove_pod_sandbox(v1::RemovePodSandboxRequest) -> v1::RemovePodSandboxResponse;
        pod_sandbox_status(v1::PodSandboxStatusRequest) -> v1::PodSandboxStatusResponse;
        list_pod_sandbox(v1::ListPodSandboxRequest) -> v1::ListPodSandboxResponse;
        create_container(v1::CreateContainerRequest) -> v1::CreateContainerResponse;
        start_container(v1::StartContainerRequest) -> v1::StartContainerResponse;
        stop_container(v1::StopContainerRequest) -> v1::StopContainerResponse;
        remove_container(v1::RemoveContainerRequest) -> v1::RemoveContainerResponse;
        list_containers(v1::ListContainersRequest) -> v1::ListContainersResponse;
        container_status(v1::ContainerStatusRequest) -> v1::ContainerStatusResponse;
        update_container_resources(v1::UpdateContainerResourcesRequest) -> v1::UpdateContainerResourcesResponse;
        reopen_container_log(v1::ReopenContainerLogRequest) -> v1::ReopenContainerLogResponse;
        exec_sync(v1::ExecSyncRequest) -> v1::ExecSyncResponse;
        exec(v1::ExecRequest) -> v1::ExecResponse;
        attach(v1::AttachRequest) -> v1::AttachResponse;
        port_forward(v1::PortForwardRequest) -> v1::PortForwardResponse;
        container_stats(v1::ContainerStatsRequest) -> v1::ContainerStatsResponse;
        list_container_stats(v1::ListContainerStatsRequest) -> v1::ListContainerStatsResponse;
        pod_sandbox_stats(v1::PodSandboxStatsRequest) -> v1::PodSandboxStatsResponse;
        list_pod_sandbox_stats(v1::ListPodSandboxStatsRequest) -> v1::ListPodSandboxStatsResponse;
        update_runtime_config(v1::UpdateRuntimeConfigRequest) -> v1::UpdateRuntimeConfigResponse;
        checkpoint_container(v1::CheckpointContainerRequest) -> v1::CheckpointContainerResponse;
        checkpoint_pod(v1::CheckpointPodRequest) -> v1::CheckpointPodResponse;
        restore_pod(v1::RestorePodRequest) -> v1::RestorePodResponse;
        list_metric_descriptors(v1::ListMetricDescriptorsRequest) -> v1::ListMetricDescriptorsResponse;
        list_pod_sandbox_metrics(v1::ListPodSandboxMetricsRequest) -> v1::ListPodSandboxMetricsResponse;
        update_pod_sandbox_resources(v1::UpdatePodSandboxResourcesRequest) -> v1::UpdatePodSandboxResourcesResponse;
    }
}

/// `crictl info` output: the effective configuration, as JSON strings.
fn verbose_info(runtime: &Runtime) -> HashMap<String, String> {
    let c = runtime.config();
    let config = serde_json::json!({
        "socket": c.socket,
        "stateDir": c.state_dir,
        "runtimeDir": c.runtime_dir,
        "lxcPath": c.lxc_path(),
        "cgroupDriver": format!("{:?}", c.cgroup_driver).to_lowercase(),
        "liblxcVersion": crate::lxc::version(),
    });
    HashMap::from([("config".to_owned(), config.to_string())])
}
