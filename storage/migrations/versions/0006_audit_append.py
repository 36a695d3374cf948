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
    ev record;
    locked boolean := false;
    last_seq bigint;
    last_hash varchar;
    picked bigint[] := '{}';
    seqs bigint[] := '{}';
    prevs varchar[] := '{}';
    hashes varchar[] := '{}';
BEGIN
    -- Every array is read by unnest (linear), never by subscript (a walk from the start for each element).
    -- With p_only (the requests a statement inserted), the events of other requests are left out.
    FOR ev IN
        SELECT e.i, e.head, e.tail
          FROM unnest(p_request_id, p_head, p_tail) WITH ORDINALITY AS e(request_id, head, tail, i)
         WHERE p_only IS NULL OR e.request_id = ANY (p_only)
         ORDER BY e.i
    LOOP
        IF NOT locked THEN
            -- One appender at a time across every replica, until this transaction ends.
            PERFORM pg_advisory_xact_lock(1365707277);
            -- A statement of its own in a VOLATILE function: a fresh snapshot, with the previous holder's commit.
            SELECT a.seq, a.hash INTO last_seq, last_hash
              FROM audit_events a WHERE a.seq IS NOT NULL ORDER BY a.seq DESC LIMIT 1;
            IF last_seq IS NULL THEN
                last_seq := 0;
                last_hash := repeat('0', 64);
            END IF;
            locked := true;
        END IF;
        last_seq := last_seq + 1;
        picked := picked || ev.i;
        prevs := prevs || last_hash;
        last_hash := encode(sha256(convert_to(last_hash || ev.head || last_seq::text || ev.tail, 'UTF8')), 'hex');
        seqs := seqs || last_seq;
        hashes := hashes || last_hash;
    END LOOP;
    IF NOT locked THEN
        RETURN;
    END IF;
    INSERT INTO audit_events (request_id, kind, actor_id, actor_name, via, at, data, seq, prev_hash, hash)
    SELECT e.request_id, e.kind, e.actor_id, e.actor_name, e.via, e.at, e.data::jsonb, k.seq, k.prev, k.hash
      FROM unnest(picked, seqs, prevs, hashes) AS k(i, seq, prev, hash)
      JOIN unnest(p_request_id, p_kind, p_actor_id, p_actor_name, p_via, p_at, p_data) WITH ORDINALITY
           AS e(request_id, kind, actor_id, actor_name, via, at, data, i) ON e.i = k.i
     ORDER BY k.seq;
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
