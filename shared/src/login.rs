//! How logins are compared: one folding, used by the file index, the NERM snapshot, the
//! planner and the pipeline alike, so a login found in one place is found in all of them.
//!
//! NERM treats logins case-insensitively; we fold them (after trimming) letter by letter to
//! lower case, and fold Greek final sigma `ς` to `σ`. `str::to_lowercase` is not enough on its
//! own: it is the one place where Unicode lower-casing depends on context (a capital `Σ` at the
//! end of a word becomes `ς`, elsewhere `σ`), so "ΟΔΥΣ" and a prefix or suffix of it, or the
//! same login lower-cased letter by letter elsewhere, would fold differently. Folding both
//! sigmas to `σ` is what Unicode's simple case folding does, and makes the key of a login
//! independent of how (and by whom) it was lower-cased before.

use std::borrow::Cow;

use serde::{Deserialize, Serialize};

/// A login as logins are compared: folded (see the module documentation). Every map by login
/// is keyed by it, so a login cannot be looked up unfolded by mistake.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct LoginKey(String);

impl LoginKey {
    pub fn of(login: &str) -> LoginKey {
        LoginKey(fold_login(login))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// A map by `LoginKey` can be asked with an already folded `&str` (see [`with_folded`]): the
/// key hashes and compares as its text.
impl std::borrow::Borrow<str> for LoginKey {
    fn borrow(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Display for LoginKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// The folded form of `login` (see the module documentation).
pub fn fold_login(login: &str) -> String {
    let mut key = String::with_capacity(login.len());
    push_folded(&mut key, login);
    key
}

/// Appends the folded form of `login` to `dst`.
pub fn push_folded(dst: &mut String, login: &str) {
    let login = crate::input::trim(login);
    if login.is_ascii() {
        let start = dst.len();
        dst.push_str(login);
        dst[start..].make_ascii_lowercase();
    } else {
        dst.extend(login.chars().flat_map(char::to_lowercase).map(|c| if c == 'ς' { 'σ' } else { c }));
    }
}

/// The folded form of `login`, borrowed when it already is folded (the common case: an
/// ASCII login written in lower case).
pub fn folded(login: &str) -> Cow<'_, str> {
    let trimmed = crate::input::trim(login);
    if trimmed.is_ascii() && !trimmed.bytes().any(|b| b.is_ascii_uppercase()) {
        Cow::Borrowed(trimmed)
    } else {
        Cow::Owned(fold_login(trimmed))
    }
}

/// Runs `f` on the folded form of `login`, without allocating for an ASCII login of up to 64
/// bytes (a lookup per row in the planner).
pub fn with_folded<R>(login: &str, f: impl FnOnce(&str) -> R) -> R {
    // ASCII folds as its lower case (the sigma rule is for Greek only).
    crate::input::with_ascii_lowercase(login, f).unwrap_or_else(|f| f(&folded(login)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_login_folds_the_same_whatever_its_case_and_padding() {
        for login in ["ΟΔΥΣ", "οδυς", "οδυσ", "Οδυς", " ΟΔΥΣ ", "οΔΥΣ"] {
            assert_eq!(fold_login(login), "οδυσ", "{login:?}");
            assert_eq!(folded(login), "οδυσ", "{login:?}");
            assert_eq!(with_folded(login, str::to_owned), "οδυσ", "{login:?}");
        }
        assert_eq!(fold_login("  Bob.Smith@Corp "), "bob.smith@corp");
        assert_eq!(fold_login("ZOË"), "zoë");
    }

    #[test]
    fn an_already_folded_ascii_login_is_borrowed_not_copied() {
        assert!(matches!(folded("bob@corp"), Cow::Borrowed("bob@corp")));
        assert!(matches!(folded("Bob@corp"), Cow::Owned(_)));
    }

    #[test]
    fn folding_twice_changes_nothing() {
        for login in ["ΟΔΥΣ", "Straße", "İstanbul", "ǅemal", "bob"] {
            let once = fold_login(login);
            assert_eq!(fold_login(&once), once, "{login:?}");
        }
    }
}
