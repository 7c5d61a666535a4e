//! DNS over TCP on a container's 127.0.0.11:53, each connection counted
//! against the container's and the daemon's budgets (see `budget`).
//!
//! hickory-server's own TCP listener accepts every connection and gives
//! each a task, so one container opening thousands would hold as many of
//! the daemon's file descriptors. This accept loop closes the connections
//! past a budget at once (counting them) and serves the others the way
//! hickory does: length-prefixed messages with hickory's framing, one query
//! at a time per connection, closed after [`TCP_IDLE`] without a complete
//! message (bytes trickling in do not keep it open).

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use hickory_net::runtime::TokioTime;
use hickory_net::runtime::iocompat::AsyncIoTokioAsStd;
use hickory_net::xfer::Protocol;
use hickory_proto::op::MessageType;
use hickory_server::server::{Request, RequestHandler, ResponseHandle, TimeoutStream};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinSet;
use tracing::debug;

use super::budget::Slot;
use super::server::{Handler, Shared};

/// A connection is closed after this long without a complete query.
pub const TCP_IDLE: Duration = Duration::from_secs(10);

/// Responses queued per connection: queries are handled one at a time.
const QUEUED_RESPONSES: usize = 4;

/// Pause after a failed `accept` (out of file descriptors, say), so that a
/// persistent error does not spin.
const ACCEPT_PAUSE: Duration = Duration::from_millis(100);

/// Accepts and serves connections until the task is aborted (which aborts
/// the connections' tasks too).
pub async fn serve(listener: TcpListener, handler: Handler, shared: Arc<Shared>) {
    let budget = shared.tcp_budget();
    let mut connections = JoinSet::new();
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(e) => {
                debug!(error = %e, "embedded DNS: accept failed");
                tokio::time::sleep(ACCEPT_PAUSE).await;
                continue;
            }
        };
        while connections.try_join_next().is_some() {}
        match budget.take() {
            Ok(slot) => {
                connections.spawn(connection(stream, peer, handler.clone(), slot));
            }
            // Dropped, so closed.
            Err(by) => shared.counters.tcp_rejected.count(by),
        }
    }
}

/// One connection, holding its slot of the budget until it ends.
async fn connection(stream: TcpStream, peer: SocketAddr, handler: Handler, _slot: Slot) {
    let (messages, responses) = hickory_net::tcp::TcpStream::from_stream_with_buffer_size(
        AsyncIoTokioAsStd(stream),
        peer,
        QUEUED_RESPONSES,
    );
    let mut messages = TimeoutStream::new(messages, TCP_IDLE);
    while let Some(message) = messages.next().await {
        // Idle, gone, or not DNS: the connection is of no further use.
        let (bytes, src) = match message {
            Ok(message) => message.into_parts(),
            Err(e) => {
                debug!(%peer, error = %e, "embedded DNS: TCP connection closed");
                return;
            }
        };
        let request = match Request::from_bytes(bytes, src, Protocol::Tcp) {
            Ok(request) => request,
            Err(e) => {
                debug!(%peer, error = %e, "embedded DNS: not DNS over TCP, closed");
                return;
            }
        };
        // Never answer answers (hickory's rule against reflection).
        if request.metadata.message_type == MessageType::Query {
            let response = ResponseHandle::new(src, responses.clone(), Protocol::Tcp);
            handler
                .handle_request::<_, TokioTime>(&request, response)
                .await;
        }
    }
}
