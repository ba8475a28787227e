//! One seeded run: a workload, a scheduler picking the next thing to happen
//! (user commands, the relay, the consumer's fetches and lanes, the effect
//! runner, provider answers, the clock) and faults injected along the way.

use std::collections::BTreeMap;

use chrono::{DateTime, Duration, TimeZone, Utc};
use domain::aggregate::{Order, Product};
use domain::order::{OrderCommand, RequestedLine};
use domain::payment::PaymentStatus;
use domain::product::ProductCommand;
use domain::saga::{Effect, SagaPolicy};
use eventstore::{EventEnvelope, Metadata};
use saga::effects::outcome::{self, Outcome};
use saga::effects::EffectSettings;
use saga::execute::Cause;
use saga::routing::route;
use uuid::Uuid;

use super::bus::{Bus, Delivery, Tp, LANES};
use super::check;
use super::provider::{Card, Provider};
use super::rng::Rng;
use super::worker::{self, Fail};
use super::world::Db;

/// Steps after which a run that has not come to rest is a failure.
const MAX_STEPS: usize = 20_000;

/// Pieces of the worker's bookkeeping a test can break, to show that the
/// simulator notices. [`Knobs::CORRECT`] is the worker as written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Knobs {
    /// Skip an event whose id is in `processed_events`.
    pub dedup: bool,
    /// Record the event id in the same transaction as the handler's writes
    /// (off: committed on its own first, so a crash in between loses the event).
    pub dedup_in_transaction: bool,
    /// Store the offset only after the commit (off: before handling).
    pub offset_after_commit: bool,
    /// Every charge attempt carries the payment id as its idempotency key
    /// (off: a key per attempt).
    pub stable_charge_key: bool,
    /// The saga takes in a user's cancel it has not seen before acting.
    pub cancel_check: bool,
}

impl Knobs {
    /// The worker as written.
    pub const CORRECT: Knobs = Knobs {
        dedup: true,
        dedup_in_transaction: true,
        offset_after_commit: true,
        stable_charge_key: true,
        cancel_check: true,
    };

    /// The knobs with the bug `name` switched on (see `BUGS`).
    pub fn with_bug(name: &str) -> Option<Knobs> {
        let mut knobs = Knobs::CORRECT;
        match name {
            "no-dedup" => knobs.dedup = false,
            "dedup-outside-transaction" => knobs.dedup_in_transaction = false,
            "offset-before-commit" => knobs.offset_after_commit = false,
            "charge-key-per-attempt" => knobs.stable_charge_key = false,
            "no-cancel-check" => knobs.cancel_check = false,
            _ => return None,
        }
        Some(knobs)
    }
}

/// Faults injected, by kind.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Faults {
    /// Messages lost by the consumer (partition revoked; redelivered later).
    pub drops: u64,
    /// Events the relay published twice (crash between ack and outbox delete).
    pub duplicates: u64,
    /// Partitions rewound to their committed offset (rebalance).
    pub rebalances: u64,
    /// Pauses of the relay or of a partition (delayed messages).
    pub delays: u64,
    /// Worker crashes between a handler's decision and its commit.
    pub crashes_before_commit: u64,
    /// Worker crashes between a handler's commit and its offset.
    pub crashes_after_commit: u64,
    /// Worker crashes before recording a provider call's outcome.
    pub crashes_before_record: u64,
    /// Worker kills at an arbitrary moment (calls in flight lost).
    pub kills: u64,
    /// Provider answers lost (the client times out; a capture may stand).
    pub provider_lost_answers: u64,
    /// Charges that hung (nothing recorded; the client times out).
    pub provider_hangs: u64,
    /// 503 answers (outage windows, flaky cards).
    pub provider_unavailable: u64,
    /// Outage windows.
    pub outages: u64,
}

impl std::ops::AddAssign for Faults {
    fn add_assign(&mut self, o: Self) {
        self.drops += o.drops;
        self.duplicates += o.duplicates;
        self.rebalances += o.rebalances;
        self.delays += o.delays;
        self.crashes_before_commit += o.crashes_before_commit;
        self.crashes_after_commit += o.crashes_after_commit;
        self.crashes_before_record += o.crashes_before_record;
        self.kills += o.kills;
        self.provider_lost_answers += o.provider_lost_answers;
        self.provider_hangs += o.provider_hangs;
        self.provider_unavailable += o.provider_unavailable;
        self.outages += o.outages;
    }
}

/// How the orders of a run ended.
#[derive(Debug, Clone, Copy, Default)]
pub struct Ends {
    pub confirmed: u64,
    pub rejected: u64,
    pub cancelled: u64,
}

/// A run's record.
#[derive(Debug)]
pub struct Report {
    pub seed: u64,
    pub trace: Vec<String>,
    pub faults: Faults,
    pub ends: Ends,
    pub steps: usize,
    /// The first invariant broken, if any.
    pub failure: Option<String>,
}

#[derive(Debug, Clone)]
enum UserAction {
    Place {
        order_id: Uuid,
        lines: Vec<RequestedLine>,
        card: Card,
    },
    Cancel(Uuid),
    Restock(Uuid, i64),
}

/// A provider call in flight: its answer arrives at `at`.
#[derive(Debug)]
struct Call {
    order_id: Uuid,
    at: DateTime<Utc>,
    outcome: Outcome,
    incarnation: u64,
}

#[derive(Debug, Clone)]
enum Step {
    User,
    Relay,
    Fetch(Tp),
    Handle(usize),
    Effect(Uuid),
    Answer(usize),
    Rebalance(Tp),
    Kill,
    Wait,
}

impl Step {
    fn weight(&self) -> u64 {
        match self {
            Step::User | Step::Relay | Step::Fetch(_) | Step::Handle(_) => 30,
            Step::Effect(_) | Step::Answer(_) => 24,
            Step::Wait => 9,
            Step::Rebalance(_) => 3,
            Step::Kill => 1,
        }
    }
}

/// The short name of an id in the trace.
fn short(id: Uuid) -> String {
    let n = id.as_u128();
    let low = n & 0xFFFF;
    match n >> 124 {
        0xA => format!("o{low}"),
        0xB => format!("p{low}"),
        0xE => format!("e{low}"),
        _ => id.to_string()[..8].to_owned(),
    }
}

fn order_id(i: u128) -> Uuid {
    Uuid::from_u128((0xA << 124) | i)
}

fn product_id(i: u128) -> Uuid {
    Uuid::from_u128((0xB << 124) | i)
}

struct Sim<'k> {
    seed: u64,
    rng: Rng,
    knobs: &'k Knobs,
    start: DateTime<Utc>,
    now: DateTime<Utc>,
    policy: SagaPolicy,
    settings: EffectSettings,
    db: Db,
    bus: Bus,
    provider: Provider,
    plan: Vec<(DateTime<Utc>, UserAction)>,
    calls: Vec<Call>,
    incarnation: u64,
    worker_down_until: Option<DateTime<Utc>>,
    stocked: BTreeMap<Uuid, i64>,
    effective: BTreeMap<Uuid, u32>,
    commands: u128,
    faults: Faults,
    trace: Vec<String>,
}

/// Runs `seed` with `knobs`.
pub fn run(seed: u64, knobs: &Knobs) -> Report {
    let start = Utc.with_ymd_and_hms(2024, 1, 1, 0, 0, 0).unwrap();
    let mut sim = Sim {
        seed,
        rng: Rng::new(seed),
        knobs,
        start,
        now: start,
        policy: SagaPolicy {
            payment_deadline: Duration::seconds(30),
            currency: "EUR".into(),
        },
        settings: EffectSettings::default(),
        db: Db::default(),
        bus: Bus::default(),
        provider: Provider::default(),
        plan: Vec::new(),
        calls: Vec::new(),
        incarnation: 0,
        worker_down_until: None,
        stocked: BTreeMap::new(),
        effective: BTreeMap::new(),
        commands: 0,
        faults: Faults::default(),
        trace: Vec::new(),
    };
    sim.set_up();
    let (steps, failure) = match sim.drive() {
        Ok(steps) => (
            steps,
            check::at_rest(&sim.db, &sim.provider, &sim.bus, sim.calls.len()).err(),
        ),
        Err((steps, failure)) => (steps, Some(failure)),
    };
    if let Some(failure) = &failure {
        sim.log(format!("FAILED: {failure}"));
    }
    let mut ends = Ends::default();
    for stream in sim.db.tables.orders.values() {
        match stream.state.status() {
            Some(domain::order::OrderStatus::Confirmed) => ends.confirmed += 1,
            Some(domain::order::OrderStatus::Rejected) => ends.rejected += 1,
            Some(domain::order::OrderStatus::Cancelled) => ends.cancelled += 1,
            _ => {}
        }
    }
    Report {
        seed: sim.seed,
        trace: sim.trace,
        faults: sim.faults,
        ends,
        steps,
        failure,
    }
}

impl Sim<'_> {
    fn log(&mut self, line: String) {
        let ms = (self.now - self.start).num_milliseconds();
        self.trace.push(format!("{ms:>7}ms {line}"));
    }

    fn later(&mut self, lo_ms: i64, hi_ms: i64) -> DateTime<Utc> {
        self.now + Duration::milliseconds(self.rng.range(lo_ms, hi_ms))
    }

    fn command_metadata(&mut self) -> Metadata {
        self.commands += 1;
        Metadata::for_command(Uuid::from_u128((0xC << 124) | self.commands))
    }

    /// Products, and a plan of orders, cancels and restocks over time.
    fn set_up(&mut self) {
        let products = self.rng.range(1, 3);
        let mut tx = self.db.begin(self.now);
        for i in 0..products {
            let id = product_id(u128::try_from(i + 1).unwrap());
            let stock = self.rng.range(0, 8);
            let price = self.rng.range(1, 10) * 100;
            let meta = self.command_metadata();
            let command = ProductCommand::Register {
                name: format!("product {i}"),
                price_cents: price,
                initial_stock: stock,
            };
            tx.execute::<Product>(id, command, &meta)
                .expect("registers");
            self.stocked.insert(id, stock);
            self.trace
                .push(format!("      0ms product {} stock {stock}", short(id)));
        }
        self.db.commit(tx);
        let orders = self.rng.range(2, 6);
        for i in 0..orders {
            let id = order_id(u128::try_from(i + 1).unwrap());
            let at = self.later(0, 10_000);
            let mut lines: Vec<RequestedLine> = Vec::new();
            for p in 0..products {
                if lines.is_empty() && p == products - 1 || self.rng.percent(50) {
                    lines.push(RequestedLine {
                        product_id: product_id(u128::try_from(p + 1).unwrap()),
                        quantity: self.rng.range(1, 3),
                    });
                }
            }
            let cards = [
                Card::Ok,
                Card::Decline,
                Card::Timeout,
                Card::Hang,
                Card::Flaky,
            ];
            let card = cards[self.rng.weighted(&[50, 12, 12, 10, 16])];
            self.plan.push((
                at,
                UserAction::Place {
                    order_id: id,
                    lines,
                    card,
                },
            ));
            if self.rng.percent(30) {
                let cancel_at = at + Duration::milliseconds(self.rng.range(0, 40_000));
                self.plan.push((cancel_at, UserAction::Cancel(id)));
            }
        }
        for p in 0..products {
            if self.rng.percent(30) {
                let at = self.later(0, 30_000);
                let quantity = self.rng.range(1, 3);
                let id = product_id(u128::try_from(p + 1).unwrap());
                self.plan.push((at, UserAction::Restock(id, quantity)));
            }
        }
        self.plan.sort_by_key(|(at, _)| *at);
        if self.rng.percent(30) {
            for _ in 0..self.rng.range(1, 2) {
                let from = self.later(0, 60_000);
                let to = from + Duration::milliseconds(self.rng.range(1_000, 20_000));
                self.provider.outages.push((from, to));
                self.faults.outages += 1;
            }
        }
    }

    fn worker_up(&self) -> bool {
        self.worker_down_until.is_none_or(|t| t <= self.now)
    }

    fn enabled(&self) -> Vec<Step> {
        let mut steps = Vec::new();
        if self.plan.first().is_some_and(|(at, _)| *at <= self.now) {
            steps.push(Step::User);
        }
        if self.bus.published < self.db.log.len()
            && self.bus.relay_paused_until.is_none_or(|t| t <= self.now)
        {
            steps.push(Step::Relay);
        }
        if self.worker_up() {
            steps.extend(self.bus.fetchable(self.now).into_iter().map(Step::Fetch));
            steps.extend(
                (0..LANES)
                    .filter(|&l| !self.bus.lanes[l].is_empty())
                    .map(Step::Handle),
            );
            steps.extend(
                (self.db.tables.sagas.iter())
                    .filter(|(_, e)| e.next_action_at.is_some_and(|t| t <= self.now))
                    .map(|(id, _)| Step::Effect(*id)),
            );
            steps.extend(
                (self.calls.iter().enumerate())
                    .filter(|(_, c)| c.at <= self.now)
                    .map(|(i, _)| Step::Answer(i)),
            );
            if !steps.is_empty() {
                steps.push(Step::Kill);
                if let Some(tp) = self.bus.uncommitted().into_iter().next() {
                    steps.push(Step::Rebalance(tp));
                }
            }
        }
        if !steps.is_empty() {
            steps.push(Step::Wait);
        }
        steps
    }

    /// The earliest moment something becomes possible.
    fn next_timer(&self) -> Option<DateTime<Utc>> {
        let mut timers: Vec<DateTime<Utc>> = Vec::new();
        timers.extend(self.plan.first().map(|(at, _)| *at));
        if self.bus.published < self.db.log.len() {
            timers.extend(self.bus.relay_paused_until);
        }
        timers.extend(self.worker_down_until);
        let worker = |t: DateTime<Utc>| match self.worker_down_until {
            Some(up) => t.max(up),
            None => t,
        };
        timers.extend(
            (self.bus.partitions.values())
                .filter(|p| p.fetched < p.messages.len())
                .filter_map(|p| p.paused_until)
                .map(worker),
        );
        timers.extend(
            (self.db.tables.sagas.values())
                .filter_map(|e| e.next_action_at)
                .map(worker),
        );
        timers.extend(self.calls.iter().map(|c| c.at));
        timers.into_iter().filter(|t| *t > self.now).min()
    }

    /// Steps until nothing is left to happen; `Err` on a broken invariant.
    fn drive(&mut self) -> Result<usize, (usize, String)> {
        for step in 0..MAX_STEPS {
            let steps = self.enabled();
            if steps.is_empty() {
                if let Some(at) = self.next_timer() {
                    self.now = at;
                    continue;
                }
                let stuck = self.bus.uncommitted();
                if stuck.is_empty() {
                    return Ok(step);
                }
                for tp in stuck {
                    self.rebalance(&tp);
                }
                continue;
            }
            let weights: Vec<u64> = steps.iter().map(Step::weight).collect();
            let chosen = steps[self.rng.weighted(&weights)].clone();
            self.step(chosen).map_err(|e| (step, e))?;
            check::always(&self.db, &self.provider, &self.stocked, &self.effective)
                .map_err(|e| (step, e))?;
        }
        Err((MAX_STEPS, format!("no rest after {MAX_STEPS} steps")))
    }

    fn step(&mut self, step: Step) -> Result<(), String> {
        match step {
            Step::User => self.user(),
            Step::Relay => self.relay(),
            Step::Fetch(tp) => self.fetch(&tp)?,
            Step::Handle(lane) => self.handle(lane)?,
            Step::Effect(order_id) => self.effect(order_id)?,
            Step::Answer(index) => self.answer(index)?,
            Step::Rebalance(tp) => self.rebalance(&tp),
            Step::Kill => {
                self.faults.kills += 1;
                self.crash("killed");
            }
            Step::Wait => {
                self.now = self.later(1, 3_000);
            }
        }
        Ok(())
    }

    fn user(&mut self) {
        let (_, action) = self.plan.remove(0);
        let meta = self.command_metadata();
        let mut tx = self.db.begin(self.now);
        let line = match action {
            UserAction::Place {
                order_id,
                lines,
                card,
            } => {
                let prices = (tx.tables.products.iter())
                    .filter_map(|(id, s)| Some((*id, s.state.price_cents()?)))
                    .collect();
                let command = OrderCommand::Place {
                    user_id: "user".into(),
                    lines,
                    payment_token: card.token().into(),
                    prices,
                    placed_at: self.now,
                };
                let placed = tx.execute::<Order>(order_id, command, &meta);
                format!(
                    "place {} {card:?}: {:?}",
                    short(order_id),
                    placed.map(|_| ())
                )
            }
            UserAction::Cancel(order_id) => {
                let payment = domain::payment::payment_id_for(order_id);
                let payment_captured = matches!(
                    (tx.tables.payments.get(&payment)).and_then(|s| s.state.payment()),
                    Some(p) if matches!(p.status, PaymentStatus::Captured | PaymentStatus::Refunded)
                );
                let command = OrderCommand::Cancel {
                    reason: "cancelled by the user".into(),
                    payment_captured,
                };
                let cancelled = tx.execute::<Order>(order_id, command, &meta);
                format!(
                    "user cancels {}: {:?}",
                    short(order_id),
                    cancelled.map(|e| e.len())
                )
            }
            UserAction::Restock(product_id, quantity) => {
                let command = ProductCommand::Restock { quantity };
                tx.execute::<Product>(product_id, command, &meta)
                    .expect("restocks");
                *self.stocked.entry(product_id).or_default() += quantity;
                format!("restock {} +{quantity}", short(product_id))
            }
        };
        self.db.commit(tx);
        self.log(line);
    }

    fn relay(&mut self) {
        if self.rng.percent(5) {
            self.faults.delays += 1;
            self.bus.relay_paused_until = Some(self.later(100, 5_000));
            self.log("relay paused".into());
            return;
        }
        let event = self.db.log[self.bus.published].clone();
        let (tp, offset) = self.bus.publish(&event);
        let again = self.rng.percent(6);
        if again {
            // Crashed between Kafka's ack and the outbox delete: sent again.
            self.faults.duplicates += 1;
        } else {
            self.bus.published += 1;
        }
        self.log(format!(
            "relay {} -> {}/{}@{offset}{}",
            describe(&event),
            tp.0,
            tp.1,
            if again { " (will be sent again)" } else { "" }
        ));
    }

    fn fetch(&mut self, tp: &Tp) -> Result<(), String> {
        if self.rng.percent(4) {
            self.faults.delays += 1;
            let until = self.later(100, 5_000);
            self.bus.partitions.get_mut(tp).expect("known").paused_until = Some(until);
            self.log(format!("{}/{} lags", tp.0, tp.1));
            return Ok(());
        }
        let p = self.bus.partitions.get_mut(tp).expect("known");
        let offset = p.fetched;
        let event = p.messages[offset].clone();
        p.fetched += 1;
        let ticket = self
            .bus
            .tracker
            .received(&tp.0, tp.1, i64::try_from(offset).unwrap());
        if self.rng.percent(4) {
            // The partition is revoked with the message in hand; it comes
            // back later from the committed offset.
            self.faults.drops += 1;
            self.bus.rewind(tp);
            let until = self.later(100, 3_000);
            self.bus.partitions.get_mut(tp).expect("known").paused_until = Some(until);
            self.log(format!(
                "fetch {}/{}@{offset} {} DROPPED (partition revoked)",
                tp.0,
                tp.1,
                describe(&event)
            ));
            return Ok(());
        }
        match route(&event).map_err(|e| format!("undecodable event: {e}"))? {
            None => self.bus.done(&ticket),
            Some((order_id, input)) => {
                let lane = usize::try_from(order_id.as_u128() % LANES as u128).unwrap();
                self.bus.lanes[lane].push_back(Delivery {
                    ticket,
                    event: event.clone(),
                    order_id,
                    input,
                });
            }
        }
        self.log(format!(
            "fetch {}/{}@{offset} {}",
            tp.0,
            tp.1,
            describe(&event)
        ));
        Ok(())
    }

    fn rebalance(&mut self, tp: &Tp) {
        self.faults.rebalances += 1;
        self.bus.rewind(tp);
        self.log(format!(
            "rebalance: {}/{} from its committed offset",
            tp.0, tp.1
        ));
    }

    /// The worker dies: lanes, tracking and calls in flight are gone; it is
    /// back after a while and every partition resumes from its committed
    /// offset.
    fn crash(&mut self, why: &str) {
        self.bus.crash();
        self.calls.clear();
        self.incarnation += 1;
        self.worker_down_until = Some(self.later(200, 5_000));
        self.log(format!("worker crash ({why})"));
    }

    /// One message of a lane, as `Handler::handle` (dedup, apply, commit)
    /// and the lane (offset after commit).
    fn handle(&mut self, lane: usize) -> Result<(), String> {
        let delivery = self.bus.lanes[lane].pop_front().expect("not empty");
        let what = format!(
            "handle {} for {}",
            describe(&delivery.event),
            short(delivery.order_id)
        );
        let event_id = delivery.event.event_id;
        let crash = self.rng.weighted(&[94, 3, 3]);
        if !self.knobs.offset_after_commit {
            self.bus.done(&delivery.ticket);
        }
        if self.knobs.dedup && !self.knobs.dedup_in_transaction {
            let fresh = self.db.tables.processed.insert(event_id);
            if !fresh {
                self.bus.done(&delivery.ticket);
                self.log(format!("{what}: duplicate"));
                return Ok(());
            }
        }
        let mut attempts = 0;
        let (tx, applied) = loop {
            attempts += 1;
            let mut tx = self.db.begin(self.now);
            if self.knobs.dedup
                && self.knobs.dedup_in_transaction
                && !tx.tables.processed.insert(event_id)
            {
                self.bus.done(&delivery.ticket);
                self.log(format!("{what}: duplicate"));
                return Ok(());
            }
            let cause = Cause {
                event_id,
                correlation_id: delivery.event.metadata.correlation_id,
                traceparent: None,
            };
            match worker::apply(
                &mut tx,
                delivery.order_id,
                delivery.input.clone(),
                &cause,
                &self.policy,
                self.knobs,
            ) {
                Ok(applied) => break (tx, applied),
                Err(Fail::CancelledMeanwhile) if attempts < 10 => continue,
                Err(fail) => {
                    return Err(format!(
                        "{what}: handler failed (would be dead-lettered): {fail:?}"
                    ))
                }
            }
        };
        if crash == 1 {
            self.faults.crashes_before_commit += 1;
            self.log(format!("{what}: decided, not committed"));
            self.crash("before commit");
            return Ok(());
        }
        self.db.commit(tx);
        if applied.changed {
            *self.effective.entry(event_id).or_default() += 1;
        }
        let saga = self.saga_line(delivery.order_id);
        self.log(format!("{what}: +{} events; {saga}", applied.appended));
        if crash == 2 {
            self.faults.crashes_after_commit += 1;
            self.crash("after commit, before the offset");
            return Ok(());
        }
        self.bus.done(&delivery.ticket);
        Ok(())
    }

    fn saga_line(&self, order_id: Uuid) -> String {
        match self.db.tables.sagas.get(&order_id) {
            Some(e) => format!(
                "saga {:?} payment {:?} effect {:?}",
                e.row.saga.phase, e.row.saga.payment, e.row.saga.effect
            ),
            None => "no saga".into(),
        }
    }

    /// The effect runner claims a due saga, ticks it and starts its call.
    fn effect(&mut self, order_id: Uuid) -> Result<(), String> {
        let lease = chrono::Duration::from_std(self.settings.lease).expect("lease");
        let entry = self.db.tables.sagas.get_mut(&order_id).expect("saga");
        entry.next_action_at = Some(self.now + lease);
        let mut tx = self.db.begin(self.now);
        let due = worker::process(&mut tx, order_id, &self.policy, self.knobs)
            .map_err(|f| format!("effect of {}: {f:?}", short(order_id)))?;
        self.db.commit(tx);
        let Some((row, effect)) = due else {
            let saga = self.saga_line(order_id);
            self.log(format!("effects: tick {}: {saga}", short(order_id)));
            return Ok(());
        };
        let (rng, faults) = (&mut self.rng, &mut self.faults);
        let (after, outcome) = match &effect {
            Effect::Charge => {
                let mut request = outcome::charge_request(&row.saga, &self.policy.currency, None);
                if !self.knobs.stable_charge_key {
                    request.idempotency_key += &format!("-{}", row.effect_attempts);
                }
                let answer = self.provider.charge(&request, self.now, rng, faults);
                (answer.after, outcome::charge_outcome(answer.result))
            }
            Effect::Resolve => {
                let answer = self
                    .provider
                    .charges_for_reference(order_id, self.now, rng, faults);
                let outcome = outcome::resolve_outcome(&row.saga, &self.policy, answer.result);
                (answer.after, outcome)
            }
            Effect::Refund { charge_id } => {
                let answer = self.provider.refund(charge_id, self.now, rng, faults);
                (
                    answer.after,
                    outcome::refund_outcome(charge_id, answer.result),
                )
            }
        };
        self.log(format!(
            "effects: {effect:?} for {} -> {outcome:?} in {}ms",
            short(order_id),
            after.num_milliseconds()
        ));
        self.calls.push(Call {
            order_id,
            at: self.now + after,
            outcome,
            incarnation: self.incarnation,
        });
        Ok(())
    }

    /// A call's answer is recorded (payment stream and saga, one transaction).
    fn answer(&mut self, index: usize) -> Result<(), String> {
        let call = self.calls.remove(index);
        assert_eq!(
            call.incarnation, self.incarnation,
            "calls die with the worker"
        );
        let mut tx = self.db.begin(self.now);
        let applied = worker::record(
            &mut tx,
            call.order_id,
            call.outcome.clone(),
            &self.policy,
            &self.settings,
            self.knobs,
        )
        .map_err(|f| {
            format!(
                "recording {:?} for {}: {f:?}",
                call.outcome,
                short(call.order_id)
            )
        })?;
        if self.rng.percent(4) {
            self.faults.crashes_before_record += 1;
            self.log(format!(
                "effects: answer for {} not recorded",
                short(call.order_id)
            ));
            self.crash("before recording an answer");
            return Ok(());
        }
        self.db.commit(tx);
        let saga = self.saga_line(call.order_id);
        self.log(format!(
            "effects: recorded for {}: +{} events; {saga}",
            short(call.order_id),
            applied.appended
        ));
        Ok(())
    }
}

fn describe(event: &EventEnvelope) -> String {
    format!(
        "{} {}/v{} ({})",
        event.event_type,
        short(event.stream_id),
        event.stream_version,
        short(event.event_id)
    )
}
