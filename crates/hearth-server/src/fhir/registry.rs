//! The search parameters stored as resources, as the registry loads them.

use hearth_search::Registry;
use hearth_store::{ResourceStore, StoreError};
use serde_json::Value;

/// Resources read per scan batch.
const BATCH: u32 = 500;

pub(crate) async fn stored(store: &dyn ResourceStore) -> Result<Vec<Value>, StoreError> {
    let types = ["SearchParameter".to_owned()];
    let mut out = Vec::new();
    let mut after = 0;
    loop {
        let batch = store.scan(Some(&types), after, BATCH).await?;
        let Some((last, _)) = batch.last() else { break };
        after = *last;
        for (_, v) in batch {
            if let Some(body) = v.body
                && let Ok(value) = serde_json::from_str::<Value>(&body)
            {
                out.push(value);
            }
        }
    }
    Ok(out)
}

/// Adds every stored SearchParameter to `registry` (at start-up). One that no longer compiles
/// is skipped with a warning naming its id; the rest still load.
pub async fn load_stored(store: &dyn ResourceStore, registry: &mut Registry) -> Result<(), StoreError> {
    for sp in stored(store).await? {
        if let Err(e) = registry.add(&sp) {
            let id = sp.get("id").and_then(Value::as_str).unwrap_or("?");
            tracing::warn!(search_parameter = id, error = %e, "stored SearchParameter not loaded");
        }
    }
    Ok(())
}
