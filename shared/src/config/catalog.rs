//! Resolving a [`MappingConfig`] against what the NERM tenant actually has.

use std::collections::HashMap;

use serde::{Deserialize, Serialize};

use super::error::{ConfigWarning, ProblemKind, Problems, known_list};
use super::values::{RoleStrategy, RoleType, UserType, normalize_value, with_normalized_value};
use super::{ConfigError, MappingConfig, NameIndex, Template, index_names};

/// The parts of a tenant the config refers to. The planner fills it from NERM
/// (`/profile_types`, `/ne_attributes`, `/roles`, docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct NermCatalog {
    pub profile_types: Vec<CatalogProfileType>,
    /// All attributes of the tenant (attributes are global in NERM).
    pub attributes: Vec<CatalogAttribute>,
    pub roles: Vec<CatalogRole>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogProfileType {
    pub id: String,
    pub uid: String,
    pub name: String,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogAttribute {
    pub id: String,
    /// The key used in a profile's `attributes` object.
    pub uid: String,
    pub label: String,
    /// NERM `data_type`, e.g. `text field`, `profile select`.
    pub data_type: String,
    /// For profile select/search attributes: the profile type that can be picked.
    #[serde(default)]
    pub profile_type_id: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CatalogRole {
    pub id: String,
    pub uid: String,
    pub name: String,
    /// Directory groups matched against a user's `group_strings` / IdP groups.
    #[serde(default)]
    pub groups: Vec<String>,
    /// Role type when known (GET does not return it; a `?type=` filtered list does).
    #[serde(rename = "type", default)]
    pub role_type: Option<RoleType>,
}

/// A mapped profile attribute with its NERM id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ResolvedAttribute {
    pub uid: String,
    pub id: String,
    pub label: String,
    pub data_type: String,
    pub template: Template,
}

/// Why a role name (from `roles.defaults` or a row's roles column) cannot be used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RoleLookupError {
    #[error("role `{0}` does not exist in NERM")]
    Unknown(String),
    #[error("role name `{0}` matches several NERM roles (names compared case-insensitively)")]
    Ambiguous(String),
    #[error("role `{0}` has no directory groups, so the `group_strings` strategy cannot grant it")]
    NoGroups(String),
    #[error("role `{name}` is a {role_type} and cannot be given to a {user_type}")]
    WrongType { name: String, role_type: RoleType, user_type: UserType },
}

/// A config bound to a tenant: ids instead of names, plus the lookups the planner needs.
#[derive(Debug, Clone)]
pub struct ResolvedConfig {
    config: MappingConfig,
    profile_type: CatalogProfileType,
    attributes: Vec<ResolvedAttribute>,
    key_attribute: usize,
    manager_attribute: Option<CatalogAttribute>,
    roles: Vec<CatalogRole>,
    roles_by_name: NameIndex,
    default_roles: Vec<usize>,
    warnings: Vec<ConfigWarning>,
}

impl ResolvedConfig {
    pub fn config(&self) -> &MappingConfig {
        &self.config
    }

    /// The profile type employees' profiles belong to.
    pub fn profile_type(&self) -> &CatalogProfileType {
        &self.profile_type
    }

    /// `[profile.attributes]` with ids, sorted by uid (includes the key attribute).
    pub fn attributes(&self) -> &[ResolvedAttribute] {
        &self.attributes
    }

    /// The attribute holding the stable employee key (`profile.key_attribute`).
    pub fn key_attribute(&self) -> &ResolvedAttribute {
        &self.attributes[self.key_attribute]
    }

    /// The profile-select attribute that receives the manager's profile id, if configured.
    pub fn manager_attribute(&self) -> Option<&CatalogAttribute> {
        self.manager_attribute.as_ref()
    }

    /// Every role of the catalog.
    pub fn roles(&self) -> &[CatalogRole] {
        &self.roles
    }

    /// `roles.defaults`, resolved, in config order.
    pub fn default_roles(&self) -> impl Iterator<Item = &CatalogRole> {
        self.default_roles.iter().map(|&i| &self.roles[i])
    }

    /// Role by name, trimmed and case-insensitive; `None` when unknown or ambiguous.
    pub fn role(&self, name: &str) -> Option<&CatalogRole> {
        with_normalized_value(name, |key| self.roles_by_name.get(key).copied().flatten()).map(|i| &self.roles[i])
    }

    /// Role by name, checked for use with the configured strategy and user type: the
    /// `group_strings` strategy needs a role with directory groups; a known role type must
    /// match the user type. Use it for the roles column of each row.
    pub fn lookup_role(&self, name: &str) -> Result<&CatalogRole, RoleLookupError> {
        lookup(name, &self.roles, &self.roles_by_name, &self.config).map(|i| &self.roles[i])
    }

    /// Warnings from loading plus those found while resolving.
    pub fn warnings(&self) -> &[ConfigWarning] {
        &self.warnings
    }
}

/// Data types whose values are ids or files, so a column template cannot fill them.
const NON_TEMPLATE_TYPES: &[&str] = &[
    "profile select",
    "profile search",
    "owner select",
    "owner search",
    "contributor select",
    "contributor search",
    "attachment",
];

/// Data types that hold a profile id (for the manager link).
const PROFILE_SELECT_TYPES: &[&str] = &["profile select", "profile search"];

/// `"Profile_Select "` → `"profile select"`.
fn normalize_data_type(data_type: &str) -> String {
    data_type.trim().to_lowercase().replace('_', " ")
}

pub(super) fn resolve(config: &MappingConfig, catalog: &NermCatalog) -> Result<ResolvedConfig, ConfigError> {
    let mut problems = Problems::default();
    let mut warnings = config.warnings().to_vec();
    let profile_type = resolve_profile_type(&config.profile.profile_type, catalog, &mut problems);
    let lookup = AttributeLookup::new(catalog);
    let attributes = resolve_attributes(config, &lookup, &mut problems);
    let key_attribute = attributes.iter().position(|a| a.uid == config.profile.key_attribute);
    let manager_attribute = config
        .managers
        .profile_attribute
        .as_deref()
        .and_then(|uid| resolve_manager_attribute(uid, profile_type.as_ref(), &lookup, &mut problems));
    let roles = catalog.roles.clone();
    let roles_by_name = index_names(roles.iter().map(|r| r.name.as_str()));
    warnings.extend(ambiguous_roles_warning(&roles, &roles_by_name));

    let (Some(profile_type), Some(key_attribute)) = (profile_type, key_attribute) else {
        // The reason is already recorded (unknown type or unknown/unusable key attribute).
        resolve_defaults(config, &roles, &roles_by_name, &mut problems);
        if problems.is_empty() {
            // Not expected: an unresolved type or key attribute always records its reason.
            problems.push(
                "profile.key_attribute",
                ProblemKind::UnknownAttribute,
                "the profile type or the key attribute could not be resolved".into(),
            );
        }
        return Err(problems.into_error());
    };

    let mut resolved = ResolvedConfig {
        config: config.clone(),
        profile_type,
        attributes,
        key_attribute,
        manager_attribute,
        roles,
        roles_by_name,
        default_roles: Vec::new(),
        warnings,
    };
    resolved.default_roles = resolve_defaults(config, &resolved.roles, &resolved.roles_by_name, &mut problems);
    problems.into_result()?;
    Ok(resolved)
}

/// The tenant's attributes by uid (exact: uids are stable identifiers), with a hint for a uid
/// that only differs in case or is a label.
struct AttributeLookup<'a> {
    catalog: &'a NermCatalog,
    by_uid: HashMap<&'a str, &'a CatalogAttribute>,
}

impl<'a> AttributeLookup<'a> {
    fn new(catalog: &'a NermCatalog) -> Self {
        let by_uid = catalog
            .attributes
            .iter()
            .rev() // first wins on duplicates
            .map(|a| (a.uid.as_str(), a))
            .collect();
        AttributeLookup { catalog, by_uid }
    }

    /// The attribute `uid` (configured at `key`), or a problem naming the known uids.
    fn find(&self, key: &str, uid: &str, problems: &mut Problems) -> Option<&'a CatalogAttribute> {
        if let Some(a) = self.by_uid.get(uid) {
            return Some(*a);
        }
        let attributes = &self.catalog.attributes;
        let hint = attributes
            .iter()
            .find(|a| a.uid.eq_ignore_ascii_case(uid) || a.label.eq_ignore_ascii_case(uid))
            .map(|a| format!(" (did you mean `{}`, labelled {:?}?)", a.uid, a.label))
            .unwrap_or_default();
        let known = known_list(attributes.iter().map(|a| a.uid.as_str()));
        problems.push(
            key,
            ProblemKind::UnknownAttribute,
            format!("attribute `{uid}` does not exist in NERM{hint}; known attribute uids: {known}"),
        );
        None
    }
}

/// The profile attributes the config fills from templates: each must exist and take text.
fn resolve_attributes(
    config: &MappingConfig,
    lookup: &AttributeLookup<'_>,
    problems: &mut Problems,
) -> Vec<ResolvedAttribute> {
    let mut attributes = Vec::with_capacity(config.profile.attributes.len());
    for mapping in &config.profile.attributes {
        let key = format!("profile.attributes.{}", mapping.uid);
        let Some(attr) = lookup.find(&key, &mapping.uid, problems) else {
            continue;
        };
        let data_type = normalize_data_type(&attr.data_type);
        if NON_TEMPLATE_TYPES.contains(&data_type.as_str()) {
            let manager_hint = if PROFILE_SELECT_TYPES.contains(&data_type.as_str()) {
                " (use `managers.profile_attribute` for the manager link)"
            } else {
                ""
            };
            problems.push(
                key,
                ProblemKind::AttributeType,
                format!(
                    "attribute `{}` is a `{}` attribute, which holds ids, not text; a column template cannot fill it{manager_hint}",
                    attr.uid, attr.data_type,
                ),
            );
            continue;
        }
        attributes.push(ResolvedAttribute {
            uid: attr.uid.clone(),
            id: attr.id.clone(),
            label: attr.label.clone(),
            data_type: attr.data_type.clone(),
            template: mapping.template.clone(),
        });
    }
    attributes
}

/// `managers.profile_attribute`: a profile select attribute that, when NERM says which type it
/// selects, selects profiles of the configured type.
fn resolve_manager_attribute(
    uid: &str,
    profile_type: Option<&CatalogProfileType>,
    lookup: &AttributeLookup<'_>,
    problems: &mut Problems,
) -> Option<CatalogAttribute> {
    let key = "managers.profile_attribute";
    let attr = lookup.find(key, uid, problems)?;
    if !PROFILE_SELECT_TYPES.contains(&normalize_data_type(&attr.data_type).as_str()) {
        problems.push(
            key,
            ProblemKind::AttributeType,
            format!(
                "attribute `{uid}` is a `{}` attribute; the manager link needs a `profile select` attribute",
                attr.data_type
            ),
        );
        return None;
    }
    if let (Some(pt), Some(selects)) = (profile_type, &attr.profile_type_id)
        && *selects != pt.id
    {
        let types = &lookup.catalog.profile_types;
        let other = types.iter().find(|t| t.id == *selects).map_or(selects.as_str(), |t| t.name.as_str());
        problems.push(
            key,
            ProblemKind::AttributeType,
            format!("attribute `{uid}` selects `{other}` profiles, but managers are `{}` profiles", pt.name),
        );
        return None;
    }
    Some(attr.clone())
}

/// A warning naming the roles whose names differ only in case (rows naming them fail).
fn ambiguous_roles_warning(roles: &[CatalogRole], roles_by_name: &NameIndex) -> Option<ConfigWarning> {
    let mut ambiguous: Vec<&str> = roles
        .iter()
        .filter(|r| roles_by_name.get(&normalize_value(&r.name)) == Some(&None))
        .map(|r| r.name.as_str())
        .collect();
    ambiguous.sort_unstable_by_key(|n| n.to_lowercase());
    ambiguous.dedup();
    (!ambiguous.is_empty()).then(|| ConfigWarning {
        key: "roles".into(),
        message: format!(
            "NERM has several roles whose names differ only in case; rows naming them fail: {}",
            known_list(ambiguous)
        ),
    })
}

fn resolve_profile_type(wanted: &str, catalog: &NermCatalog, problems: &mut Problems) -> Option<CatalogProfileType> {
    let mut matches: Vec<&CatalogProfileType> = catalog
        .profile_types
        .iter()
        .filter(|t| t.uid == wanted || t.name.trim().eq_ignore_ascii_case(wanted))
        .collect();
    matches.dedup_by(|a, b| a.id == b.id);
    let describe = |types: &mut dyn Iterator<Item = &CatalogProfileType>| {
        let items: Vec<String> = types.map(|t| format!("{} ({})", t.uid, t.name)).collect();
        known_list(items.iter().map(String::as_str))
    };
    match matches.as_slice() {
        [one] => Some((*one).clone()),
        [] => {
            problems.push(
                "profile.type",
                ProblemKind::UnknownProfileType,
                format!(
                    "profile type `{wanted}` does not exist in NERM (by uid or name); known types (uid (name)): {}",
                    describe(&mut catalog.profile_types.iter())
                ),
            );
            None
        }
        many => {
            problems.push(
                "profile.type",
                ProblemKind::UnknownProfileType,
                format!(
                    "profile type `{wanted}` matches several types; use the uid: {}",
                    describe(&mut many.iter().copied())
                ),
            );
            None
        }
    }
}

/// Finds a role by name and checks it can be used with the configured strategy and user type.
fn lookup(
    name: &str,
    roles: &[CatalogRole],
    roles_by_name: &NameIndex,
    config: &MappingConfig,
) -> Result<usize, RoleLookupError> {
    let name = crate::input::trim(name);
    let index = match with_normalized_value(name, |key| roles_by_name.get(key).copied()) {
        None => return Err(RoleLookupError::Unknown(name.to_owned())),
        Some(None) => return Err(RoleLookupError::Ambiguous(name.to_owned())),
        Some(Some(i)) => i,
    };
    let role = &roles[index];
    let user_type = config.user.user_type;
    if let Some(role_type) = role.role_type
        && role_type != user_type.role_type()
    {
        return Err(RoleLookupError::WrongType { name: role.name.clone(), role_type, user_type });
    }
    if config.roles.strategy == RoleStrategy::GroupStrings && role.groups.iter().all(|g| g.trim().is_empty()) {
        return Err(RoleLookupError::NoGroups(role.name.clone()));
    }
    Ok(index)
}

fn resolve_defaults(
    config: &MappingConfig,
    roles: &[CatalogRole],
    roles_by_name: &NameIndex,
    problems: &mut Problems,
) -> Vec<usize> {
    let mut out = Vec::with_capacity(config.roles.defaults.len());
    for name in &config.roles.defaults {
        match lookup(name, roles, roles_by_name, config) {
            Ok(index) => out.push(index),
            Err(RoleLookupError::Unknown(_)) => problems.push(
                "roles.defaults",
                ProblemKind::UnknownRole,
                format!(
                    "role `{name}` does not exist in NERM; known role names: {}",
                    known_list(roles.iter().map(|r| r.name.as_str()))
                ),
            ),
            Err(e @ RoleLookupError::Ambiguous(_)) => {
                problems.push("roles.defaults", ProblemKind::UnknownRole, e.to_string());
            }
            Err(e) => problems.push("roles.defaults", ProblemKind::UnusableRole, e.to_string()),
        }
    }
    out
}
