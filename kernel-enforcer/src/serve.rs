//! The transport: joining the client's channel and serving frames.

use crate::session::Session;
use ipc_channel::{IpcError, TryRecvError};
use std::time::Duration;

/// How often an idle session checks whether a checkpoint is due.
const IDLE_TICK: Duration = Duration::from_millis(500);
/// Most frames handled (and committed with one `fdatasync`) together.
const MAX_BATCH: usize = 256;
use ipc_channel::ipc::{self, IpcReceiver, IpcSender};
use kernel_core::{EnforcerFrame, Refusal, encode_enforcer_frame};

/// What the enforcer sends to the client's one-shot server: the client's
/// ends of the two channels (requests in, replies out).
pub type ClientEnds = (IpcSender<Vec<u8>>, IpcReceiver<Vec<u8>>);

/// Why serving stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServeError {
    /// The channel could not be set up.
    #[error("cannot set up the channel to the client: {0}")]
    Channel(String),
}

/// Connects to the client's one-shot server `name`, hands it its ends of
/// two fresh channels, and serves frames until the client goes away.
pub fn serve(name: String, session: &mut Session) -> Result<(), ServeError> {
    let channel = |e: std::io::Error| ServeError::Channel(e.to_string());
    let (requests_tx, requests) = ipc::channel::<Vec<u8>>().map_err(channel)?;
    let (replies, replies_rx) = ipc::channel::<Vec<u8>>().map_err(channel)?;
    let bootstrap = IpcSender::<ClientEnds>::connect(name).map_err(channel)?;
    bootstrap
        .send((requests_tx, replies_rx))
        .map_err(|e| ServeError::Channel(e.to_string()))?;
    drop(bootstrap);
    serve_channels(&requests, &replies, session);
    Ok(())
}

/// Serves frames from `requests` until the peer disconnects or the reply
/// channel breaks, writing checkpoints when due and a final one at the end.
pub fn serve_channels(
    requests: &IpcReceiver<Vec<u8>>,
    replies: &IpcSender<Vec<u8>>,
    session: &mut Session,
) {
    'serving: loop {
        let first = match requests.try_recv_timeout(IDLE_TICK) {
            Ok(frame) => frame,
            Err(TryRecvError::Empty) => {
                session.tick();
                continue;
            }
            Err(TryRecvError::IpcError(IpcError::SerializationError(e))) => {
                let refusal = encode_enforcer_frame(&EnforcerFrame::Refused {
                    seq: None,
                    refusal: Refusal::Malformed(e.to_string()),
                });
                if replies.send(refusal).is_err() {
                    break;
                }
                continue;
            }
            Err(TryRecvError::IpcError(IpcError::Disconnected | IpcError::Io(_))) => break,
        };
        // Whatever else has already arrived is decided with it and shares
        // its fdatasync. Errors end the batch; the next receive sees them.
        let mut batch = vec![first];
        while batch.len() < MAX_BATCH {
            match requests.try_recv() {
                Ok(frame) => batch.push(frame),
                Err(_) => break,
            }
        }
        for reply in session.handle_batch(&batch) {
            if replies.send(reply).is_err() {
                break 'serving;
            }
        }
    }
    session.finish();
}
