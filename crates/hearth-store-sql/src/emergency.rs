//! What `hearth-emergency` reads over [`Db`] besides FHIR resources: the clinician accounts of
//! an organisation (the care team an emergency alert reaches when the patient has no general
//! practitioner with an account). Only that crate calls this module. It owns no table: its
//! migration (`0021_search_position.sql`) is the `near` search index, used through FHIR search.

use hearth_store::StoreError;

use crate::identity::{corrupt, text};
use crate::{Builder, Col, Db};

/// The clinician accounts bound to `organization`, oldest id first (at most 200).
pub async fn clinicians_of(db: &dyn Db, organization: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE role = 'clinician' AND organization = ")
        .text(organization)
        .push(" ORDER BY id LIMIT 200");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}
