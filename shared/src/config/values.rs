//! Enumerations (NERM values and config choices), status value maps and header normalisation.

use std::collections::HashMap;
use std::fmt;

use serde::{Deserialize, Serialize};

/// Normalises a CSV header or column name exactly like the CSV reader
/// (`crate::input::normalize_header`): drop a stray BOM character, trim, collapse every run of
/// (Unicode) whitespace into one space, ASCII-lowercase (`"  First   Name "` → `"first name"`).
pub fn normalize_column(name: &str) -> String {
    crate::input::normalize_header(name)
}

/// Normalises a value-map key or a looked-up HR value: trim + lowercase.
pub(crate) fn normalize_value(value: &str) -> String {
    value.trim().to_lowercase()
}

/// CSV field delimiter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Delimiter {
    /// Sniff `,`, `;` or tab from the header line.
    #[default]
    Auto,
    Comma,
    Semicolon,
    Tab,
}

impl Delimiter {
    /// The delimiter byte, or `None` for [`Delimiter::Auto`].
    pub fn byte(self) -> Option<u8> {
        match self {
            Delimiter::Auto => None,
            Delimiter::Comma => Some(b','),
            Delimiter::Semicolon => Some(b';'),
            Delimiter::Tab => Some(b'\t'),
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            Delimiter::Auto => "auto",
            Delimiter::Comma => ",",
            Delimiter::Semicolon => ";",
            Delimiter::Tab => "tab",
        }
    }
}

impl TryFrom<String> for Delimiter {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.as_str() {
            "," => Ok(Delimiter::Comma),
            ";" => Ok(Delimiter::Semicolon),
            "\t" => Ok(Delimiter::Tab),
            other => match other.trim().to_ascii_lowercase().as_str() {
                "auto" => Ok(Delimiter::Auto),
                "tab" => Ok(Delimiter::Tab),
                "comma" => Ok(Delimiter::Comma),
                "semicolon" => Ok(Delimiter::Semicolon),
                _ => Err(format!(
                    "unknown delimiter {value:?}, expected one of \"auto\", \",\", \";\", \"\\t\" or \"tab\""
                )),
            },
        }
    }
}

impl From<Delimiter> for String {
    fn from(value: Delimiter) -> Self {
        value.as_str().to_owned()
    }
}

/// Text encoding of the CSV file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Encoding {
    #[default]
    Utf8,
    Windows1252,
}

impl Encoding {
    pub fn as_str(self) -> &'static str {
        match self {
            Encoding::Utf8 => "utf-8",
            Encoding::Windows1252 => "windows-1252",
        }
    }

    /// The matching `encoding_rs` encoding.
    pub fn encoding_rs(self) -> &'static encoding_rs::Encoding {
        match self {
            Encoding::Utf8 => encoding_rs::UTF_8,
            Encoding::Windows1252 => encoding_rs::WINDOWS_1252,
        }
    }
}

impl TryFrom<String> for Encoding {
    type Error = String;
    fn try_from(value: String) -> Result<Self, Self::Error> {
        match value.trim().to_ascii_lowercase().as_str() {
            "utf-8" | "utf8" => Ok(Encoding::Utf8),
            "windows-1252" | "cp1252" => Ok(Encoding::Windows1252),
            _ => Err(format!("unknown encoding {value:?}, expected \"utf-8\" or \"windows-1252\"")),
        }
    }
}

impl From<Encoding> for String {
    fn from(value: Encoding) -> Self {
        value.as_str().to_owned()
    }
}

macro_rules! display_as_str {
    ($($t:ty),*) => {$(
        impl fmt::Display for $t {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(self.as_str())
            }
        }
    )*};
}

/// NERM user `type` (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
pub enum UserType {
    /// Lifecycle (internal / SSO) user.
    #[default]
    NeprofileUser,
    /// Collaboration portal user.
    NeaccessUser,
}

impl UserType {
    pub fn as_str(self) -> &'static str {
        match self {
            UserType::NeprofileUser => "NeprofileUser",
            UserType::NeaccessUser => "NeaccessUser",
        }
    }

    /// The role type that users of this type can hold (docs/nerm-api.md, "Records and their values").
    pub fn role_type(self) -> RoleType {
        match self {
            UserType::NeprofileUser => RoleType::NeprofileRole,
            UserType::NeaccessUser => RoleType::NeaccessRole,
        }
    }
}

/// NERM role `type` (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum RoleType {
    NeprofileRole,
    NeaccessRole,
}

impl RoleType {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleType::NeprofileRole => "NeprofileRole",
            RoleType::NeaccessRole => "NeaccessRole",
        }
    }
}

/// NERM user `status` (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum UserStatus {
    Active,
    Pending,
    Disabled,
}

impl UserStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            UserStatus::Active => "Active",
            UserStatus::Pending => "Pending",
            UserStatus::Disabled => "Disabled",
        }
    }
}

/// NERM profile `status` (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub enum ProfileStatus {
    Active,
    Inactive,
    #[serde(rename = "On Leave")]
    OnLeave,
    Terminated,
}

impl ProfileStatus {
    pub fn as_str(self) -> &'static str {
        match self {
            ProfileStatus::Active => "Active",
            ProfileStatus::Inactive => "Inactive",
            ProfileStatus::OnLeave => "On Leave",
            ProfileStatus::Terminated => "Terminated",
        }
    }
}

/// How roles reach NERM users.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum RoleStrategy {
    /// Write the roles' directory groups into the user's `group_strings` (docs/nerm-api.md, "Roles under SSO").
    #[default]
    GroupStrings,
    /// Assign roles directly with `/user_role` (not durable under SSO, docs/nerm-api.md, "Roles under SSO").
    UserRole,
}

impl RoleStrategy {
    pub fn as_str(self) -> &'static str {
        match self {
            RoleStrategy::GroupStrings => "group_strings",
            RoleStrategy::UserRole => "user_role",
        }
    }
}

/// The relationship of an employee's own user to their profile (docs/nerm-api.md, "Records and their values").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SelfRelationship {
    #[default]
    Owner,
    Contributor,
    None,
}

impl SelfRelationship {
    pub fn as_str(self) -> &'static str {
        match self {
            SelfRelationship::Owner => "owner",
            SelfRelationship::Contributor => "contributor",
            SelfRelationship::None => "none",
        }
    }
}

/// Sync mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum SyncMode {
    /// Create and update what is in the file; never touch what is not.
    #[default]
    Upsert,
    /// Also treat managed records missing from the file as leavers.
    Full,
}

impl SyncMode {
    pub fn as_str(self) -> &'static str {
        match self {
            SyncMode::Upsert => "upsert",
            SyncMode::Full => "full",
        }
    }
}

display_as_str!(
    Delimiter,
    Encoding,
    UserType,
    RoleType,
    UserStatus,
    ProfileStatus,
    RoleStrategy,
    SelfRelationship,
    SyncMode
);

/// Looks `value` up by its normalised form ([`normalize_value`]: trimmed, lowercased) without
/// allocating when the value is ASCII and short; other values are normalised into a new string.
pub(crate) fn with_normalized_value<R>(value: &str, f: impl FnOnce(&str) -> R) -> R {
    crate::input::with_ascii_lowercase(value, f).unwrap_or_else(|f| f(&normalize_value(value)))
}

/// Maps HR status values (matched trimmed and case-insensitively) to a NERM value.
#[derive(Debug, Clone)]
pub struct StatusMap<T> {
    /// Normalised HR value → NERM value.
    map: HashMap<String, T>,
    /// The same entries sorted by key, scanned by [`StatusMap::get`] (a map holds a handful).
    entries: Vec<(String, T)>,
    /// The HR values as written in the config, sorted, for messages and docs.
    keys: Vec<String>,
}

impl<T: PartialEq> PartialEq for StatusMap<T> {
    fn eq(&self, other: &Self) -> bool {
        self.map == other.map && self.keys == other.keys
    }
}

impl<T: Eq> Eq for StatusMap<T> {}

impl<T: Copy> StatusMap<T> {
    /// Builds the map; returns the config keys that collide once normalised.
    pub(crate) fn build(entries: impl IntoIterator<Item = (String, T)>) -> (Self, Vec<String>) {
        let mut map = HashMap::new();
        let mut keys = Vec::new();
        let mut collisions = Vec::new();
        for (key, value) in entries {
            if map.insert(normalize_value(&key), value).is_some() {
                collisions.push(key.clone());
            }
            keys.push(key);
        }
        keys.sort();
        let mut entries: Vec<(String, T)> = map.iter().map(|(k, v)| (k.clone(), *v)).collect();
        entries.sort_by(|a, b| a.0.cmp(&b.0));
        (StatusMap { map, entries, keys }, collisions)
    }

    /// The NERM value for an HR value, or `None` when the HR value is not mapped (a row error).
    /// Allocation-free for ASCII values: the keys are already lowercased, so an ASCII
    /// case-insensitive compare is the same as comparing the lowercased value.
    pub fn get(&self, hr_value: &str) -> Option<T> {
        let value = crate::input::trim(hr_value);
        if value.is_ascii() {
            return self.entries.iter().find(|(k, _)| k.eq_ignore_ascii_case(value)).map(|(_, v)| *v);
        }
        // Unicode lowercasing can turn non-ASCII into ASCII (the Kelvin sign into `k`).
        self.map.get(&normalize_value(value)).copied()
    }

    /// The HR values as written in the config, sorted.
    pub fn keys(&self) -> &[String] {
        &self.keys
    }

    pub fn len(&self) -> usize {
        self.map.len()
    }

    pub fn is_empty(&self) -> bool {
        self.map.is_empty()
    }

    pub(crate) fn normalized_keys(&self) -> impl Iterator<Item = &str> {
        self.map.keys().map(String::as_str)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn header_names_are_trimmed_lowercased_and_whitespace_collapsed() {
        assert_eq!(normalize_column("  First \t  NAME "), "first name");
        assert_eq!(normalize_column("employee_id"), "employee_id");
        assert_eq!(normalize_column("\u{feff}Login"), "login");
        assert_eq!(normalize_column("ÉTAT"), "État", "only ASCII is lowercased, like the reader");
    }

    #[test]
    fn columns_are_normalised_exactly_like_the_csv_reader_does() {
        for name in ["  First \t  NAME ", "\u{feff}Login", "ÉTAT", "e-mail_Address", "", " \u{a0}x\u{2003}y "] {
            assert_eq!(normalize_column(name), crate::input::normalize_header(name), "{name:?}");
        }
    }

    fn statuses() -> StatusMap<UserStatus> {
        let entries =
            [("Active", UserStatus::Active), ("On Leave", UserStatus::Pending), ("Ärztin", UserStatus::Disabled)];
        StatusMap::build(entries.map(|(k, v)| (k.to_owned(), v))).0
    }

    #[test]
    fn status_lookups_ignore_case_and_surrounding_spaces() {
        let map = statuses();
        for (value, want) in [
            ("Active", Some(UserStatus::Active)),
            ("  aCTIVE\t", Some(UserStatus::Active)),
            ("ON LEAVE", Some(UserStatus::Pending)),
            ("on  leave", None),
            ("ärztin", Some(UserStatus::Disabled)),
            (" ÄRZTIN ", Some(UserStatus::Disabled)),
            ("Activ", None),
            ("", None),
        ] {
            assert_eq!(map.get(value), want, "{value:?}");
        }
    }

    #[test]
    fn a_non_ascii_value_that_lowercases_to_an_ascii_key_still_matches() {
        let kelvin = StatusMap::build([("k".to_owned(), UserStatus::Active)]).0;
        assert_eq!(kelvin.get("\u{212a}"), Some(UserStatus::Active), "the Kelvin sign lowercases to `k`");
    }

    #[test]
    fn status_lookups_agree_with_the_normalised_map_for_every_spelling() {
        let map = statuses();
        for value in ["Active", "ACTIVE", " active ", "On Leave", "ON LEAVE", "Ärztin", "ÄRZTIN", "K", "\u{212a}", "x"]
        {
            assert_eq!(map.get(value), map.map.get(&normalize_value(value)).copied(), "{value:?}");
        }
    }

    #[test]
    fn a_normalised_lookup_matches_normalize_value_without_allocating_for_ascii() {
        let long = format!(" {} ", "Ab".repeat(40));
        for value in ["Sponsor", " sponsor ", "MANAGER", "Zoë", "ÅSA", "\u{212a}", "", long.as_str()] {
            assert_eq!(with_normalized_value(value, str::to_owned), normalize_value(value), "{value:?}");
        }
        let cell = String::from(" sponsor ");
        let looked_up = with_normalized_value(&cell, |v| v.as_ptr());
        assert_eq!(looked_up, cell[1..].as_ptr(), "an already lowercase ASCII value is looked up in place");
    }

    #[test]
    fn delimiters_accept_symbols_and_words() {
        for (text, want) in [
            ("auto", Delimiter::Auto),
            (",", Delimiter::Comma),
            (";", Delimiter::Semicolon),
            ("\t", Delimiter::Tab),
            ("tab", Delimiter::Tab),
            ("TAB", Delimiter::Tab),
        ] {
            assert_eq!(Delimiter::try_from(text.to_owned()), Ok(want), "{text:?}");
        }
        let err = Delimiter::try_from("|".to_owned()).unwrap_err();
        assert!(err.contains("unknown delimiter \"|\""), "{err}");
    }

    #[test]
    fn encodings_accept_common_aliases() {
        assert_eq!(Encoding::try_from("UTF8".to_owned()), Ok(Encoding::Utf8));
        assert_eq!(Encoding::try_from("cp1252".to_owned()), Ok(Encoding::Windows1252));
        assert!(Encoding::try_from("latin9".to_owned()).is_err());
    }
}
