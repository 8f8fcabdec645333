//! The account role carried by every access token.

use core::fmt;
use core::str::FromStr;

use serde::{Deserialize, Serialize};

/// What kind of person an account belongs to. Authorization decisions start from it; the finer rules
/// (which patients a caregiver or clinician may see) live with the data, not here.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    /// A patient, linked to a FHIR `Patient`.
    Patient,
    /// A clinician, linked to a FHIR `Practitioner`.
    Clinician,
    /// An administrator of the Hearth instance.
    Admin,
    /// A person a patient has granted access to their record.
    Caregiver,
}

/// A string that is not one of the role names.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("unknown role: expected one of patient, clinician, admin, caregiver")]
pub struct UnknownRole;

impl Role {
    pub const ALL: [Role; 4] = [Role::Patient, Role::Clinician, Role::Admin, Role::Caregiver];

    /// The wire name, as in tokens, JSON and the database.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Patient => "patient",
            Role::Clinician => "clinician",
            Role::Admin => "admin",
            Role::Caregiver => "caregiver",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for Role {
    type Err = UnknownRole;

    /// Exact, lowercase names only: a role is never guessed from a near miss.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        Role::ALL.into_iter().find(|role| role.as_str() == s).ok_or(UnknownRole)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trips_every_role() {
        for role in Role::ALL {
            assert_eq!(role.to_string().parse::<Role>(), Ok(role));
            let json = serde_json::to_string(&role).unwrap_or_default();
            assert_eq!(json, format!("\"{role}\""));
            assert_eq!(serde_json::from_str::<Role>(&json).ok(), Some(role));
        }
    }

    #[test]
    fn refuses_unknown_and_differently_cased_names() {
        assert_eq!("Admin".parse::<Role>(), Err(UnknownRole));
        assert_eq!("root".parse::<Role>(), Err(UnknownRole));
        assert_eq!("".parse::<Role>(), Err(UnknownRole));
        assert!(serde_json::from_str::<Role>("\"superuser\"").is_err());
    }
}
