//! State ([`StateStore`] for [`SqliteStore`]): JSON documents keyed by installation,
//! scope, owner and name.

use anyhow::Context as _;
use rusqlite::{Connection, OptionalExtension, params};
use serde_json::Value;

use super::rows::parse_json;
use super::{SqliteStore, execute};
use crate::ids::record_id;
use crate::store::{Patched, Pending, StateCheck, StateKey, StateRecord, StateStore};
use crate::time::now_ms;

/// The state at `key` (read inside a transaction by the writes).
fn state_row(tx: &Connection, key: &StateKey) -> anyhow::Result<Option<StateRecord>> {
    Ok(tx
        .prepare_cached(
            "SELECT id, payload, created_at, updated_at FROM states
             WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
        )?
        .query_row(
            params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
            |row| {
                Ok(StateRecord {
                    id: row.get(0)?,
                    key: key.clone(),
                    payload: parse_json(row.get(1)?)?,
                    created_at: row.get(2)?,
                    updated_at: row.get(3)?,
                })
            },
        )
        .optional()?)
}

impl StateStore for SqliteStore {
    fn state(&self, key: &StateKey) -> Pending<Option<StateRecord>> {
        let key = key.clone();
        self.read(move |c| {
            let key = &key;
            state_row(c, key)
        })
    }

    fn put_state(&self, key: &StateKey, payload: &Value) -> Pending<StateRecord> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.write(move |tx| {
            execute(tx,
                "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (installation_id, scope, owner_id, name) DO UPDATE SET payload = ?6, updated_at = ?7",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name, record_id("state"), payload.to_string(), now],
            )?;
            let (id, created_at) = tx.query_row(
                "SELECT id, created_at FROM states WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
                |row| Ok((row.get(0)?, row.get(1)?)),
            )?;
            Ok(StateRecord { id, key: key.clone(), payload: payload.clone(), created_at, updated_at: now })
        })
    }

    fn delete_state(&self, key: &StateKey) -> Pending<bool> {
        let key = key.clone();
        self.write(move |c| {
            let deleted = execute(
                c,
                "DELETE FROM states WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![key.installation_id, key.scope.as_str(), key.owner_id, key.name],
            )?;
            Ok(deleted > 0)
        })
    }

    fn get_or_put_state(&self, key: &StateKey, payload: &Value) -> Pending<(StateRecord, bool)> {
        let now = now_ms();
        let (key, payload) = (key.clone(), payload.clone());
        self.write(move |tx| {
            let created = execute(
                tx,
                "INSERT INTO states (installation_id, scope, owner_id, name, id, payload, created_at, updated_at)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?7)
                 ON CONFLICT (installation_id, scope, owner_id, name) DO NOTHING",
                params![
                    key.installation_id,
                    key.scope.as_str(),
                    key.owner_id,
                    key.name,
                    record_id("state"),
                    payload.to_string(),
                    now
                ],
            )? > 0;
            let state = state_row(tx, &key)?.context("the state vanished inside its transaction")?;
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
        self.write(move |tx| {
            let Some(mut state) = state_row(tx, &key)? else {
                return Ok(Patched::Missing);
            };
            let mut fields = match state.payload {
                Value::Object(fields) => fields,
                _ => serde_json::Map::new(),
            };
            for (name, value) in &patch {
                if value.is_null() {
                    fields.remove(name);
                } else {
                    fields.insert(name.clone(), value.clone());
                }
            }
            state.payload = Value::Object(fields);
            if let Err(why) = check(&state.payload) {
                return Ok(Patched::Refused(why));
            }
            state.updated_at = now;
            execute(
                tx,
                "UPDATE states SET payload = ?5, updated_at = ?6
                 WHERE installation_id = ?1 AND scope = ?2 AND owner_id = ?3 AND name = ?4",
                params![
                    key.installation_id,
                    key.scope.as_str(),
                    key.owner_id,
                    key.name,
                    state.payload.to_string(),
                    now
                ],
            )?;
            Ok(Patched::Done(state))
        })
    }
}

#[cfg(test)]
mod tests {
    use serde_json::json;

    use super::*;
    use crate::store::StateScope;

    #[test]
    fn state_is_keyed_by_installation() {
        let store = SqliteStore::in_memory().unwrap();
        let mine = StateKey {
            installation_id: "inst_a".into(),
            scope: StateScope::Integration,
            owner_id: "inst_a".into(),
            name: "s".into(),
        };
        let theirs = StateKey {
            installation_id: "inst_b".into(),
            ..mine.clone()
        };
        store.put_state(&mine, &json!({"v": 1})).wait().unwrap();
        assert_eq!(store.state(&mine).wait().unwrap().unwrap().payload, json!({"v": 1}));
        assert!(store.state(&theirs).wait().unwrap().is_none());
        let updated = store.put_state(&mine, &json!({"v": 2})).wait().unwrap();
        assert_eq!(store.state(&mine).wait().unwrap().unwrap().id, updated.id);
        assert!(store.delete_state(&mine).wait().unwrap());
        assert!(!store.delete_state(&mine).wait().unwrap());
    }

    #[test]
    fn get_or_put_and_patch_state() {
        let store = SqliteStore::in_memory().unwrap();
        let key = StateKey {
            installation_id: String::new(),
            scope: StateScope::Bot,
            owner_id: "bot_1".into(),
            name: "settings".into(),
        };
        let anything: fn() -> StateCheck = || Box::new(|_| Ok(()));
        assert!(matches!(
            store
                .patch_state(&key, &serde_json::Map::new(), anything())
                .wait()
                .unwrap(),
            Patched::Missing
        ));
        let (first, created) = store.get_or_put_state(&key, &json!({"a": 1, "b": 2})).wait().unwrap();
        assert!(created);
        let (again, created) = store.get_or_put_state(&key, &json!({"other": true})).wait().unwrap();
        assert!(!created);
        assert_eq!(again.id, first.id);
        assert_eq!(again.payload, json!({"a": 1, "b": 2}));
        let patch = json!({"b": null, "c": [3]});
        let Patched::Done(patched) = store
            .patch_state(&key, patch.as_object().unwrap(), anything())
            .wait()
            .unwrap()
        else {
            panic!("the state exists and any payload passes");
        };
        assert_eq!(patched.payload, json!({"a": 1, "c": [3]}));
        assert_eq!(store.state(&key).wait().unwrap().unwrap().payload, patched.payload);

        // The check sees the merged state, and a refusal writes nothing.
        let needs_a: StateCheck = Box::new(|merged| match merged.get("a") {
            Some(_) => Ok(()),
            None => Err("a is required".into()),
        });
        let patch = json!({"a": null});
        match store
            .patch_state(&key, patch.as_object().unwrap(), needs_a)
            .wait()
            .unwrap()
        {
            Patched::Refused(why) => assert_eq!(why, "a is required"),
            other => panic!("removing a must be refused: {other:?}"),
        }
        assert_eq!(
            store.state(&key).wait().unwrap().unwrap().payload,
            json!({"a": 1, "c": [3]})
        );
    }
}
