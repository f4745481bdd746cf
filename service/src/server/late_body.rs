//! HTTP/2 request bodies still arriving after their answer. A route may answer before it reads
//! the body: 401, 403 and 429 from the gate, 404, 405, 415. Over HTTP/1.1 hyper reads the rest
//! of such a body itself. Over HTTP/2, dropping the unread body makes hyper end the stream with
//! `RST_STREAM(NO_ERROR)` right behind the answer, and clients such as curl 7.88 then report a
//! framing error (exit code 92) or an empty reply (52) instead of the answer. That happens
//! whenever the body's DATA frame comes later than the headers, as it does on a busy link.
//!
//! [`LateBody`] keeps such a body: dropped before its end, it reads the rest on a task of its
//! own and discards it, at most [`DRAIN_LIMIT`] bytes within `server.body_read_timeout_ms`.
//! The stream then ends normally, after the answer. A body read to its end, as on every
//! accepted request, costs nothing more than a flag test.

use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::BodyExt;
use hyper::body::{Body as HttpBody, Frame, Incoming, SizeHint};

use crate::api::json::DRAIN_LIMIT;

/// An HTTP/2 request body that is read to its end even when its handler does not.
pub struct LateBody {
    body: Option<Incoming>,
    read_timeout: Duration,
}

impl LateBody {
    pub fn new(body: Incoming, read_timeout: Duration) -> Self {
        Self {
            body: Some(body),
            read_timeout,
        }
    }
}

impl HttpBody for LateBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        match &mut self.get_mut().body {
            Some(body) => Pin::new(body).poll_frame(cx),
            None => Poll::Ready(None),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.body.as_ref().is_none_or(HttpBody::is_end_stream)
    }

    fn size_hint(&self) -> SizeHint {
        self.body
            .as_ref()
            .map_or_else(|| SizeHint::with_exact(0), HttpBody::size_hint)
    }
}

impl Drop for LateBody {
    fn drop(&mut self) {
        let Some(mut body) = self.body.take() else {
            return;
        };
        if body.is_end_stream() {
            return;
        }
        // Outside a runtime (the process is ending), the stream goes with its connection.
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let read_timeout = self.read_timeout;
        runtime.spawn(async move {
            let discard = async {
                let mut seen = 0usize;
                while let Some(Ok(frame)) = body.frame().await {
                    seen += frame.data_ref().map_or(0, Bytes::len);
                    if seen > DRAIN_LIMIT {
                        break;
                    }
                }
            };
            let _ = tokio::time::timeout(read_timeout, discard).await;
        });
    }
}
