//! Property tests on everything that parses outside input: the CSV reader (`CsvReader`, and the
//! `EmployeeReader` the ingest reads with), the mapping config parser, and the S3/SQS event
//! parsing of the Lambdas (`aws_lambda_events` types, `WorkMessage::parse`, `decode_s3_key`,
//! `accepts`).
//!
//! What must hold for any input: no panic; no hang (a read ends within one call per line of
//! the input); every data row is accepted or rejected with a reason naming its line; line
//! numbers strictly increase. For generated well-formed files, the rows reported (accepted and
//! rejected, their lines and values) must equal a reference computation exactly.
//!
//! Case counts are modest so the file runs in seconds; `PROPTEST_CASES=N` runs N cases per
//! property for a longer soak.

mod support;

use std::io::Cursor;

use aws_lambda_events::event::s3::S3Event;
use aws_lambda_events::event::sqs::SqsEvent;
use proptest::prelude::*;
use proptest::sample::select;
use serde_json::{Value, json};
use shared::config::{ConfigError, MappingConfig};
use shared::engine::{Employee, EmployeeReader, ReadContext, index_file};
use shared::input::{ColumnSpec, CsvReader, Encoding, FileError, ReaderOptions};
use shared::pipeline::ingest::{accepts, decode_s3_key, run_id};
use shared::pipeline::{MessageError, Settings, WorkMessage};
use support::{EXAMPLE_CONFIG, REFERENCE_HEADER, demo_catalog, line_at};

const S3_EVENTS: [&str; 3] = [
    include_str!("../../infra/events/s3-put.json"),
    include_str!("../../infra/events/s3-put-encoded-key.json"),
    include_str!("../../infra/events/s3-put-dry-run.json"),
];
const SQS_EVENT: &str = include_str!("../../infra/events/sqs-batch.json");

/// `cases` per property, unless `PROPTEST_CASES` asks for more.
fn cases(cases: u32) -> ProptestConfig {
    let cases = std::env::var("PROPTEST_CASES").ok().and_then(|v| v.parse().ok()).unwrap_or(cases);
    // No regression files in the source tree: a failure prints its minimal input instead.
    ProptestConfig { cases, failure_persistence: None, ..ProptestConfig::default() }
}

// ----- the reference computations --------------------------------------------------------------

/// What a read gave, item by item: `(line, Ok(values) | Err(reason))`, then how it ended.
#[derive(Debug)]
struct Read {
    items: Vec<(u64, Result<Vec<String>, String>)>,
    end: Result<(), String>,
}

/// Reads `bytes` to the end with `CsvReader`, checking on the way what must hold for any
/// input, and returns what it read (`Err` when the header could not be read).
fn read_checked(bytes: &[u8], options: &ReaderOptions, columns: &[ColumnSpec]) -> Result<Read, FileError> {
    let mut reader = match CsvReader::new(Cursor::new(bytes), options, columns) {
        Ok(r) => r,
        Err(e) => {
            check_file_error(&e, bytes, options);
            return Err(e);
        }
    };
    let last_line = line_at(bytes);
    // Every record ends at a line break or at the end of the input: more calls than lines
    // would mean a row was produced without consuming input (a hang in the making).
    let max_calls = last_line + 1;
    let mut items = Vec::new();
    let mut previous = 0u64;
    let mut calls = 0u64;
    let end = loop {
        calls += 1;
        assert!(calls <= max_calls, "more than {max_calls} calls to next_row for {} bytes", bytes.len());
        match reader.next_row() {
            Ok(Some(Ok(row))) => {
                let line = row.line();
                let values: Vec<String> = (0..row.len()).map(|i| row.get(i).to_string()).collect();
                for v in &values {
                    assert_eq!(v.trim(), v, "values are trimmed");
                }
                items.push((line, Ok(values)));
            }
            Ok(Some(Err(e))) => {
                assert!(!e.reason.trim().is_empty(), "a rejection without a reason: {e:?}");
                assert!(e.to_string().starts_with(&format!("line {}", e.line)), "{e}");
                items.push((e.line, Err(e.reason.clone())));
            }
            Ok(None) => break Ok(()),
            Err(e) => {
                check_file_error(&e, bytes, options);
                break Err(e.to_string());
            }
        }
        let line = items.last().expect("an item").0;
        assert!(line > previous, "line numbers must increase: {previous} then {line}");
        assert!((1..=last_line).contains(&line), "line {line} outside 1..={last_line}");
        previous = line;
    };
    // The reader is fused: after the end or a file error, only `Ok(None)`.
    assert!(matches!(reader.next_row(), Ok(None)), "next_row after the end must be Ok(None)");
    assert_eq!(reader.rows_read(), items.len() as u64, "rows_read counts accepted and rejected rows");
    Ok(Read { items, end })
}

/// A file-level error explains itself and, where it names a place, the place is right.
fn check_file_error(e: &FileError, bytes: &[u8], options: &ReaderOptions) {
    let msg = e.to_string();
    assert!(msg.len() > 10, "a file error needs a message: {e:?}");
    match e {
        FileError::InvalidUtf8 { line, byte_offset } => {
            assert_eq!(options.encoding, Encoding::Utf8, "only UTF-8 input can be invalid UTF-8");
            let at = *byte_offset as usize;
            assert!(at < bytes.len(), "offset {at} beyond the {} bytes of the file", bytes.len());
            assert!(std::str::from_utf8(&bytes[..at]).is_ok(), "the bytes before offset {at} are valid UTF-8");
            assert!(
                std::str::from_utf8(&bytes[at..]).is_err_and(|u| u.valid_up_to() == 0),
                "the byte at offset {at} starts an invalid sequence"
            );
            assert_eq!(*line, line_at(&bytes[..at]), "the line of byte offset {at}");
            assert!(msg.contains(&format!("line {line}")) && msg.contains(&format!("byte offset {at}")), "{msg}");
        }
        FileError::UnterminatedQuote { line } => {
            assert!((1..=line_at(bytes)).contains(line), "{e}");
            assert!(bytes.contains(&b'"'), "an unterminated quote without a quote: {e}");
            assert!(msg.contains(&format!("line {line}")), "{msg}");
        }
        FileError::Io(_) => panic!("reading from memory cannot fail: {e}"),
        _ => {}
    }
}

// ----- generated CSV files ---------------------------------------------------------------------

const DELIMITERS: [u8; 3] = [b',', b';', b'\t'];
const TERMINATORS: [&str; 3] = ["\n", "\r\n", "\r"];

/// One line of a generated file: a blank line, or a record of `fields` (quoted where needed
/// or when `quote` says so) ended by `terminator`.
#[derive(Debug, Clone)]
enum Line {
    Blank(&'static str),
    Record { fields: Vec<String>, quote: Vec<bool>, terminator: &'static str },
}

#[derive(Debug, Clone)]
struct Doc {
    bom: bool,
    columns: usize,
    delimiter: u8,
    /// Let the reader detect the delimiter instead of configuring it.
    detect: bool,
    blank_before_header: Vec<&'static str>,
    header_terminator: &'static str,
    lines: Vec<Line>,
    /// Whether the last line keeps its terminator.
    final_terminator: bool,
}

/// A value: letters, non-ASCII, spaces, delimiters, quotes and line breaks.
fn value() -> impl Strategy<Value = String> {
    prop::collection::vec(select(vec!['a', 'b', 'Z', '7', 'é', '€', ' ', ' ', ',', ';', '\t', '"', '\r', '\n']), 0..8)
        .prop_map(String::from_iter)
}

fn line(columns: usize) -> impl Strategy<Value = Line> {
    let record = (columns.saturating_sub(1).max(1)..=columns + 1)
        .prop_flat_map(|n| {
            (prop::collection::vec(value(), n), prop::collection::vec(any::<bool>(), n), select(TERMINATORS.to_vec()))
        })
        .prop_map(|(fields, quote, terminator)| Line::Record { fields, quote, terminator });
    // Mostly full records; some ragged (one field short or long), some blank lines.
    prop_oneof![
        6 => (prop::collection::vec(value(), columns), prop::collection::vec(any::<bool>(), columns), select(TERMINATORS.to_vec()))
            .prop_map(|(fields, quote, terminator)| Line::Record { fields, quote, terminator }),
        2 => record,
        1 => select(TERMINATORS.to_vec()).prop_map(Line::Blank),
    ]
}

fn doc() -> impl Strategy<Value = Doc> {
    (1usize..=5)
        .prop_flat_map(|columns| {
            (
                any::<bool>(),
                Just(columns),
                select(DELIMITERS.to_vec()),
                any::<bool>(),
                prop::collection::vec(select(TERMINATORS.to_vec()), 0..3),
                select(TERMINATORS.to_vec()),
                prop::collection::vec(line(columns), 0..25),
                any::<bool>(),
            )
        })
        .prop_map(
            |(bom, columns, delimiter, detect, blank_before_header, header_terminator, lines, final_terminator)| Doc {
                bom,
                columns,
                delimiter,
                detect,
                blank_before_header,
                header_terminator,
                lines,
                final_terminator,
            },
        )
}

/// What the reader must report for one data record.
#[derive(Debug, PartialEq)]
enum Expected {
    Accepted { line: u64, values: Vec<String> },
    Rejected { line: u64 },
}

impl Doc {
    /// The delimiter the reader uses: the configured one, or what detection finds in a
    /// header that only contains the chosen one (none at all for one column: `,`).
    fn effective_delimiter(&self) -> u8 {
        if self.detect && self.columns == 1 { b',' } else { self.delimiter }
    }

    fn options(&self) -> ReaderOptions {
        ReaderOptions { delimiter: (!self.detect).then_some(self.delimiter), ..ReaderOptions::default() }
    }

    fn column_specs(&self) -> Vec<ColumnSpec> {
        (0..self.columns).map(|i| ColumnSpec::required(format!("Col {i}"))).collect()
    }

    fn encode_field(&self, value: &str, quote: bool) -> String {
        let d = self.effective_delimiter() as char;
        if quote || value.contains([d, '"', '\r', '\n']) {
            format!("\"{}\"", value.replace('"', "\"\""))
        } else {
            value.to_string()
        }
    }

    /// The file's bytes and, per data record, what the reader must report.
    fn render(&self) -> (Vec<u8>, Vec<Expected>) {
        let d = (self.effective_delimiter() as char).to_string();
        let mut out = String::new();
        if self.bom {
            out.push('\u{feff}');
        }
        for t in &self.blank_before_header {
            out.push_str(t);
        }
        let header: Vec<String> = (0..self.columns).map(|i| format!("Col {i}")).collect();
        out.push_str(&header.join(&d));
        out.push_str(self.header_terminator);
        let mut expected = Vec::new();
        for (i, line) in self.lines.iter().enumerate() {
            let last = i + 1 == self.lines.len();
            match line {
                Line::Blank(t) => {
                    if !last || self.final_terminator {
                        out.push_str(t);
                    }
                }
                Line::Record { fields, quote, terminator } => {
                    let start = line_at(out.as_bytes());
                    let text: Vec<String> = fields.iter().zip(quote).map(|(v, q)| self.encode_field(v, *q)).collect();
                    out.push_str(&text.join(&d));
                    if !last || self.final_terminator {
                        out.push_str(terminator);
                    }
                    // A record whose values are all blank is skipped like an empty line.
                    if fields.iter().all(|v| v.bytes().all(|b| b.is_ascii_whitespace())) {
                        continue;
                    }
                    expected.push(if fields.len() == self.columns {
                        Expected::Accepted {
                            line: start,
                            values: fields.iter().map(|v| v.trim().to_string()).collect(),
                        }
                    } else {
                        Expected::Rejected { line: start }
                    });
                }
            }
        }
        (out.into_bytes(), expected)
    }
}

/// Bytes a mangled file may gain: quotes, delimiters, line breaks, a BOM, invalid UTF-8, NUL.
const JUNK: [&[u8]; 9] = [b"\"", b",", b";", b"\r", b"\n", b"\xEF\xBB\xBF", b"\xFF", b"\xC3", b"\0"];

#[derive(Debug, Clone)]
enum Mangle {
    Insert(usize, &'static [u8]),
    Delete(usize),
    Truncate(usize),
}

fn mangles() -> impl Strategy<Value = Vec<Mangle>> {
    prop::collection::vec(
        prop_oneof![
            (any::<usize>(), select(JUNK.to_vec())).prop_map(|(at, junk)| Mangle::Insert(at, junk)),
            any::<usize>().prop_map(Mangle::Delete),
            any::<usize>().prop_map(Mangle::Truncate),
        ],
        1..4,
    )
}

fn mangle(mut bytes: Vec<u8>, how: &[Mangle]) -> Vec<u8> {
    for m in how {
        let n = bytes.len();
        match *m {
            Mangle::Insert(at, junk) => {
                let at = at % (n + 1);
                bytes.splice(at..at, junk.iter().copied());
            }
            Mangle::Delete(at) if n > 0 => {
                bytes.remove(at % n);
            }
            Mangle::Truncate(at) => bytes.truncate(at % (n + 1)),
            Mangle::Delete(_) => {}
        }
    }
    bytes
}

/// Arbitrary bytes, biased towards what CSV parsing cares about.
fn csv_ish_bytes() -> impl Strategy<Value = Vec<u8>> {
    prop::collection::vec(
        prop_oneof![
            4 => select(b"abc ,;\t\"\r\n".to_vec()),
            1 => any::<u8>(),
        ],
        0..400,
    )
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn a_generated_well_formed_file_reports_exactly_the_reference_rows(doc in doc()) {
        // GIVEN a well-formed file: any delimiter, line endings, quoting, BOM, blank lines
        let (bytes, expected) = doc.render();

        // WHEN it is read to the end
        let read = read_checked(&bytes, &doc.options(), &doc.column_specs())
            .unwrap_or_else(|e| panic!("the header of a well-formed file is read: {e}"));

        // THEN every data record is reported once, at its line, accepted with its values or
        // rejected (wrong number of fields), and the read ends cleanly
        prop_assert_eq!(&read.end, &Ok(()));
        let got: Vec<Expected> = read
            .items
            .into_iter()
            .map(|(line, item)| match item {
                Ok(values) => Expected::Accepted { line, values },
                Err(_) => Expected::Rejected { line },
            })
            .collect();
        prop_assert_eq!(got, expected, "file: {:?}", String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn a_mangled_file_never_panics_or_hangs_and_reports_every_row_with_its_line(
        doc in doc(),
        how in mangles(),
        latin1 in any::<bool>(),
    ) {
        // GIVEN a well-formed file with stray quotes, delimiters, line breaks, BOMs, invalid
        // UTF-8 or NUL bytes inserted, bytes deleted, or the end cut off
        let (bytes, _) = doc.render();
        let bytes = mangle(bytes, &how);
        let mut options = doc.options();
        if latin1 {
            options.encoding = Encoding::Windows1252;
        }

        // WHEN it is read, THEN the invariants hold (checked inside)
        let _ = read_checked(&bytes, &options, &doc.column_specs());
    }

    #[test]
    fn arbitrary_bytes_never_panic_or_hang_the_csv_reader(
        bytes in csv_ish_bytes(),
        latin1 in any::<bool>(),
        delimiter in prop::option::of(select(vec![b',', b';', b'\t', b'|', b'"', b'\n', 0xE9])),
    ) {
        // GIVEN any bytes, either encoding, any delimiter setting (some of them unusable)
        let options = ReaderOptions {
            encoding: if latin1 { Encoding::Windows1252 } else { Encoding::Utf8 },
            delimiter,
            ..ReaderOptions::default()
        };
        let columns = [ColumnSpec::optional("a"), ColumnSpec::optional("b c")];

        // WHEN it is read
        let result = read_checked(&bytes, &options, &columns);

        // THEN an unusable delimiter is refused up front, by name
        if let Some(d) = delimiter && (!d.is_ascii() || matches!(d, b'"' | b'\r' | b'\n')) {
            let refused = matches!(result, Err(FileError::InvalidDelimiter { byte }) if byte == d);
            prop_assert!(refused, "delimiter {:?} must be refused", d as char);
        }
    }
}

// ----- the EmployeeReader (example config) -----------------------------------------------------

/// A row of the reference export whose cells come from pools of good and bad values.
fn hr_row() -> impl Strategy<Value = Vec<String>> {
    let logins =
        vec!["ann@example.com", "Bob@Example.com", "bob@example.com", "carl@example.com", "", "not a login", "é@x"];
    (
        select(vec!["E1", "E2", " E3 ", "", "E1"]),
        select(logins.clone()),
        select(vec!["ann@example.com", "bob.example.com", "", "x@y.z"]),
        select(vec!["Ann", "Zoë", "", " "]),
        select(vec!["Lovelace", "O'Brien", ""]),
        select(vec!["Engineer", "Head of \"Ops\", EMEA", ""]),
        select(vec!["R&D", ""]),
        select(logins.into_iter().chain(["ghost@example.com"]).collect::<Vec<_>>()),
        select(vec!["Active", "leave", "Terminated", "Disabled", "Retired", ""]),
        select(vec!["", "Sponsor", "Manager; sponsor", "Nope", "Vendor Portal", ";;"]),
    )
        .prop_map(|t| {
            [t.0, t.1, t.2, t.3, t.4, t.5, t.6, t.7, t.8, t.9].iter().map(|s| s.to_string()).collect::<Vec<_>>()
        })
}

fn csv_cell(v: &str) -> String {
    if v.contains([',', '"', '\n', '\r']) { format!("\"{}\"", v.replace('"', "\"\"")) } else { v.to_string() }
}

proptest! {
    #![proptest_config(cases(128))]

    #[test]
    fn the_employee_reader_accepts_or_rejects_every_row_with_reasons_naming_its_line(
        rows in prop::collection::vec((hr_row(), 0usize..12), 0..30),
        how in prop::option::of(mangles()),
    ) {
        // GIVEN the example config bound to the demo tenant, and an export of rows built from
        // good and bad values, some of them ragged (a field dropped or doubled), maybe mangled
        let config = MappingConfig::from_toml_str(EXAMPLE_CONFIG).expect("the example config loads");
        let resolved = config.resolve(&demo_catalog()).expect("the example config resolves");
        let ctx = ReadContext::new(&resolved);
        let mut text = REFERENCE_HEADER.join(",") + "\n";
        let mut data_rows = 0u64;
        for (row, shape) in &rows {
            let mut cells: Vec<String> = row.iter().map(|v| csv_cell(v)).collect();
            match shape {
                0 => { cells.pop(); }
                1 => cells.push("extra".into()),
                _ => {}
            }
            text.push_str(&cells.join(","));
            text.push('\n');
            data_rows += 1;
        }
        let bytes = match &how {
            Some(how) => mangle(text.into_bytes(), how),
            None => text.into_bytes(),
        };

        // WHEN the ingest's reader reads it to the end
        let mut reader = match EmployeeReader::new(Cursor::new(&bytes), &ctx) {
            Ok(r) => r,
            Err(e) => {
                prop_assert!(how.is_some(), "an unmangled export has a good header: {}", e);
                prop_assert!(!e.to_string().is_empty());
                return Ok(());
            }
        };
        let (mut accepted, mut rejected, mut previous) = (0u64, 0u64, 0u64);
        let mut end = None;
        for _ in 0..=line_at(&bytes) + 1 {
            let line = match reader.next_employee() {
                Ok(None) => {
                    end = Some(Ok(()));
                    break;
                }
                Err(e) => {
                    end = Some(Err(e.to_string()));
                    break;
                }
                Ok(Some(Ok(employee))) => {
                    // THEN an accepted row has everything NERM requires
                    prop_assert!(!employee.login.is_empty() && !employee.key.is_empty(), "{:?}", employee);
                    prop_assert!(employee.email.contains('@'), "{:?}", employee);
                    prop_assert!(["Active", "Disabled"].contains(&employee.user_status.as_str()), "{:?}", employee);
                    accepted += 1;
                    employee.line
                }
                Ok(Some(Err(rejection))) => {
                    // AND a rejected one says why, each reason naming its line
                    prop_assert!(!rejection.reasons.is_empty(), "{:?}", rejection);
                    for reason in &rejection.reasons {
                        prop_assert!(reason.starts_with(&format!("line {}", rejection.line)), "{}", reason);
                    }
                    rejected += 1;
                    rejection.line
                }
            };
            prop_assert!(line > previous, "lines increase: {} then {}", previous, line);
            previous = line;
        }
        prop_assert!(end.is_some(), "the reader ended within one call per line (no hang)");
        prop_assert!(matches!(reader.next_employee(), Ok(None)), "the reader is fused after its end");

        // AND without mangling, every data row is accounted for, and the first pass agrees
        if how.is_none() {
            prop_assert_eq!(end, Some(Ok(())));
            prop_assert_eq!(accepted + rejected, data_rows);
            let index = index_file(Cursor::new(bytes.clone()), &ctx).expect("the first pass reads the same file");
            prop_assert_eq!(index.valid_rows, accepted);
        }

        // AND one employee refilled row after row, with the CSV read (and the row-only rules
        // checked) on another thread, reads every row as a fresh one does
        let mut fresh = EmployeeReader::new(Cursor::new(&bytes), &ctx).expect("the header read before");
        let mut reused =
            EmployeeReader::new(Cursor::new(bytes.clone()), &ctx).expect("the header read before").piped_if(true);
        let mut employee = Employee::default();
        for _ in 0..=line_at(&bytes) + 1 {
            match (fresh.next_employee(), reused.read_into(&mut employee)) {
                (Ok(Some(Ok(e))), Ok(Some(Ok(())))) => prop_assert_eq!(&e, &employee),
                (Ok(Some(Err(a))), Ok(Some(Err(b)))) => prop_assert_eq!(a, b),
                (Ok(None), Ok(None)) => break,
                (Err(a), Err(b)) => {
                    prop_assert_eq!(a.to_string(), b.to_string());
                    break;
                }
                (a, b) => prop_assert!(false, "a fresh employee read {:?}, the reused one {:?}", a, b),
            }
        }
    }
}

// ----- the mapping config ----------------------------------------------------------------------

/// A config error explains itself; a syntax error points at a line of the text.
fn check_config_error(e: &ConfigError, text: &str) {
    let msg = e.to_string();
    assert!(msg.len() > 10, "a config error needs a message: {e:?}");
    match e {
        ConfigError::Syntax { line, .. } => {
            assert!(*line >= 1 && *line <= text.lines().count() + 1, "syntax error on line {line}: {msg}");
        }
        ConfigError::Key { path, message, .. } => assert!(!path.is_empty() && !message.is_empty(), "{msg}"),
        ConfigError::Invalid(problems) => {
            assert!(!problems.is_empty(), "{msg}");
            assert!(problems.iter().all(|p| !p.key.is_empty() && !p.message.is_empty()), "{msg}");
        }
        _ => {}
    }
}

/// Loads a config the way the ingest does, then binds it to the demo tenant and reads a small
/// export with it: any config that loads must also be usable without a panic.
fn load_and_use(text: &str) {
    let config = match MappingConfig::from_toml_str(text) {
        Ok(c) => c,
        Err(e) => return check_config_error(&e, text),
    };
    if let Err(e) = config.check_columns(&REFERENCE_HEADER) {
        check_config_error(&e, text);
    }
    let resolved = match config.resolve(&demo_catalog()) {
        Ok(r) => r,
        Err(e) => return check_config_error(&e, text),
    };
    let ctx = ReadContext::new(&resolved);
    let csv = format!(
        "{}\nE1,ann@example.com,ann@example.com,Ann,Lee,Eng,R&D,,Active,Sponsor\nE2,bob@example.com,bob,Bob,,,,ann@example.com,Gone,\n",
        REFERENCE_HEADER.join(",")
    );
    if let Ok(mut reader) = EmployeeReader::new(Cursor::new(csv.as_bytes()), &ctx) {
        for _ in 0..4 {
            match reader.next_employee() {
                Ok(Some(Err(r))) => assert!(!r.reasons.is_empty()),
                Ok(Some(Ok(_))) => {}
                Ok(None) | Err(_) => break,
            }
        }
    }
}

/// Values a mutated config line may get.
const TOML_VALUES: [&str; 22] = [
    "\"\"",
    "-1",
    "0",
    "1e400",
    "18446744073709551616",
    "-9223372036854775808",
    "\"{\"",
    "\"}\"",
    "\"{}\"",
    "\"{nope}\"",
    "\"{first_name\"",
    "[]",
    "{}",
    "true",
    "nan",
    "inf",
    "\"\\u0000\"",
    "\"Active\"",
    "\"full\"",
    "[\"Employee\", \"Employee\"]",
    "\"\\t\"",
    "2147483648",
];

#[derive(Debug, Clone)]
enum Edit {
    DeleteLine(usize),
    DuplicateLine(usize),
    SwapLines(usize, usize),
    ReplaceValue(usize, &'static str),
    ReplaceLine(usize, String),
    Truncate(usize),
}

fn edits() -> impl Strategy<Value = Vec<Edit>> {
    prop::collection::vec(
        prop_oneof![
            1 => any::<usize>().prop_map(Edit::DeleteLine),
            1 => any::<usize>().prop_map(Edit::DuplicateLine),
            1 => (any::<usize>(), any::<usize>()).prop_map(|(a, b)| Edit::SwapLines(a, b)),
            4 => (any::<usize>(), select(TOML_VALUES.to_vec())).prop_map(|(i, v)| Edit::ReplaceValue(i, v)),
            1 => (any::<usize>(), "[\\[\\]a-z_.=\" {}0-9#]{0,24}").prop_map(|(i, s)| Edit::ReplaceLine(i, s)),
            1 => any::<usize>().prop_map(Edit::Truncate),
        ],
        1..5,
    )
}

fn edit(text: &str, edits: &[Edit]) -> String {
    let mut lines: Vec<String> = text.lines().map(String::from).collect();
    for e in edits {
        let n = lines.len().max(1);
        match e {
            Edit::DeleteLine(i) if !lines.is_empty() => {
                lines.remove(i % n);
            }
            Edit::DuplicateLine(i) if !lines.is_empty() => {
                let l = lines[i % n].clone();
                lines.insert(i % n, l);
            }
            Edit::SwapLines(a, b) if !lines.is_empty() => lines.swap(a % n, b % n),
            Edit::ReplaceValue(i, v) if !lines.is_empty() => {
                // The i-th line that sets a value.
                let setters: Vec<usize> = (0..lines.len()).filter(|&k| lines[k].contains(" = ")).collect();
                if let Some(&k) = setters.get(i % setters.len().max(1)) {
                    let key = lines[k].split(" = ").next().unwrap_or_default().to_string();
                    lines[k] = format!("{key} = {v}");
                }
            }
            Edit::ReplaceLine(i, s) if !lines.is_empty() => lines[i % n] = s.clone(),
            Edit::Truncate(at) => {
                let joined = lines.join("\n");
                let mut cut = at % (joined.len() + 1);
                while !joined.is_char_boundary(cut) {
                    cut -= 1;
                }
                lines = joined[..cut].lines().map(String::from).collect();
            }
            _ => {}
        }
    }
    lines.join("\n")
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn an_arbitrary_string_is_a_config_or_a_config_error_never_a_panic(text in "\\PC{0,300}") {
        load_and_use(&text);
    }

    #[test]
    fn a_mutated_example_config_loads_or_fails_with_a_message_never_a_panic(edits in edits()) {
        // GIVEN the example config with lines deleted, doubled, swapped or replaced, values
        // swapped for hostile ones, or the end cut off
        let text = edit(EXAMPLE_CONFIG, &edits);
        // WHEN it is loaded, checked against the header, resolved and used to read a file,
        // THEN each step succeeds or fails with a message (checked inside)
        load_and_use(&text);
    }
}

// ----- S3 and SQS events -----------------------------------------------------------------------

/// Keys the Lambda events and work messages use, so arbitrary JSON often lands on them.
const EVENT_KEYS: [&str; 22] = [
    "Records",
    "s3",
    "object",
    "key",
    "bucket",
    "name",
    "eventName",
    "eventSource",
    "versionId",
    "eTag",
    "size",
    "sequencer",
    "messageId",
    "body",
    "attributes",
    "ApproximateReceiveCount",
    "version",
    "run_id",
    "part",
    "items",
    "target",
    "attempt",
];

fn json_value() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        any::<u64>().prop_map(Value::from),
        any::<f64>().prop_filter_map("finite", |f| serde_json::Number::from_f64(f).map(Value::Number)),
        "\\PC{0,16}".prop_map(Value::String),
        "[a-z%+/.0-9A-F]{0,24}".prop_map(Value::String),
    ];
    leaf.prop_recursive(5, 64, 6, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..5).prop_map(Value::Array),
            prop::collection::vec(
                (prop_oneof![select(EVENT_KEYS.to_vec()).prop_map(String::from), "[a-zA-Z]{1,8}"], inner),
                0..6
            )
            .prop_map(|kv| Value::Object(kv.into_iter().collect())),
        ]
    })
}

/// JSON Pointers of every node of `v`.
fn pointers(v: &Value, at: String, out: &mut Vec<String>) {
    match v {
        Value::Object(m) => {
            for (k, child) in m {
                pointers(child, format!("{at}/{}", k.replace('~', "~0").replace('/', "~1")), out);
            }
        }
        Value::Array(a) => {
            for (i, child) in a.iter().enumerate() {
                pointers(child, format!("{at}/{i}"), out);
            }
        }
        _ => {}
    }
    out.push(at);
}

#[derive(Debug, Clone)]
enum JsonEdit {
    Remove(usize),
    Replace(usize, Value),
}

fn json_edits() -> impl Strategy<Value = Vec<JsonEdit>> {
    prop::collection::vec(
        prop_oneof![
            any::<usize>().prop_map(JsonEdit::Remove),
            (any::<usize>(), json_value()).prop_map(|(i, v)| JsonEdit::Replace(i, v)),
        ],
        1..4,
    )
}

/// Removes or replaces nodes of `v` (the root is never removed).
fn edit_json(mut v: Value, edits: &[JsonEdit]) -> Value {
    for e in edits {
        let mut all = Vec::new();
        pointers(&v, String::new(), &mut all);
        match e {
            JsonEdit::Replace(i, new) => {
                if let Some(node) = v.pointer_mut(&all[i % all.len()]) {
                    *node = new.clone();
                }
            }
            JsonEdit::Remove(i) => {
                let target = &all[i % all.len()];
                let Some((parent, last)) = target.rsplit_once('/') else { continue };
                let last = last.replace("~1", "/").replace("~0", "~");
                match v.pointer_mut(parent) {
                    Some(Value::Object(m)) => {
                        m.remove(&last);
                    }
                    Some(Value::Array(a)) => {
                        if let Ok(i) = last.parse::<usize>()
                            && i < a.len()
                        {
                            a.remove(i);
                        }
                    }
                    _ => {}
                }
            }
        }
    }
    v
}

/// What the ingest handler does with an S3 record's key, without the AWS calls: decode it,
/// decide whether to take it on, derive the run's keys. Whatever it takes on stays inside
/// the input prefix; whatever it writes stays inside the state and report prefixes.
fn check_s3_key(raw: &str, version: &str) {
    let settings = Settings::default();
    let Ok(key) = decode_s3_key(raw) else { return };
    if accepts(&settings, &key).is_ok() {
        assert!(key.starts_with(&settings.input_prefix), "{key:?} taken on outside the input prefix");
        assert!(key.to_ascii_lowercase().ends_with(".csv"), "{key:?}");
        assert!(!key.split('/').any(|s| s == ".."), "{key:?} has a '..' segment");
        let run = run_id("bucket", &key, version);
        assert!(run.len() == 24 && run.bytes().all(|b| b.is_ascii_hexdigit()), "run id {run:?}");
        for written in [
            settings.marker_key(&run),
            settings.manifest_key(&run),
            settings.stats_prefix(&run),
            settings.notified_key(&run),
        ] {
            assert!(written.starts_with(&settings.run_state_prefix) && !written.contains(".."), "{written}");
        }
        for written in [settings.parts_prefix(&run), settings.report_key(&run, "report.csv")] {
            assert!(written.starts_with(&settings.report_prefix) && !written.contains(".."), "{written}");
        }
    }
}

/// A work message body that parses, with `version` in place.
fn work_message(version: Value) -> Value {
    json!({
        "version": version,
        "run_id": "0f3c5a9e1b2d4c6e8a0b1c2d",
        "part": "m00000",
        "attempt": 0,
        "target": {
            "profile_type_id": "7b0e6a57-0000-4000-8000-000000000001",
            "key_attribute": "employee_id",
            "manager_attribute": "manager",
            "self_relationship": "owner",
            "concurrency": 4
        },
        "items": []
    })
}

proptest! {
    #![proptest_config(cases(256))]

    #[test]
    fn arbitrary_json_never_panics_the_event_parsing(v in json_value()) {
        // GIVEN any JSON: as an S3 event, an SQS event, a work message body
        if let Ok(event) = serde_json::from_value::<S3Event>(v.clone()) {
            for r in &event.records {
                check_s3_key(r.s3.object.key.as_deref().unwrap_or_default(), r.s3.object.e_tag.as_deref().unwrap_or(""));
            }
        }
        if let Ok(event) = serde_json::from_value::<SqsEvent>(v.clone()) {
            for r in &event.records {
                let _ = WorkMessage::parse(r.body.as_deref().unwrap_or_default());
            }
        }
        // THEN a work message parses only with version 1 or 2 and everything in place
        if let Ok(msg) = WorkMessage::parse(&v.to_string()) {
            prop_assert!(msg.version == 1 || msg.version == 2, "version {}", msg.version);
            prop_assert!(!msg.run_id.trim().is_empty() && !msg.part.trim().is_empty());
        }
    }

    #[test]
    fn mutated_sample_events_never_panic_the_event_parsing(
        which in 0usize..S3_EVENTS.len(),
        edits in json_edits(),
        cut in prop::option::of(any::<usize>()),
    ) {
        // GIVEN the sample events of infra/events with nodes removed or replaced, or cut short
        let s3: Value = serde_json::from_str(S3_EVENTS[which]).expect("a sample S3 event");
        let sqs: Value = serde_json::from_str(SQS_EVENT).expect("the sample SQS event");
        for (sample, is_s3) in [(s3, true), (sqs, false)] {
            let mut text = edit_json(sample, &edits).to_string();
            if let Some(cut) = cut {
                let mut at = cut % (text.len() + 1);
                while !text.is_char_boundary(at) {
                    at -= 1;
                }
                text.truncate(at);
            }
            // WHEN the Lambda runtime and then the handler parse them, THEN nothing panics
            if is_s3 {
                if let Ok(event) = serde_json::from_str::<S3Event>(&text) {
                    for r in &event.records {
                        let version = r.s3.object.version_id.as_deref().unwrap_or_default();
                        check_s3_key(r.s3.object.key.as_deref().unwrap_or_default(), version);
                    }
                }
            } else if let Ok(event) = serde_json::from_str::<SqsEvent>(&text) {
                for r in &event.records {
                    let _ = WorkMessage::parse(r.body.as_deref().unwrap_or_default());
                }
            }
        }
    }

    #[test]
    fn any_s3_key_is_decoded_or_refused_and_never_taken_on_outside_the_input_prefix(
        raw in prop_oneof![
            "[a-z%+/.0-9A-F]{0,40}",
            "incoming/[a-z%+/.0-9A-F]{0,40}(\\.csv|\\.CSV|%2Ecsv)?",
            "(incoming/)?(\\.\\.|%2e%2e|%2E%2E|\\.%2e|%252e)(/|%2F|%2f)[a-z/.]{0,12}\\.csv",
            "\\PC{0,40}",
        ],
        version in "\\PC{0,12}",
    ) {
        check_s3_key(&raw, &version);
    }

    #[test]
    fn a_work_message_of_any_version_but_1_or_2_is_refused_as_an_unknown_version(
        version in any::<u64>(),
        extra in prop::option::of(("[a-z]{1,8}", json_value())),
    ) {
        // GIVEN a complete work message of any version, maybe with a field this build does
        // not know (a newer producer)
        let mut body = work_message(json!(version));
        if let Some((k, v)) = &extra {
            body[format!("x_{k}")] = v.clone();
        }
        let result = WorkMessage::parse(&body.to_string());
        if version == 1 || version == 2 {
            // THEN versions 1 (the build before) and 2 are read, and an unknown field makes it
            // malformed (never guessed at)
            match (&extra, &result) {
                (None, Ok(msg)) => prop_assert_eq!(u64::from(msg.version), version),
                (Some(_), Err(MessageError::Malformed(why))) => prop_assert!(why.contains("unknown field"), "{}", why),
                other => prop_assert!(false, "unexpected: {:?}", other),
            }
        } else {
            // THEN any other version is refused as unknown, whatever the rest of the body, and
            // the message names it
            let err = result.expect_err("an unknown version is refused");
            prop_assert!(matches!(err, MessageError::UnknownVersion(_)), "{:?}", err);
            prop_assert!(err.to_string().contains(&format!("version {version}")), "{}", err);
        }
    }

    #[test]
    fn a_work_message_whose_version_is_not_a_whole_number_is_malformed_and_says_so(
        version in prop_oneof![
            Just(Value::Null),
            any::<bool>().prop_map(Value::Bool),
            (i64::MIN..0).prop_map(Value::from),
            // (halves: exact in binary, so the number reads back as written)
            (0u32..1_000_000).prop_map(|n| Value::from(f64::from(n) + 0.5)),
            Just(json!(1.0)),
            "\\PC{0,8}".prop_map(Value::String),
            Just(json!([1])),
            Just(json!({"major": 1})),
        ],
    ) {
        let err = WorkMessage::parse(&work_message(version.clone()).to_string()).expect_err("refused");
        prop_assert!(matches!(&err, MessageError::Malformed(_)), "{:?}", err);
        prop_assert!(err.to_string().contains("version"), "{}", err);
        prop_assert!(err.to_string().contains(&version.to_string()), "the message shows what it got: {}", err);
    }
}

#[test]
fn a_work_message_body_that_is_not_a_json_object_is_malformed_and_says_what_it_is() {
    for (body, what) in [("[1, 2]", "array"), ("\"text\"", "string"), ("42", "number"), ("null", "null")] {
        let err = WorkMessage::parse(body).expect_err("refused");
        assert!(matches!(&err, MessageError::Malformed(_)), "{body}: {err:?}");
        assert!(err.to_string().contains("JSON object") && err.to_string().contains(what), "{body}: {err}");
    }
}
