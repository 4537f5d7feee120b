//! Hostile CSV files through the reader the ingest uses (`EmployeeReader` with the example
//! mapping config, whose limits are 8 KiB per value and 64 MiB per file) and through
//! `CsvReader` with its defaults: a 50 MB value, a million empty lines, binary garbage, a header
//! of 10,000 columns, nested and unbalanced quotes, a file with only a BOM, a header-only file.
//! Each ends in the exact error (naming line, column or byte offset) or in per-row rejections,
//! within bounded time and memory.
//!
//! Memory: every big case runs in a child process (this test binary, started again with
//! `HOSTILE_INPUT_CASE=<case>`), which checks the outcome and prints its peak resident set
//! (`VmHWM`). The parent asserts the peak stays within [`MEMORY_BOUND_KIB`] of a child that
//! read a three-line file, and a control case (the `csv` crate, which keeps whole records)
//! shows the measurement does see a buffered 50 MB value. Inputs are made on the fly, so the
//! test itself never holds a big file.

mod support;

use std::io::{Cursor, Read};
use std::process::Command;
use std::sync::OnceLock;
use std::time::{Duration, Instant};

use shared::engine::{EmployeeReader, ReadContext, index_file};
use shared::input::{ColumnSpec, CsvReader, FileError, ReaderOptions};
use support::{Pieces, REFERENCE_HEADER, demo_catalog, example_config, line_at, noise};

/// How much more than the three-line baseline a case may take at its peak: far below a
/// buffered 50 MB value, far above what a streaming read needs.
const MEMORY_BOUND_KIB: u64 = 16 * 1024;
/// How long one case may take (debug build, two busy cores).
const TIME_BOUND: Duration = Duration::from_secs(60);
/// 50 MiB.
const BIG: u64 = 50 * 1024 * 1024;
const CASE_VAR: &str = "HOSTILE_INPUT_CASE";
const CHILD_TEST: &str = "child_process_runs_one_case_and_reports_its_peak_memory";

// ----- reading with the ingest's reader --------------------------------------------------------

/// Everything one read with the ingest's reader gave.
#[derive(Debug, Default)]
struct Outcome {
    /// `(line, login)` of accepted rows.
    accepted: Vec<(u64, String)>,
    /// `(line, reasons)` of rejected rows.
    rejected: Vec<(u64, Vec<String>)>,
    /// The file-level error that ended the read, if any.
    error: Option<FileError>,
}

/// Reads `input` with the ingest's reader (example config, demo tenant) to the end, checking
/// on the way that lines increase and every rejection gives reasons naming its line.
fn read_employees(input: impl Read) -> Result<Outcome, FileError> {
    let resolved = example_config().resolve(&demo_catalog()).expect("the example config resolves");
    let ctx = ReadContext::new(&resolved);
    let mut reader = EmployeeReader::new(input, &ctx)?;
    let mut out = Outcome::default();
    let mut previous = 0;
    loop {
        let line = match reader.next_employee() {
            Ok(None) => break,
            Err(e) => {
                out.error = Some(e);
                break;
            }
            Ok(Some(Ok(e))) => {
                out.accepted.push((e.line, e.login.clone()));
                e.line
            }
            Ok(Some(Err(r))) => {
                assert!(!r.reasons.is_empty(), "a rejection without reasons: {r:?}");
                for reason in &r.reasons {
                    assert!(reason.starts_with(&format!("line {}", r.line)), "{reason}");
                }
                out.rejected.push((r.line, r.reasons.clone()));
                r.line
            }
        };
        assert!(line > previous, "lines increase: {previous} then {line}");
        previous = line;
    }
    assert!(matches!(reader.next_employee(), Ok(None)), "the reader stays finished");
    Ok(out)
}

/// The reference header and `rows` valid rows: `E{i}`, `emp{i}@example.com`, lines 2, 3, ...
fn valid_rows(from: usize, rows: usize) -> String {
    (from..from + rows)
        .map(|i| format!("E{i},emp{i}@example.com,emp{i}@example.com,Ann,Lee,Engineer,R&D,,Active,\n"))
        .collect()
}

fn header() -> String {
    REFERENCE_HEADER.join(",") + "\n"
}

fn logins(outcome: &Outcome) -> Vec<(u64, &str)> {
    outcome.accepted.iter().map(|(line, login)| (*line, login.as_str())).collect()
}

// ----- the cases (run in-process, or in a child process for their memory) -----------------------

/// Runs one named case, asserting its outcome; panics on an unknown name.
fn run_case(case: &str) {
    match case {
        "baseline" => {
            let out = read_employees(Cursor::new(header() + &valid_rows(2, 2))).expect("a good file");
            assert_eq!(logins(&out), [(2, "emp2@example.com"), (3, "emp3@example.com")]);
        }
        "value_50mb" => a_50_mb_value_rejects_its_row_only(),
        "header_50mb" => a_50_mb_header_name_is_a_file_error(),
        "open_quote_50mb" => a_50_mb_quoted_value_never_closed_is_a_file_error(),
        "nul_50mb" => fifty_mb_of_nul_bytes_is_one_overlong_header_name(),
        "blank_rows_1m" => a_million_rows_of_empty_fields_are_skipped(),
        "control_csv_crate" => {
            // The `csv` crate keeps whole records: it must hold the 50 MB value at once.
            let mut reader = csv::ReaderBuilder::new().has_headers(true).from_reader(value_50mb_input());
            let mut record = csv::ByteRecord::new();
            assert!(reader.read_byte_record(&mut record).expect("row 2"));
            assert!(reader.read_byte_record(&mut record).expect("row 3"));
            assert_eq!(record.get(5).map(<[u8]>::len), Some(BIG as usize), "the whole value in memory");
        }
        other => panic!("unknown case {other:?}"),
    }
}

/// Header, a valid row, a row whose title is a quoted 50 MiB value (with commas and line
/// breaks inside, so a naive split would see thousands of fields), a valid row.
fn value_50mb_input() -> Pieces {
    Pieces::new()
        .then(header() + &valid_rows(2, 1) + "E3,big@example.com,big@example.com,Big,Value,\"")
        .repeat(vec![b'x'; 4095].into_iter().chain([b',']).collect::<Vec<u8>>(), BIG / 8192)
        .repeat(vec![b'y'; 4095].into_iter().chain([b'\n']).collect::<Vec<u8>>(), BIG / 8192)
        .then("\",R&D,,Active,\n".to_string() + &valid_rows(4, 1))
}

fn a_50_mb_value_rejects_its_row_only() {
    let out = read_employees(value_50mb_input()).expect("the header is fine");
    // The row's quoted line breaks count: the next row starts BIG / 8192 lines later.
    let next = 4 + BIG / 8192;
    assert_eq!(logins(&out), [(2, "emp2@example.com"), (next, "emp4@example.com")]);
    assert_eq!(
        out.rejected,
        [(3, vec!["line 3, column \"title\": value is longer than the limit of 8192 bytes".to_string()])]
    );
    assert!(out.error.is_none(), "{:?}", out.error);
}

fn a_50_mb_header_name_is_a_file_error() {
    let input = Pieces::new().fill(b'h', BIG).then(",login\n").then(valid_rows(2, 1));
    let err = read_employees(input).expect_err("a 50 MB header name");
    assert!(matches!(err, FileError::HeaderNameTooLong { column: 1, limit: 8192 }), "{err:?}");
    assert_eq!(err.to_string(), "header column 1 is longer than the limit of 8192 bytes");
}

fn a_50_mb_quoted_value_never_closed_is_a_file_error() {
    let input = Pieces::new()
        .then(header() + &valid_rows(2, 1) + "E3,open@example.com,open@example.com,Open,Quote,\"Head of ")
        .fill(b'z', BIG);
    let out = read_employees(input).expect("the header is fine");
    assert_eq!(logins(&out), [(2, "emp2@example.com")]);
    let err = out.error.expect("the file ends inside quotes");
    assert!(matches!(err, FileError::UnterminatedQuote { line: 3 }), "{err:?}");
    assert!(err.to_string().contains("the record starting on line 3 opens a quoted field that is never closed"));
}

fn fifty_mb_of_nul_bytes_is_one_overlong_header_name() {
    // NUL is valid UTF-8: no encoding error, just one enormous header field.
    let err = read_employees(Pieces::new().fill(0, BIG)).expect_err("no usable header");
    assert!(matches!(err, FileError::HeaderNameTooLong { column: 1, limit: 8192 }), "{err:?}");
}

fn a_million_rows_of_empty_fields_are_skipped() {
    // Excel leaves `,,,,` rows behind; a million of them (10 MB) between two good rows.
    let input =
        Pieces::new().then(header() + &valid_rows(2, 1)).repeat(",,,,,,,,,\n", 1_000_000).then(valid_rows(3, 1));
    let options = ReaderOptions::default();
    let columns: Vec<ColumnSpec> = REFERENCE_HEADER.iter().map(|c| ColumnSpec::required(*c)).collect();
    let mut reader = CsvReader::new(input, &options, &columns).expect("the header is fine");
    let mut lines = Vec::new();
    while let Some(row) = reader.next_row().expect("no file error") {
        lines.push(row.expect("both rows are well formed").line());
    }
    assert_eq!(lines, [2, 1_000_003]);
    assert_eq!(reader.blank_rows_skipped(), 1_000_000);
    assert_eq!(reader.rows_read(), 2, "blank rows do not count as data rows");
}

// ----- memory: one child process per case ------------------------------------------------------

/// This binary's own peak resident set, in KiB.
fn vm_hwm_kib() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("/proc/self/status (Linux)");
    let line = status.lines().find(|l| l.starts_with("VmHWM:")).expect("a VmHWM line");
    line.split_whitespace().nth(1).and_then(|n| n.parse().ok()).expect("VmHWM in kB")
}

#[test]
#[ignore = "the child process of the memory tests: they run it with HOSTILE_INPUT_CASE=<case>"]
fn child_process_runs_one_case_and_reports_its_peak_memory() {
    let case = std::env::var(CASE_VAR).unwrap_or_else(|_| "baseline".into());
    let started = Instant::now();
    run_case(&case);
    println!("HOSTILE-CASE {case} vmhwm_kib={} ms={}", vm_hwm_kib(), started.elapsed().as_millis());
}

/// Runs `case` in a child process: its peak resident set (KiB) and how long it took.
fn in_child(case: &str) -> (u64, Duration) {
    let started = Instant::now();
    let out = Command::new(std::env::current_exe().expect("this test binary"))
        .args(["--exact", CHILD_TEST, "--ignored", "--nocapture", "--test-threads=1"])
        .env(CASE_VAR, case)
        .output()
        .expect("the child process starts");
    let elapsed = started.elapsed();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "case {case} failed in its child process:\n{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let kib = stdout
        .lines()
        .find_map(|l| {
            let (_, report) = l.split_once(&format!("HOSTILE-CASE {case} vmhwm_kib="))?;
            report.split(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no peak memory reported by the child of {case}:\n{stdout}"));
    (kib, elapsed)
}

/// The peak of a child reading a three-line file (measured once).
fn baseline_kib() -> u64 {
    static BASELINE: OnceLock<u64> = OnceLock::new();
    *BASELINE.get_or_init(|| in_child("baseline").0)
}

/// Runs `case` in a child (which asserts its outcome) and asserts its time and memory.
fn within_bounds(case: &str) {
    let base = baseline_kib();
    let (peak, took) = in_child(case);
    let extra = peak.saturating_sub(base);
    println!("{case}: peak {peak} KiB = baseline {base} KiB + {extra} KiB, {:.1} s", took.as_secs_f64());
    assert!(extra < MEMORY_BOUND_KIB, "{case}: {extra} KiB above the baseline (bound {MEMORY_BOUND_KIB} KiB)");
    assert!(took < TIME_BOUND, "{case} took {took:?}");
}

#[test]
fn the_memory_measurement_sees_a_reader_that_keeps_a_50_mb_value() {
    // GIVEN the 50 MB value file, WHEN the csv crate (whole records in memory) reads it
    let base = baseline_kib();
    let (peak, _) = in_child("control_csv_crate");
    // THEN the child's peak shows the value: this is what the bounds below would catch
    println!("control (csv crate): peak {peak} KiB = baseline {base} KiB + {} KiB", peak.saturating_sub(base));
    assert!(peak.saturating_sub(base) > BIG / 1024, "{peak} KiB vs baseline {base} KiB");
}

// ----- a 50 MB single field --------------------------------------------------------------------

#[test]
fn a_50_mb_value_rejects_only_its_row_naming_the_column_and_the_limit_in_bounded_memory() {
    // GIVEN a valid row, a row whose title is a quoted 50 MiB value, a valid row
    // WHEN the ingest's reader reads it, THEN that row alone is rejected (the child asserts)
    within_bounds("value_50mb");
}

#[test]
fn a_50_mb_header_name_is_a_file_error_naming_its_column_in_bounded_memory() {
    within_bounds("header_50mb");
}

#[test]
fn a_50_mb_quoted_value_never_closed_is_a_file_error_naming_its_line_in_bounded_memory() {
    within_bounds("open_quote_50mb");
}

#[test]
fn fifty_mb_of_nul_bytes_is_an_overlong_header_name_in_bounded_memory() {
    within_bounds("nul_50mb");
}

// ----- a million empty lines -------------------------------------------------------------------

#[test]
fn a_million_rows_of_empty_fields_are_skipped_in_bounded_memory_and_lines_stay_exact() {
    within_bounds("blank_rows_1m");
}

#[test]
fn a_million_empty_lines_are_skipped_and_the_next_row_keeps_its_physical_line() {
    for newline in ["\n", "\r\n", "\r"] {
        // GIVEN a row, a million empty lines (LF, CRLF or CR-only), a row
        let input = Pieces::new()
            .then(header().replace('\n', newline) + &valid_rows(2, 1).replace('\n', newline))
            .repeat(newline, 1_000_000)
            .then(valid_rows(3, 1).replace('\n', newline));
        let started = Instant::now();

        // WHEN the ingest's reader reads it
        let out = read_employees(input).expect("the header is fine");

        // THEN both rows come out, the second on its physical line
        assert_eq!(logins(&out), [(2, "emp2@example.com"), (1_000_003, "emp3@example.com")], "{newline:?}");
        assert!(out.rejected.is_empty() && out.error.is_none(), "{out:?}");
        assert!(started.elapsed() < TIME_BOUND, "{newline:?}: {:?}", started.elapsed());
    }
}

#[test]
fn a_million_empty_lines_and_nothing_else_is_an_empty_file() {
    let err = read_employees(Pieces::new().then("\u{feff}").repeat("\r\n", 1_000_000)).expect_err("no header");
    assert!(matches!(err, FileError::Empty), "{err:?}");
    assert_eq!(err.to_string(), "the file is empty: no header line was found");
}

// ----- binary garbage --------------------------------------------------------------------------

#[test]
fn binary_garbage_after_the_header_is_invalid_utf8_naming_its_line_and_byte_offset() {
    for seed in [1, 2, 3, 42, 2026] {
        // GIVEN a header, a valid row, then 1 MiB of random bytes
        let head = header() + &valid_rows(2, 1);
        let garbage = noise(seed, 1 << 20);
        let mut file = head.clone().into_bytes();
        file.extend_from_slice(&garbage);

        // WHEN the ingest's reader reads it
        let out = read_employees(Cursor::new(&file)).expect("the header is fine");

        // THEN the read stops at the first byte that is not UTF-8, naming its line and offset
        let offset = head.len() + std::str::from_utf8(&garbage).expect_err("random bytes").valid_up_to();
        let want_line = line_at(&file[..offset]);
        match out.error {
            Some(FileError::InvalidUtf8 { line, byte_offset }) => {
                assert_eq!((line, byte_offset), (want_line, offset as u64), "seed {seed}");
                let msg = out.error.as_ref().map(ToString::to_string).unwrap_or_default();
                assert!(msg.contains(&format!("invalid UTF-8 on line {line} at byte offset {offset}")), "{msg}");
                assert!(msg.contains("windows-1252"), "the message says what to do: {msg}");
            }
            other => panic!("seed {seed}: want InvalidUtf8, got {other:?}"),
        }
        assert_eq!(out.accepted.first(), Some(&(2, "emp2@example.com".to_string())), "seed {seed}");
    }
}

#[test]
fn a_file_of_binary_garbage_is_refused_before_any_row() {
    let mut exact = 0;
    for seed in 1..=20 {
        // GIVEN 64 KiB of random bytes and nothing else
        let garbage = noise(seed, 64 * 1024);
        // WHEN the ingest's reader opens it, THEN no header is found: a file error, no row
        let err = read_employees(Cursor::new(&garbage)).expect_err("garbage has no usable header");
        assert!(err.to_string().len() > 20, "seed {seed}: {err}");
        if garbage.starts_with(b"\xFF\xFE") || garbage.starts_with(b"\xFE\xFF") {
            assert!(matches!(err, FileError::Utf16), "seed {seed}: {err:?}");
            continue;
        }
        // AND when the bytes before the first invalid one hold no line break or quote (the
        // header is still open there), the error names that byte's offset on line 1
        let offset = std::str::from_utf8(&garbage).expect_err("random bytes").valid_up_to();
        if garbage[..offset].iter().any(|b| matches!(b, b'\r' | b'\n' | b'"')) {
            continue;
        }
        exact += 1;
        assert!(
            matches!(err, FileError::InvalidUtf8 { line: 1, byte_offset } if byte_offset == offset as u64),
            "seed {seed}: want InvalidUtf8 on line 1 at {offset}, got {err:?}"
        );
    }
    assert!(exact >= 15, "most seeds give an exact offset: {exact} of 20");
}

#[test]
fn binary_garbage_read_as_windows_1252_is_rejected_row_by_row() {
    // GIVEN a valid header and row, then 1 MiB of random bytes without quotes (every byte is a
    // Windows-1252 character), read with encoding = "windows-1252"
    let text = example_with("encoding = \"utf-8\"", "encoding = \"windows-1252\"");
    let config = shared::config::MappingConfig::from_toml_str(&text).expect("the changed config loads");
    let resolved = config.resolve(&demo_catalog()).expect("it resolves");
    let ctx = ReadContext::new(&resolved);
    let garbage: Vec<u8> = noise(7, 1 << 20).into_iter().filter(|&b| b != b'"').collect();
    let head = header() + &valid_rows(2, 1);
    let mut file = head.clone().into_bytes();
    file.extend_from_slice(&garbage);

    // WHEN the ingest's reader reads it
    let mut reader = EmployeeReader::new(Cursor::new(&file), &ctx).expect("the header is fine");
    let (mut accepted, mut rejected, mut previous) = (Vec::new(), 0u64, 0u64);
    while let Some(item) = reader.next_employee().expect("every byte decodes; no quote to leave open") {
        let line = match item {
            Ok(e) => {
                accepted.push(e.login.clone());
                e.line
            }
            Err(r) => {
                assert!(r.reasons.iter().all(|w| w.starts_with(&format!("line {}", r.line))), "{r:?}");
                rejected += 1;
                r.line
            }
        };
        assert!(line > previous);
        previous = line;
    }

    // THEN the valid row is accepted and every garbage record rejected with a reason: as many
    // as the garbage has lines with something other than blanks and commas
    assert_eq!(accepted, ["emp2@example.com"]);
    let mut records = 0u64;
    let mut content = false;
    for &b in garbage.iter().chain(b"\n") {
        if b == b'\r' || b == b'\n' {
            records += u64::from(content);
            content = false;
        } else if !matches!(b, b',' | b' ' | b'\t' | 0x0C) {
            content = true;
        }
    }
    assert_eq!(rejected, records, "every garbage record is rejected");
    assert!(records > 1000, "the garbage has many records: {records}");
}

/// The example config with one piece of text replaced (which must be present).
fn example_with(old: &str, new: &str) -> String {
    assert!(support::EXAMPLE_CONFIG.contains(old), "the example config lacks {old:?}");
    support::EXAMPLE_CONFIG.replacen(old, new, 1)
}

// ----- a header of 10,000 columns --------------------------------------------------------------

/// A header of the reference columns spread among `extra` other columns, and `rows` rows.
fn wide_file(extra: usize, rows: usize) -> String {
    let mut names: Vec<String> = (0..extra).map(|i| format!("x{i}")).collect();
    for (i, c) in REFERENCE_HEADER.iter().enumerate() {
        names.insert(i * (extra / REFERENCE_HEADER.len()), c.to_string());
    }
    let mut out = names.join(",") + "\n";
    for r in 0..rows {
        let row: Vec<String> = names
            .iter()
            .map(|n| match n.as_str() {
                "employee_id" => format!("E{r}"),
                "login" | "email" => format!("emp{r}@example.com"),
                "first_name" => "Ann".into(),
                "last_name" => "Lee".into(),
                "status" => "Active".into(),
                "title" | "department" | "manager_login" | "nerm_roles" => String::new(),
                _ => "v".into(),
            })
            .collect();
        out.push_str(&row.join(","));
        out.push('\n');
    }
    out
}

#[test]
fn a_header_of_10000_columns_with_the_configured_ones_among_them_is_read_row_by_row() {
    // GIVEN 9,990 extra columns around the ten configured ones, and 200 rows of 10,000 fields
    let file = wide_file(9_990, 200);
    let started = Instant::now();
    // WHEN the ingest's reader reads it
    let out = read_employees(Cursor::new(file)).expect("the header is fine");
    // THEN every row is accepted on its line
    assert_eq!(out.accepted.len(), 200, "{:?}", out.rejected.first());
    assert_eq!(out.accepted.last(), Some(&(201, "emp199@example.com".to_string())));
    assert!(out.rejected.is_empty() && out.error.is_none());
    assert!(started.elapsed() < TIME_BOUND, "{:?}", started.elapsed());
}

#[test]
fn a_header_of_10000_columns_without_the_configured_ones_names_them_and_counts_the_rest() {
    let names: Vec<String> = (0..10_000).map(|i| format!("c{i}")).collect();
    let err = read_employees(Cursor::new(names.join(",") + "\n")).expect_err("none of the columns");
    let msg = err.to_string();
    let FileError::MissingColumns { missing, found } = &err else { panic!("want MissingColumns, got {err:?}") };
    assert_eq!(found.len(), 10_000);
    let mut missing = missing.clone();
    missing.sort();
    let mut want: Vec<String> = REFERENCE_HEADER.iter().map(|c| c.to_string()).collect();
    want.sort();
    assert_eq!(missing, want, "the ten configured columns are named");
    assert!(msg.starts_with("required columns \""), "{msg}");
    assert!(REFERENCE_HEADER.iter().all(|c| msg.contains(&format!("\"{c}\""))), "{msg}");
    assert!(msg.contains("(columns found: \"c0\", \"c1\"") && msg.ends_with(", and 9950 more)"), "{msg}");
    assert!(msg.len() < 2_000, "the message stays readable: {} bytes", msg.len());
}

#[test]
fn a_header_wider_than_16384_columns_is_a_file_error() {
    let names: Vec<String> = (0..20_000).map(|i| format!("c{i}")).collect();
    let err = read_employees(Cursor::new(names.join(","))).expect_err("too wide");
    assert!(matches!(err, FileError::TooManyColumns { limit: 16_384 }), "{err:?}");
    assert_eq!(err.to_string(), "the header has more than the limit of 16384 columns");
}

// ----- nested and unbalanced quotes ------------------------------------------------------------

/// One row's line and its value (or why it was rejected).
type Item = (u64, Result<String, String>);

/// Values of `column` read by `CsvReader` from a header `id,<column>` and `body`, or the file
/// error.
fn column_values(body: &str, column: &str) -> Result<Vec<Item>, FileError> {
    let input = format!("id,{column}\n{body}");
    let mut reader = CsvReader::new(Cursor::new(input), &ReaderOptions::default(), &[ColumnSpec::required(column)])?;
    let mut out = Vec::new();
    while let Some(item) = reader.next_row()? {
        out.push(match item {
            Ok(row) => (row.line(), Ok(row.get(0).to_string())),
            Err(e) => (e.line, Err(e.reason)),
        });
    }
    Ok(out)
}

#[test]
fn doubled_quotes_nest_to_any_depth_and_read_back_exactly() {
    // GIVEN values of nested quotes: """a""" is "a", a field of 2n+2 quotes holds n quotes
    let deep = "\"".repeat(2 * 5_000 + 2);
    let body = format!("1,\"\"\"a\"\"\"\n2,\"a\"\"\"\"b\"\n3,{deep}\n4,\"\"\"\"\n5,O\"Brien\n");
    // WHEN read, THEN each value is exact, and a quote inside an unquoted value is literal
    let values = column_values(&body, "note").expect("well formed");
    let want: Vec<Item> = vec![
        (2, Ok("\"a\"".into())),
        (3, Ok("a\"\"b".into())),
        (4, Ok("\"".repeat(5_000))),
        (5, Ok("\"".into())),
        (6, Ok("O\"Brien".into())),
    ];
    assert_eq!(values, want);
}

#[test]
fn a_quote_opened_mid_file_and_never_closed_is_a_file_error_naming_the_line_it_opened() {
    // GIVEN three good rows, a title opening a quote on line 5 that nothing closes, ten more rows
    let body = valid_rows(2, 3)
        + "E5,q@example.com,q@example.com,Q,Uote,\"Head of Ops, EMEA,R&D,,Active,\n"
        + &valid_rows(6, 10);
    // WHEN the ingest's reader reads it
    let out = read_employees(Cursor::new(header() + &body)).expect("the header is fine");
    // THEN the rows before it are read, and the run stops naming line 5 (trusting the rest
    // would make a full sync treat the swallowed employees as gone)
    assert_eq!(out.accepted.iter().map(|a| a.0).collect::<Vec<_>>(), [2, 3, 4]);
    let err = out.error.expect("a file error");
    assert!(matches!(err, FileError::UnterminatedQuote { line: 5 }), "{err:?}");
}

#[test]
fn a_quote_closed_then_followed_by_text_reads_the_same_at_the_end_of_the_file_as_before_it() {
    // GIVEN a value that closes its quote and goes on ("abc"def"): malformed but closed
    for value in ["\"abc\"def\"", "\"a\" \"b", "\"x\"\"y\"z\""] {
        // WHEN it is the last value of a middle row, and of the last row with no line break
        let middle = column_values(&format!("1,{value}\n2,end\n"), "note").expect("closed quotes");
        let last = column_values(&format!("1,{value}"), "note");
        // THEN both read the same value: no "never closed" error for a quote that was closed
        let last = last.unwrap_or_else(|e| panic!("{value}: at the end of the file: {e}"));
        assert_eq!(last[0], middle[0], "{value}");
    }
}

// ----- BOM only, header only ---------------------------------------------------------------------

#[test]
fn a_file_of_only_a_bom_or_a_bom_and_blank_lines_is_an_empty_file() {
    for file in [&b"\xEF\xBB\xBF"[..], b"\xEF\xBB\xBF\r\n\r\n", b"\xEF\xBB\xBF,,,,\n", b""] {
        let err = read_employees(Cursor::new(file)).expect_err("no header");
        assert!(matches!(err, FileError::Empty), "{file:?}: {err:?}");
    }
    let err = read_employees(Cursor::new(b"\xFF\xFEe\0m\0")).expect_err("UTF-16");
    assert!(err.to_string().contains("export it as UTF-8 CSV"), "{err}");
}

#[test]
fn a_header_only_file_has_no_rows_and_the_first_pass_counts_none() {
    let resolved = example_config().resolve(&demo_catalog()).expect("resolves");
    let ctx = ReadContext::new(&resolved);
    for file in [header(), REFERENCE_HEADER.join(","), format!("\u{feff}{}\r\n\r\n", REFERENCE_HEADER.join(","))] {
        let out = read_employees(Cursor::new(file.clone())).expect("a good header");
        assert!(out.accepted.is_empty() && out.rejected.is_empty() && out.error.is_none(), "{file:?}: {out:?}");
        let index = index_file(Cursor::new(file.clone()), &ctx).expect("the first pass reads it");
        assert_eq!(index.valid_rows, 0, "{file:?}");
    }
}

#[test]
fn the_byte_limit_of_the_config_stops_a_larger_file_naming_the_limit() {
    // GIVEN a config allowing 1 MiB per file, and a 2 MiB file of valid rows
    let text = example_with("max_file_bytes = 67108864", "max_file_bytes = 1048576");
    let resolved = shared::config::MappingConfig::from_toml_str(&text).expect("loads").resolve(&demo_catalog());
    let resolved = resolved.expect("resolves");
    let ctx = ReadContext::new(&resolved);
    let row = valid_rows(2, 1);
    let input = Pieces::new().then(header()).repeat(&row, (2 << 20) / row.len() as u64 + 1);
    assert!(input.len() > 2 << 20);
    // WHEN the first pass reads it, THEN it stops with the limit, before any write could happen
    let err = index_file(input, &ctx).expect_err("too large");
    assert!(matches!(err, FileError::TooLarge { limit: 1_048_576 }), "{err:?}");
    assert_eq!(err.to_string(), "the file is larger than the limit of 1048576 bytes");
}

// ----- repeated values --------------------------------------------------------------------------

#[test]
fn a_repeated_roles_value_gives_the_same_roles_and_a_repeated_unknown_role_rejects_every_row() {
    // GIVEN rows repeating a roles value, an unknown role twice in a row, then the good value again
    let rows = [
        ("E1", "Sponsor;Manager"),
        ("E2", "Sponsor;Manager"),
        ("E3", "Sponsor;Auditor"),
        ("E4", "Sponsor;Auditor"),
        ("E5", "Sponsor;Manager"),
        ("E6", ""),
        ("E7", "sponsor ; manager"),
    ];
    let mut file = header();
    for (key, roles) in rows {
        let login = key.to_lowercase();
        file.push_str(&format!("{key},{login}@example.com,{login}@example.com,Ann,Lee,,,,Active,{roles}\n"));
    }
    let resolved = example_config().resolve(&demo_catalog()).expect("the example config resolves");
    let ctx = ReadContext::new(&resolved);
    let mut reader = EmployeeReader::new(Cursor::new(file), &ctx).expect("the header is fine");
    // WHEN every row is read
    let mut got = Vec::new();
    while let Some(item) = reader.next_employee().expect("no file error") {
        got.push(match item {
            Ok(e) => (e.key, e.roles.join("+")),
            Err(r) => (r.key, format!("rejected: {}", r.reasons.join("; "))),
        });
    }
    // THEN each row has its own roles, and both rows naming the unknown role are rejected
    let got: Vec<(&str, &str)> = got.iter().map(|(k, r)| (k.as_str(), r.as_str())).collect();
    assert_eq!(got[0], ("E1", "Sponsor+Manager"));
    assert_eq!(got[1], ("E2", "Sponsor+Manager"));
    for row in &got[2..4] {
        assert!(row.1.starts_with("rejected:") && row.1.contains("Auditor"), "{row:?}");
    }
    assert_eq!(got[4], ("E5", "Sponsor+Manager"));
    assert_eq!(got[5], ("E6", ""));
    assert_eq!(got[6], ("E7", "Sponsor+Manager"));
}
