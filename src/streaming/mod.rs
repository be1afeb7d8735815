//! The streaming server behind CRI Exec, Attach and PortForward.
//!
//! The CRI call validates a request and parks it under a single-use token
//! ([`tokens`]); the URL it returns points at [`server`], where the client
//! (the kubelet proxying kubectl, or crictl) upgrades the connection to
//! SPDY/3.1 ([`spdy`]) or WebSocket ([`websocket`]). The session then runs
//! the remote command protocol ([`remotecommand`]) for exec and attach, or
//! forwards connections into the pod's network namespace
//! ([`portforward`]).

mod activity;
mod channel;
mod inbound;
pub(crate) mod portforward;
pub(crate) mod remotecommand;
pub(crate) mod server;
mod session;
pub(crate) mod spdy;
mod spdy_command;
mod throttle;
pub(crate) mod tokens;
mod websocket;

pub(crate) use server::StreamingServer;
pub(crate) use tokens::Pending;
