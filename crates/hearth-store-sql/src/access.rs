//! The reach of an [`Access`] as SQL: the condition a `resources` row must meet to be seen by a
//! caller limited to some patients' records (see `hearth_store::access`).

use hearth_store::{Access, Op, PatientSet, Reach, StoreError, TypeGrant};

use crate::{Builder, Col, Exec, Val};

/// `(<column> IN <the set's Patient ids>)`, the ids as a list or a subquery.
fn in_patients(b: &mut Builder, column: &str, set: &PatientSet) {
    match set {
        PatientSet::Ids(ids) => {
            b.push("(").push(column).push(" IN ").text_list(ids.iter().map(String::as_str)).push(")");
        }
        PatientSet::Organization { org, also } => {
            b.push("(").push(column).push(
                " IN (SELECT p.res_id FROM resources p JOIN search_reference o ON o.rid = p.rid \
                 WHERE p.res_type = 'Patient' AND p.deleted = FALSE AND o.param = 'organization' \
                 AND o.grp = 0 AND o.target_type = 'Organization' AND o.target_id = ",
            );
            b.text(org).push(")");
            if !also.is_empty() {
                b.push(" OR ").push(column).push(" IN ").text_list(also.iter().map(String::as_str));
            }
            b.push(")");
        }
    }
}

/// Appends ` AND <row alias is within reach and of a type the caller may `op`>`; nothing for an
/// unrestricted caller. `types` (when known) limits the compartment definitions written out.
pub(crate) fn restrict(b: &mut Builder, alias: &str, access: &Access, op: Op, types: Option<&[String]>) {
    if let TypeGrant::Only(allowed) = access.grants.get(op) {
        b.push(" AND ").push(alias).push(".res_type IN ").text_list(allowed.iter().map(String::as_str));
    }
    let Reach::Patients { set, scheme } = &access.reach else { return };
    let wanted = |t: &str| types.is_none_or(|ts| ts.iter().any(|x| x == t));
    b.push(" AND ((").push(alias).push(".res_type = 'Patient' AND ");
    in_patients(b, &format!("{alias}.res_id"), set);
    b.push(")");
    let members: Vec<&(String, Vec<String>)> = scheme.compartment.iter().filter(|(t, _)| wanted(t)).collect();
    if !members.is_empty() {
        b.push(" OR ")
            .push(alias)
            .push(".rid IN (SELECT a.rid FROM search_reference a WHERE a.target_type = 'Patient' AND a.grp = 0 AND ");
        in_patients(b, "a.target_id", set);
        b.push(" AND (");
        for (i, (ty, params)) in members.iter().enumerate() {
            if i > 0 {
                b.push(" OR ");
            }
            b.push("(a.res_type = ").text(ty).push(" AND a.param IN ").text_list(params.iter().map(String::as_str));
            b.push(")");
        }
        b.push("))");
    }
    if matches!(op, Op::Read | Op::Search) {
        let shared: Vec<&str> = scheme.shared.iter().map(String::as_str).filter(|t| wanted(t)).collect();
        if !shared.is_empty() {
            b.push(" OR ").push(alias).push(".res_type IN ").text_list(shared);
        }
    }
    b.push(")");
}

/// Whether the live resource is within the caller's reach.
pub async fn in_reach(exec: &mut dyn Exec, access: &Access, resource_type: &str, id: &str) -> Result<bool, StoreError> {
    if access.reach == Reach::All {
        let mut b = Builder::new(exec.dialect());
        b.push("SELECT r.rid FROM resources r WHERE r.res_type = ")
            .text(resource_type)
            .push(" AND r.res_id = ")
            .text(id)
            .push(" AND r.deleted = FALSE");
        return Ok(!exec.fetch(&b.finish(), &[Col::Int]).await?.is_empty());
    }
    let mut b = Builder::new(exec.dialect());
    b.push("SELECT r.rid FROM resources r WHERE r.res_type = ")
        .text(resource_type)
        .push(" AND r.res_id = ")
        .text(id)
        .push(" AND r.deleted = FALSE");
    // Grants are the caller's business here; only the reach is checked.
    let reach_only =
        Access { reach: access.reach.clone(), grants: hearth_store::Grants::all(), actor: None, audit: false };
    restrict(&mut b, "r", &reach_only, Op::Read, Some(std::slice::from_ref(&resource_type.to_owned())));
    let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Val::as_int).is_some())
}
