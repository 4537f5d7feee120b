//! Streaming CSV reader and per-row validation of the HR export.
//!
//! HR exports are large, hand-edited and produced by many tools, so this module reads them as a
//! stream (memory stays flat however long the file is), copes with their quirks (BOM, CRLF,
//! `;`/tab delimiters, Windows-1252) and sorts every problem into one of two kinds:
//!
//! * [`FileError`] — the file as a whole cannot be trusted; the run stops. Empty file, no
//!   header, a required column missing or ambiguous, bytes that are not in the configured
//!   encoding, a quote that is never closed (the file is truncated or malformed: trusting the
//!   rows read so far could make the sync treat the missing employees as gone), the file too
//!   large, too many rows or columns, a read error, an unusable delimiter option.
//! * [`RowError`] — one row is rejected, the others go on: wrong number of fields, a wanted
//!   value longer than the field limit, and every rule of [`validate`].
//!
//! [`CsvReader`] does the reading (on its own thread through [`PipedRows`]); [`validate`]
//! checks the logical fields of each row and tracks the logins seen ([`LoginIndex`]).

mod index;
mod piped;
mod reader;
mod source;
pub mod validate;

#[cfg(test)]
mod tests;

use std::fmt;

pub(crate) use index::LINE_MAX;
pub use index::{KeyIndex, LoginIndex, LoginIndexFull, SeenLogin};
pub use piped::PipedRows;
pub use reader::{CsvReader, OwnedRow, OwnedRows, Row};
pub use validate::RowValidator;

/// Text encoding of the input file.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Encoding {
    /// UTF-8, with or without a byte-order mark. Invalid bytes are a [`FileError::InvalidUtf8`].
    #[default]
    Utf8,
    /// Windows-1252 (what "latin1" means in practice). Every byte decodes; a UTF-8 BOM, if
    /// present, wins and the file is read as UTF-8.
    Windows1252,
}

impl Encoding {
    /// Parses a WHATWG encoding label (`"utf-8"`, `"utf8"`, `"windows-1252"`, `"cp1252"`,
    /// `"latin1"`, `"iso-8859-1"`, ...). `None` for labels of other encodings or unknown labels.
    pub fn from_label(label: &str) -> Option<Self> {
        let enc = encoding_rs::Encoding::for_label(label.trim().as_bytes())?;
        if enc == encoding_rs::UTF_8 {
            Some(Self::Utf8)
        } else if enc == encoding_rs::WINDOWS_1252 {
            Some(Self::Windows1252)
        } else {
            None
        }
    }
}

/// How to read the file, and the limits that protect the run. Plain data; `Default` gives the
/// documented defaults.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReaderOptions {
    /// Text encoding of the file. Default UTF-8.
    pub encoding: Encoding,
    /// Field delimiter; `None` (default) detects `,`, `;` or tab from the header line: the one
    /// that occurs most often outside quotes wins, ties and no candidate at all give `,`.
    pub delimiter: Option<u8>,
    /// Longest value (bytes, after decoding to UTF-8) accepted in a wanted column; longer is a
    /// row-level rejection. Also the longest header name (longer is file-level). Default 64 KiB.
    pub max_field_bytes: usize,
    /// Most data rows (the header and skipped blank rows do not count). More is file-level.
    /// Default 2,000,000.
    pub max_rows: u64,
    /// Largest input in bytes, as read from the source before decoding. Larger is file-level.
    /// Default 2 GiB.
    pub max_file_bytes: u64,
    /// Most columns in the header. More is file-level. Default 16,384 (Excel's maximum).
    pub max_columns: usize,
}

impl Default for ReaderOptions {
    fn default() -> Self {
        Self {
            encoding: Encoding::Utf8,
            delimiter: None,
            max_field_bytes: 64 * 1024,
            max_rows: 2_000_000,
            max_file_bytes: 2 * 1024 * 1024 * 1024,
            max_columns: 16_384,
        }
    }
}

/// A column the caller wants, by its header name as configured. The reader matches it against
/// the file's header with [`normalize_header`] on both sides.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ColumnSpec {
    /// Header name as configured (also used to name the column in error messages).
    pub name: String,
    /// Whether the file must have this column. A missing optional column reads as `""`.
    pub required: bool,
}

impl ColumnSpec {
    /// A column the file must have.
    pub fn required(name: impl Into<String>) -> Self {
        Self { name: name.into(), required: true }
    }

    /// A column the file may lack.
    pub fn optional(name: impl Into<String>) -> Self {
        Self { name: name.into(), required: false }
    }
}

/// Normal form used to match header names: drop a stray BOM character, trim, collapse every run
/// of (Unicode) whitespace to one space, ASCII-lowercase. `"  E-Mail   Address "` and
/// `"e-mail address"` match; `"email_address"` and `"email address"` do not.
pub fn normalize_header(name: &str) -> String {
    let mut out = String::with_capacity(name.len());
    for word in name.split(|c: char| c.is_whitespace() || c == '\u{feff}') {
        if word.is_empty() {
            continue;
        }
        if !out.is_empty() {
            out.push(' ');
        }
        let start = out.len();
        out.push_str(word);
        out[start..].make_ascii_lowercase();
    }
    out
}

/// A problem with the file as a whole: the run must stop. The message names the problem and,
/// where there is one, the place.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// No header line: zero bytes, or only a BOM, blank lines or empty fields.
    #[error("the file is empty: no header line was found")]
    Empty,
    /// A byte sequence that is not UTF-8 while the encoding is UTF-8.
    #[error(
        "invalid UTF-8 on line {line} at byte offset {byte_offset} (counted from 0): the file is not \
         UTF-8; if it is a Windows or Excel export, set the encoding to windows-1252"
    )]
    InvalidUtf8 {
        /// 1-based physical line of the offending byte.
        line: u64,
        /// 0-based offset of the offending byte from the start of the file.
        byte_offset: u64,
    },
    /// The file starts with a UTF-16 byte-order mark.
    #[error("the file is UTF-16 encoded (it starts with a UTF-16 byte-order mark); export it as UTF-8 CSV")]
    Utf16,
    /// More bytes than [`ReaderOptions::max_file_bytes`].
    #[error("the file is larger than the limit of {limit} bytes")]
    TooLarge {
        /// The configured limit.
        limit: u64,
    },
    /// More data rows than [`ReaderOptions::max_rows`].
    #[error("the file has more than the limit of {limit} data rows")]
    TooManyRows {
        /// The configured limit.
        limit: u64,
    },
    /// More header columns than [`ReaderOptions::max_columns`].
    #[error("the header has more than the limit of {limit} columns")]
    TooManyColumns {
        /// The configured limit.
        limit: usize,
    },
    /// A header name longer than [`ReaderOptions::max_field_bytes`].
    #[error("header column {column} is longer than the limit of {limit} bytes")]
    HeaderNameTooLong {
        /// 1-based column position.
        column: usize,
        /// The configured limit.
        limit: usize,
    },
    /// Required columns absent from the header.
    #[error("{}", missing_columns_message(.missing, .found))]
    MissingColumns {
        /// Configured names of the missing columns.
        missing: Vec<String>,
        /// Header names found in the file, as written there (trimmed).
        found: Vec<String>,
    },
    /// A wanted column matches two header columns.
    #[error(
        "column {name:?} appears more than once in the header (columns {first} and {second}); \
         cannot tell which one to use"
    )]
    DuplicateColumn {
        /// Configured name of the column.
        name: String,
        /// 1-based position of the first match.
        first: usize,
        /// 1-based position of the second match.
        second: usize,
    },
    /// The file ends inside a quoted field.
    #[error(
        "the record starting on line {line} opens a quoted field that is never closed: the file \
         ends inside quotes (truncated or malformed file)"
    )]
    UnterminatedQuote {
        /// 1-based line where the record starts.
        line: u64,
    },
    /// [`ReaderOptions::delimiter`] is not usable.
    #[error(
        "the delimiter {} cannot be used: it must be an ASCII character other than a double quote, \
         CR or LF", char::from(*.byte).escape_default()
    )]
    InvalidDelimiter {
        /// The configured delimiter byte.
        byte: u8,
    },
    /// The underlying reader failed.
    #[error("reading the input failed: {0}")]
    Io(#[source] std::io::Error),
}

fn missing_columns_message(missing: &[String], found: &[String]) -> String {
    const SHOWN: usize = 50;
    let list = |names: &[String]| names.iter().map(|n| format!("{n:?}")).collect::<Vec<_>>().join(", ");
    let (what, verb) = if missing.len() == 1 { ("column", "is") } else { ("columns", "are") };
    let mut msg = format!(
        "required {what} {} {verb} missing from the header (columns found: {}",
        list(missing),
        list(&found[..found.len().min(SHOWN)]),
    );
    if found.len() > SHOWN {
        msg.push_str(&format!(", and {} more", found.len() - SHOWN));
    }
    msg.push(')');
    msg
}

/// One rejected row: where, which column (if one is to blame) and why. Displayed as
/// `line 17, column "email": "bob at example" is not an e-mail address (expected name@domain)`.
/// Messages quote at most a short prefix of one value, never a whole row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RowError {
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// Configured name of the column at fault, if one is.
    pub column: Option<String>,
    /// What is wrong and what was expected.
    pub reason: String,
}

impl RowError {
    /// A rejection of the row starting on `line`, blaming `column` if given.
    pub fn new(line: u64, column: Option<&str>, reason: impl Into<String>) -> Self {
        Self { line, column: column.map(str::to_owned), reason: reason.into() }
    }
}

impl fmt::Display for RowError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.column {
            Some(column) => write!(f, "line {}, column {column:?}: {}", self.line, self.reason),
            None => write!(f, "line {}: {}", self.line, self.reason),
        }
    }
}

impl std::error::Error for RowError {}

/// `str::trim`, deciding the common case (no surrounding whitespace) from two bytes.
pub fn trim(value: &str) -> &str {
    if maybe_padded(value.as_bytes()) { value.trim() } else { value }
}

/// Runs `f` on `value`, trimmed and in ASCII lower case, without allocating: as it is when it
/// has no upper-case letter, else lowered in a stack buffer when it is at most 64 bytes. A value
/// that is not ASCII, or long and mixed-case, gives `f` back, for the caller's own folding.
pub(crate) fn with_ascii_lowercase<R, F: FnOnce(&str) -> R>(value: &str, f: F) -> Result<R, F> {
    const STACK: usize = 64;
    let value = trim(value);
    if !value.is_ascii() {
        return Err(f);
    }
    if !value.bytes().any(|b| b.is_ascii_uppercase()) {
        return Ok(f(value));
    }
    if value.len() > STACK {
        return Err(f);
    }
    let mut buf = [0u8; STACK];
    let lower = &mut buf[..value.len()];
    lower.copy_from_slice(value.as_bytes());
    lower.make_ascii_lowercase();
    Ok(f(std::str::from_utf8(lower).expect("ASCII stays UTF-8")))
}

/// The range of UTF-8 `bytes` that [`trim`] keeps (bytes that are not UTF-8 are kept whole).
#[cold]
pub(crate) fn trimmed_range(bytes: &[u8]) -> std::ops::Range<usize> {
    let Ok(value) = std::str::from_utf8(bytes) else { return 0..bytes.len() };
    let start = value.len() - value.trim_start().len();
    start..value.trim_end().len().max(start)
}

/// Whether `bytes` may start or end with white space: false decides that trimming keeps them
/// all. Looks at two bytes, through [`EDGE_SPACE`].
#[inline]
pub(crate) fn maybe_padded(bytes: &[u8]) -> bool {
    match (bytes.first(), bytes.last()) {
        (Some(&first), Some(&last)) => {
            (EDGE_SPACE[usize::from(first)] & STARTS) | (EDGE_SPACE[usize::from(last)] & ENDS) != 0
        }
        _ => false,
    }
}

const STARTS: u8 = 1;
const ENDS: u8 = 2;

/// Per byte: whether white space may start ([`STARTS`]) or end ([`ENDS`]) with it. The
/// characters `char::is_whitespace` (which `str::trim` uses) calls white space are ASCII tab to
/// carriage return and space, and U+0085, U+00A0, U+1680, U+2000..=U+200A, U+2028, U+2029,
/// U+202F, U+205F and U+3000: in UTF-8 these start with C2, E1, E2 or E3 and end with 80..=8A,
/// 9F, A0, A8, A9 or AF. A first or last byte outside these cannot belong to white space.
const EDGE_SPACE: [u8; 256] = {
    let mut table = [0u8; 256];
    let mut b = 0;
    while b < 256 {
        let byte = b as u8;
        if matches!(byte, b'\t'..=b'\r' | b' ') {
            table[b] = STARTS | ENDS;
        } else if matches!(byte, 0xC2 | 0xE1 | 0xE2 | 0xE3) {
            table[b] = STARTS;
        } else if matches!(byte, 0x80..=0x8A | 0x9F | 0xA0 | 0xA8 | 0xA9 | 0xAF) {
            table[b] = ENDS;
        }
        b += 1;
    }
    table
};

/// Quotes a value for a message: Rust string escaping, cut to 60 characters.
pub(crate) fn show_value(value: &str) -> String {
    const MAX_CHARS: usize = 60;
    match value.char_indices().nth(MAX_CHARS) {
        Some((cut, _)) => format!("{:?}…", &value[..cut]),
        None => format!("{value:?}"),
    }
}
