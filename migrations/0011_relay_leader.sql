-- The active relay's lease (issue 9: fencing a paused leader). The relay
-- holding the leader advisory lock writes its backend pid here in the
-- statement that takes the lock, and refreshes `heartbeat_at` on that same
-- connection every RELAY_LEADER_HEARTBEAT_MS. A standby that finds the
-- heartbeat older than RELAY_LEADER_LEASE_MS, with the lock still held by
-- that pid, terminates the backend (pg_terminate_backend, allowed for the
-- same role) and takes the lock. Times are the database's clock only.
CREATE TABLE eventstore.relay_leader (
    singleton    BOOLEAN     PRIMARY KEY DEFAULT true CHECK (singleton),
    backend_pid  INTEGER     NOT NULL,
    heartbeat_at TIMESTAMPTZ NOT NULL
);

-- The relay connects as the application role (0012 gives it only SELECT and
-- INSERT by default in this schema, and runs after this file).
GRANT SELECT, INSERT, UPDATE ON eventstore.relay_leader TO orders;
