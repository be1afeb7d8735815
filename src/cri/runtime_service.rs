//! `runtime.v1.RuntimeService`.

use std::collections::HashMap;
use std::sync::Arc;

use tonic::{Request, Response, Status};

use super::list_stream::{chunked, ResponseStream};
use super::status::{from_runtime_error, invalid};
use super::{convert, filters, v1};
use crate::audit::AuditLog;
use crate::config::CgroupDriver;
use crate::container::ContainerRecord;
use crate::events::Next;
use crate::pod::PodRecord;
use crate::runtime::{ContainerFilter, ContainerUsage, PodMetrics, PodUsage, Runtime, StreamStdio};
use crate::streaming::{Pending, StreamingServer};
use crate::version;

pub(crate) struct RuntimeService {
    runtime: Arc<Runtime>,
    streaming: Option<Arc<StreamingServer>>,
    audit: Arc<AuditLog>,
}

impl RuntimeService {
    pub(crate) fn new(runtime: Arc<Runtime>) -> Self {
        Self {
            runtime,
            streaming: None,
            audit: AuditLog::disabled(),
        }
    }

    /// Records the calls that change the node in `audit`.
    pub(crate) fn with_audit(mut self, audit: Arc<AuditLog>) -> Self {
        self.audit = audit;
        self
    }

    /// Serves Exec, Attach and PortForward through `server`.
    pub(crate) fn with_streaming(mut self, server: Arc<StreamingServer>) -> Self {
        self.streaming = Some(server);
        self
    }

    /// A URL for a validated streaming request.
    fn streaming_url(&self, pending: Pending) -> Result<String, Status> {
        let server = self
            .streaming
            .as_ref()
            .ok_or_else(|| Status::unavailable("the streaming server is not running"))?;
        server
            .url_for(pending)
            .ok_or_else(|| Status::resource_exhausted("too many pending streaming requests"))
    }

    pub(crate) fn into_server(self) -> v1::runtime_service_server::RuntimeServiceServer<Self> {
        v1::runtime_service_server::RuntimeServiceServer::new(self)
    }

    // What the List* calls and their Stream* forms both return, before
    // conversion: one runtime call each, so the two cannot disagree.

    fn pods(&self, filter: Option<&v1::PodSandboxFilter>) -> Result<Vec<PodRecord>, Status> {
        self.runtime
            .list_pods(&filters::pods(filter))
            .map_err(|e| from_runtime_error(&e))
    }

    fn containers(
        &self,
        filter: Option<&v1::ContainerFilter>,
    ) -> Result<Vec<ContainerRecord>, Status> {
        self.runtime
            .list_containers(&filters::containers(filter))
            .map_err(|e| from_runtime_error(&e))
    }

    async fn container_usage(
        &self,
        filter: Option<&v1::ContainerStatsFilter>,
    ) -> Result<Vec<ContainerUsage>, Status> {
        self.runtime
            .container_stats(filters::container_stats(filter))
            .await
            .map_err(|e| from_runtime_error(&e))
    }

    async fn pod_usage(
        &self,
        filter: Option<&v1::PodSandboxStatsFilter>,
    ) -> Result<Vec<PodUsage>, Status> {
        self.runtime
            .pod_stats(filters::pod_stats(filter))
            .await
            .map_err(|e| from_runtime_error(&e))
    }

    async fn pod_metrics(&self) -> Result<Vec<PodMetrics>, Status> {
        self.runtime
            .pod_metrics()
            .await
            .map_err(|e| from_runtime_error(&e))
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
        self.runtime.refresh_network_readiness().await;
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
            runtime_handlers: self
                .runtime
                .config()
                .runtime_handlers
                .iter()
                .map(|name| v1::RuntimeHandler {
                    name: name.clone(),
                    features: Some(v1::RuntimeHandlerFeatures {
                        recursive_read_only_mounts: self.runtime.supports_recursive_read_only(),
                        user_namespaces: self.runtime.supports_user_namespaces(),
                    }),
                })
                .collect(),
            features: Some(v1::RuntimeFeatures {
                supplemental_groups_policy: true,
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

    async fn run_pod_sandbox(
        &self,
        request: Request<v1::RunPodSandboxRequest>,
    ) -> Result<Response<v1::RunPodSandboxResponse>, Status> {
        let scope = self
            .audit
            .scope("RunPodSandbox", &request)
            .name(&pod_name(request.get_ref()));
        let result: Result<Response<v1::RunPodSandboxResponse>, Status> = async move {
            let config =
                convert::pod_config(request.get_ref(), &self.runtime.config().runtime_handlers)?;
            let id = self
                .runtime
                .run_pod(config)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::RunPodSandboxResponse {
                pod_sandbox_id: id,
            }))
        }
        .await;
        let scope = match &result {
            Ok(r) => scope.pod(&r.get_ref().pod_sandbox_id),
            Err(_) => scope,
        };
        scope.finish(result)
    }

    async fn stop_pod_sandbox(
        &self,
        request: Request<v1::StopPodSandboxRequest>,
    ) -> Result<Response<v1::StopPodSandboxResponse>, Status> {
        let scope = self
            .audit
            .scope("StopPodSandbox", &request)
            .pod(&request.get_ref().pod_sandbox_id);
        let result: Result<Response<v1::StopPodSandboxResponse>, Status> = async move {
            let id = required_id("pod_sandbox_id", &request.get_ref().pod_sandbox_id)?;
            self.runtime
                .stop_pod(id)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::StopPodSandboxResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn remove_pod_sandbox(
        &self,
        request: Request<v1::RemovePodSandboxRequest>,
    ) -> Result<Response<v1::RemovePodSandboxResponse>, Status> {
        let scope = self
            .audit
            .scope("RemovePodSandbox", &request)
            .pod(&request.get_ref().pod_sandbox_id);
        let result: Result<Response<v1::RemovePodSandboxResponse>, Status> = async move {
            let id = required_id("pod_sandbox_id", &request.get_ref().pod_sandbox_id)?;
            self.runtime
                .remove_pod(id)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::RemovePodSandboxResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn pod_sandbox_status(
        &self,
        request: Request<v1::PodSandboxStatusRequest>,
    ) -> Result<Response<v1::PodSandboxStatusResponse>, Status> {
        let req = request.get_ref();
        let id = required_id("pod_sandbox_id", &req.pod_sandbox_id)?;
        let pod = self.runtime.pod(id).map_err(|e| from_runtime_error(&e))?;
        // Always: the kubelet's evented PLEG reads the containers'
        // statuses from a non-verbose call.
        let containers: Vec<_> = self
            .runtime
            .list_containers(&ContainerFilter {
                pod_id: pod.id.clone(),
                ..Default::default()
            })
            .map_err(|e| from_runtime_error(&e))?
            .into_iter()
            .filter(|c| c.pod_id == pod.id)
            .collect();
        let mut info = HashMap::new();
        if req.verbose {
            let mut detail = serde_json::json!({
                "nsDir": pod.ns_dir,
                "netns": pod.net_ns,
                "filesDir": pod.files_dir,
                "config": pod.config,
                "resources": pod.resources,
            });
            // CNI CHECK on request only: the kubelet's frequent calls are
            // not verbose, and each CHECK runs every plugin of the list.
            if let Some(check) = self.runtime.check_pod_network(&pod.id).await {
                detail["networkCheck"] = match check {
                    Ok(()) => serde_json::json!({"ok": true}),
                    Err(error) => serde_json::json!({"ok": false, "error": error}),
                };
            }
            info.insert("info".to_owned(), detail.to_string());
        }
        Ok(Response::new(v1::PodSandboxStatusResponse {
            status: Some(convert::pod_status(&pod)),
            info,
            containers_statuses: containers.iter().map(convert::container_status).collect(),
            timestamp: crate::runtime::now_ns(),
        }))
    }

    async fn list_pod_sandbox(
        &self,
        request: Request<v1::ListPodSandboxRequest>,
    ) -> Result<Response<v1::ListPodSandboxResponse>, Status> {
        let pods = self.pods(request.get_ref().filter.as_ref())?;
        Ok(Response::new(v1::ListPodSandboxResponse {
            items: pods.iter().map(convert::pod_summary).collect(),
        }))
    }

    async fn create_container(
        &self,
        request: Request<v1::CreateContainerRequest>,
    ) -> Result<Response<v1::CreateContainerResponse>, Status> {
        let scope = self
            .audit
            .scope("CreateContainer", &request)
            .pod(&request.get_ref().pod_sandbox_id)
            .name(&container_name(request.get_ref()))
            .image(&container_image(request.get_ref()));
        let result: Result<Response<v1::CreateContainerResponse>, Status> = async move {
            let req = request.get_ref();
            let pod_id = required_id("pod_sandbox_id", &req.pod_sandbox_id)?;
            let config = req
                .config
                .as_ref()
                .ok_or_else(|| invalid("config", "a container config is required"))
                .and_then(convert::container_config)?;
            let id = self
                .runtime
                .create_container(pod_id, config)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::CreateContainerResponse {
                container_id: id,
            }))
        }
        .await;
        let scope = match &result {
            Ok(r) => scope.container(&r.get_ref().container_id),
            Err(_) => scope,
        };
        scope.finish(result)
    }

    async fn start_container(
        &self,
        request: Request<v1::StartContainerRequest>,
    ) -> Result<Response<v1::StartContainerResponse>, Status> {
        let scope = self
            .audit
            .scope("StartContainer", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::StartContainerResponse>, Status> = async move {
            let id = required_id("container_id", &request.get_ref().container_id)?.to_owned();
            // In a task of its own: a client that gives up (the kubelet's
            // deadline, shorter than a large restore) does not cancel a
            // start half-way, leaving a running workload recorded as
            // created.
            let runtime = self.runtime.clone();
            tokio::spawn(async move { runtime.start_container(&id).await })
                .await
                .map_err(|e| Status::internal(format!("the start task failed: {e}")))?
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::StartContainerResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn stop_container(
        &self,
        request: Request<v1::StopContainerRequest>,
    ) -> Result<Response<v1::StopContainerResponse>, Status> {
        let scope = self
            .audit
            .scope("StopContainer", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::StopContainerResponse>, Status> = async move {
            let req = request.get_ref();
            let id = required_id("container_id", &req.container_id)?;
            self.runtime
                .stop_container(id, req.timeout)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::StopContainerResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn remove_container(
        &self,
        request: Request<v1::RemoveContainerRequest>,
    ) -> Result<Response<v1::RemoveContainerResponse>, Status> {
        let scope = self
            .audit
            .scope("RemoveContainer", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::RemoveContainerResponse>, Status> = async move {
            let id = required_id("container_id", &request.get_ref().container_id)?;
            self.runtime
                .remove_container(id)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::RemoveContainerResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn list_containers(
        &self,
        request: Request<v1::ListContainersRequest>,
    ) -> Result<Response<v1::ListContainersResponse>, Status> {
        let containers = self.containers(request.get_ref().filter.as_ref())?;
        Ok(Response::new(v1::ListContainersResponse {
            containers: containers.iter().map(convert::container_summary).collect(),
        }))
    }

    async fn container_status(
        &self,
        request: Request<v1::ContainerStatusRequest>,
    ) -> Result<Response<v1::ContainerStatusResponse>, Status> {
        let req = request.get_ref();
        let id = required_id("container_id", &req.container_id)?;
        let c = self
            .runtime
            .container(id)
            .map_err(|e| from_runtime_error(&e))?;
        let mut info = HashMap::new();
        if req.verbose {
            let detail = serde_json::json!({
                "pid": c.init_pid,
                "cgroup": c.cgroup,
                "config": c.config,
            });
            info.insert("info".to_owned(), detail.to_string());
        }
        Ok(Response::new(v1::ContainerStatusResponse {
            status: Some(convert::container_status(&c)),
            info,
        }))
    }

    async fn update_container_resources(
        &self,
        request: Request<v1::UpdateContainerResourcesRequest>,
    ) -> Result<Response<v1::UpdateContainerResourcesResponse>, Status> {
        let scope = self
            .audit
            .scope("UpdateContainerResources", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::UpdateContainerResourcesResponse>, Status> = async move {
            let req = request.get_ref();
            let id = required_id("container_id", &req.container_id)?;
            let resources = convert::checked_resources("linux", req.linux.as_ref())?;
            self.runtime
                .update_container_resources(id, resources)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::UpdateContainerResourcesResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn reopen_container_log(
        &self,
        request: Request<v1::ReopenContainerLogRequest>,
    ) -> Result<Response<v1::ReopenContainerLogResponse>, Status> {
        let id = required_id("container_id", &request.get_ref().container_id)?;
        self.runtime
            .reopen_container_log(id)
            .await
            .map_err(|e| from_runtime_error(&e))?;
        Ok(Response::new(v1::ReopenContainerLogResponse {}))
    }

    async fn exec_sync(
        &self,
        request: Request<v1::ExecSyncRequest>,
    ) -> Result<Response<v1::ExecSyncResponse>, Status> {
        let scope = self
            .audit
            .scope("ExecSync", &request)
            .container(&request.get_ref().container_id)
            .command(&request.get_ref().cmd);
        let result: Result<Response<v1::ExecSyncResponse>, Status> = async move {
            let req = request.into_inner();
            let id = required_id("container_id", &req.container_id)?.to_owned();
            convert::exec_command(&req.cmd)?;
            let timeout = std::time::Duration::from_secs(req.timeout.max(0) as u64);
            let out = self
                .runtime
                .exec_sync(&id, req.cmd, timeout)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::ExecSyncResponse {
                stdout: out.stdout,
                stderr: out.stderr,
                exit_code: out.exit_code,
            }))
        }
        .await;
        scope.finish(result)
    }

    async fn exec(
        &self,
        request: Request<v1::ExecRequest>,
    ) -> Result<Response<v1::ExecResponse>, Status> {
        let scope = self
            .audit
            .scope("Exec", &request)
            .container(&request.get_ref().container_id)
            .command(&request.get_ref().cmd);
        let result: Result<Response<v1::ExecResponse>, Status> = async move {
            let req = request.into_inner();
            let stdio = stream_stdio(req.stdin, req.stdout, req.stderr, req.tty);
            convert::exec_command(&req.cmd)?;
            let container_id = self
                .runtime
                .check_exec(&req.container_id, &req.cmd, stdio)
                .map_err(|e| from_runtime_error(&e))?;
            let url = self.streaming_url(Pending::Exec {
                container_id,
                cmd: req.cmd,
                stdio,
            })?;
            Ok(Response::new(v1::ExecResponse { url }))
        }
        .await;
        scope.finish(result)
    }

    async fn attach(
        &self,
        request: Request<v1::AttachRequest>,
    ) -> Result<Response<v1::AttachResponse>, Status> {
        let scope = self
            .audit
            .scope("Attach", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::AttachResponse>, Status> = async move {
            let req = request.into_inner();
            let stdio = stream_stdio(req.stdin, req.stdout, req.stderr, req.tty);
            let container_id = self
                .runtime
                .check_attach(&req.container_id, stdio)
                .map_err(|e| from_runtime_error(&e))?;
            let url = self.streaming_url(Pending::Attach {
                container_id,
                stdio,
            })?;
            Ok(Response::new(v1::AttachResponse { url }))
        }
        .await;
        scope.finish(result)
    }

    async fn port_forward(
        &self,
        request: Request<v1::PortForwardRequest>,
    ) -> Result<Response<v1::PortForwardResponse>, Status> {
        let scope = self
            .audit
            .scope("PortForward", &request)
            .pod(&request.get_ref().pod_sandbox_id);
        let result: Result<Response<v1::PortForwardResponse>, Status> = async move {
            let req = request.into_inner();
            if let Some(port) = req.port.iter().find(|p| !(1..=65535).contains(*p)) {
                return Err(invalid("port", format!("{port} is not a TCP port")));
            }
            let (pod_id, net_ns) = self
                .runtime
                .check_port_forward(&req.pod_sandbox_id)
                .map_err(|e| from_runtime_error(&e))?;
            let url = self.streaming_url(Pending::PortForward { pod_id, net_ns })?;
            Ok(Response::new(v1::PortForwardResponse { url }))
        }
        .await;
        scope.finish(result)
    }

    type StreamPodSandboxesStream = ResponseStream<v1::StreamPodSandboxesResponse>;
    type StreamContainersStream = ResponseStream<v1::StreamContainersResponse>;
    type StreamContainerStatsStream = ResponseStream<v1::StreamContainerStatsResponse>;
    type StreamPodSandboxStatsStream = ResponseStream<v1::StreamPodSandboxStatsResponse>;
    type GetContainerEventsStream = ResponseStream<v1::ContainerEventResponse>;
    type StreamPodSandboxMetricsStream = ResponseStream<v1::StreamPodSandboxMetricsResponse>;

    async fn stream_pod_sandboxes(
        &self,
        request: Request<v1::StreamPodSandboxesRequest>,
    ) -> Result<Response<Self::StreamPodSandboxesStream>, Status> {
        let pods = self.pods(request.get_ref().filter.as_ref())?;
        Ok(Response::new(chunked(
            pods,
            convert::pod_summary,
            |pod_sandboxes| v1::StreamPodSandboxesResponse { pod_sandboxes },
        )))
    }

    async fn stream_containers(
        &self,
        request: Request<v1::StreamContainersRequest>,
    ) -> Result<Response<Self::StreamContainersStream>, Status> {
        let containers = self.containers(request.get_ref().filter.as_ref())?;
        Ok(Response::new(chunked(
            containers,
            convert::container_summary,
            |containers| v1::StreamContainersResponse { containers },
        )))
    }

    async fn stream_container_stats(
        &self,
        request: Request<v1::StreamContainerStatsRequest>,
    ) -> Result<Response<Self::StreamContainerStatsStream>, Status> {
        let usage = self
            .container_usage(request.get_ref().filter.as_ref())
            .await?;
        Ok(Response::new(chunked(
            usage,
            convert::container_stats,
            |container_stats| v1::StreamContainerStatsResponse { container_stats },
        )))
    }

    async fn stream_pod_sandbox_stats(
        &self,
        request: Request<v1::StreamPodSandboxStatsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxStatsStream>, Status> {
        let usage = self.pod_usage(request.get_ref().filter.as_ref()).await?;
        Ok(Response::new(chunked(
            usage,
            convert::pod_stats,
            |pod_sandbox_stats| v1::StreamPodSandboxStatsResponse { pod_sandbox_stats },
        )))
    }

    async fn get_container_events(
        &self,
        _request: Request<v1::GetEventsRequest>,
    ) -> Result<Response<Self::GetContainerEventsStream>, Status> {
        let sub = self.runtime.events().subscribe();
        let stream = futures_util::stream::unfold(sub, |mut sub| async move {
            loop {
                match sub.next().await {
                    Next::Event(e) => return Some((Ok(convert::container_event(&e)), sub)),
                    Next::Lost(n) => {
                        tracing::warn!(
                            lost = n,
                            "an event subscriber fell behind; oldest events dropped"
                        )
                    }
                    Next::Closed => return None,
                }
            }
        });
        Ok(Response::new(Box::pin(stream)))
    }

    async fn list_metric_descriptors(
        &self,
        _request: Request<v1::ListMetricDescriptorsRequest>,
    ) -> Result<Response<v1::ListMetricDescriptorsResponse>, Status> {
        Ok(Response::new(v1::ListMetricDescriptorsResponse {
            descriptors: convert::metric_descriptors(),
        }))
    }

    async fn list_pod_sandbox_metrics(
        &self,
        _request: Request<v1::ListPodSandboxMetricsRequest>,
    ) -> Result<Response<v1::ListPodSandboxMetricsResponse>, Status> {
        let metrics = self.pod_metrics().await?;
        Ok(Response::new(v1::ListPodSandboxMetricsResponse {
            pod_metrics: metrics.iter().map(convert::pod_sandbox_metrics).collect(),
        }))
    }

    async fn container_stats(
        &self,
        request: Request<v1::ContainerStatsRequest>,
    ) -> Result<Response<v1::ContainerStatsResponse>, Status> {
        let id = required_id("container_id", &request.get_ref().container_id)?;
        let usage = self
            .runtime
            .one_container_stats(id.to_owned())
            .await
            .map_err(|e| from_runtime_error(&e))?;
        Ok(Response::new(v1::ContainerStatsResponse {
            stats: Some(convert::container_stats(&usage)),
        }))
    }

    async fn list_container_stats(
        &self,
        request: Request<v1::ListContainerStatsRequest>,
    ) -> Result<Response<v1::ListContainerStatsResponse>, Status> {
        let usage = self
            .container_usage(request.get_ref().filter.as_ref())
            .await?;
        Ok(Response::new(v1::ListContainerStatsResponse {
            stats: usage.iter().map(convert::container_stats).collect(),
        }))
    }

    async fn pod_sandbox_stats(
        &self,
        request: Request<v1::PodSandboxStatsRequest>,
    ) -> Result<Response<v1::PodSandboxStatsResponse>, Status> {
        let id = required_id("pod_sandbox_id", &request.get_ref().pod_sandbox_id)?;
        let usage = self
            .runtime
            .one_pod_stats(id.to_owned())
            .await
            .map_err(|e| from_runtime_error(&e))?;
        Ok(Response::new(v1::PodSandboxStatsResponse {
            stats: Some(convert::pod_stats(&usage)),
        }))
    }

    async fn list_pod_sandbox_stats(
        &self,
        request: Request<v1::ListPodSandboxStatsRequest>,
    ) -> Result<Response<v1::ListPodSandboxStatsResponse>, Status> {
        let usage = self.pod_usage(request.get_ref().filter.as_ref()).await?;
        Ok(Response::new(v1::ListPodSandboxStatsResponse {
            stats: usage.iter().map(convert::pod_stats).collect(),
        }))
    }

    async fn stream_pod_sandbox_metrics(
        &self,
        _request: Request<v1::StreamPodSandboxMetricsRequest>,
    ) -> Result<Response<Self::StreamPodSandboxMetricsStream>, Status> {
        let metrics = self.pod_metrics().await?;
        Ok(Response::new(chunked(
            metrics,
            convert::pod_sandbox_metrics,
            |pod_sandbox_metrics| v1::StreamPodSandboxMetricsResponse {
                pod_sandbox_metrics,
            },
        )))
    }

    async fn update_runtime_config(
        &self,
        request: Request<v1::UpdateRuntimeConfigRequest>,
    ) -> Result<Response<v1::UpdateRuntimeConfigResponse>, Status> {
        let scope = self.audit.scope("UpdateRuntimeConfig", &request);
        let result: Result<Response<v1::UpdateRuntimeConfigResponse>, Status> = async move {
            let pod_cidr = request
                .into_inner()
                .runtime_config
                .and_then(|c| c.network_config)
                .map(|n| n.pod_cidr)
                .unwrap_or_default();
            if !pod_cidr.is_empty() {
                self.runtime
                    .set_pod_cidrs(&pod_cidr)
                    .await
                    .map_err(|e| from_runtime_error(&e))?;
            }
            Ok(Response::new(v1::UpdateRuntimeConfigResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn update_pod_sandbox_resources(
        &self,
        request: Request<v1::UpdatePodSandboxResourcesRequest>,
    ) -> Result<Response<v1::UpdatePodSandboxResourcesResponse>, Status> {
        let scope = self
            .audit
            .scope("UpdatePodSandboxResources", &request)
            .pod(&request.get_ref().pod_sandbox_id);
        let result: Result<Response<v1::UpdatePodSandboxResourcesResponse>, Status> = async move {
            let req = request.get_ref();
            let id = required_id("pod_sandbox_id", &req.pod_sandbox_id)?;
            let resources = crate::pod::PodResources {
                overhead: convert::checked_resources("overhead", req.overhead.as_ref())?,
                resources: convert::checked_resources("resources", req.resources.as_ref())?,
            };
            self.runtime
                .update_pod_resources(id, resources)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::UpdatePodSandboxResourcesResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn checkpoint_container(
        &self,
        request: Request<v1::CheckpointContainerRequest>,
    ) -> Result<Response<v1::CheckpointContainerResponse>, Status> {
        let scope = self
            .audit
            .scope("CheckpointContainer", &request)
            .container(&request.get_ref().container_id);
        let result: Result<Response<v1::CheckpointContainerResponse>, Status> = async move {
            let req = request.get_ref();
            let id = required_id("container_id", &req.container_id)?;
            let checkpoint = convert::checkpoint_request(req)?;
            self.runtime
                .checkpoint_container(id, checkpoint)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::CheckpointContainerResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn checkpoint_pod(
        &self,
        request: Request<v1::CheckpointPodRequest>,
    ) -> Result<Response<v1::CheckpointPodResponse>, Status> {
        let scope = self
            .audit
            .scope("CheckpointPod", &request)
            .pod(&request.get_ref().pod_sandbox_id);
        let result: Result<Response<v1::CheckpointPodResponse>, Status> = async move {
            let req = request.get_ref();
            let id = required_id("pod_sandbox_id", &req.pod_sandbox_id)?;
            let checkpoint = convert::pod_checkpoint_request(req)?;
            self.runtime
                .checkpoint_pod(id, checkpoint)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::CheckpointPodResponse {}))
        }
        .await;
        scope.finish(result)
    }

    async fn restore_pod(
        &self,
        request: Request<v1::RestorePodRequest>,
    ) -> Result<Response<v1::RestorePodResponse>, Status> {
        let scope = self
            .audit
            .scope("RestorePod", &request)
            .image(&request.get_ref().checkpoint_path);
        let result: Result<Response<v1::RestorePodResponse>, Status> = async move {
            let req = request.get_ref();
            let archive = convert::restore_pod_archive(req)?;
            convert::restore_pod_configs(req, &self.runtime.config().runtime_handlers)?;
            let unpacked = self
                .runtime
                .open_pod_archive(&archive)
                .await
                .map_err(|e| from_runtime_error(&e))?;
            // Every config is validated here, like the requests they were:
            // nothing of the archive's records is trusted.
            let pod_config = convert::restored_pod_config(
                req,
                &unpacked.dump.pod_request,
                &self.runtime.config().runtime_handlers,
            )?;
            let containers = unpacked
                .dump
                .containers
                .iter()
                .map(|c| {
                    convert::restored_container_config(
                        req,
                        &c.name,
                        &c.request,
                        &unpacked.archive_of(c),
                    )
                    .map(|config| (c.name.clone(), config))
                })
                .collect::<Result<Vec<_>, Status>>()?;
            if let Some(name) = req
                .container_configs
                .iter()
                .filter_map(|c| c.metadata.as_ref().map(|m| m.name.as_str()))
                .find(|n| !unpacked.dump.containers.iter().any(|c| c.name == *n))
            {
                return Err(invalid(
                    "container_configs",
                    format!("the archive has no container {name:?}"),
                ));
            }
            // In a task of its own, with the unpacked archive: a client that
            // gives up does not cancel the restore half-way (see
            // start_container).
            let runtime = self.runtime.clone();
            let (pod, containers) = tokio::spawn(async move {
                let done = runtime.restore_pod(pod_config, containers).await;
                // Removing the unpacked archive may take a while.
                let _ = tokio::task::spawn_blocking(move || drop(unpacked)).await;
                done
            })
            .await
            .map_err(|e| Status::internal(format!("the restore task failed: {e}")))?
            .map_err(|e| from_runtime_error(&e))?;
            Ok(Response::new(v1::RestorePodResponse {
                pod_sandbox_id: pod,
                restored_containers: containers
                    .into_iter()
                    .map(|(name, container_id)| v1::RestoredContainer { name, container_id })
                    .collect(),
            }))
        }
        .await;
        let scope = match &result {
            Ok(r) => scope.pod(&r.get_ref().pod_sandbox_id),
            Err(_) => scope,
        };
        scope.finish(result)
    }
}

/// `namespace/name` of the pod a RunPodSandbox request asks for.
fn pod_name(req: &v1::RunPodSandboxRequest) -> String {
    req.config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| format!("{}/{}", m.namespace, m.name))
        .unwrap_or_default()
}

/// The container name a CreateContainer request asks for.
fn container_name(req: &v1::CreateContainerRequest) -> String {
    req.config
        .as_ref()
        .and_then(|c| c.metadata.as_ref())
        .map(|m| m.name.clone())
        .unwrap_or_default()
}

/// The image a CreateContainer request names.
fn container_image(req: &v1::CreateContainerRequest) -> String {
    req.config
        .as_ref()
        .and_then(|c| c.image.as_ref())
        .map(|i| i.image.clone())
        .unwrap_or_default()
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

fn stream_stdio(stdin: bool, stdout: bool, stderr: bool, tty: bool) -> StreamStdio {
    StreamStdio {
        stdin,
        stdout,
        stderr,
        tty,
    }
}

fn required_id<'a>(field: &str, id: &'a str) -> Result<&'a str, Status> {
    if id.is_empty() {
        return Err(invalid(field, "an ID is required"));
    }
    crate::security::input::check_text(id).map_err(|e| invalid(field, e))?;
    Ok(id)
}
