//! The FHIR write interactions, written once over [`StoreTx`] for every backend: version
//! preconditions, conditional matching, create-vs-update decisions. Each function runs inside
//! the caller's transaction; the `*_once` helpers on [`ResourceStoreExt`] wrap one interaction
//! in its own transaction.

use async_trait::async_trait;
use chrono::{DateTime, Utc};

use crate::{
    ConditionalCreate, CurrentState, Deleted, Guarded, GuardedTx, IfMatch, Method, SearchQuery, StoreError, Version,
    Write, Written,
};

/// Writes the version after `previous` (version 1 when `None`): stamps `id` and `meta` into the
/// body and has the backend persist it with its index rows.
pub async fn put(
    tx: &mut GuardedTx,
    write: Write,
    previous: Option<CurrentState>,
    method: Method,
    now: DateTime<Utc>,
) -> Result<Version, StoreError> {
    let version_id = previous.map_or(1, |p| p.version + 1);
    let body = crate::stamp(write.resource, &write.id, version_id, now);
    let version = Version {
        resource_type: write.resource_type,
        id: write.id,
        version_id,
        last_updated: now,
        method,
        body: Some(body.into()),
    };
    tx.persist(&version, &write.index).await?;
    Ok(version)
}

/// Writes a deletion marker after `previous`; the backend drops the index rows.
pub async fn put_deletion(
    tx: &mut GuardedTx,
    resource_type: &str,
    id: &str,
    previous: CurrentState,
    now: DateTime<Utc>,
) -> Result<Version, StoreError> {
    let version = Version {
        resource_type: resource_type.to_owned(),
        id: id.to_owned(),
        version_id: previous.version + 1,
        last_updated: now,
        method: Method::Delete,
        body: None,
    };
    tx.persist(&version, &[]).await?;
    Ok(version)
}

fn check_if_match(if_match: IfMatch, current: Option<CurrentState>) -> Result<(), StoreError> {
    match (if_match, current) {
        (None, _) => Ok(()),
        (Some(expected), Some(c)) if c.version == expected && !c.deleted => Ok(()),
        (Some(expected), c) => {
            Err(StoreError::VersionConflict { expected, current: c.filter(|c| !c.deleted).map(|c| c.version) })
        }
    }
}

/// Creates a resource under a fresh id; `Conflict` if the id is taken (even by a deleted one).
pub async fn create(tx: &mut GuardedTx, write: Write, now: DateTime<Utc>) -> Result<Version, StoreError> {
    if tx.current(&write.resource_type, &write.id).await?.is_some() {
        return Err(StoreError::Conflict);
    }
    put(tx, write, None, Method::Post, now).await
}

/// 0 matches → create, 1 → `Exists`, more → `MultipleMatches`.
pub async fn create_unless_exists(
    tx: &mut GuardedTx,
    criteria: &SearchQuery,
    write: Write,
    now: DateTime<Utc>,
) -> Result<ConditionalCreate, StoreError> {
    let mut matches = tx.find(criteria, 2).await?;
    match matches.len() {
        0 => Ok(ConditionalCreate::Created(create(tx, write, now).await?)),
        1 => matches.pop().map(ConditionalCreate::Exists).ok_or_else(|| StoreError::Corrupt("match vanished".into())),
        n => Err(StoreError::MultipleMatches(n)),
    }
}

/// Update, or create with the client's id. `if_match` is checked against the current version.
pub async fn update(
    tx: &mut GuardedTx,
    write: Write,
    if_match: IfMatch,
    now: DateTime<Utc>,
) -> Result<Written, StoreError> {
    let current = tx.current(&write.resource_type, &write.id).await?;
    check_if_match(if_match, current)?;
    let created = current.is_none_or(|c| c.deleted);
    let version = put(tx, write, current, Method::Put, now).await?;
    Ok(Written { version, created })
}

/// Conditional update: 0 matches → create `write` (with its id), 1 → update the match (a
/// client-supplied id that differs from the match's is `IdMismatch`), more → `MultipleMatches`.
pub async fn update_matching(
    tx: &mut GuardedTx,
    criteria: &SearchQuery,
    mut write: Write,
    id_from_client: bool,
    if_match: IfMatch,
    now: DateTime<Utc>,
) -> Result<Written, StoreError> {
    let matches = tx.find(criteria, 2).await?;
    if matches.len() > 1 {
        return Err(StoreError::MultipleMatches(matches.len()));
    }
    if let Some(found) = matches.into_iter().next() {
        if id_from_client && found.id != write.id {
            return Err(StoreError::IdMismatch);
        }
        write.id = found.id;
    }
    update(tx, write, if_match, now).await
}

pub async fn delete(
    tx: &mut GuardedTx,
    resource_type: &str,
    id: &str,
    if_match: IfMatch,
    now: DateTime<Utc>,
) -> Result<Deleted, StoreError> {
    let Some(current) = tx.current(resource_type, id).await? else {
        return Ok(Deleted::NotFound);
    };
    if current.deleted && if_match.is_none() {
        return Ok(Deleted::AlreadyDeleted);
    }
    check_if_match(if_match, Some(current))?;
    Ok(Deleted::Deleted(put_deletion(tx, resource_type, id, current, now).await?))
}

/// Conditional delete. With `allow_multiple = false`, more than one match is `MultipleMatches`.
pub async fn delete_matching(
    tx: &mut GuardedTx,
    criteria: &SearchQuery,
    allow_multiple: bool,
    now: DateTime<Utc>,
) -> Result<Vec<Version>, StoreError> {
    let limit = if allow_multiple { u32::MAX } else { 2 };
    let matches = tx.find(criteria, limit).await?;
    if !allow_multiple && matches.len() > 1 {
        return Err(StoreError::MultipleMatches(matches.len()));
    }
    let mut out = Vec::with_capacity(matches.len());
    for m in matches {
        let previous = CurrentState { version: m.version_id, deleted: false };
        out.push(put_deletion(tx, &m.resource_type, &m.id, previous, now).await?);
    }
    Ok(out)
}

/// Single interactions, each in its own transaction.
#[async_trait]
pub trait ResourceStoreExt {
    async fn create(&self, write: Write, now: DateTime<Utc>) -> Result<Version, StoreError>;
    async fn create_unless_exists(
        &self,
        criteria: &SearchQuery,
        write: Write,
        now: DateTime<Utc>,
    ) -> Result<ConditionalCreate, StoreError>;
    async fn update(&self, write: Write, if_match: IfMatch, now: DateTime<Utc>) -> Result<Written, StoreError>;
    async fn update_matching(
        &self,
        criteria: &SearchQuery,
        write: Write,
        id_from_client: bool,
        if_match: IfMatch,
        now: DateTime<Utc>,
    ) -> Result<Written, StoreError>;
    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        if_match: IfMatch,
        now: DateTime<Utc>,
    ) -> Result<Deleted, StoreError>;
    async fn delete_matching(
        &self,
        criteria: &SearchQuery,
        allow_multiple: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Version>, StoreError>;
}

#[async_trait]
impl ResourceStoreExt for Guarded {
    async fn create(&self, write: Write, now: DateTime<Utc>) -> Result<Version, StoreError> {
        let mut tx = self.begin().await?;
        let out = create(&mut tx, write, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn create_unless_exists(
        &self,
        criteria: &SearchQuery,
        write: Write,
        now: DateTime<Utc>,
    ) -> Result<ConditionalCreate, StoreError> {
        let mut tx = self.begin().await?;
        let out = create_unless_exists(&mut tx, criteria, write, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn update(&self, write: Write, if_match: IfMatch, now: DateTime<Utc>) -> Result<Written, StoreError> {
        let mut tx = self.begin().await?;
        let out = update(&mut tx, write, if_match, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn update_matching(
        &self,
        criteria: &SearchQuery,
        write: Write,
        id_from_client: bool,
        if_match: IfMatch,
        now: DateTime<Utc>,
    ) -> Result<Written, StoreError> {
        let mut tx = self.begin().await?;
        let out = update_matching(&mut tx, criteria, write, id_from_client, if_match, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn delete(
        &self,
        resource_type: &str,
        id: &str,
        if_match: IfMatch,
        now: DateTime<Utc>,
    ) -> Result<Deleted, StoreError> {
        let mut tx = self.begin().await?;
        let out = delete(&mut tx, resource_type, id, if_match, now).await?;
        tx.commit().await?;
        Ok(out)
    }

    async fn delete_matching(
        &self,
        criteria: &SearchQuery,
        allow_multiple: bool,
        now: DateTime<Utc>,
    ) -> Result<Vec<Version>, StoreError> {
        let mut tx = self.begin().await?;
        let out = delete_matching(&mut tx, criteria, allow_multiple, now).await?;
        tx.commit().await?;
        Ok(out)
    }
}
