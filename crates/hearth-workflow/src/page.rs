//! Reading every page of a store search, bounded.

use hearth_search::SearchQuery;
use hearth_store::{Guarded, SearchRequest, StoreError, Version};

/// Every live match of `query` that the store view `store` may see, page after page, stopping
/// once at least `limit` matches are in hand (pass `usize::MAX` for all of them).
pub async fn search_all(store: &Guarded, query: &SearchQuery, limit: usize) -> Result<Vec<Version>, StoreError> {
    let mut out = Vec::new();
    let mut cursor = None;
    loop {
        let request = SearchRequest {
            query: query.clone(),
            access: store.access().clone(),
            compartment: None,
            cursor,
            count_total: false,
        };
        let page = store.search(request).await?;
        out.extend(page.matches);
        match page.next {
            Some(next) if out.len() < limit => cursor = Some(next),
            _ => return Ok(out),
        }
    }
}
