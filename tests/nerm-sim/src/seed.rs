//! Seed data: the demo tenant the binary starts with, and the `POST /_sim/seed` body.
//!
//! The demo tenant holds what our reference HR export maps to (docs/config.md,
//! infra/config/example.toml): an "Employee" people profile type and the lifecycle roles.

use serde::Deserialize;
use serde_json::{Value, json};
use uuid::Uuid;

use crate::error::ApiError;
use crate::model::*;
use crate::tenant::Tenant;

/// The id of a seeded role, profile type or attribute: the same for the same uid in every
/// simulator, so a recorded work message (`infra/events/sqs-batch.json`) or a saved config
/// names the demo tenant's records whenever it starts, as a real tenant's ids stay put.
fn seeded_id(kind: &str, uid: &str) -> Uuid {
    Uuid::new_v5(&Uuid::NAMESPACE_OID, format!("nerm-sim/{kind}/{uid}").as_bytes())
}

/// Records to add; every part is optional. Attributes and types refer to each other by `uid`.
#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Seed {
    pub roles: Vec<SeedRole>,
    pub ne_attributes: Vec<SeedAttribute>,
    pub profile_types: Vec<SeedProfileType>,
    /// Bodies as for `POST /user` (without the wrapper).
    pub users: Vec<Value>,
    /// Bodies as for `POST /profile`, except `profile_type` (uid) may replace `profile_type_id`.
    pub profiles: Vec<Value>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedRole {
    pub name: String,
    pub uid: Option<String>,
    #[serde(default)]
    pub groups: Vec<String>,
    #[serde(rename = "type", default = "default_role_type")]
    pub kind: String,
}

fn default_role_type() -> String {
    "NeprofileRole".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedAttribute {
    pub uid: String,
    pub label: String,
    #[serde(default = "default_data_type")]
    pub data_type: String,
    pub date_format: Option<String>,
    /// For profile select/search: the uid of the type whose profiles can be picked.
    pub profile_type: Option<String>,
    #[serde(default)]
    pub allow_multiple_selections: bool,
    #[serde(default)]
    pub validations: Vec<String>,
}

fn default_data_type() -> String {
    "text field".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SeedProfileType {
    pub name: String,
    pub uid: String,
    #[serde(default = "default_category")]
    pub category: String,
    /// Attribute uids whose values build the profile name, in order.
    #[serde(default)]
    pub naming: Vec<String>,
    /// Attribute uids used for duplicate detection.
    #[serde(default)]
    pub dup_attributes: Vec<String>,
    #[serde(default)]
    pub archived: bool,
}

fn default_category() -> String {
    "employee".into()
}

impl Seed {
    /// The demo tenant: "Employee" and "Contractor" types, their attributes, lifecycle roles.
    pub fn demo() -> Seed {
        let text = |uid: &str, label: &str| SeedAttribute {
            uid: uid.into(),
            label: label.into(),
            data_type: "text field".into(),
            date_format: None,
            profile_type: None,
            allow_multiple_selections: false,
            validations: vec![],
        };
        let role = |name: &str, uid: &str, groups: &[&str], kind: &str| SeedRole {
            name: name.into(),
            uid: Some(uid.into()),
            groups: groups.iter().map(|g| g.to_string()).collect(),
            kind: kind.into(),
        };
        let mut employee_id = text("employee_id", "Employee ID");
        employee_id.validations = vec!["unique".into()];
        let mut email = text("email", "Email");
        email.validations = vec!["email_format".into()];
        let manager = SeedAttribute {
            uid: "manager".into(),
            label: "Manager".into(),
            data_type: "profile select".into(),
            profile_type: Some("employee".into()),
            ..text("manager", "Manager")
        };
        let sponsor = SeedAttribute {
            uid: "sponsor".into(),
            label: "Sponsor".into(),
            data_type: "profile select".into(),
            profile_type: Some("employee".into()),
            ..text("sponsor", "Sponsor")
        };
        let start_date = SeedAttribute {
            uid: "start_date".into(),
            label: "Start Date".into(),
            data_type: "date".into(),
            date_format: Some("mm/dd/yyyy".into()),
            ..text("start_date", "Start Date")
        };
        Seed {
            roles: vec![
                role("Sponsor", "sponsor", &["Sponsors"], "NeprofileRole"),
                role("Manager", "manager", &["Managers"], "NeprofileRole"),
                role("Administrator", "administrator", &["NERM_Admins", "ORG_ADMIN"], "NeprofileRole"),
                role("Employee", "employee", &["Employees"], "NeprofileRole"),
                role("Vendor Portal", "vendor_portal", &["Vendors"], "NeaccessRole"),
            ],
            ne_attributes: vec![
                employee_id,
                text("first_name", "First Name"),
                text("last_name", "Last Name"),
                email,
                text("job_title", "Job Title"),
                text("department", "Department"),
                text("login", "Login"),
                manager,
                sponsor,
                text("company", "Company"),
                start_date,
            ],
            profile_types: vec![
                SeedProfileType {
                    name: "Employee".into(),
                    uid: "employee".into(),
                    category: "employee".into(),
                    naming: vec!["first_name".into(), "last_name".into()],
                    dup_attributes: vec!["employee_id".into()],
                    archived: false,
                },
                SeedProfileType {
                    name: "Contractor".into(),
                    uid: "contractor".into(),
                    category: "non-employee".into(),
                    naming: vec!["first_name".into(), "last_name".into()],
                    dup_attributes: vec![],
                    archived: false,
                },
            ],
            users: vec![json!({
                "name": "NERM Admin", "email": "nerm.admin@example.com", "type": "NeprofileUser",
                "login": "nerm.admin@example.com", "status": "Active", "group_strings": "NERM_Admins"
            })],
            profiles: vec![],
        }
    }

    /// Adds the seed's records to `tenant`. Types and attributes are matched by uid, so
    /// seeding twice is harmless for them; users and profiles go through the API rules.
    pub fn apply(&self, tenant: &mut Tenant, b: &crate::config::Behaviour) -> Result<(), String> {
        for r in &self.roles {
            if !ROLE_TYPES.contains(&r.kind.as_str()) {
                return Err(format!("role {:?}: type must be one of {ROLE_TYPES:?}", r.name));
            }
            let uid = r.uid.clone().unwrap_or_else(random_uid);
            if tenant.roles.iter().any(|x| x.uid == uid) {
                continue;
            }
            tenant.add_role(Role {
                id: seeded_id("role", &uid),
                uid,
                name: r.name.clone(),
                groups: r.groups.clone(),
                kind: r.kind.clone(),
                archived: false,
            });
        }
        // Types first (attributes may point at them), then attributes, then namings.
        for t in &self.profile_types {
            if !CATEGORIES.contains(&t.category.as_str()) {
                return Err(format!("profile type {:?}: category must be one of {CATEGORIES:?}", t.name));
            }
            if tenant.profile_type_by_key(&t.uid).is_none() {
                tenant.add_profile_type(ProfileType {
                    id: seeded_id("profile_type", &t.uid),
                    uid: t.uid.clone(),
                    name: t.name.clone(),
                    category: t.category.clone(),
                    bypass_dup_protection: false,
                    archived: t.archived,
                    permitted_role_ids: vec![],
                    isc_synced: false,
                    dup_attribute_ids: vec![],
                    naming_attribute_ids: vec![],
                });
            }
        }
        for a in &self.ne_attributes {
            if !DATA_TYPES.iter().any(|(d, _)| *d == a.data_type) {
                return Err(format!("attribute {:?}: unknown data_type {:?}", a.uid, a.data_type));
            }
            if let Some(f) = &a.date_format
                && !DATE_FORMATS.contains(&f.as_str())
            {
                return Err(format!("attribute {:?}: date_format must be one of {DATE_FORMATS:?}", a.uid));
            }
            if tenant.attribute_by_key(&a.uid).is_some() {
                continue;
            }
            let profile_type_id = match &a.profile_type {
                Some(uid) => Some(
                    tenant
                        .profile_type_by_key(uid)
                        .ok_or_else(|| format!("attribute {:?}: no profile type {uid:?}", a.uid))?
                        .id,
                ),
                None => None,
            };
            tenant.add_attribute(NeAttribute {
                id: seeded_id("ne_attribute", &a.uid),
                uid: a.uid.clone(),
                label: a.label.clone(),
                data_type: a.data_type.clone(),
                date_format: a.date_format.clone(),
                profile_type_id,
                allow_multiple_selections: a.allow_multiple_selections,
                archived: false,
                validations: a.validations.clone(),
            });
        }
        for t in &self.profile_types {
            let ids = |uids: &[String]| -> Result<Vec<Uuid>, String> {
                uids.iter()
                    .map(|u| {
                        tenant
                            .attribute_by_key(u)
                            .map(|a| a.id)
                            .ok_or_else(|| format!("type {:?}: no attribute {u:?}", t.uid))
                    })
                    .collect()
            };
            let naming = ids(&t.naming)?;
            let dups = ids(&t.dup_attributes)?;
            let type_id = tenant.profile_type_by_key(&t.uid).expect("added above").id;
            let pt = tenant.profile_types.get_mut(&type_id).expect("exists");
            pt.naming_attribute_ids = naming;
            pt.dup_attribute_ids = dups;
        }
        for u in &self.users {
            let obj = u.as_object().ok_or("each seed user must be an object")?;
            if obj.get("login").and_then(Value::as_str).is_some_and(|l| tenant.user_by_login(l).is_some()) {
                continue;
            }
            tenant.create_user(obj).map_err(|e| describe(&e))?;
        }
        for p in &self.profiles {
            let mut obj = p.as_object().ok_or("each seed profile must be an object")?.clone();
            if let Some(Value::String(uid)) = obj.remove("profile_type") {
                let pt = tenant.profile_type_by_key(&uid).ok_or_else(|| format!("no profile type {uid:?}"))?;
                obj.insert("profile_type_id".into(), json!(pt.id));
            }
            tenant.create_profile(&obj, b).map_err(|e| describe(&e))?;
        }
        Ok(())
    }
}

fn describe(e: &ApiError) -> String {
    e.body().to_string()
}
