//! The telehealth tables (migration `0028_telehealth.sql`), written once over [`Db`] for both
//! backends: the accounts the care team invited into a room, and the rooms' join tickets (kept
//! by hash, spent in one statement so a ticket opens one socket even with two servers racing).
//! The decisions live in `hearth-telehealth`; only that crate calls this module.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db};

/// An account invited into a room (a caregiver or an interpreter).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub room: String,
    pub account_id: String,
    pub role: String,
    pub invited_by: String,
    pub created_at: i64,
}

/// Invites `i.account_id` into `i.room`, or changes the role of an earlier invitation.
pub async fn invite(db: &dyn Db, i: &InviteRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO telehealth_invites (room, account_id, role, invited_by, created_at) VALUES (");
    b.text(&i.room).push(", ").text(&i.account_id).push(", ").text(&i.role).push(", ").text(&i.invited_by);
    b.push(", ").int(i.created_at).push(") ON CONFLICT (room, account_id) DO UPDATE SET role = ").text(&i.role);
    b.push(", invited_by = ").text(&i.invited_by);
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The role `account` was invited into `room` with, if it was.
pub async fn invited_role(db: &dyn Db, room: &str, account: &str) -> Result<Option<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT role FROM telehealth_invites WHERE room = ").text(room).push(" AND account_id = ").text(account);
    let rows = db.fetch(&b.finish(), &[Col::Text]).await?;
    match rows.into_iter().next() {
        Some(row) => text(row.into_iter().next()),
        None => Ok(None),
    }
}

/// A join ticket as stored.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TicketRow {
    /// Hex SHA-256 of the ticket.
    pub hash: String,
    pub room: String,
    pub account_id: String,
    pub role: String,
    /// Unix ms.
    pub expires_at: i64,
}

/// Stores a new ticket, and forgets tickets that expired more than a day before `now`.
pub async fn insert_ticket(db: &dyn Db, t: &TicketRow, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM telehealth_tickets WHERE expires_at < ").int(now - 86_400_000);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO telehealth_tickets (hash, room, account_id, role, expires_at) VALUES (");
    b.text(&t.hash).push(", ").text(&t.room).push(", ").text(&t.account_id).push(", ").text(&t.role);
    b.push(", ").int(t.expires_at).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Spends the ticket with hash `hash` for `room`: its row if it was unused and unexpired at
/// `now` (and is now used), else `None`. One statement, so two sockets racing with one ticket
/// get one room between them.
pub async fn spend_ticket(db: &dyn Db, hash: &str, room: &str, now: i64) -> Result<Option<TicketRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE telehealth_tickets SET used_at = ").int(now);
    b.push(" WHERE hash = ").text(hash).push(" AND room = ").text(room);
    b.push(" AND used_at IS NULL AND expires_at > ").int(now);
    b.push(" RETURNING hash, room, account_id, role, expires_at");
    let rows = db.fetch_write(&b.finish(), &[Col::Text, Col::Text, Col::Text, Col::Text, Col::Int]).await?;
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    Ok(Some(TicketRow {
        hash: text(it.next())?.ok_or_else(corrupt)?,
        room: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        role: text(it.next())?.ok_or_else(corrupt)?,
        expires_at: int(it.next())?.ok_or_else(corrupt)?,
    }))
}
