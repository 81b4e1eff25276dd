//! Kept-alive connections to the local web services.
//!
//! A request goes over a connection (one tunnel stream each) that an
//! earlier request left open, when its proxy has one idle
//! ([`HttpRoute::take_idle`]); its response body, once read to the end,
//! hands the connection back ([`Pooling`]). Each connection runs in a task
//! of its own. Running them instead in the task of the user connection that
//! opened them (no task hop between hyper's server and client sides) was
//! measured: no gain (docs/performance.md), so the simpler shape stays.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use hyper::body::{Body as _, Frame, Incoming};

use super::http::HttpRoute;

/// The sending half of a client connection to a local service.
pub(crate) type Sender = hyper::client::conn::http1::SendRequest<Incoming>;

/// A response body from a kept-alive connection that hands the connection
/// back once the body has been read to its end (a body dropped before that
/// closes the connection: its rest is unread).
pub(crate) struct Pooling {
    body: Incoming,
    back: Option<(Sender, Arc<HttpRoute>)>,
}

impl Pooling {
    pub fn new(body: Incoming, sender: Sender, route: Arc<HttpRoute>) -> Pooling {
        let mut p = Pooling {
            body,
            back: Some((sender, route)),
        };
        // An empty body may never be polled.
        if p.body.is_end_stream() {
            p.release();
        }
        p
    }

    fn release(&mut self) {
        if let Some((sender, route)) = self.back.take() {
            route.keep(sender);
        }
    }
}

impl hyper::body::Body for Pooling {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let polled = Pin::new(&mut self.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => self.release(),
            Poll::Ready(Some(Ok(_))) if self.body.is_end_stream() => self.release(),
            Poll::Ready(Some(Err(_))) => self.back = None,
            _ => {}
        }
        polled
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        self.body.size_hint()
    }
}
