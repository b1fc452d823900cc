//! The `roles` claim: a person's approved roles as one client sees them, in ID tokens, access
//! tokens and userinfo when the client asked for the `roles` scope.
//!
//! ```json
//! "roles": [{
//!   "org_unit": {"code": "000.02.07.H57", "name": "Phòng Nghiệp vụ Y"},
//!   "category": "cong_chuc",
//!   "position": "Chuyên viên",
//!   "app_roles": ["editor"]
//! }]
//! ```
//!
//! `app_roles` holds only this client's codes. A client that declares app roles sees only the
//! roles that grant it some (a post with no business at that client stays private); a client
//! that declares none (a directory, a portal that needs posts only) sees every approved role
//! with an empty `app_roles`.

use serde::{Deserialize, Serialize};

use super::Role;
use crate::clients::Client;

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct OrgUnitClaim {
    pub code: String,
    pub name: String,
}

#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct RoleClaim {
    pub org_unit: OrgUnitClaim,
    pub category: String,
    pub position: String,
    pub app_roles: Vec<String>,
}

/// The claim for `client` from the person's approved roles.
pub fn for_client(client: &Client, approved: &[Role]) -> Vec<RoleClaim> {
    let declares = !client.metadata.roles.is_empty();
    approved
        .iter()
        .filter_map(|role| {
            let app_roles: Vec<String> = role
                .app_roles
                .get(&client.client_id)
                .map(|codes| {
                    codes
                        .iter()
                        // A code the client no longer declares is no longer granted.
                        .filter(|c| client.metadata.declared_role(c).is_some())
                        .cloned()
                        .collect()
                })
                .unwrap_or_default();
            if declares && app_roles.is_empty() {
                return None;
            }
            Some(RoleClaim {
                org_unit: OrgUnitClaim {
                    code: role.org_code.clone(),
                    name: role.org_name.clone(),
                },
                category: role.category.as_str().to_string(),
                position: role.position.clone(),
                app_roles,
            })
        })
        .collect()
}
