-- Snapshots of aggregate state, so loading a long stream reads the latest
-- snapshot and only the events after it. A cache, not a source of truth:
-- each row is written in the transaction that appended the events it
-- covers, may be replaced by a newer one at any time, and is ignored when
-- its state_version is not the one the code reads (the state's shape
-- changed) or it cannot be decoded; the stream is folded instead.
CREATE TABLE eventstore.snapshots (
    stream_id     UUID        PRIMARY KEY,
    stream_type   TEXT        NOT NULL,
    -- Aggregate::STATE_VERSION of the code that wrote it.
    state_version INTEGER     NOT NULL,
    -- The stream version (and last event) the state was folded up to.
    version       BIGINT      NOT NULL CHECK (version >= 1),
    position      BIGINT      NOT NULL,
    last_event_id UUID        NOT NULL,
    state         JSONB       NOT NULL,
    taken_at      TIMESTAMPTZ NOT NULL DEFAULT now()
);
