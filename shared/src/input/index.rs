//! Compact indexes of what the first pass saw, which are the only things that grow with the
//! file: every login (duplicates, managers later in the file, the login as written) and every
//! employee key (duplicate keys, full-sync leavers).
//!
//! Both keep their text in one `String` arena and small fixed-size slots in a hash table, so a
//! 1,000,000-row file costs tens of megabytes and no allocation per row, where a
//! `HashMap<String, _>` costs a heap block per entry and doubles its table while growing.

use std::hash::BuildHasher;
use std::ops::Range;

use foldhash::fast::RandomState;
use hashbrown::HashTable;
use hashbrown::hash_table::Entry;

use crate::login::{folded, push_folded};

/// Where a login was first seen.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SeenLogin {
    /// Line of the first row with this login (saturates at 2³¹−1).
    pub line: u64,
    /// Whether that row passed validation.
    pub accepted: bool,
}

/// The index cannot grow: more than 4 GiB of text.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("too many logins or keys to check for duplicates (the file index is limited to 4 GiB)")]
pub struct LoginIndexFull;

const LINE_MASK: u32 = (1 << 31) - 1;
/// The largest line an index records (later lines saturate to it).
pub(crate) const LINE_MAX: u64 = LINE_MASK as u64;
const ACCEPTED_BIT: u32 = 1 << 31;
const NONE: u32 = u32::MAX;

/// A string set over one arena: each text is stored length-prefixed ([`push_len`]), and a
/// slot holds where it starts, 32 bits of its hash and `M`.
#[derive(Debug, Clone)]
struct ArenaTable<M: Copy + Default> {
    arena: String,
    table: SlotTable<M>,
    /// foldhash, randomly seeded: a fraction of SipHash's cost per login.
    hasher: RandomState,
}

#[derive(Debug, Clone, Copy, Default)]
struct Slot<M: Copy> {
    /// Where the text's length prefix starts in the arena.
    start: u32,
    /// 32 bits of the text's hash: growing the table and most failed comparisons then need no
    /// access to the arena.
    tag: u32,
    meta: M,
}

/// The slots, in a SwissTable ([`hashbrown::HashTable`]) that knows nothing of the arena: a
/// slot is found by its tag, then told apart from others sharing the tag by comparing texts.
type SlotTable<M> = HashTable<Slot<M>>;

/// The 64-bit hash the table wants, made from a slot's 32-bit tag: spread over all 64 bits,
/// since the table takes its buckets from the low bits and its control bytes from the high
/// ones. Growing the table rehashes from the tag alone, without reading the arena.
fn spread(tag: u32) -> u64 {
    u64::from(tag).wrapping_mul(0x9E37_79B9_7F4A_7C15)
}

fn rehash<M: Copy>(slot: &Slot<M>) -> u64 {
    spread(slot.tag)
}

/// Appends `len` as base-64 digits, most significant first, every digit but the last marked
/// with `0x40`: all ASCII, so the arena stays a `String`, and one byte below 64.
fn push_len(arena: &mut String, len: usize) {
    if len < 64 {
        arena.push(char::from(len as u8));
        return;
    }
    let (digits, n) = len_prefix(len);
    arena.push_str(std::str::from_utf8(&digits[..n]).expect("the prefix is ASCII"));
}

/// The bytes [`push_len`] writes for `len`, and how many there are.
fn len_prefix(len: usize) -> ([u8; 11], usize) {
    let mut digits = [0u8; 11];
    let mut n = 0;
    let mut rest = len;
    loop {
        digits[n] = (rest & 0x3F) as u8;
        n += 1;
        rest >>= 6;
        if rest == 0 {
            break;
        }
    }
    digits[..n].reverse();
    for d in &mut digits[..n - 1] {
        *d |= 0x40;
    }
    (digits, n)
}

/// The length-prefixed text at `start`, and where the next one would start.
fn text_at(arena: &str, start: usize) -> (&str, usize) {
    let bytes = arena.as_bytes();
    let (mut len, mut at) = (0usize, start);
    loop {
        let b = bytes[at];
        at += 1;
        len = (len << 6) | usize::from(b & 0x3F);
        if b & 0x40 == 0 {
            break;
        }
    }
    (&arena[at..at + len], at + len)
}

impl<M: Copy + Default> Default for ArenaTable<M> {
    fn default() -> Self {
        ArenaTable { arena: String::new(), table: HashTable::new(), hasher: RandomState::default() }
    }
}

impl<M: Copy + Default> ArenaTable<M> {
    fn with_capacity(entries: usize, avg_len: usize) -> Self {
        ArenaTable {
            arena: String::with_capacity(entries.saturating_mul(avg_len + 1)),
            table: HashTable::with_capacity(entries),
            hasher: RandomState::default(),
        }
    }

    fn tag(&self, text: &str) -> u32 {
        let hash = self.hasher.hash_one(text);
        ((hash ^ (hash >> 32)) as u32).max(1)
    }

    fn text(&self, slot: &Slot<M>) -> &str {
        text_at(&self.arena, slot.start as usize).0
    }

    /// Inserts the text `write` appends to the arena, unless it is already there: then nothing
    /// changes and the existing slot's meta is returned for `update` to change. A new text's
    /// meta comes from `new_meta`, which gets the arena with the text stored (and its range) and
    /// may append more after it. `len` is the length `write` will append, when known: its
    /// prefix then goes first instead of being inserted in front of the text.
    fn insert(
        &mut self,
        len: Option<usize>,
        write: impl FnOnce(&mut String),
        new_meta: impl FnOnce(&mut String, Range<usize>) -> M,
        update: impl FnOnce(&mut M),
    ) -> Result<Option<M>, LoginIndexFull> {
        let start = self.arena.len();
        if let Some(len) = len {
            push_len(&mut self.arena, len);
        }
        let text_start = self.arena.len();
        write(&mut self.arena);
        let text_len = self.arena.len() - text_start;
        debug_assert!(len.is_none_or(|len| len == text_len), "write appended another length than announced");
        // Every position, up to the end of the text with room for a length prefix inserted in
        // front of it, must fit the slot's `u32` (so `start` does too).
        if u32::try_from(text_start + text_len + 8).is_err() {
            self.arena.truncate(start);
            return Err(LoginIndexFull);
        }
        let start32 = start as u32;
        let tag = self.tag(&self.arena[text_start..]);
        let arena = &self.arena;
        let text = &arena[text_start..];
        let same = |slot: &Slot<M>| slot.tag == tag && text_at(arena, slot.start as usize).0 == text;
        match self.table.entry(spread(tag), same, rehash) {
            Entry::Occupied(mut found) => {
                let meta = &mut found.get_mut().meta;
                let before = *meta;
                update(meta);
                self.arena.truncate(start);
                Ok(Some(before))
            }
            Entry::Vacant(free) => {
                let text = if len.is_some() {
                    text_start..text_start + text_len
                } else {
                    // The text was written first (its length was unknown); its prefix goes in front.
                    let (digits, n) = len_prefix(text_len);
                    self.arena.insert_str(start, std::str::from_utf8(&digits[..n]).expect("the prefix is ASCII"));
                    start + n..start + n + text_len
                };
                let meta = new_meta(&mut self.arena, text);
                free.insert(Slot { start: start32, tag, meta });
                Ok(None)
            }
        }
    }

    fn find(&self, text: &str) -> Option<&Slot<M>> {
        self.find_bucket(text).and_then(|at| self.table.get_bucket(at))
    }

    /// Where `text`'s slot is in the table (stable until the next insert).
    fn find_bucket(&self, text: &str) -> Option<usize> {
        let tag = self.tag(text);
        self.table.find_bucket_index(spread(tag), |slot| slot.tag == tag && self.text(slot) == text)
    }

    fn find_mut(&mut self, text: &str) -> Option<&mut Slot<M>> {
        let tag = self.tag(text);
        let arena = &self.arena;
        self.table.find_mut(spread(tag), |slot| slot.tag == tag && text_at(arena, slot.start as usize).0 == text)
    }

    fn len(&self) -> usize {
        self.table.len()
    }

    fn heap_bytes(&self) -> usize {
        self.arena.capacity() + self.table.allocation_size()
    }
}

/// Appends an accepted login's length-prefixed key, spelling (`""` when it is written
/// lower-case) and manager login (as written, `""` for none) to the arena; returns where they
/// start. The caller checked [`room`].
fn push_accepted(arena: &mut String, key: &str, written: &str, manager: &str) -> u32 {
    let start = arena.len() as u32;
    for text in [key, written, manager] {
        push_len(arena, text.len());
        arena.push_str(text);
    }
    start
}

/// Whether `extra` more bytes keep every arena position within a `u32`.
fn room(arena: &str, extra: usize) -> Result<(), LoginIndexFull> {
    u32::try_from(arena.len().saturating_add(extra)).map(|_| ()).map_err(|_| LoginIndexFull)
}

/// A login's slot data: line and accepted flag, and where its accepted row's employee key
/// (its spelling, when not lower-case, and its manager) is, if [`LoginIndex::accept`]
/// recorded one.
#[derive(Debug, Clone, Copy, Default)]
struct LoginMeta {
    line: u32,
    /// Arena position of the length-prefixed key, then the length-prefixed login as written
    /// (empty when it is written lower-case), then the manager's login (empty: none), or
    /// [`NONE`].
    accepted: u32,
}

/// Case-insensitive set of logins, each with the line where it was first seen and, for an
/// accepted row, its employee key and the login as written (NERM's login filter is exact).
///
/// Memory-lean: all text lives in one arena and the table holds 16-byte slots into it, so
/// 1,000,000 logins with their keys take about 70 MB, with no allocation per login. See
/// [`heap_bytes`](Self::heap_bytes).
#[derive(Debug, Default, Clone)]
pub struct LoginIndex {
    logins: ArenaTable<LoginMeta>,
}

impl LoginIndex {
    /// An empty index.
    pub fn new() -> Self {
        Self::default()
    }

    /// An empty index with room for `logins` logins of about `avg_len` bytes.
    pub fn with_capacity(logins: usize, avg_len: usize) -> Self {
        Self { logins: ArenaTable::with_capacity(logins, avg_len) }
    }

    /// Records `login` as seen on `line`. If it was already there (ignoring case), changes
    /// nothing and returns where it was first seen.
    pub fn insert(&mut self, login: &str, line: u64, accepted: bool) -> Result<Option<SeenLogin>, LoginIndexFull> {
        self.insert_entry(login, line, accepted, None)
    }

    /// [`insert`](Self::insert) and [`accept`](Self::accept) in one step, for a row already
    /// known to be accepted: a login new to the index is recorded with its employee `key` and
    /// its `manager`'s login (`""`: none).
    pub fn insert_accepted(
        &mut self,
        login: &str,
        line: u64,
        key: &str,
        manager: &str,
    ) -> Result<Option<SeenLogin>, LoginIndexFull> {
        self.insert_entry(login, line, true, Some((key, manager)))
    }

    fn insert_entry(
        &mut self,
        login: &str,
        line: u64,
        accepted: bool,
        key: Option<(&str, &str)>,
    ) -> Result<Option<SeenLogin>, LoginIndexFull> {
        let login = crate::input::trim(login);
        let line = u32::try_from(line).unwrap_or(u32::MAX).min(LINE_MASK) | if accepted { ACCEPTED_BIT } else { 0 };
        if let Some((key, manager)) = key {
            // Lower-casing grows a text at most threefold; then the key, the manager and three
            // prefixes.
            room(&self.logins.arena, login.len() * 4 + key.len() + manager.len() + 48)?;
        }
        let new_meta = |arena: &mut String, text: Range<usize>| {
            let accepted = key.map_or(NONE, |(key, manager)| {
                let written = if arena[text] == *login { "" } else { login };
                push_accepted(arena, key, written, manager)
            });
            LoginMeta { line, accepted }
        };
        let len = login.is_ascii().then_some(login.len());
        let found = self.logins.insert(len, |a| push_folded(a, login), new_meta, |_| {})?;
        Ok(found.map(seen))
    }

    /// Records the employee key (and the manager's login, `""` for none) of the row that first
    /// had `login`, once it is accepted as a whole (the first call wins). `false` if the login
    /// was never inserted.
    pub fn accept(&mut self, login: &str, key: &str, manager: &str) -> Result<bool, LoginIndexFull> {
        let lower = folded(login);
        let Some(slot) = self.logins.find(&lower) else { return Ok(false) };
        if slot.meta.accepted != NONE {
            return Ok(true);
        }
        room(&self.logins.arena, key.len() + login.len() + manager.len() + 24)?;
        let written = if *lower == *login { "" } else { login };
        let start = push_accepted(&mut self.logins.arena, key, written, manager);
        if let Some(slot) = self.logins.find_mut(&lower) {
            slot.meta.accepted = start;
        }
        Ok(true)
    }

    /// Where `login` was first seen (ignoring case), if at all.
    pub fn get(&self, login: &str) -> Option<SeenLogin> {
        self.logins.find(&folded(login)).map(|slot| seen(slot.meta))
    }

    /// What was recorded for an accepted login, and the login lower-cased.
    fn accepted_of(&self, login: &str) -> Option<(Accepted<'_>, &str)> {
        let slot = self.logins.find(&folded(login))?;
        Some((self.accepted_at(slot)?, self.logins.text(slot)))
    }

    fn accepted_at(&self, slot: &Slot<LoginMeta>) -> Option<Accepted<'_>> {
        if slot.meta.accepted == NONE {
            return None;
        }
        let arena = &self.logins.arena;
        let (key, next) = text_at(arena, slot.meta.accepted as usize);
        let (written, next) = text_at(arena, next);
        let (manager, _) = text_at(arena, next);
        Some(Accepted { key, written, manager })
    }

    /// The employee key recorded by [`accept`](Self::accept) for `login` (ignoring case).
    pub fn key_of(&self, login: &str) -> Option<&str> {
        self.accepted_of(login).map(|(a, _)| a.key)
    }

    /// The manager's login recorded for an accepted `login` (ignoring case), if it has one.
    pub fn manager_of(&self, login: &str) -> Option<&str> {
        self.accepted_of(login).map(|(a, _)| a.manager).filter(|m| !m.is_empty())
    }

    /// The login as written on its accepted row (for `login` in any case).
    pub fn as_written(&self, login: &str) -> Option<&str> {
        let (a, lower) = self.accepted_of(login)?;
        Some(if a.written.is_empty() { lower } else { a.written })
    }

    /// The accepted logins (lower-cased) whose chain of managers, followed through the
    /// accepted rows, comes back to them: the members of every manager cycle (someone who
    /// is their own manager is a cycle of one). Linear in the logins: each is walked once,
    /// with two bits of state per slot.
    pub fn logins_in_manager_cycles(&self) -> std::collections::HashSet<String> {
        const NEW: u8 = 0;
        const ON_PATH: u8 = 1;
        const DONE: u8 = 2;
        let table = &self.logins.table;
        let slot = |at: usize| table.get_bucket(at).expect("a full bucket");
        let next = |at: usize| -> Option<usize> {
            let manager = self.accepted_at(slot(at))?.manager;
            if manager.is_empty() {
                return None;
            }
            self.logins.find_bucket(&folded(manager))
        };
        let mut state = vec![NEW; table.num_buckets()];
        let mut cycles = std::collections::HashSet::new();
        let mut path = Vec::new();
        for start in table.iter_buckets() {
            if state[start] != NEW {
                continue;
            }
            let mut at = Some(start);
            while let Some(i) = at.filter(|&i| state[i] == NEW) {
                state[i] = ON_PATH;
                path.push(i);
                at = next(i);
            }
            if let Some(i) = at.filter(|&i| state[i] == ON_PATH) {
                let from = path.iter().position(|&p| p == i).unwrap_or(0);
                cycles.extend(path[from..].iter().map(|&p| self.logins.text(slot(p)).to_owned()));
            }
            for p in path.drain(..) {
                state[p] = DONE;
            }
        }
        cycles
    }

    /// Whether `login` was seen (ignoring case).
    pub fn contains(&self, login: &str) -> bool {
        self.get(login).is_some()
    }

    /// Number of distinct logins.
    pub fn len(&self) -> usize {
        self.logins.len()
    }

    /// Whether no login was recorded.
    pub fn is_empty(&self) -> bool {
        self.logins.len() == 0
    }

    /// Heap memory held (arena and table allocations), in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.logins.heap_bytes()
    }
}

/// What [`LoginIndex::accept`] recorded for a login.
struct Accepted<'a> {
    key: &'a str,
    /// `""` when the login is written lower-case.
    written: &'a str,
    /// `""` when the row names no manager.
    manager: &'a str,
}

fn seen(meta: LoginMeta) -> SeenLogin {
    SeenLogin { line: u64::from(meta.line & LINE_MASK), accepted: meta.line & ACCEPTED_BIT != 0 }
}

/// Exact set of employee keys, each with the line of the first accepted row that had it (0:
/// only rejected rows had it).
#[derive(Debug, Default, Clone)]
pub struct KeyIndex {
    keys: ArenaTable<u32>,
}

impl KeyIndex {
    pub fn new() -> Self {
        Self::default()
    }

    /// Records `key` from `line`; `accepted` rows claim the key if no accepted row has yet.
    /// Returns the line of the accepted row that claimed it before, if any.
    pub fn insert(&mut self, key: &str, line: u64, accepted: bool) -> Result<Option<u64>, LoginIndexFull> {
        let line = if accepted { u32::try_from(line).unwrap_or(u32::MAX).min(LINE_MASK) } else { 0 };
        let found = self.keys.insert(
            Some(key.len()),
            |a| a.push_str(key),
            |_, _| line,
            |first| {
                if *first == 0 {
                    *first = line;
                }
            },
        )?;
        Ok(found.filter(|&l| l != 0).map(u64::from))
    }

    /// Whether any row (accepted or not) had `key`.
    pub fn contains(&self, key: &str) -> bool {
        self.keys.find(key).is_some()
    }

    /// The line of the first accepted row with `key`.
    pub fn first_accepted(&self, key: &str) -> Option<u64> {
        self.keys.find(key).map(|s| s.meta).filter(|&l| l != 0).map(u64::from)
    }

    pub fn len(&self) -> usize {
        self.keys.len()
    }

    pub fn is_empty(&self) -> bool {
        self.keys.len() == 0
    }

    /// Heap memory held, in bytes.
    pub fn heap_bytes(&self) -> usize {
        self.keys.heap_bytes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_login_index_finds_logins_ignoring_case() {
        let mut index = LoginIndex::new();
        assert_eq!(index.insert("Bob.Smith@Corp", 2, true), Ok(None));
        assert_eq!(index.insert("Zoë", 3, false), Ok(None));
        assert!(index.contains("bob.smith@corp"));
        assert!(index.contains("BOB.SMITH@CORP"));
        assert_eq!(index.get("ZOË"), Some(SeenLogin { line: 3, accepted: false }));
        assert!(!index.contains("bob"));
        assert_eq!(index.insert("BOB.smith@corp", 9, true), Ok(Some(SeenLogin { line: 2, accepted: true })));
        assert_eq!(index.len(), 2);
        assert!(index.heap_bytes() > 0);
    }

    #[test]
    fn the_login_index_keeps_every_login_through_growth() {
        let mut index = LoginIndex::with_capacity(4, 8);
        for i in 0..20_000u64 {
            assert_eq!(index.insert(&format!("User{i}@Example"), i + 2, i % 3 != 0), Ok(None));
        }
        assert_eq!(index.len(), 20_000);
        for i in (0..20_000u64).step_by(997) {
            let seen = index.get(&format!("user{i}@example")).expect("present");
            assert_eq!(seen, SeenLogin { line: i + 2, accepted: i % 3 != 0 });
        }
        assert!(index.insert("USER19999@EXAMPLE", 1, true).unwrap().is_some());
        assert_eq!(index.len(), 20_000);
    }

    #[test]
    fn login_index_lines_saturate_instead_of_wrapping() {
        let mut index = LoginIndex::new();
        index.insert("bob", u64::MAX, true).unwrap();
        assert_eq!(index.get("bob"), Some(SeenLogin { line: (1 << 31) - 1, accepted: true }));
    }

    #[test]
    fn an_accepted_login_keeps_its_key_and_spelling_whatever_was_inserted_in_between() {
        let mut index = LoginIndex::new();
        index.insert("Bob.Smith@Corp", 2, true).unwrap();
        index.insert("ann", 3, true).unwrap();
        assert!(index.accept("ann", "E-2", "").unwrap());
        assert!(index.accept("BOB.SMITH@corp", "E-1", "").unwrap(), "the login is found ignoring case");
        assert!(index.accept("bob.smith@corp", "E-other", "").unwrap(), "a second accept changes nothing");
        index.insert("Zoë", 4, true).unwrap();
        assert!(!index.accept("nobody", "E-9", "").unwrap());

        assert_eq!(index.key_of("bob.smith@corp"), Some("E-1"));
        assert_eq!(index.as_written("BOB.smith@CORP"), Some("BOB.SMITH@corp"));
        assert_eq!(index.key_of("ANN"), Some("E-2"));
        assert_eq!(index.as_written("ANN"), Some("ann"), "a lower-case login is its own spelling");
        assert_eq!(index.key_of("zoë"), None, "inserted but never accepted");
        assert_eq!(index.as_written("zoë"), None);
        assert_eq!(index.key_of("nobody"), None);
    }

    #[test]
    fn texts_of_every_length_round_trip_through_the_length_prefix() {
        let mut arena = String::from("x");
        let lengths = [0, 1, 63, 64, 65, 4_095, 4_096, 70_000];
        for len in lengths {
            push_len(&mut arena, len);
            arena.push_str(&"é".repeat(len / 2));
            arena.push_str(&"a".repeat(len % 2));
        }
        let mut at = 1;
        for len in lengths {
            let (text, next) = text_at(&arena, at);
            assert_eq!(text.len(), len);
            at = next;
        }
        assert_eq!(at, arena.len());
    }

    #[test]
    fn long_logins_and_keys_are_found_with_their_key_and_spelling() {
        let mut index = LoginIndex::new();
        let login = format!("{}@Example.com", "Ü".repeat(150));
        let key = "K".repeat(5_000);
        index.insert("short", 2, true).unwrap();
        assert_eq!(index.insert(&login, 3, true), Ok(None));
        assert!(index.accept(&login, &key, "").unwrap());
        assert_eq!(index.get(&login.to_lowercase()), Some(SeenLogin { line: 3, accepted: true }));
        assert_eq!(index.key_of(&login.to_uppercase()), Some(key.as_str()));
        assert_eq!(index.as_written(&login.to_lowercase()), Some(login.as_str()));
        let mut keys = KeyIndex::new();
        keys.insert(&key, 3, true).unwrap();
        assert_eq!(keys.first_accepted(&key), Some(3));
        assert!(!keys.contains(&key[1..]));
    }

    #[test]
    fn accepting_the_login_just_inserted_or_an_earlier_one_records_the_same() {
        // GIVEN logins accepted right after their insert (the first pass) and one accepted later
        let mut index = LoginIndex::new();
        for (line, login, key) in [(2, "Ann.Lee", "E-1"), (3, "bob", "E-2"), (4, "ZOË", "E-3")] {
            index.insert(login, line, true).unwrap();
            assert!(index.accept(login, key, "").unwrap());
        }
        index.insert("Cid", 5, true).unwrap();
        index.insert("dee", 6, true).unwrap();
        assert!(index.accept("CID", "E-4", "").unwrap(), "not the last insert: found by its text");
        assert!(index.accept("DEE", "E-5", "").unwrap(), "the last insert in another case");
        assert_eq!(index.insert_accepted("Fay", 7, "E-7", ""), Ok(None), "insert and accept in one step");
        assert_eq!(index.insert_accepted("FAY", 8, "E-8", ""), Ok(Some(SeenLogin { line: 7, accepted: true })));
        assert!(!index.accept("eve", "E-6", "").unwrap());

        // THEN keys and spellings are what each row wrote
        for (login, key, written) in [
            ("ann.lee", "E-1", "Ann.Lee"),
            ("BOB", "E-2", "bob"),
            ("zoë", "E-3", "ZOË"),
            ("cid", "E-4", "CID"),
            ("dee", "E-5", "DEE"),
            ("fay", "E-7", "Fay"),
        ] {
            assert_eq!((index.key_of(login), index.as_written(login)), (Some(key), Some(written)), "{login}");
        }
    }

    #[test]
    fn the_key_index_remembers_the_first_accepted_row_of_each_key() {
        let mut keys = KeyIndex::new();
        assert_eq!(keys.insert("E-1", 2, false), Ok(None));
        assert_eq!(keys.first_accepted("E-1"), None);
        assert!(keys.contains("E-1"));
        assert_eq!(keys.insert("E-1", 5, true), Ok(None), "a rejected row does not claim the key");
        assert_eq!(keys.insert("E-1", 9, true), Ok(Some(5)));
        assert_eq!(keys.first_accepted("E-1"), Some(5));
        assert!(!keys.contains("e-1"), "keys are exact");
        assert_eq!(keys.len(), 1);
    }

    #[test]
    fn members_of_manager_cycles_are_found_and_chains_into_a_cycle_are_not() {
        // GIVEN ann <-> Bob, cid managing themselves, dee -> ann (into the cycle), eve -> fay ->
        // gus (a chain), hal -> ivy whose row was rejected -> hal
        let mut index = LoginIndex::new();
        let rows = [
            ("ann", "BOB"),
            ("Bob", "Ann"),
            ("cid", "CID"),
            ("dee", "ann"),
            ("eve", "fay"),
            ("fay", "gus"),
            ("gus", ""),
            ("hal", "ivy"),
        ];
        for (line, (login, manager)) in rows.into_iter().enumerate() {
            index.insert_accepted(login, line as u64 + 2, &format!("K-{login}"), manager).unwrap();
        }
        index.insert("ivy", 10, false).unwrap();
        // WHEN the cycles are looked for
        let mut cycles: Vec<String> = index.logins_in_manager_cycles().into_iter().collect();
        cycles.sort();
        // THEN exactly the members of the two cycles are named, lower-cased
        assert_eq!(cycles, ["ann", "bob", "cid"]);
        assert_eq!(index.manager_of("BOB"), Some("Ann"));
        assert_eq!(index.manager_of("gus"), None);
    }
}
