//! The member reconciler, one for all three kinds: check the spec, resolve
//! the backend from the Service store, and write the conditions when they
//! changed, with an Event for each condition that flips (runtime/events.rs).
//! An invalid member waits for its next change; a Service event re-checks
//! the members that point at it.

use std::sync::Arc;

use k8s_openapi::api::core::v1::Service;
use k8s_openapi::jiff::Timestamp;
use kube::ResourceExt;
use kube::runtime::controller::Action;
use kube::runtime::reflector::ObjectRef;

use crate::context::Context;
use crate::error::{AtStage, Error, Stage};
use crate::member::backend;
use crate::member::{self, Member};
use crate::runtime::conditions::{self, BACKEND_RESOLVED, Desired, READY, SCHEMA_VALID};
use crate::runtime::{events, status, telemetry};

#[tracing::instrument(skip_all, fields(kind = M::KIND.as_str(), namespace = member.namespace(), name = %member.name_any()))]
pub async fn reconcile<M: Member>(member: Arc<M>, ctx: Arc<Context>) -> Result<Action, Error> {
    let namespace = member.namespace().ok_or(Error::Incomplete("namespace"))?;
    if !ctx.scope.includes(&namespace) {
        return Ok(Action::await_change());
    }
    // Another replica's shard: not this replica's reconcile, nor counted.
    if let Err(wait) = ctx.shards.ownership(&namespace).token() {
        return Ok(wait);
    }
    let mut timer = telemetry::ReconcileTimer::start(M::KIND.as_str());
    let result = check_and_record(&*member, &namespace, &ctx).await;
    if let Err(error) = &result {
        timer.failed(error);
        events::reconcile_failed(&ctx.recorder, &member.object_ref(&()), error).await;
    }
    result
}

async fn check_and_record<M: Member>(
    member: &M,
    namespace: &str,
    ctx: &Context,
) -> Result<Action, Error> {
    let (desired, endpoint) = check(member, namespace, ctx);
    let generation = member.meta().generation;
    let conditions = conditions::merge(member.conditions(), &desired, generation, Timestamp::now());
    let unchanged =
        conditions == member.conditions() && endpoint.as_deref() == member.resolved_endpoint();
    if !unchanged {
        status::apply(
            ctx,
            member,
            member::status(conditions.clone(), generation, endpoint),
        )
        .await
        .at(Stage::Status)?;
        let object = member.object_ref(&());
        events::conditions_changed(
            &ctx.recorder,
            &object,
            member.conditions(),
            &conditions,
            "Check",
        )
        .await;
    }
    Ok(Action::await_change())
}

/// The conditions `member` should have, and its resolved endpoint.
fn check<M: Member>(member: &M, namespace: &str, ctx: &Context) -> (Vec<Desired>, Option<String>) {
    let kind = M::KIND.as_str();
    let mut desired = Vec::new();
    let mut problem = match member.check_spec() {
        Ok(()) => {
            desired.push(Desired::new(
                SCHEMA_VALID,
                true,
                "Valid",
                format!("The {kind} spec is valid."),
            ));
            None
        }
        Err(p) => {
            desired.push(Desired::new(SCHEMA_VALID, false, p.reason, &p.message));
            Some(p)
        }
    };
    let mut endpoint = None;
    if let Some(spec) = member.backend() {
        let service = ctx
            .services
            .get(&ObjectRef::<Service>::new(&spec.service.name).within(namespace));
        match backend::resolve(spec, namespace, service.as_deref()) {
            Ok(url) => {
                desired.push(Desired::new(
                    BACKEND_RESOLVED,
                    true,
                    "Resolved",
                    format!("The backend is {url}."),
                ));
                endpoint = Some(url);
            }
            Err(p) => {
                desired.push(Desired::new(BACKEND_RESOLVED, false, p.reason, &p.message));
                problem.get_or_insert(p);
            }
        }
    }
    desired.push(match problem {
        None => Desired::new(READY, true, "Ready", format!("The {kind} can be served.")),
        Some(p) => Desired::new(READY, false, p.reason, p.message),
    });
    (desired, endpoint)
}

/// The members of kind `M` whose backend is the Service `service`.
pub fn members_behind<M: Member>(service: &Service, members: &[Arc<M>]) -> Vec<ObjectRef<M>> {
    let namespace = service.namespace();
    let name = service.name_any();
    members
        .iter()
        .filter(|m| {
            m.namespace() == namespace && m.backend().is_some_and(|b| b.service.name == name)
        })
        .map(|m| ObjectRef::from_obj(&**m))
        .collect()
}
