//! Shard leases: which replica reconciles which shard.
//!
//! Every shard has a `coordination.k8s.io/v1` Lease, and every replica a
//! heartbeat Lease of its own so the others can count live replicas. A
//! replica writes its heartbeat from the start, marked joining while its
//! caches fill. Each tick a ready replica renews the shards it holds,
//! releases those above `ceil(shards / ready replicas)` so that a replica
//! that became ready can take them, and acquires free or expired shards up
//! to `ceil(shards / (ready + joining replicas))`: the shares of replicas
//! still filling their caches are left for them rather than taken now and
//! handed over (and reconciled twice) seconds later. A joining replica is
//! waited for only `join_grace` from when this one is ready, so one that
//! never gets ready cannot keep shards unowned. Every write is a `replace`
//! carrying the resourceVersion it read, so two replicas can never both
//! win a shard: the loser gets a conflict.
//!
//! Expiry is judged the way client-go's leader election judges it: by how
//! long a Lease has gone unchanged as seen by this process's monotonic
//! clock, never by comparing another machine's timestamps with ours.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use k8s_openapi::api::coordination::v1::{Lease, LeaseSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::MicroTime;
use k8s_openapi::jiff::Timestamp;
use kube::api::{Api, DeleteParams, ListParams, PostParams, Preconditions};
use kube::runtime::controller::Action;
use kube::{Client, ResourceExt};
use rand::seq::SliceRandom;
use tokio::sync::broadcast;

use crate::sharding::shard::{FencingToken, ShardId, shard_of};

const LABEL: &str = "kubemcp.io/lease";

/// How shards are elected.
#[derive(Clone, Debug)]
pub struct ElectionConfig {
    pub shards: u32,
    /// Where the Leases live: the operator's own namespace.
    pub namespace: String,
    /// This process: pod name plus a per-start unique suffix.
    pub identity: String,
    /// A Lease not renewed for this long is free for the taking.
    pub lease_duration: Duration,
    /// How often held Leases are renewed.
    pub renew_interval: Duration,
    /// How often free shards are looked for (and surplus ones released).
    pub retry_period: Duration,
    /// How long a replica still filling its caches keeps its share free.
    pub join_grace: Duration,
}

/// Replicas with an unexpired heartbeat, as one replica counts them.
#[derive(Clone, Copy, Debug, PartialEq)]
struct Live {
    /// Replicas reconciling, this one included.
    ready: u32,
    /// Replicas filling their caches, within the join grace.
    joining: u32,
}

impl Live {
    /// Shards held above this are released to a replica that became ready.
    fn keep(self, shards: u32) -> usize {
        shards.div_ceil(self.ready.max(1)) as usize
    }

    /// Shards are acquired up to this, leaving joining replicas their share.
    fn take(self, shards: u32) -> usize {
        shards.div_ceil((self.ready + self.joining).max(1)) as usize
    }
}

struct Held {
    token: i64,
    renewed: Instant,
}

/// What a reconcile may do with an object, by its shard.
#[derive(Clone, Debug, PartialEq)]
pub enum Ownership {
    /// This replica holds the shard: write with this token.
    Held(FencingToken),
    /// This replica holds the shard but has not renewed it within the lease
    /// duration (a slow apiserver, a starved process): it must not write,
    /// and must look again after this long, because no shard-gained event
    /// will come if the renewal then succeeds.
    Unconfirmed(Duration),
    /// Another replica's shard (or nobody's yet): its holder reconciles it.
    NotHeld,
}

impl Ownership {
    /// The token to write with, or what a reconcile that may not write
    /// returns instead.
    pub fn token(self) -> Result<FencingToken, Action> {
        match self {
            Ownership::Held(token) => Ok(token),
            Ownership::Unconfirmed(retry) => Err(Action::requeue(retry)),
            Ownership::NotHeld => Err(Action::await_change()),
        }
    }
}

/// The shards this replica holds, read by every reconcile.
pub struct Shards {
    config: ElectionConfig,
    held: RwLock<BTreeMap<ShardId, Held>>,
    gained: broadcast::Sender<ShardId>,
}

impl Shards {
    pub fn new(config: ElectionConfig) -> Self {
        Self {
            config,
            held: RwLock::default(),
            gained: broadcast::channel(1024).0,
        }
    }

    /// Whether this replica may reconcile objects in `namespace`, and the
    /// token to write with.
    pub fn ownership(&self, namespace: &str) -> Ownership {
        let shard = shard_of(namespace, self.config.shards);
        let held = self.held.read().unwrap_or_else(|e| e.into_inner());
        let Some(entry) = held.get(&shard) else {
            return Ownership::NotHeld;
        };
        // A process paused past its lease stops writing even before it
        // learns that it lost the shard.
        if entry.renewed.elapsed() >= self.config.lease_duration {
            return Ownership::Unconfirmed(self.config.retry_period);
        }
        Ownership::Held(FencingToken {
            shards: self.config.shards,
            shard,
            token: entry.token,
            holder: self.config.identity.clone(),
        })
    }

    /// Whether this replica holds the shard of `namespace`, renewed within
    /// the lease or not. Events of other shards need not reach their
    /// servers here: gaining a shard reconciles all of its objects.
    pub fn holds(&self, namespace: &str) -> bool {
        let shard = shard_of(namespace, self.config.shards);
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .contains_key(&shard)
    }

    /// Gives up `shard` at once: its Lease names another holder, or Redis
    /// refused a write with its token. `why` is logged.
    pub fn lose(&self, shard: ShardId, why: &str) {
        if self.write().remove(&shard).is_some() {
            tracing::warn!(%shard, why, "lost the shard; stepping down");
            metrics::counter!("mcp_operator_shard_losses_total").increment(1);
            self.report();
        }
    }

    /// Shards as they are gained, so their objects can be reconciled at once.
    pub fn gained(&self) -> broadcast::Receiver<ShardId> {
        self.gained.subscribe()
    }

    pub fn shard_count(&self) -> u32 {
        self.config.shards
    }

    pub fn identity(&self) -> &str {
        &self.config.identity
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, BTreeMap<ShardId, Held>> {
        self.held.write().unwrap_or_else(|e| e.into_inner())
    }

    fn held_shards(&self) -> Vec<ShardId> {
        self.held
            .read()
            .unwrap_or_else(|e| e.into_inner())
            .keys()
            .copied()
            .collect()
    }

    fn report(&self) {
        let count = self.held.read().unwrap_or_else(|e| e.into_inner()).len();
        metrics::gauge!("mcp_operator_shards_held").set(count as f64);
    }
}

/// Runs the election for `shards` until `stop` resolves, then releases
/// every held Lease so other replicas take over without waiting for expiry.
/// Until `filled` resolves to true the replica only announces that it is
/// joining: reconciling from a partial cache would publish catalogs that
/// miss members. If it resolves to false (the caches can never fill) the
/// replica leaves the election.
pub async fn run(
    client: Client,
    shards: Arc<Shards>,
    filled: impl std::future::Future<Output = bool>,
    stop: impl std::future::Future<Output = ()>,
) {
    let mut election = Election {
        api: Api::namespaced(client, &shards.config.namespace),
        shards: &shards,
        observed: HashMap::new(),
        joining_since: HashMap::new(),
        joining: true,
        last_renew: None,
    };
    let mut stop = std::pin::pin!(stop);
    let mut filled = std::pin::pin!(filled);
    loop {
        if let Err(error) = election.tick().await {
            tracing::warn!(%error, "shard election tick failed");
        }
        tokio::select! {
            () = &mut stop => break,
            filled = &mut filled, if election.joining => {
                if !filled {
                    break;
                }
                // Tick again at once, as a ready replica.
                election.joining = false;
            }
            () = tokio::time::sleep(shards.config.retry_period) => {}
        }
    }
    election.release_all().await;
}

struct Election<'a> {
    api: Api<Lease>,
    shards: &'a Shards,
    /// resourceVersion of each Lease and when this process saw it change.
    observed: HashMap<String, (String, Instant)>,
    /// When this process first saw each joining heartbeat.
    joining_since: HashMap<String, Instant>,
    /// This replica's caches are still filling: it holds no shards.
    joining: bool,
    last_renew: Option<Instant>,
}

/// Values of the role label: a replica's heartbeat while its caches fill,
/// then once it is ready; a shard's Lease.
const JOINING: &str = "joining";
const READY: &str = "replica";
const SHARD: &str = "shard";

fn shard_lease_name(shard: ShardId) -> String {
    format!("mcp-operator-shard-{shard}")
}

fn now() -> MicroTime {
    MicroTime(Timestamp::now())
}

impl Election<'_> {
    fn config(&self) -> &ElectionConfig {
        &self.shards.config
    }

    fn replica_lease_name(&self) -> String {
        format!("mcp-operator-replica-{}", self.config().identity)
    }

    /// Whether a Lease has gone unchanged for longer than its duration.
    fn expired(&self, lease: &Lease) -> bool {
        let duration = lease
            .spec
            .as_ref()
            .and_then(|s| s.lease_duration_seconds)
            .map_or(self.config().lease_duration, |s| {
                Duration::from_secs(s.max(1) as u64)
            });
        self.observed
            .get(&lease.name_any())
            .is_some_and(|(_, since)| since.elapsed() > duration)
    }

    fn observe(&mut self, leases: &[Lease]) {
        let now = Instant::now();
        for lease in leases {
            let version = lease.resource_version().unwrap_or_default();
            let entry = self
                .observed
                .entry(lease.name_any())
                .or_insert((version.clone(), now));
            if entry.0 != version {
                *entry = (version, now);
            }
        }
    }

    async fn tick(&mut self) -> Result<(), kube::Error> {
        let leases = self
            .api
            .list(&ListParams::default().labels(LABEL))
            .await?
            .items;
        self.observe(&leases);
        let renew_due = self
            .last_renew
            .is_none_or(|t| t.elapsed() >= self.config().renew_interval);
        let live = self.heartbeat(&leases, renew_due).await?;
        if self.joining {
            if renew_due {
                self.last_renew = Some(Instant::now());
            }
            return Ok(());
        }
        let shards = self.config().shards;

        let mut by_shard: BTreeMap<ShardId, Lease> = leases
            .into_iter()
            .filter(|l| l.labels().get(LABEL).map(String::as_str) == Some(SHARD))
            .filter_map(|l| {
                let shard = l
                    .name_any()
                    .strip_prefix("mcp-operator-shard-")?
                    .parse()
                    .ok()?;
                (shard < shards).then_some((ShardId(shard), l))
            })
            .collect();
        for shard in (0..shards).map(ShardId) {
            if let std::collections::btree_map::Entry::Vacant(entry) = by_shard.entry(shard) {
                entry.insert(self.create_shard_lease(shard).await?);
            }
        }

        // Shards whose Lease names someone else are lost, whatever we thought.
        let identity = self.config().identity.clone();
        for shard in self.shards.held_shards() {
            let holder = by_shard
                .get(&shard)
                .and_then(|l| l.spec.as_ref()?.holder_identity.clone());
            if holder.as_deref() != Some(identity.as_str()) {
                self.shards.lose(shard, "its Lease names another holder");
            }
        }

        let mut held = self.shards.held_shards();
        if renew_due {
            for shard in &held {
                if let Some(lease) = by_shard.get_mut(shard) {
                    // Later steps of this tick (a release) must write on top
                    // of the renewed version, not the listed one.
                    if let Some(renewed) = self.renew(*shard, lease.clone()).await {
                        *lease = renewed;
                    }
                }
            }
            self.last_renew = Some(Instant::now());
            held = self.shards.held_shards();
        }

        let (keep, take) = (live.keep(shards), live.take(shards));
        if held.len() > keep {
            for shard in held.iter().rev().take(held.len() - keep) {
                if let Some(lease) = by_shard.get(shard) {
                    self.release(*shard, lease.clone()).await;
                }
            }
        } else if held.len() < take {
            let mut free: Vec<(ShardId, Lease)> = by_shard
                .into_iter()
                .filter(|(shard, lease)| {
                    let holder = lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        .unwrap_or("");
                    !held.contains(shard) && (holder.is_empty() || self.expired(lease))
                })
                .collect();
            // In an order of its own, going on to other shards after lost
            // races: replicas ready at the same moment would otherwise all
            // race for the same first free shards, and all but one would
            // wait a tick per lost race. The writes of a round go out
            // together: one at a time, a saturated apiserver spread a cold
            // start's acquisitions over seconds.
            free.shuffle(&mut rand::rng());
            let mut candidates = free.into_iter();
            let mut wanted = take - held.len();
            while wanted > 0 {
                let round: Vec<_> = candidates.by_ref().take(wanted).collect();
                if round.is_empty() {
                    break;
                }
                let won = futures::future::join_all(
                    round
                        .into_iter()
                        .map(|(shard, lease)| self.acquire(shard, lease)),
                )
                .await;
                wanted -= won.into_iter().filter(|won| *won).count();
            }
        }
        Ok(())
    }

    /// Renews this replica's heartbeat Lease (and marks it ready once the
    /// caches are filled), deletes expired ones of other replicas, and
    /// counts the live replicas.
    async fn heartbeat(&mut self, leases: &[Lease], renew_due: bool) -> Result<Live, kube::Error> {
        let own = self.replica_lease_name();
        let role = if self.joining { JOINING } else { READY };
        let mut live = Live {
            ready: u32::from(!self.joining),
            joining: 0,
        };
        let mut joining_now = HashMap::new();
        let heartbeats = leases.iter().filter_map(|l| {
            let role = l.labels().get(LABEL)?;
            [JOINING, READY]
                .contains(&role.as_str())
                .then_some((l, role))
        });
        for (lease, lease_role) in heartbeats {
            let name = lease.name_any();
            if name == own {
                if !renew_due && lease_role == role {
                    continue;
                }
                let mut renewed = lease.clone();
                renewed
                    .labels_mut()
                    .insert(LABEL.to_owned(), role.to_owned());
                if let Some(spec) = renewed.spec.as_mut() {
                    spec.renew_time = Some(now());
                }
                self.api
                    .replace(&own, &PostParams::default(), &renewed)
                    .await?;
            } else if self.expired(lease) {
                let preconditions = Preconditions {
                    resource_version: lease.resource_version(),
                    uid: None,
                };
                let params = DeleteParams::default().preconditions(preconditions);
                // Another replica may have deleted it first; that is fine.
                let _ = self.api.delete(&name, &params).await;
            } else if lease_role == JOINING {
                let since = self
                    .joining_since
                    .get(&name)
                    .copied()
                    .unwrap_or_else(Instant::now);
                if since.elapsed() < self.config().join_grace {
                    live.joining += 1;
                }
                // The grace runs while this replica could take the share.
                if !self.joining {
                    joining_now.insert(name, since);
                }
            } else {
                live.ready += 1;
            }
        }
        self.joining_since = joining_now;
        if !leases.iter().any(|l| l.name_any() == own) {
            let lease = self.new_lease(&own, role, Some(self.config().identity.clone()));
            self.api.create(&PostParams::default(), &lease).await?;
        }
        Ok(live)
    }

    fn new_lease(&self, name: &str, role: &str, holder: Option<String>) -> Lease {
        Lease {
            metadata: kube::api::ObjectMeta {
                name: Some(name.to_owned()),
                labels: Some(BTreeMap::from([
                    (LABEL.to_owned(), role.to_owned()),
                    (
                        "app.kubernetes.io/managed-by".to_owned(),
                        "mcp-operator".to_owned(),
                    ),
                ])),
                ..Default::default()
            },
            spec: Some(LeaseSpec {
                holder_identity: holder,
                lease_duration_seconds: Some(self.config().lease_duration.as_secs().max(1) as i32),
                renew_time: Some(now()),
                lease_transitions: Some(0),
                ..Default::default()
            }),
        }
    }

    async fn create_shard_lease(&self, shard: ShardId) -> Result<Lease, kube::Error> {
        let lease = self.new_lease(&shard_lease_name(shard), SHARD, None);
        match self.api.create(&PostParams::default(), &lease).await {
            Err(kube::Error::Api(status)) if status.code == 409 => {
                self.api.get(&shard_lease_name(shard)).await
            }
            other => other,
        }
    }

    /// Writes a shard Lease back with the resourceVersion it was read at:
    /// a conflict means another replica changed it first.
    async fn write_lease(&self, shard: ShardId, lease: &Lease) -> Result<Lease, kube::Error> {
        self.api
            .replace(&shard_lease_name(shard), &PostParams::default(), lease)
            .await
    }

    async fn renew(&mut self, shard: ShardId, mut lease: Lease) -> Option<Lease> {
        let started = Instant::now();
        if let Some(spec) = lease.spec.as_mut() {
            spec.renew_time = Some(now());
        }
        match self.write_lease(shard, &lease).await {
            Ok(renewed) => {
                if let Some(held) = self.shards.write().get_mut(&shard) {
                    held.renewed = started;
                }
                Some(renewed)
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "could not renew the shard lease");
                self.shards.lose(shard, "the Lease could not be renewed");
                None
            }
        }
    }

    /// Takes a free or expired shard; false if another replica was faster.
    async fn acquire(&self, shard: ShardId, mut lease: Lease) -> bool {
        let started = Instant::now();
        let identity = self.config().identity.clone();
        let duration = self.config().lease_duration.as_secs().max(1) as i32;
        let spec = lease.spec.get_or_insert_with(LeaseSpec::default);
        let previous_renew = spec.renew_time.clone();
        let token = spec.lease_transitions.unwrap_or(0) + 1;
        spec.holder_identity = Some(identity);
        spec.lease_transitions = Some(token);
        spec.lease_duration_seconds = Some(duration);
        spec.acquire_time = Some(now());
        spec.renew_time = Some(now());
        if self.write_lease(shard, &lease).await.is_err() {
            return false;
        }
        self.shards.write().insert(
            shard,
            Held {
                token: i64::from(token),
                renewed: started,
            },
        );
        self.shards.report();
        metrics::counter!("mcp_operator_shard_acquisitions_total").increment(1);
        if let Some(MicroTime(previous)) = previous_renew {
            let gap = Timestamp::now()
                .duration_since(previous)
                .as_secs_f64()
                .max(0.0);
            metrics::histogram!("mcp_operator_shard_unowned_seconds").record(gap);
        }
        tracing::info!(%shard, token, "acquired shard");
        let _ = self.shards.gained.send(shard);
        true
    }

    async fn release(&mut self, shard: ShardId, mut lease: Lease) {
        // Stop reconciling first: the next holder may start at once.
        if self.shards.write().remove(&shard).is_none() {
            return;
        }
        self.shards.report();
        if let Some(spec) = lease.spec.as_mut() {
            spec.holder_identity = None;
            spec.renew_time = Some(now());
        }
        match self.write_lease(shard, &lease).await {
            Ok(_) => {
                metrics::counter!("mcp_operator_shard_handovers_total").increment(1);
                tracing::info!(%shard, "released shard");
            }
            Err(error) => {
                tracing::warn!(%shard, %error, "could not release the shard lease; it will expire")
            }
        }
    }

    /// Hands every shard back and removes the heartbeat, at shutdown.
    async fn release_all(&mut self) {
        for shard in self.shards.held_shards() {
            match self.api.get(&shard_lease_name(shard)).await {
                Ok(lease)
                    if lease
                        .spec
                        .as_ref()
                        .and_then(|s| s.holder_identity.as_deref())
                        == Some(self.config().identity.as_str()) =>
                {
                    self.release(shard, lease).await;
                }
                _ => self.shards.lose(shard, "its Lease names another holder"),
            }
        }
        let _ = self
            .api
            .delete(&self.replica_lease_name(), &DeleteParams::default())
            .await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn shards() -> Shards {
        Shards::new(ElectionConfig {
            shards: 4,
            namespace: "leases".into(),
            identity: "replica-1".into(),
            lease_duration: Duration::from_secs(5),
            renew_interval: Duration::from_secs(1),
            retry_period: Duration::from_millis(500),
            join_grace: Duration::from_secs(30),
        })
    }

    #[test]
    fn joining_replicas_are_left_their_share_but_take_nothing_away() {
        let live = |ready, joining| Live { ready, joining };
        // The first replica ready of four takes a quarter, not everything.
        assert_eq!((live(1, 3).keep(16), live(1, 3).take(16)), (16, 4));
        // Two ready replicas holding half each keep it while a third joins:
        // shards move only to a replica that can reconcile them.
        assert_eq!((live(2, 1).keep(16), live(2, 1).take(16)), (8, 6));
        // Alone, or with nobody joining, the shares are the same.
        assert_eq!((live(1, 0).keep(16), live(1, 0).take(16)), (16, 16));
        assert_eq!((live(3, 0).keep(16), live(3, 0).take(16)), (6, 6));
    }

    #[test]
    fn an_unrenewed_shard_is_retried_not_dropped() {
        let shards = shards();
        let shard = shard_of("team-a", 4);
        assert_eq!(
            shards.ownership("team-a").token(),
            Err(Action::await_change())
        );

        shards.write().insert(
            shard,
            Held {
                token: 7,
                renewed: Instant::now(),
            },
        );
        let token = shards.ownership("team-a").token().expect("held");
        assert_eq!((token.shard, token.token), (shard, 7));

        let long_ago = Instant::now()
            .checked_sub(Duration::from_secs(6))
            .expect("the clock is past six seconds");
        shards.write().insert(
            shard,
            Held {
                token: 7,
                renewed: long_ago,
            },
        );
        assert_eq!(
            shards.ownership("team-a").token(),
            Err(Action::requeue(Duration::from_millis(500)))
        );
    }
}
