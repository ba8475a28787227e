//! The leader's lease: fencing a leader that stopped without dying.
//!
//! A session advisory lock alone keeps a SIGSTOPped (or otherwise frozen)
//! leader in charge forever: its session stays open. So the statement that
//! takes the lock also records the session's backend pid in
//! `eventstore.relay_leader`, and the leader refreshes the row's heartbeat
//! on the same connection every `leader_heartbeat_ms`. A standby that finds
//! the heartbeat older than `leader_lease_ms` while that same pid still
//! holds the lock terminates that backend and takes the lock. Only the
//! database's clock is used, so the relays' clocks do not matter.
//!
//! The fenced leader, once resumed, finds its connection gone: every
//! statement on it fails, so it reads nothing more, deletes nothing and
//! steps down to standby (its role and `relay_is_leader` go back to
//! standby/0, and it logs that it stepped down). At worst it delivers what
//! its producer already held, or a batch whose rows it had read just
//! before the pause: duplicates.
//!
//! Per-stream order with two producers writing at once. Claim: whenever a
//! relay's producer writes version n of a stream to Kafka, versions 1..n-1
//! are already there. For the old leader: it sent n only after reading it
//! from the outbox, when each earlier version was either deleted (so
//! acknowledged, so in Kafka) or sent earlier by this same producer, which
//! writes a partition in send order without gaps and stops rather than
//! skip (see [`super::producer_config`]). For the new leader: it starts from
//! the outbox, in which every version below its first unsent one was
//! deleted after an acknowledgement; the rest it sends in order with one
//! producer, as above. Both producers have the property, so any
//! interleaving of their writes has it: the first occurrence of each
//! version in a partition comes after the first occurrence of the one
//! before. Later copies are duplicates, which consumers skip by version.

use std::time::Duration;

use sqlx::PgConnection;
use tokio::time::Instant;

use super::{RelayError, LEADER_LOCK_KEY};

/// Takes the leader lock if free and, in the same statement, records this
/// session as the leader with a fresh heartbeat. Returns whether it leads.
pub(super) async fn take_lead(conn: &mut PgConnection) -> Result<bool, RelayError> {
    let taken: Option<bool> = sqlx::query_scalar(
        "INSERT INTO eventstore.relay_leader (singleton, backend_pid, heartbeat_at)
         SELECT true, pg_backend_pid(), clock_timestamp() WHERE pg_try_advisory_lock($1)
         ON CONFLICT (singleton) DO UPDATE
             SET backend_pid = EXCLUDED.backend_pid, heartbeat_at = EXCLUDED.heartbeat_at
         RETURNING true",
    )
    .bind(LEADER_LOCK_KEY)
    .fetch_optional(&mut *conn)
    .await
    .map_err(|source| RelayError::Database {
        action: "taking the leader lock",
        source,
    })?;
    Ok(taken.is_some())
}

/// Terminates the session holding the leader lock if it is the recorded
/// leader and its heartbeat is older than `lease`; waits (bounded) for the
/// session to end. Returns whether a leader was fenced.
pub(super) async fn fence_stale_leader(
    conn: &mut PgConnection,
    lease: Duration,
) -> Result<bool, RelayError> {
    let fenced: Vec<(i32, bool)> = sqlx::query_as(
        "SELECT l.pid, pg_terminate_backend(l.pid, 5000)
         FROM pg_locks l JOIN eventstore.relay_leader r ON r.backend_pid = l.pid
         WHERE l.locktype = 'advisory' AND l.granted
           AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
           AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
           AND r.heartbeat_at < clock_timestamp() - make_interval(secs => $2)",
    )
    .bind(LEADER_LOCK_KEY)
    .bind(lease.as_secs_f64())
    .fetch_all(&mut *conn)
    .await
    .map_err(|source| RelayError::Database {
        action: "checking the leader's lease",
        source,
    })?;
    for (pid, terminated) in &fenced {
        tracing::warn!(
            backend_pid = pid,
            terminated,
            lease_ms = lease.as_millis(),
            "the active relay missed its lease; terminated its session to take over"
        );
    }
    Ok(fenced.iter().any(|(_, terminated)| *terminated))
}

/// The leader's heartbeat schedule.
pub(super) struct Heartbeat {
    interval: Duration,
    next: Instant,
}

impl Heartbeat {
    /// Starts the schedule (the lock was just taken with a fresh heartbeat).
    pub(super) fn new(interval: Duration) -> Self {
        Self {
            interval,
            next: Instant::now() + interval,
        }
    }

    /// When the next heartbeat is due.
    pub(super) fn due(&self) -> Instant {
        self.next
    }

    /// Refreshes the heartbeat if due. Fails if the row no longer names this
    /// session (another relay took over) or the connection is gone.
    pub(super) async fn beat_if_due(&mut self, conn: &mut PgConnection) -> Result<(), RelayError> {
        if Instant::now() < self.next {
            return Ok(());
        }
        let updated = sqlx::query(
            "UPDATE eventstore.relay_leader SET heartbeat_at = clock_timestamp()
             WHERE backend_pid = pg_backend_pid()",
        )
        .execute(&mut *conn)
        .await
        .map_err(|source| RelayError::Database {
            action: "refreshing the leader's heartbeat",
            source,
        })?;
        if updated.rows_affected() == 0 {
            return Err(RelayError::LostLease);
        }
        self.next = Instant::now() + self.interval;
        Ok(())
    }
}
