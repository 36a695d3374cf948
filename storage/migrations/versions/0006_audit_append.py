"""audit append on PostgreSQL: one call takes the chain's lock, reads its head and appends the events

Revision ID: 0006_audit_append
Revises: 0005_policies
Create Date: 2026-11-22

The writer used to take the advisory lock, read the head and insert the events in three round trips, with the
lock held across all of them and the commit. ``signoff_append_audit`` does the three in one: the caller sends
each event's canonical body split around its sequence number (``storage.chain.body_around_seq``) and the
function numbers and hashes the events exactly as ``storage.chain.event_hash`` does (the verifier recomputes
every hash in Python). SQLite has a single writer and keeps doing this in Python; nothing changes there.
"""

from __future__ import annotations

from alembic import op

revision = "0006_audit_append"
down_revision = "0005_policies"
branch_labels = None
depends_on = None

# The advisory lock key every signoff version appends under (0x51670A0D), so replicas running the previous
# release (lock, read, insert from Python) and this one serialise against each other during a rolling upgrade.
_CREATE = """
CREATE OR REPLACE FUNCTION signoff_append_audit(
    p_request_id varchar[], p_kind varchar[], p_actor_id varchar[], p_actor_name varchar[], p_via varchar[],
    p_at timestamptz[], p_data text[], p_head text[], p_tail text[], p_only varchar[] DEFAULT NULL
) RETURNS void
LANGUAGE plpgsql VOLATILE AS $fn$
DECLARE
    n integer := coalesce(array_length(p_kind, 1), 0);
    keep integer[];
    last_seq bigint;
    last_hash varchar;
    seqs bigint[] := '{}';
    prevs varchar[] := '{}';
    hashes varchar[] := '{}';
BEGIN
    -- With p_only (the requests a statement inserted), the events of other requests are left out.
    IF p_only IS NULL THEN
        keep := ARRAY(SELECT generate_series(1, n));
    ELSE
        keep := ARRAY(SELECT g FROM generate_series(1, n) AS g WHERE p_request_id[g] = ANY (p_only));
    END IF;
    IF cardinality(keep) = 0 THEN
        RETURN;
    END IF;
    -- One appender at a time across every replica, until this transaction ends.
    PERFORM pg_advisory_xact_lock(1365707277);
    -- A statement of its own in a VOLATILE function: a fresh snapshot, which sees the previous holder's commit.
    SELECT a.seq, a.hash INTO last_seq, last_hash
      FROM audit_events a WHERE a.seq IS NOT NULL ORDER BY a.seq DESC LIMIT 1;
    IF last_seq IS NULL THEN
        last_seq := 0;
        last_hash := repeat('0', 64);
    END IF;
    FOR j IN 1 .. cardinality(keep) LOOP
        last_seq := last_seq + 1;
        prevs[j] := last_hash;
        last_hash := encode(sha256(convert_to(
            last_hash || p_head[keep[j]] || last_seq::text || p_tail[keep[j]], 'UTF8')), 'hex');
        seqs[j] := last_seq;
        hashes[j] := last_hash;
    END LOOP;
    INSERT INTO audit_events (request_id, kind, actor_id, actor_name, via, at, data, seq, prev_hash, hash)
    SELECT p_request_id[k.i], p_kind[k.i], p_actor_id[k.i], p_actor_name[k.i], p_via[k.i], p_at[k.i],
           p_data[k.i]::jsonb, k.seq, k.prev, k.hash
      FROM unnest(keep, seqs, prevs, hashes) AS k(i, seq, prev, hash);
END
$fn$
"""

_DROP = ("DROP FUNCTION IF EXISTS signoff_append_audit(varchar[], varchar[], varchar[], varchar[], varchar[], "
         "timestamptz[], text[], text[], text[], varchar[])")


def upgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_CREATE)


def downgrade() -> None:
    if op.get_bind().dialect.name == "postgresql":
        op.execute(_DROP)
