//! The operator's apiserver client: kube's default stack, with the
//! responses of the project's own API group read through a
//! [`NestingLimit`], so that one object nested past what serde_json parses
//! cannot fail the LIST of every object of its kind (nesting.rs).

use std::task::{Context, Poll};

use bytes::Bytes;
use futures::future::BoxFuture;
use http::{Request, Response};
use http_body_util::BodyExt;
use http_body_util::combinators::MapFrame;
use kube::client::{Body, ClientBuilder};
use kube::{Client, Config};
use tower::{Layer, Service};

use crate::runtime::nesting::{MAX_DEPTH, NestingLimit};

/// A client from the inferred configuration (in-cluster or KUBECONFIG).
pub async fn infer() -> anyhow::Result<Client> {
    let config = Config::infer().await?;
    let builder = ClientBuilder::try_from(config)?;
    Ok(builder.with_layer(&LimitNesting).build())
}

/// Whether a request's response is one of ours, whose free-form fields a
/// tenant controls (the built-in kinds' schemas bound their nesting).
fn limited(path: &str) -> bool {
    path.strip_prefix("/apis/")
        .and_then(|rest| rest.strip_prefix(mcp_operator_api::GROUP))
        .is_some_and(|rest| rest.starts_with('/'))
}

#[derive(Clone, Copy, Debug)]
struct LimitNesting;

impl<S> Layer<S> for LimitNesting {
    type Service = LimitNestingService<S>;
    fn layer(&self, inner: S) -> Self::Service {
        LimitNestingService(inner)
    }
}

#[derive(Clone, Debug)]
struct LimitNestingService<S>(S);

type FrameFilter = Box<dyn FnMut(http_body::Frame<Bytes>) -> http_body::Frame<Bytes> + Send>;

impl<S, B> Service<Request<Body>> for LimitNestingService<S>
where
    S: Service<Request<Body>, Response = Response<B>>,
    S::Future: Send + 'static,
    B: http_body::Body<Data = Bytes>,
{
    type Response = Response<MapFrame<B, FrameFilter>>;
    type Error = S::Error;
    type Future = BoxFuture<'static, Result<Self::Response, Self::Error>>;

    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), Self::Error>> {
        self.0.poll_ready(cx)
    }

    fn call(&mut self, request: Request<Body>) -> Self::Future {
        let mut limit = limited(request.uri().path()).then(|| NestingLimit::new(MAX_DEPTH));
        let response = self.0.call(request);
        Box::pin(async move {
            let response = response.await?;
            let filter: FrameFilter = Box::new(move |frame| match limit.as_mut() {
                Some(limit) => frame.map_data(|data| limit.filter(data)),
                None => frame,
            });
            Ok(response.map(|body| body.map_frame(filter)))
        })
    }
}

#[cfg(test)]
mod tests {
    use super::limited;

    #[test]
    fn only_the_projects_group_is_limited() {
        assert!(limited("/apis/kubemcp.io/v1alpha1/mcptools"));
        assert!(limited("/apis/kubemcp.io/v1alpha1/namespaces/a/mcptools/t"));
        assert!(!limited("/api/v1/services"));
        assert!(!limited("/apis/apps/v1/deployments"));
        assert!(!limited("/apis/kubemcp.io.evil/v1/x"));
    }
}
