//! The owner index as the engine uses it: naming a session in its owner's
//! index before its record is written, dropping ended sessions from it,
//! listing an owner's live sessions, and the per-owner cap.

use super::Engine;
use crate::error::Error;
use crate::id::SessionId;
use crate::owners::{gone_of, Found, MAX_SESSIONS_PER_OWNER};
use crate::record::{IndexEntry, Owner};

impl Engine {
    /// Names `id` in `owner`'s index, before its record is written.
    ///
    /// When the owner already has [`MAX_SESSIONS_PER_OWNER`] entries, the
    /// index is pruned of sessions that are gone, and if it is still full,
    /// the owner's oldest sessions are ended to make room.
    pub(crate) async fn index(&self, owner: &Owner, id: &SessionId) -> Result<(), Error> {
        let owners = self.owners();
        if owners.add(owner, id).await? {
            return Ok(());
        }
        if let Some((index, _)) = owners.read(&owner.name).await? {
            let gone = owners.gone_entries(&index).await?;
            let live = index.entries.len() - gone.len();
            owners.remove(&owner.name, &gone).await?;
            if live >= MAX_SESSIONS_PER_OWNER {
                let oldest: Vec<SessionId> = index
                    .entries
                    .iter()
                    .filter(|e| !gone.contains(&e.id))
                    .take(live + 1 - MAX_SESSIONS_PER_OWNER)
                    .map(|e| e.id.clone())
                    .collect();
                log::info!(
                    "kvsession: an owner reached {MAX_SESSIONS_PER_OWNER} sessions; \
                     ending the {} oldest",
                    oldest.len()
                );
                self.revoke_where(&owner.name, &[], |e| oldest.contains(&e.id))
                    .await?;
            }
        }
        if owners.add(owner, id).await? {
            Ok(())
        } else {
            Err(Error::Conflict { attempts: 2 })
        }
    }

    /// Drops `ids` from `owner`'s index after they ended; a failure only
    /// logs (readers and the sweep prune what is left).
    pub(crate) async fn unindex(&self, owner: &str, ids: &[SessionId]) {
        if let Err(e) = self.owners().remove(owner, ids).await {
            log::warn!("kvsession: could not update an owner index: {e}");
        }
    }

    /// The live sessions of `owner` (with their records), pruning the index
    /// of every entry that is gone.
    pub(crate) async fn owned(&self, owner: &str) -> Result<Vec<(IndexEntry, Found)>, Error> {
        let owners = self.owners();
        let Some((index, _)) = owners.read(owner).await? else {
            return Ok(Vec::new());
        };
        let checked = owners.checked(owner, index.entries).await?;
        self.unindex(owner, &gone_of(&checked)).await;
        Ok(checked
            .into_iter()
            .filter(|(_, found)| matches!(found, Found::Live { .. }))
            .collect())
    }
}
