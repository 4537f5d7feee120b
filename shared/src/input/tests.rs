//! Reader tests: one per quirk of real exports, plus property tests.

use std::io::{self, Read};

use proptest::prelude::*;

use super::*;

type Items = Vec<Result<OwnedRow, RowError>>;

fn required(names: &[&str]) -> Vec<ColumnSpec> {
    names.iter().map(|n| ColumnSpec::required(*n)).collect()
}

fn read_with(input: &[u8], options: &ReaderOptions, columns: &[ColumnSpec]) -> Result<Items, FileError> {
    CsvReader::new(input, options, columns)?.into_rows().collect()
}

fn read(input: &str, columns: &[&str]) -> Result<Items, FileError> {
    read_with(input.as_bytes(), &ReaderOptions::default(), &required(columns))
}

/// Accepted rows as (line, values); panics on any error.
fn rows(input: &str, columns: &[&str]) -> Vec<(u64, Vec<String>)> {
    read(input, columns)
        .expect("no file error")
        .into_iter()
        .map(|item| item.expect("no row error"))
        .map(|row| (row.line, row.values))
        .collect()
}

fn row(line: u64, values: &[&str]) -> (u64, Vec<String>) {
    (line, values.iter().map(|v| v.to_string()).collect())
}

/// A reader handing out at most `chunk` bytes per call.
struct Trickle<'a> {
    data: &'a [u8],
    chunk: usize,
}

impl Read for Trickle<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len());
        buf[..n].copy_from_slice(&self.data[..n]);
        self.data = &self.data[n..];
        Ok(n)
    }
}

/// A reader that fails after its data.
struct Failing<'a>(&'a [u8]);

impl Read for Failing<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        if self.0.is_empty() {
            return Err(io::Error::new(io::ErrorKind::ConnectionReset, "connection reset by peer"));
        }
        let n = self.0.len().min(buf.len());
        buf[..n].copy_from_slice(&self.0[..n]);
        self.0 = &self.0[n..];
        Ok(n)
    }
}

// ---- encodings and line endings -------------------------------------------------------------

#[test]
fn a_utf8_bom_is_stripped_before_the_header() {
    // GIVEN a UTF-8 file starting with a BOM
    let input = "\u{feff}login,name\nbob,Bob\n";
    // WHEN it is read THEN the first header still matches "login"
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob"])]);
}

#[test]
fn crlf_line_endings_leave_no_carriage_returns_in_values() {
    let input = "login,name\r\nbob,Bob\r\nann,Ann\r\n";
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob"]), row(3, &["ann", "Ann"])]);
}

#[test]
fn lf_line_endings_give_one_row_per_line() {
    let input = "login,name\nbob,Bob\nann,Ann";
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob"]), row(3, &["ann", "Ann"])]);
}

#[test]
fn a_quoted_comma_stays_inside_the_value() {
    let input = "login,name\nbob,\"Smith, Bob\"\n";
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Smith, Bob"])]);
}

#[test]
fn a_doubled_quote_inside_quotes_reads_as_one_quote() {
    let input = "login,name\nbob,\"Bob \"\"The Builder\"\" Smith\"\n";
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob \"The Builder\" Smith"])]);
}

#[test]
fn a_quoted_newline_does_not_shift_line_numbers() {
    // GIVEN a record whose quoted value spans lines 2 and 3 (with CRLF inside)
    let input = "login,address\nbob,\"1 Main St\r\nSpringfield\"\nann,x\n";
    // THEN the value keeps its newline and the next record starts on line 4
    assert_eq!(
        rows(input, &["login", "address"]),
        vec![row(2, &["bob", "1 Main St\r\nSpringfield"]), row(4, &["ann", "x"])]
    );
}

#[test]
fn windows_1252_bytes_are_decoded_to_unicode() {
    // GIVEN 0xE9 (é) and 0x80 (€) in a Windows-1252 file
    let input = b"login;name;note\nrene;Ren\xe9;5 \x80\n";
    let options = ReaderOptions { encoding: Encoding::Windows1252, ..Default::default() };
    let items = read_with(input, &options, &required(&["login", "name", "note"])).unwrap();
    assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["rene".into(), "René".into(), "5 €".into()] })]);
}

#[test]
fn a_windows_1252_setting_still_honours_a_utf8_bom() {
    let input = "\u{feff}login,name\nrene,René\n";
    let options = ReaderOptions { encoding: Encoding::Windows1252, ..Default::default() };
    let items = read_with(input.as_bytes(), &options, &required(&["login", "name"])).unwrap();
    assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["rene".into(), "René".into()] })]);
}

#[test]
fn invalid_utf8_is_a_file_error_naming_line_and_byte_offset() {
    // GIVEN a Windows-1252 é (0xE9) in a file read as UTF-8, on line 3 at byte offset 27
    let input = b"login,name\nbob,Bob\nrene,Ren\xe9\n";
    assert_eq!(input.iter().position(|&b| b == 0xe9), Some(27));
    // WHEN it is read
    let result = CsvReader::new(&input[..], &ReaderOptions::default(), &required(&["login", "name"]));
    let mut reader = result.unwrap();
    // THEN the good row comes first, then the error with line and offset
    assert_eq!(reader.next_row().unwrap().unwrap().unwrap().get(0), "bob");
    let err = reader.next_row().unwrap_err();
    assert!(matches!(err, FileError::InvalidUtf8 { line: 3, byte_offset: 27 }), "{err:?}");
    assert!(err.to_string().contains("line 3 at byte offset 27"), "{err}");
    assert!(err.to_string().contains("windows-1252"), "{err}");
    assert!(reader.next_row().unwrap().is_none(), "the reader stops after a file error");
}

#[test]
fn invalid_utf8_in_the_header_is_reported_on_line_1() {
    let err = read_with(b"lo\xffgin,name\n", &ReaderOptions::default(), &required(&["login"])).unwrap_err();
    assert!(matches!(err, FileError::InvalidUtf8 { line: 1, byte_offset: 2 }), "{err:?}");
}

#[test]
fn a_file_ending_in_the_middle_of_a_character_is_invalid_utf8() {
    // GIVEN the first two bytes of the three-byte "€" at the very end
    let input = b"login\nbob\xe2\x82";
    let err = read_with(input, &ReaderOptions::default(), &required(&["login"])).unwrap_err();
    assert!(matches!(err, FileError::InvalidUtf8 { line: 2, byte_offset: 9 }), "{err:?}");
}

#[test]
fn multibyte_characters_split_across_reads_decode_correctly() {
    // GIVEN a reader that returns one byte per call, so every multi-byte character is split
    let input = "\u{feff}login,name\nzoë,Zoë Ünal 日本\n";
    for chunk in 1..5 {
        let reader = Trickle { data: input.as_bytes(), chunk };
        let items: Items = CsvReader::new(reader, &ReaderOptions::default(), &required(&["login", "name"]))
            .unwrap()
            .into_rows()
            .collect::<Result<_, _>>()
            .unwrap();
        // THEN the values are intact
        assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["zoë".into(), "Zoë Ünal 日本".into()] })]);
    }
}

#[test]
fn a_utf16_file_is_rejected_with_a_clear_error() {
    let input = b"\xff\xfel\x00o\x00g\x00i\x00n\x00\n\x00";
    let err = read_with(input, &ReaderOptions::default(), &required(&["login"])).unwrap_err();
    assert!(matches!(err, FileError::Utf16), "{err:?}");
    assert!(err.to_string().contains("UTF-16"));
}

#[test]
fn encoding_labels_map_to_the_supported_encodings() {
    assert_eq!(Encoding::from_label("UTF-8"), Some(Encoding::Utf8));
    assert_eq!(Encoding::from_label(" utf8 "), Some(Encoding::Utf8));
    assert_eq!(Encoding::from_label("windows-1252"), Some(Encoding::Windows1252));
    assert_eq!(Encoding::from_label("cp1252"), Some(Encoding::Windows1252));
    assert_eq!(Encoding::from_label("latin1"), Some(Encoding::Windows1252));
    assert_eq!(Encoding::from_label("shift_jis"), None);
    assert_eq!(Encoding::from_label("nonsense"), None);
}

// ---- delimiters ---------------------------------------------------------------------------

#[test]
fn a_semicolon_delimiter_is_detected_from_the_header() {
    let input = "login;name;city\nbob;Smith, Bob;Köln\n";
    let reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &[]).unwrap();
    assert_eq!(reader.delimiter(), b';');
    assert_eq!(rows(input, &["login", "name", "city"]), vec![row(2, &["bob", "Smith, Bob", "Köln"])]);
}

#[test]
fn a_tab_delimiter_is_detected_from_the_header() {
    let input = "login\tname\nbob\tSmith, Bob\n";
    let reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &[]).unwrap();
    assert_eq!(reader.delimiter(), b'\t');
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Smith, Bob"])]);
}

#[test]
fn delimiters_inside_quoted_header_names_do_not_count_for_detection() {
    // GIVEN two commas outside quotes and three semicolons inside them
    let input = "\"a;b;c;d\",login,name\nx,bob,Bob\n";
    let reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &[]).unwrap();
    assert_eq!(reader.delimiter(), b',');
    assert_eq!(reader.headers(), ["a;b;c;d", "login", "name"]);
}

#[test]
fn a_header_without_any_delimiter_is_read_as_one_column() {
    assert_eq!(rows("login\nbob\n", &["login"]), vec![row(2, &["bob"])]);
}

#[test]
fn an_explicit_delimiter_overrides_detection() {
    // GIVEN a pipe-separated file whose header has commas in its names
    let input = "login|name, full\nbob|Smith, Bob\n";
    let options = ReaderOptions { delimiter: Some(b'|'), ..Default::default() };
    let items = read_with(input.as_bytes(), &options, &required(&["login", "name, full"])).unwrap();
    assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["bob".into(), "Smith, Bob".into()] })]);
}

#[test]
fn an_unusable_explicit_delimiter_is_rejected() {
    for byte in [b'"', b'\n', b'\r', 0xE9] {
        let options = ReaderOptions { delimiter: Some(byte), ..Default::default() };
        let err = read_with(b"login\nbob\n", &options, &[]).unwrap_err();
        assert!(matches!(err, FileError::InvalidDelimiter { byte: b } if b == byte), "{err:?}");
    }
}

// ---- header matching ----------------------------------------------------------------------

#[test]
fn header_names_match_ignoring_case_and_extra_whitespace() {
    let input = "  LOGIN ,E-Mail \t Address\nbob,bob@example.com\n";
    assert_eq!(rows(input, &["login", " e-mail address"]), vec![row(2, &["bob", "bob@example.com"])]);
}

#[test]
fn normalize_header_trims_lowercases_and_collapses_whitespace() {
    assert_eq!(normalize_header("  E-Mail \t  Address "), "e-mail address");
    assert_eq!(normalize_header("\u{feff}Login"), "login");
    assert_eq!(normalize_header("Émail"), "Émail", "only ASCII is lowercased");
    assert_ne!(normalize_header("email_address"), normalize_header("email address"));
}

#[test]
fn extra_columns_are_ignored_and_column_order_does_not_matter() {
    let input = "dept,name,cost center,login\nIT,Bob,4711,bob\n";
    let reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &required(&["login", "name"])).unwrap();
    assert_eq!(reader.headers().len(), 4);
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob"])]);
}

#[test]
fn a_missing_required_column_is_named_with_the_columns_found() {
    let err = read("Login,Name\nbob,Bob\n", &["login", "email"]).unwrap_err();
    assert!(matches!(&err, FileError::MissingColumns { missing, .. } if missing == &["email"]), "{err:?}");
    assert_eq!(
        err.to_string(),
        r#"required column "email" is missing from the header (columns found: "Login", "Name")"#
    );
}

#[test]
fn several_missing_columns_are_listed_together() {
    let err = read("login\nbob\n", &["email", "status"]).unwrap_err();
    assert_eq!(
        err.to_string(),
        r#"required columns "email", "status" are missing from the header (columns found: "login")"#
    );
}

#[test]
fn a_missing_optional_column_reads_as_empty() {
    let columns = [ColumnSpec::required("login"), ColumnSpec::optional("manager")];
    let mut reader = CsvReader::new(&b"login\nbob\n"[..], &ReaderOptions::default(), &columns).unwrap();
    assert!(reader.has_column(0));
    assert!(!reader.has_column(1));
    let row = reader.next_row().unwrap().unwrap().unwrap();
    assert_eq!((row.get(0), row.get(1)), ("bob", ""));
}

#[test]
fn a_wanted_column_appearing_twice_is_a_file_error() {
    let err = read("login,Email,name,email\nbob,a@x.io,Bob,b@x.io\n", &["login", "email"]).unwrap_err();
    assert!(matches!(&err, FileError::DuplicateColumn { first: 2, second: 4, .. }), "{err:?}");
    assert!(err.to_string().contains("columns 2 and 4"), "{err}");
}

#[test]
fn a_duplicated_ignored_column_is_fine() {
    assert_eq!(rows("login,x,x\nbob,1,2\n", &["login"]), vec![row(2, &["bob"])]);
}

#[test]
fn two_specs_naming_the_same_column_both_read_it() {
    assert_eq!(rows("login\nbob\n", &["login", "LOGIN"]), vec![row(2, &["bob", "bob"])]);
}

// ---- empty input and blank rows -------------------------------------------------------------

#[test]
fn an_empty_file_is_a_file_error() {
    for input in ["", "\u{feff}", "\n\r\n\n", ",,,\n,,\n", "  \n"] {
        let err = read(input, &["login"]).unwrap_err();
        assert!(matches!(err, FileError::Empty), "{input:?}: {err:?}");
        assert_eq!(err.to_string(), "the file is empty: no header line was found");
    }
}

#[test]
fn a_header_only_file_has_zero_rows() {
    assert_eq!(rows("login,name\n", &["login"]), vec![]);
    assert_eq!(rows("login,name", &["login"]), vec![]);
}

#[test]
fn blank_rows_are_skipped_without_shifting_line_numbers() {
    // GIVEN an empty line, an Excel-style row of empty fields and a whitespace-only row
    let input = "\nlogin,name\n\nbob,Bob\n,\n  , \r\nann,Ann\n\n";
    let mut reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &required(&["login"])).unwrap();
    let mut lines = Vec::new();
    while let Some(item) = reader.next_row().unwrap() {
        lines.push(item.unwrap().line());
    }
    // THEN only the real rows come out, with their physical lines (header on line 2)
    assert_eq!(lines, [4, 7]);
    assert_eq!(reader.blank_rows_skipped(), 2);
    assert_eq!(reader.rows_read(), 2);
}

#[test]
fn values_are_trimmed() {
    let input = "login,name\n  bob \t,\" Bob \"\u{a0}\n";
    assert_eq!(rows(input, &["login", "name"]), vec![row(2, &["bob", "Bob"])]);
}

// ---- structure errors -----------------------------------------------------------------------

#[test]
fn a_ragged_row_is_rejected_and_following_rows_continue() {
    let input = "login,name,city\nbob,Bob\nann,Ann,Oslo,extra\ncid,Cid,Rome\n";
    let items = read(input, &["login", "name"]).unwrap();
    assert_eq!(
        items,
        vec![
            Err(RowError::new(2, None, "expected 3 fields, found 2")),
            Err(RowError::new(3, None, "expected 3 fields, found 4")),
            Ok(OwnedRow { line: 4, values: vec!["cid".into(), "Cid".into()] }),
        ]
    );
    assert_eq!(items[0].as_ref().unwrap_err().to_string(), "line 2: expected 3 fields, found 2");
}

#[test]
fn an_unterminated_quote_is_a_file_error() {
    // GIVEN a quote opened on line 3 and never closed: the rest of the file would be one value
    let input = "login,name\nbob,Bob\nann,\"Ann\ncid,Cid\n";
    let mut reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &required(&["login"])).unwrap();
    assert_eq!(reader.next_row().unwrap().unwrap().unwrap().get(0), "bob");
    let err = reader.next_row().unwrap_err();
    assert!(matches!(err, FileError::UnterminatedQuote { line: 3 }), "{err:?}");
    assert!(err.to_string().contains("line 3"), "{err}");
}

#[test]
fn a_quoted_last_value_closed_at_the_end_of_the_file_is_fine() {
    assert_eq!(rows("login,name\nbob,\"Bob \"\"B\"\"\"", &["login", "name"]), vec![row(2, &["bob", "Bob \"B\""])]);
}

#[test]
fn a_stray_quote_inside_an_unquoted_value_is_kept_literally() {
    assert_eq!(rows("login,height\nbob,5'10\"\n", &["login", "height"]), vec![row(2, &["bob", "5'10\""])]);
}

// ---- limits -------------------------------------------------------------------------------

fn limits(max_field_bytes: usize, max_rows: u64, max_file_bytes: u64) -> ReaderOptions {
    ReaderOptions { max_field_bytes, max_rows, max_file_bytes, ..Default::default() }
}

#[test]
fn a_value_longer_than_the_field_limit_rejects_the_row_naming_the_column() {
    // GIVEN a 10-byte limit and an 11-byte name on line 2
    let input = "login,name\nbob,Bobbbbbbbbb\nann,Ann\n";
    let items = read_with(input.as_bytes(), &limits(10, 100, 1 << 20), &required(&["login", "name"])).unwrap();
    // THEN that row is rejected naming the column, and the next row is fine
    assert_eq!(
        items,
        vec![
            Err(RowError::new(2, Some("name"), "value is longer than the limit of 10 bytes")),
            Ok(OwnedRow { line: 3, values: vec!["ann".into(), "Ann".into()] }),
        ]
    );
    assert_eq!(
        items[0].as_ref().unwrap_err().to_string(),
        r#"line 2, column "name": value is longer than the limit of 10 bytes"#
    );
}

#[test]
fn a_huge_value_is_rejected_without_being_kept_in_memory() {
    // GIVEN a 5 MB quoted value spanning many lines, over a 64 KiB limit
    let huge = "x\n".repeat(2_500_000);
    let input = format!("login,bio\nbob,\"{huge}\"\nann,fine\n");
    let mut reader = CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &required(&["login", "bio"])).unwrap();
    let err = reader.next_row().unwrap().unwrap().unwrap_err();
    assert_eq!(err.column.as_deref(), Some("bio"));
    // THEN the next row starts on the right line and the record buffer stayed small
    let next = reader.next_row().unwrap().unwrap().unwrap();
    assert_eq!((next.line(), next.get(1)), (2_500_003, "fine"));
    assert!(reader.record_buffer_len() <= 4 * 64 * 1024, "buffer grew to {}", reader.record_buffer_len());
}

#[test]
fn big_unwanted_fields_between_wanted_ones_are_dropped_and_the_wanted_values_survive() {
    // GIVEN rows whose unwanted columns hold 100 KB each (ending in a split multi-byte
    // character), around wanted columns, the last wanted one exactly at a 70,000-byte limit
    let filler = format!("{}é", "y".repeat(99_999));
    let wanted = "w".repeat(70_000);
    let mut input = String::from("login,junk1,name,junk2,bio,junk3\n");
    for n in 0..3 {
        input.push_str(&format!("user{n},\"{filler}\",Zoë {n},{filler},{wanted},\"{filler}\"\n"));
    }
    input.push_str("ann,,Ann,,short,\n");
    let options = limits(70_000, 100, 1 << 30);
    let columns = required(&["login", "name", "bio"]);

    // WHEN it is read
    let mut reader = CsvReader::new(input.as_bytes(), &options, &columns).unwrap();
    let mut got = Vec::new();
    while let Some(row) = reader.next_row().unwrap() {
        let row = row.unwrap();
        got.push((row.line(), row.get(0).to_owned(), row.get(1).to_owned(), row.get(2).len()));
        // THEN the record buffer never held the unwanted columns whole
        assert!(reader.record_buffer_len() <= 4 * 64 * 1024, "buffer grew to {}", reader.record_buffer_len());
    }

    // AND every wanted value is intact
    assert_eq!(
        got,
        [
            (2, "user0".into(), "Zoë 0".into(), 70_000),
            (3, "user1".into(), "Zoë 1".into(), 70_000),
            (4, "user2".into(), "Zoë 2".into(), 70_000),
            (5, "ann".into(), "Ann".into(), 5),
        ]
    );
}

#[test]
fn a_wanted_value_over_the_limit_after_big_unwanted_fields_rejects_only_its_row() {
    // GIVEN a 300 KB unwanted field, then a wanted value one byte over a 100,000-byte limit
    let input = format!("login,junk,bio\nbob,{},{}\nann,,fine\n", "j".repeat(300_000), "b".repeat(100_001));
    let items = read_with(input.as_bytes(), &limits(100_000, 100, 1 << 30), &required(&["login", "bio"])).unwrap();
    // THEN that row is rejected naming the column, and the next row reads on its own line
    assert_eq!(
        items,
        vec![
            Err(RowError::new(2, Some("bio"), "value is longer than the limit of 100000 bytes")),
            Ok(OwnedRow { line: 3, values: vec!["ann".into(), "fine".into()] }),
        ]
    );
}

#[test]
fn a_value_exactly_at_the_field_limit_is_accepted() {
    let input = "login,name\nbob,Bobbbbbbbb\n";
    let items = read_with(input.as_bytes(), &limits(10, 100, 1 << 20), &required(&["login", "name"])).unwrap();
    assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["bob".into(), "Bobbbbbbbb".into()] })]);
}

#[test]
fn an_overlong_value_in_an_ignored_column_does_not_reject_the_row() {
    let input = format!("login,notes\nbob,{}\n", "n".repeat(100_000));
    let items = read_with(input.as_bytes(), &limits(10, 100, 1 << 20), &required(&["login"])).unwrap();
    assert_eq!(items, vec![Ok(OwnedRow { line: 2, values: vec!["bob".into()] })]);
}

#[test]
fn an_overlong_header_name_is_a_file_error() {
    let err = read_with(b"login,abcdefghijk\nbob,1\n", &limits(10, 100, 1 << 20), &[]).unwrap_err();
    assert!(matches!(err, FileError::HeaderNameTooLong { column: 2, limit: 10 }), "{err:?}");
}

#[test]
fn more_header_columns_than_the_limit_is_a_file_error() {
    let options = ReaderOptions { max_columns: 3, ..Default::default() };
    let err = read_with(b"a,b,c,d\n1,2,3,4\n", &options, &[]).unwrap_err();
    assert!(matches!(err, FileError::TooManyColumns { limit: 3 }), "{err:?}");
    assert!(read_with(b"a,b,c\n1,2,3\n", &options, &[]).is_ok());
}

#[test]
fn more_rows_than_the_limit_is_a_file_error() {
    let input = "login\na\nb\nc\n";
    let mut reader = CsvReader::new(input.as_bytes(), &limits(100, 2, 1 << 20), &required(&["login"])).unwrap();
    assert!(reader.next_row().unwrap().unwrap().is_ok());
    assert!(reader.next_row().unwrap().unwrap().is_ok());
    let err = reader.next_row().unwrap_err();
    assert!(matches!(err, FileError::TooManyRows { limit: 2 }), "{err:?}");
    assert_eq!(err.to_string(), "the file has more than the limit of 2 data rows");
}

#[test]
fn exactly_the_row_limit_is_fine_and_blank_rows_do_not_count() {
    let items = read_with(b"login\na\n,\n\nb\n", &limits(100, 2, 1 << 20), &required(&["login"])).unwrap();
    assert_eq!(items.len(), 2);
}

#[test]
fn a_file_larger_than_the_byte_limit_is_a_file_error() {
    let input = format!("login\n{}", "bob\n".repeat(100));
    let err = read_with(input.as_bytes(), &limits(100, 1000, 200), &required(&["login"])).unwrap_err();
    assert!(matches!(err, FileError::TooLarge { limit: 200 }), "{err:?}");
    assert_eq!(err.to_string(), "the file is larger than the limit of 200 bytes");
    // A file of exactly the limit is fine.
    let exact = &input.as_bytes()[..202];
    assert_eq!(read_with(exact, &limits(100, 1000, 202), &required(&["login"])).unwrap().len(), 49);
}

#[test]
fn the_byte_limit_counts_raw_bytes_in_windows_1252_too() {
    let input = format!("login\n{}", "r\u{e9}\n".repeat(100)); // encoded below as 3 bytes a row
    let bytes: Vec<u8> = input.chars().map(|c| c as u32 as u8).collect();
    let options = ReaderOptions { encoding: Encoding::Windows1252, max_file_bytes: 100, ..Default::default() };
    let err = read_with(&bytes, &options, &required(&["login"])).unwrap_err();
    assert!(matches!(err, FileError::TooLarge { limit: 100 }), "{err:?}");
}

#[test]
fn a_read_error_is_a_file_error() {
    let reader = CsvReader::new(Failing(b"login\nbob\n"), &ReaderOptions::default(), &required(&["login"]));
    let mut reader = reader.unwrap();
    let err = loop {
        match reader.next_row() {
            Ok(Some(_)) => continue,
            Ok(None) => panic!("the error was swallowed"),
            Err(e) => break e,
        }
    };
    assert!(matches!(&err, FileError::Io(e) if e.kind() == io::ErrorKind::ConnectionReset), "{err:?}");
    assert!(err.to_string().starts_with("reading the input failed: "), "{err}");
}

// ---- API ----------------------------------------------------------------------------------

#[test]
fn rows_report_their_values_by_column_spec_index() {
    let input = "name,login\nBob,bob\n";
    let mut reader =
        CsvReader::new(input.as_bytes(), &ReaderOptions::default(), &required(&["login", "name"])).unwrap();
    let row = reader.next_row().unwrap().unwrap().unwrap();
    assert_eq!((row.line(), row.len(), row.get(0), row.get(1)), (2, 2, "bob", "Bob"));
    assert_eq!(format!("{row:?}"), r#"Row { line: 2, values: ["bob", "Bob"] }"#);
    assert_eq!(reader.columns()[0].name, "login");
    assert!(reader.next_row().unwrap().is_none());
    assert!(reader.next_row().unwrap().is_none(), "stays finished");
}

#[test]
fn row_errors_display_line_column_and_reason() {
    let with_column = RowError::new(17, Some("email"), "\"bob at example\" is not an e-mail address");
    assert_eq!(with_column.to_string(), r#"line 17, column "email": "bob at example" is not an e-mail address"#);
    assert_eq!(RowError::new(3, None, "oops").to_string(), "line 3: oops");
}

#[test]
fn shown_values_are_cut_to_sixty_characters() {
    assert_eq!(show_value("bob"), "\"bob\"");
    assert_eq!(show_value("a\"b\n"), r#""a\"b\n""#);
    let long = "é".repeat(100);
    assert_eq!(show_value(&long), format!("\"{}\"…", "é".repeat(60)));
}

// ---- properties ---------------------------------------------------------------------------

/// Bytes drawn mostly from CSV's special characters, with some non-ASCII and invalid UTF-8.
fn csvish_bytes() -> impl Strategy<Value = Vec<u8>> {
    let byte = prop_oneof![
        4 => Just(b'a'),
        3 => Just(b','),
        2 => Just(b'"'),
        2 => Just(b'\n'),
        1 => Just(b'\r'),
        1 => Just(b';'),
        1 => Just(b'\t'),
        1 => Just(b' '),
        1 => Just(0xC3u8),
        1 => Just(0xA9u8),
        1 => Just(0xFFu8),
        1 => any::<u8>(),
    ];
    prop::collection::vec(byte, 0..400)
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    /// Random bytes never panic; every item is a row or an error, rows are well-formed, lines
    /// never go backwards and the reader ends.
    #[test]
    fn random_bytes_never_panic_and_every_item_is_a_row_or_an_error(
        prefix_header in any::<bool>(),
        body in prop_oneof![csvish_bytes(), prop::collection::vec(any::<u8>(), 0..400)],
        windows_1252 in any::<bool>(),
        delimiter in prop::option::of(prop::sample::select(vec![b',', b';', b'\t', b'|'])),
        max_field_bytes in 1usize..40,
        max_rows in 1u64..50,
        chunk in 1usize..9,
    ) {
        let mut input = if prefix_header { b"a,b,c\n".to_vec() } else { Vec::new() };
        input.extend_from_slice(&body);
        let options = ReaderOptions {
            encoding: if windows_1252 { Encoding::Windows1252 } else { Encoding::Utf8 },
            delimiter,
            max_field_bytes,
            max_rows,
            max_file_bytes: 300,
            max_columns: 64,
        };
        let columns = [ColumnSpec::optional("a"), ColumnSpec::optional("b"), ColumnSpec::optional("zz")];
        let reader = Trickle { data: &input, chunk };
        let Ok(mut reader) = CsvReader::new(reader, &options, &columns) else { return Ok(()) };
        let mut last_line = 1;
        let mut items = 0u64;
        loop {
            match reader.next_row() {
                Ok(None) => break,
                Err(_) => {
                    prop_assert!(reader.next_row().unwrap().is_none());
                    break;
                }
                Ok(Some(Ok(row))) => {
                    prop_assert!(row.line() >= last_line);
                    prop_assert_eq!(row.len(), 3);
                    for i in 0..3 {
                        prop_assert!(row.get(i).len() <= max_field_bytes);
                        prop_assert_eq!(row.get(i), row.get(i).trim());
                    }
                    prop_assert_eq!(row.get(2), "");
                    last_line = row.line();
                }
                Ok(Some(Err(rejected))) => {
                    prop_assert!(rejected.line >= last_line);
                    prop_assert!(!rejected.reason.is_empty());
                    last_line = rejected.line;
                }
            }
            items += 1;
            prop_assert!(items <= max_rows, "more items than the row limit");
        }
    }

    /// Whatever the read sizes, the reader yields the same items.
    #[test]
    fn read_sizes_do_not_change_the_result(body in csvish_bytes(), chunk in 1usize..17) {
        let mut input = b"\xef\xbb\xbfa,b\n".to_vec();
        input.extend_from_slice(&body);
        let columns = [ColumnSpec::optional("a"), ColumnSpec::optional("b")];
        let run = |reader: &mut dyn Read| -> Vec<String> {
            match CsvReader::new(reader, &ReaderOptions::default(), &columns) {
                Err(e) => vec![e.to_string()],
                Ok(reader) => reader.into_rows().map(|item| format!("{item:?}")).collect(),
            }
        };
        prop_assert_eq!(run(&mut &input[..]), run(&mut Trickle { data: &input, chunk }));
    }

    /// The word-at-a-time search finds what a byte-by-byte search finds.
    #[test]
    fn find_byte_finds_the_first_occurrence(haystack in prop::collection::vec(prop_oneof![Just(b','), Just(b'"'), Just(0x80u8), Just(0xFFu8), Just(0u8), any::<u8>()], 0..40), byte in prop_oneof![Just(b','), Just(b'"'), Just(0u8), Just(0xFFu8)]) {
        prop_assert_eq!(super::reader::find_byte(&haystack, byte), haystack.iter().position(|&b| b == byte));
    }

    /// Reading records in place gives exactly what `csv_core` gives, rejections and file
    /// errors included, whatever the bytes, the delimiter, the field limit and the read sizes.
    #[test]
    fn reading_in_place_gives_what_the_full_parser_gives(
        body in prop_oneof![csvish_bytes(), prop::collection::vec(any::<u8>(), 0..400)],
        delimiter in prop::sample::select(vec![b',', b';', b'\t']),
        max_field_bytes in 1usize..12,
        chunk in 1usize..40,
    ) {
        let mut input = vec![b'a', delimiter, b'b', delimiter, b'c', b'\n'];
        input.extend_from_slice(&body);
        let options = ReaderOptions { delimiter: Some(delimiter), max_field_bytes, ..Default::default() };
        let columns = [ColumnSpec::optional("a"), ColumnSpec::optional("c"), ColumnSpec::optional("zz")];
        let run = |in_place: bool| -> Vec<String> {
            let reader = CsvReader::new(Trickle { data: &input, chunk }, &options, &columns).unwrap();
            let reader = if in_place { reader } else { reader.without_in_place_reading() };
            let mut reader = reader;
            let mut items = Vec::new();
            loop {
                match reader.next_row() {
                    Ok(None) => break,
                    Ok(Some(item)) => items.push(format!("{item:?}")),
                    Err(e) => items.push(format!("file error: {e}")),
                }
            }
            items.push(format!("blank rows: {}", reader.blank_rows_skipped()));
            items
        };
        prop_assert_eq!(run(true), run(false));
    }

    /// Records written by the `csv` crate (any delimiter, any terminator, values with quotes,
    /// delimiters and newlines) read back unchanged, each on the line where it starts.
    #[test]
    fn written_records_read_back_with_their_lines(
        records in prop::collection::vec(
            ("[a-z]{1,5}", "[a-z ,;\t\"\n\r\u{e9}]{0,12}"),
            0..30,
        ),
        delimiter in prop::sample::select(vec![b',', b';', b'\t']),
        crlf in any::<bool>(),
    ) {
        let terminator = if crlf { csv::Terminator::CRLF } else { csv::Terminator::Any(b'\n') };
        let mut writer = csv::WriterBuilder::new().delimiter(delimiter).terminator(terminator).from_writer(Vec::new());
        writer.write_record(["login", "note"]).unwrap();
        let mut expected = Vec::new();
        for (login, note) in &records {
            writer.flush().unwrap();
            // Lines end at LF, CRLF or a lone CR (one written inside a quoted note counts too).
            let written = writer.get_ref();
            let breaks = written.iter().enumerate().filter(|&(i, &b)| b == b'\r' || (b == b'\n' && (i == 0 || written[i - 1] != b'\r')));
            let line = 1 + breaks.count() as u64;
            writer.write_record([login, note]).unwrap();
            expected.push(row(line, &[login, note.trim()]));
        }
        let input = writer.into_inner().unwrap();
        let options = ReaderOptions { delimiter: Some(delimiter), ..Default::default() };
        let items = read_with(&input, &options, &required(&["login", "note"])).unwrap();
        let got: Vec<_> = items.into_iter().map(|item| item.map(|r| (r.line, r.values))).collect::<Result<_, _>>().unwrap();
        prop_assert_eq!(got, expected);
    }
}

#[test]
fn the_fast_trim_trims_exactly_what_str_trim_trims() {
    // GIVEN every character, around and inside a value (the fast path judges non-ASCII
    // characters by their first and last UTF-8 bytes)
    let mut value = String::new();
    for c in (0..=0x10FFFFu32).filter_map(char::from_u32) {
        for shape in ["c", "cx", "xc", "cxc", "xcx"] {
            value.clear();
            value.extend(shape.chars().map(|s| if s == 'c' { c } else { s }));
            // THEN the fast path agrees with str::trim
            assert_eq!(trim(&value), value.trim(), "{c:?} in {value:?}");
        }
    }
    assert_eq!(trim(""), "");
}

// ---- the reader on its own thread -----------------------------------------------------------

/// An owned reader handing out at most `chunk` bytes per call and counting what it handed out.
struct Counted {
    data: Vec<u8>,
    at: usize,
    chunk: usize,
    read: std::sync::Arc<std::sync::atomic::AtomicUsize>,
}

impl Read for Counted {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.chunk.min(buf.len()).min(self.data.len() - self.at);
        buf[..n].copy_from_slice(&self.data[self.at..self.at + n]);
        self.at += n;
        self.read.fetch_add(n, std::sync::atomic::Ordering::Relaxed);
        Ok(n)
    }
}

fn counted(data: Vec<u8>, chunk: usize) -> Counted {
    Counted { data, at: 0, chunk, read: Default::default() }
}

/// Every item of a reader, or of the same reader piped, and the file error that ended it.
fn items_of(mut next: impl FnMut() -> Result<Option<String>, FileError>) -> Vec<String> {
    let mut items = Vec::new();
    loop {
        match next() {
            Ok(None) => break,
            Ok(Some(item)) => items.push(item),
            Err(e) => {
                items.push(format!("file error: {e}"));
                break;
            }
        }
    }
    items
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(128))]

    /// Piped rows are the reader's rows, rejections and file error, in order, across batches.
    #[test]
    fn piped_rows_are_the_readers_rows_in_order(
        good_rows in 0usize..700,
        tail in prop_oneof![csvish_bytes(), prop::collection::vec(any::<u8>(), 0..400)],
        max_field_bytes in 1usize..12,
        chunk in 1usize..5000,
    ) {
        let mut input = b"a,b,c\n".to_vec();
        for i in 0..good_rows {
            input.extend_from_slice(format!("x{i},\"y, {i}\",{}\n", if i % 97 == 0 { "z,extra" } else { "z" }).as_bytes());
        }
        input.extend_from_slice(&tail);
        let options = ReaderOptions { delimiter: Some(b','), max_field_bytes, ..Default::default() };
        let columns = [ColumnSpec::optional("a"), ColumnSpec::optional("b"), ColumnSpec::optional("zz")];
        let mut direct = CsvReader::new(counted(input.clone(), chunk), &options, &columns).unwrap();
        let expected = items_of(|| direct.next_row().map(|item| item.map(|item| format!("{item:?}"))));
        let mut piped = PipedRows::spawn(CsvReader::new(counted(input, chunk), &options, &columns).unwrap());
        let got = items_of(|| piped.next_row().map(|item| item.map(|item| format!("{item:?}"))));
        prop_assert_eq!(&got, &expected);
        // And the end stays the end.
        prop_assert!(piped.next_row().unwrap().is_none());
    }
}

#[test]
fn a_read_error_after_many_rows_comes_through_the_pipe_after_those_rows() {
    let mut data = b"login\n".to_vec();
    for i in 0..1000 {
        data.extend_from_slice(format!("user{i}\n").as_bytes());
    }
    let data: &'static [u8] = Box::leak(data.into_boxed_slice());
    let mut piped =
        PipedRows::spawn(CsvReader::new(Failing(data), &Default::default(), &required(&["login"])).unwrap());
    let items = items_of(|| piped.next_row().map(|item| item.map(|item| format!("{item:?}"))));
    assert_eq!(items.len(), 1001);
    assert!(items[999].contains("user999"), "{}", items[999]);
    assert!(items[1000].starts_with("file error:") && items[1000].contains("connection reset"), "{}", items[1000]);
}

#[test]
fn dropping_piped_rows_early_stops_the_reader_within_a_few_batches() {
    let mut data = b"login\n".to_vec();
    for i in 0..200_000 {
        data.extend_from_slice(format!("user{i}\n").as_bytes());
    }
    let total = data.len();
    let source = counted(data, 4096);
    let read = source.read.clone();
    let mut piped = PipedRows::spawn(CsvReader::new(source, &Default::default(), &required(&["login"])).unwrap());
    for _ in 0..3 {
        assert!(piped.next_row().unwrap().unwrap().is_ok());
    }
    drop(piped);
    let after_drop = read.load(std::sync::atomic::Ordering::Relaxed);
    assert!(after_drop < total / 10, "read {after_drop} of {total} bytes after the consumer stopped");
}
