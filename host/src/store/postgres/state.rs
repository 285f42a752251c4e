//! State ([`StateStore`] for [`PostgresStore`]): JSON documents keyed by installation,
//! scope, owner and name.

use deadpool_postgres::GenericClient;
use serde_json::Value;

use super::PostgresStore;
use super::rows::{execute, parse_json, query_opt};
use crate::ids::record_id;
use crate::store::{Patched, Pending, StateCheck, StateKey, StateRecord, StateStore};
use crate::time::now_ms;

/// The state at `key`; `lock` takes the row for the rest of the transaction.
async fn state_row<C: GenericClient>(tx: &C, key: &StateKey, lock: bool) -> anyhow::Result<Option<StateRecord>> {
    let sql = format!(
        "SELECT id, payload, created_at, updated_at FROM states
         WHERE installation_id = $1 AND scope = $2 AND owner_id = $3 AND name = $4{}",
        if lock { " FOR UPDATE" } else { "" }
    );
    let row = query_opt(
        tx,
        &sql,
        &[&key.installation_id, &key.scope.as_str(), &key.owner_id, &key.name],
    )
    .await?;
    row.map(|row| {
        Ok(StateRecord {
            id: row.get(0),
            key: key.clone(),
            payload: parse_json(row.get(1))?,
            created_at: row.get(2),
            updated_at: row.get(3),
        })
    })
    .transpose()
}

impl StateStore for PostgresStore {
    fn state(&self, key: &StateKey) -> Pending<Option<StateRecord>> {
        let key = key.clone();
        self.run(move |c| async move { state_row(&c, &key, false).await })
    }

    fn put_state(&self, key: &StateKey, payload: &Value) -> Pending<StateRecord> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.run(move |c| async move {
            let row = c
                .query_one(
                    "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                     VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                     ON CONFLICT (installation_id, scope, owner_id, name) DO UPDATE SET payload = $6, updated_at = $7
                     RETURNING id, created_at",
                    &[
                        &key.installation_id,
                        &key.scope.as_str(),
                        &key.owner_id,
                        &key.name,
                        &record_id("state"),
                        &payload.to_string(),
                        &now,
                    ],
                )
                .await?;
            Ok(StateRecord {
                id: row.get(0),
                key,
                payload,
                created_at: row.get(1),
                updated_at: now,
            })
        })
    }

    fn delete_state(&self, key: &StateKey) -> Pending<bool> {
        let key = key.clone();
        self.run(move |c| async move {
            let deleted = execute(
                &c,
                "DELETE FROM states WHERE installation_id = $1 AND scope = $2 AND owner_id = $3 AND name = $4",
                &[&key.installation_id, &key.scope.as_str(), &key.owner_id, &key.name],
            )
            .await?;
            Ok(deleted > 0)
        })
    }

    fn get_or_put_state(&self, key: &StateKey, payload: &Value) -> Pending<(StateRecord, bool)> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let created = execute(
                &tx,
                "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                 VALUES ($1, $2, $3, $4, $5, $6, $7, $7)
                 ON CONFLICT (installation_id, scope, owner_id, name) DO NOTHING",
                &[
                    &key.installation_id,
                    &key.scope.as_str(),
                    &key.owner_id,
                    &key.name,
                    &record_id("state"),
                    &payload.to_string(),
                    &now,
                ],
            )
            .await?
                > 0;
            let state = state_row(&tx, &key, false)
                .await?
                .ok_or_else(|| anyhow::anyhow!("the state vanished inside its transaction"))?;
            tx.commit().await?;
            Ok((state, created))
        })
    }

    fn patch_state(
        &self,
        key: &StateKey,
        patch: &serde_json::Map<String, Value>,
        check: StateCheck,
    ) -> Pending<Patched> {
        let now = now_ms();
        let (key, patch) = (key.clone(), patch.clone());
        // The check is not Sync; it runs between two awaits, never across one.
        let check = std::sync::Mutex::new(check);
        self.run(move |mut c| async move {
            let tx = c.transaction().await?;
            let Some(mut state) = state_row(&tx, &key, true).await? else {
                return Ok(Patched::Missing);
            };
            let mut fields = match state.payload {
                Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            };
            for (name, value) in patch {
                if value.is_null() {
                    fields.remove(&name);
                } else {
                    fields.insert(name, value);
                }
            }
            state.payload = Value::Object(fields);
            let verdict = (check.lock().unwrap_or_else(|poisoned| poisoned.into_inner()))(&state.payload);
            if let Err(why) = verdict {
                return Ok(Patched::Refused(why));
            }
            state.updated_at = now;
            execute(
                &tx,
                "UPDATE states SET payload = $5, updated_at = $6
                 WHERE installation_id = $1 AND scope = $2 AND owner_id = $3 AND name = $4",
                &[
                    &key.installation_id,
                    &key.scope.as_str(),
                    &key.owner_id,
                    &key.name,
                    &state.payload.to_string(),
                    &now,
                ],
            )
            .await?;
            tx.commit().await?;
            Ok(Patched::Done(state))
        })
    }
}
