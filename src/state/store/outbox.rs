//! The outbox: events appended in the same transaction as the rows they describe, read back
//! by sequence number; beside them, in the same transaction, the audit log's records (who
//! made the change), which are kept when old events are pruned.
//!
//! The store does not know what an event means; it keeps each as JSON text with the namespace
//! it concerns. **Invariant:** sequence order is commit order. On PostgreSQL every appending
//! transaction first takes one transaction-scoped advisory lock, so no transaction can commit
//! a lower `seq` after a reader has seen a higher one (which a bare sequence would allow, and
//! the reader would skip that event for good). The lock is taken by the last statements before
//! the commit, so it is held for one insert. SQLite has one writer at a time anyway.

use chrono::{DateTime, Utc};
use sea_orm::{
    ActiveModelTrait, ColumnTrait, ConnectionTrait, DbBackend, EntityTrait, QueryFilter, QueryOrder, QuerySelect, Set,
};

use super::entities::event;
use super::{Store, StoreResult};
use crate::domain::{NamespaceId, OrgId};

/// Arbitrary, fixed: the advisory lock every event-appending transaction takes on PostgreSQL.
const OUTBOX_LOCK: i64 = 0x7465_6e73_6361_6c65; // "tenscale"

/// What an outbox record is for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RecordKind {
    /// A change every instance applies (read by sequence, pruned after the retention).
    Change,
    /// A line of the audit log: who made a change (kept).
    Audit,
}

impl RecordKind {
    fn as_str(self) -> &'static str {
        match self {
            RecordKind::Change => "change",
            RecordKind::Audit => "audit",
        }
    }
}

/// An outbox record about to be appended.
#[derive(Debug, Clone)]
pub struct NewEvent {
    pub kind: RecordKind,
    pub namespace_id: Option<NamespaceId>,
    /// The organization an audit record belongs to.
    pub org_id: Option<OrgId>,
    pub payload: String,
}

/// The events a write appends, computed from what it wrote (a node's new state, say).
pub type EventsFor<'a, T> = &'a (dyn Fn(&T) -> Vec<NewEvent> + Send + Sync);

/// An event as stored, with its place in the sequence.
#[derive(Debug, Clone)]
pub struct StoredEvent {
    pub seq: i64,
    pub payload: String,
}

impl Store {
    /// Appends events that change no row of their own (presence, re-announcements).
    pub(in crate::state) async fn record_events(&self, events: &[NewEvent]) -> StoreResult<()> {
        self.change(async |_| StoreResult::Ok(()), |_| events.to_vec()).await
    }

    /// The newest sequence number, 0 before the first event.
    pub async fn last_event_seq(&self) -> StoreResult<i64> {
        let newest = event::Entity::find().order_by_desc(event::Column::Seq).limit(1).one(&self.db).await?;
        Ok(newest.map_or(0, |e| e.seq))
    }

    /// Up to `limit` change events after `seq`, oldest first.
    pub async fn events_after(&self, seq: i64, limit: u64) -> StoreResult<Vec<StoredEvent>> {
        let rows = event::Entity::find()
            .filter(event::Column::Seq.gt(seq))
            .filter(event::Column::Kind.eq(RecordKind::Change.as_str()))
            .order_by_asc(event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?;
        Ok(rows.into_iter().map(|e| StoredEvent { seq: e.seq, payload: e.payload }).collect())
    }

    /// Deletes change events recorded before `before` (audit records stay); returns how many.
    pub(in crate::state) async fn prune_events(&self, before: DateTime<Utc>) -> StoreResult<u64> {
        let result = event::Entity::delete_many()
            .filter(event::Column::Kind.eq(RecordKind::Change.as_str()))
            .filter(event::Column::CreatedAt.lt(before))
            .exec(&self.db)
            .await?;
        Ok(result.rows_affected)
    }

    /// The organization's newest `limit` audit records, newest first.
    pub(super) async fn audit_records(&self, org_id: OrgId, limit: u64) -> StoreResult<Vec<event::Model>> {
        Ok(event::Entity::find()
            .filter(event::Column::Kind.eq(RecordKind::Audit.as_str()))
            .filter(event::Column::OrgId.eq(org_id))
            .order_by_desc(event::Column::Seq)
            .limit(limit)
            .all(&self.db)
            .await?)
    }
}

/// Appends `events`, made `at`, inside the caller's transaction.
pub(in crate::state) async fn append<C: ConnectionTrait>(
    conn: &C,
    events: &[NewEvent],
    at: DateTime<Utc>,
) -> StoreResult<()> {
    if events.is_empty() {
        return Ok(());
    }
    if conn.get_database_backend() == DbBackend::Postgres {
        conn.execute_unprepared(&format!("SELECT pg_advisory_xact_lock({OUTBOX_LOCK})")).await?;
    }
    for e in events {
        event::ActiveModel {
            kind: Set(e.kind.as_str().to_string()),
            namespace_id: Set(e.namespace_id),
            org_id: Set(e.org_id),
            payload: Set(e.payload.clone()),
            created_at: Set(at),
            ..Default::default()
        }
        .insert(conn)
        .await?;
    }
    Ok(())
}
