//! The system layer's per-request record: route, status class, latency and requests in flight.
//! A plain tower layer around every route, so a request costs no boxed future or cloned service
//! (which `axum::middleware::from_fn` would add), only two clock reads and one queued event.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Instant;

use axum::extract::{MatchedPath, Request};
use axum::response::Response;
use tower_layer::Layer;
use tower_service::Service;

use crate::monitor::{now_secs, Event, InFlight, Monitor};

/// Routes as monitoring names them (anything else is "other").
pub const ROUTES: [&str; 12] = [
    "/healthz",
    "/readyz",
    "/v1/model",
    "/v1/predict",
    "/v1/feedback",
    "/v1/monitoring/summary",
    "/v1/monitoring/series",
    "/v1/monitoring/alerts",
    "/v1/monitoring/buckets",
    "/metrics",
    "/openapi.json",
    "other",
];

#[derive(Clone)]
pub struct TrackLayer {
    monitor: Arc<Monitor>,
}

impl TrackLayer {
    pub fn new(monitor: Arc<Monitor>) -> Self {
        Self { monitor }
    }
}

impl<S> Layer<S> for TrackLayer {
    type Service = Track<S>;

    fn layer(&self, inner: S) -> Track<S> {
        Track {
            inner,
            monitor: Arc::clone(&self.monitor),
        }
    }
}

#[derive(Clone)]
pub struct Track<S> {
    inner: S,
    monitor: Arc<Monitor>,
}

impl<S> Service<Request> for Track<S>
where
    S: Service<Request, Response = Response, Error = Infallible>,
{
    type Response = Response;
    type Error = Infallible;
    type Future = Tracked<S::Future>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Infallible>> {
        self.inner.poll_ready(cx)
    }

    fn call(&mut self, req: Request) -> Self::Future {
        let route = req
            .extensions()
            .get::<MatchedPath>()
            .and_then(|m| ROUTES.iter().find(|r| **r == m.as_str()))
            .copied()
            .unwrap_or("other");
        let (guard, in_flight) = self.monitor.enter();
        Tracked {
            inner: self.inner.call(req),
            guard: Some(guard),
            route,
            in_flight,
            started: Instant::now(),
        }
    }
}

pin_project_lite::pin_project! {
    /// The route's own future, and what to record when it finishes.
    pub struct Tracked<F> {
        #[pin]
        inner: F,
        guard: Option<InFlight>,
        route: &'static str,
        in_flight: u64,
        started: Instant,
    }
}

impl<F> Future for Tracked<F>
where
    F: Future<Output = Result<Response, Infallible>>,
{
    type Output = Result<Response, Infallible>;

    fn poll(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Self::Output> {
        let this = self.project();
        let Ok(response) = std::task::ready!(this.inner.poll(cx));
        if let Some(guard) = this.guard.take() {
            let monitor = guard.monitor();
            monitor.record(Event::Request {
                at: now_secs(),
                route: this.route,
                status: response.status().as_u16(),
                seconds: this.started.elapsed().as_secs_f64(),
                in_flight: *this.in_flight,
            });
            drop(guard);
        }
        Poll::Ready(Ok(response))
    }
}
