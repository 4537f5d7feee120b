//! [`CsvReader`]: header matching, record parsing with bounded memory, row-level structure checks.
//!
//! Built on `csv_core` rather than `csv::Reader` so that no field can make memory grow: data
//! records are parsed whole into a buffer that, past a small size, is compacted to the wanted
//! columns (each capped at `max_field_bytes`) instead of growing.

use std::fmt;
use std::io::Read;

use csv_core::{ReadFieldResult, ReadRecordResult, Reader as CoreReader, ReaderBuilder as CoreBuilder};

use super::source::{Fault, Source};
use super::{ColumnSpec, FileError, ReaderOptions, RowError, maybe_padded, normalize_header, trimmed_range};

const QUOTE: u8 = b'"';
const SCRATCH_SIZE: usize = 8 * 1024;
/// Size the record buffer may reach before unwanted bytes are dropped from it rather than grown.
const COMPACT_AT: usize = 64 * 1024;
/// Field ends taken from the parser per call (more fields just take more calls).
const ENDS_CHUNK: usize = 64;
/// How far delimiter detection looks for the end of the header line.
const PEEK_LIMIT: usize = 1 << 20;

#[derive(Clone, Copy, PartialEq, Eq)]
enum Mode {
    /// Keep every field (the header).
    Header,
    /// Keep only the fields of wanted columns.
    Data,
}

struct Parsed {
    /// Number of fields in the record.
    fields: usize,
    /// First field (0-based position) that was kept and exceeded the field limit.
    too_long: Option<usize>,
}

/// Streaming reader of an HR CSV export.
///
/// Reads from any [`Read`], never holding more than one record of the wanted columns (plus a
/// fixed-size input buffer). Call [`next_row`](Self::next_row) until it returns `Ok(None)`, or
/// use [`into_rows`](Self::into_rows) for an iterator of owned rows.
///
/// Rows are what follows the header, minus blank rows (no field with anything but ASCII
/// whitespace — e.g. the `,,,,` lines Excel leaves at the end), which are skipped silently and
/// counted in [`blank_rows_skipped`](Self::blank_rows_skipped).
///
/// Line numbers are 1-based physical lines, where LF, CRLF and a lone CR (old Mac exports) each
/// end a line: the header is line 1 (unless blank
/// lines precede it) and a quoted newline makes the next record start one line later.
pub struct CsvReader<R> {
    src: Source<R>,
    core: CoreReader,
    delimiter: u8,
    max_field: usize,
    max_rows: u64,
    max_columns: usize,
    max_file: u64,
    columns: Vec<ColumnSpec>,
    headers: Vec<String>,
    /// Per `ColumnSpec` index: the slot holding its value, `None` if the file lacks the column.
    slot_of_column: Vec<Option<usize>>,
    /// Per field position in a record: the slot to keep it in, `None` to discard it.
    slot_of_field: Vec<Option<usize>>,
    /// Per slot: the first `ColumnSpec` index using it (to name it in errors).
    column_of_slot: Vec<usize>,
    /// Unescaped bytes of the kept fields of the current record.
    data: Vec<u8>,
    data_len: usize,
    /// Where the current record lies in the source's buffer when [`parse_line`](Self::parse_line)
    /// read it in place (`spans` are then relative to its start); `None` when it is in `data`.
    in_place: Option<(usize, usize)>,
    /// Whether [`parse_line`](Self::parse_line) may read records in place (tests compare
    /// with the full parser alone).
    read_in_place: bool,
    /// Per slot (per field while reading the header): its byte range in `data` (or in the
    /// record read in place).
    spans: Vec<(usize, usize)>,
    /// Per `ColumnSpec` index: the trimmed byte range of its value in the current row
    /// (`(0, 0)` when the file lacks the column). Trimmed once per row, as rows are read
    /// through [`Row::get`] dozens of times (every template placeholder).
    values: Vec<(usize, usize)>,
    scratch: Box<[u8]>,
    /// Field ends the record parser reports per call (kept here: zeroing them per record cost
    /// more than the rest of the call's setup).
    ends: Box<[usize; ENDS_CHUNK]>,
    /// Line breaks consumed so far (LF, CRLF or a lone CR each count once).
    breaks: u64,
    /// Whether the last byte consumed was a CR (its LF, if it follows, ends no further line).
    after_cr: bool,
    /// Line where the current record starts.
    line: u64,
    rows: u64,
    blank_rows: u64,
    done: bool,
}

impl<R: Read> CsvReader<R> {
    /// Reads the header of `reader` and matches `columns` against it.
    ///
    /// `Row::get(i)` later returns the value of `columns[i]`. Fails with a [`FileError`] if the
    /// file has no header, lacks a required column, has a wanted column twice, or the first
    /// bytes already break a limit or the encoding.
    pub fn new(reader: R, options: &ReaderOptions, columns: &[ColumnSpec]) -> Result<Self, FileError> {
        if let Some(byte) = options.delimiter
            && (!byte.is_ascii() || matches!(byte, QUOTE | b'\r' | b'\n'))
        {
            return Err(FileError::InvalidDelimiter { byte });
        }
        let mut src = Source::new(reader, options.encoding, options.max_file_bytes);
        while src.raw().len() < 3 && src.read_more() {}
        if src.raw().starts_with(b"\xEF\xBB\xBF") {
            src.consume(3);
        } else if src.raw().starts_with(b"\xFF\xFE") || src.raw().starts_with(b"\xFE\xFF") {
            return Err(FileError::Utf16);
        }
        let delimiter = match options.delimiter {
            Some(d) => d,
            None => detect_delimiter(&mut src),
        };
        let mut this = Self {
            src,
            core: CoreBuilder::new().delimiter(delimiter).build(),
            delimiter,
            max_field: options.max_field_bytes,
            max_rows: options.max_rows,
            max_columns: options.max_columns,
            max_file: options.max_file_bytes,
            columns: columns.to_vec(),
            headers: Vec::new(),
            slot_of_column: Vec::new(),
            slot_of_field: Vec::new(),
            column_of_slot: Vec::new(),
            data: Vec::new(),
            data_len: 0,
            in_place: None,
            read_in_place: true,
            spans: Vec::new(),
            values: Vec::new(),
            scratch: vec![0; SCRATCH_SIZE].into_boxed_slice(),
            ends: Box::new([0; ENDS_CHUNK]),
            breaks: 0,
            after_cr: false,
            line: 0,
            rows: 0,
            blank_rows: 0,
            done: false,
        };
        let Some(parsed) = this.parse_record(Mode::Header)? else {
            return Err(FileError::Empty);
        };
        if let Some(field) = parsed.too_long {
            return Err(FileError::HeaderNameTooLong { column: field + 1, limit: this.max_field });
        }
        this.headers =
            this.spans.iter().map(|&(a, b)| String::from_utf8_lossy(&this.data[a..b]).trim().to_owned()).collect();
        this.match_columns()?;
        this.spans = vec![(0, 0); this.column_of_slot.len()];
        this.values = vec![(0, 0); this.columns.len()];
        Ok(this)
    }

    fn match_columns(&mut self) -> Result<(), FileError> {
        let normalized: Vec<String> = self.headers.iter().map(|h| normalize_header(h)).collect();
        self.slot_of_field = vec![None; self.headers.len()];
        let mut missing = Vec::new();
        for (index, spec) in self.columns.iter().enumerate() {
            let key = normalize_header(&spec.name);
            let mut hits = normalized.iter().enumerate().filter(|(_, n)| **n == key);
            let slot = match (hits.next(), hits.next()) {
                (Some((first, _)), Some((second, _))) => {
                    return Err(FileError::DuplicateColumn {
                        name: spec.name.clone(),
                        first: first + 1,
                        second: second + 1,
                    });
                }
                (Some((field, _)), None) => Some(*self.slot_of_field[field].get_or_insert_with(|| {
                    self.column_of_slot.push(index);
                    self.column_of_slot.len() - 1
                })),
                (None, _) => {
                    if spec.required {
                        missing.push(spec.name.clone());
                    }
                    None
                }
            };
            self.slot_of_column.push(slot);
        }
        if missing.is_empty() {
            Ok(())
        } else {
            Err(FileError::MissingColumns { missing, found: self.headers.clone() })
        }
    }

    /// The next row: `Ok(Some(Ok(row)))`, a rejected row `Ok(Some(Err(..)))` (go on with the
    /// next one), or the end `Ok(None)`. `Err` is a file-level error: stop. After `Ok(None)` or
    /// `Err`, every further call returns `Ok(None)`.
    #[allow(clippy::type_complexity)]
    pub fn next_row(&mut self) -> Result<Option<Result<Row<'_>, RowError>>, FileError> {
        if self.done {
            return Ok(None);
        }
        let parsed = match self.parse_record(Mode::Data) {
            Ok(Some(parsed)) => parsed,
            Ok(None) => {
                self.done = true;
                return Ok(None);
            }
            Err(e) => {
                self.done = true;
                return Err(e);
            }
        };
        self.rows += 1;
        if self.rows > self.max_rows {
            self.done = true;
            return Err(FileError::TooManyRows { limit: self.max_rows });
        }
        let line = self.line;
        if parsed.fields != self.headers.len() {
            let reason = format!("expected {} fields, found {}", self.headers.len(), parsed.fields);
            return Ok(Some(Err(RowError::new(line, None, reason))));
        }
        if let Some(field) = parsed.too_long {
            let column = self.slot_of_field[field].map(|slot| self.column_of_slot[slot]);
            let name = column.map(|c| self.columns[c].name.as_str());
            let reason = format!("value is longer than the limit of {} bytes", self.max_field);
            return Ok(Some(Err(RowError::new(line, name, reason))));
        }
        let bytes = match self.in_place {
            Some((start, end)) => self.src.consumed(start, end),
            None => &self.data[..self.data_len],
        };
        // `Source` hands out only valid UTF-8 and the parser cuts and drops only ASCII bytes, so
        // this check cannot fail; it is kept (rather than trusting that invariant across three
        // files) because simdutf8 makes it cheap. Should it fail, the row is rejected, not the run.
        let Ok(text) = simdutf8::basic::from_utf8(bytes) else {
            return Ok(Some(Err(RowError::new(line, None, "the row is not valid UTF-8".to_string()))));
        };
        for (value, slot) in self.values.iter_mut().zip(&self.slot_of_column) {
            *value = match *slot {
                Some(slot) => trimmed_span(bytes, self.spans[slot]),
                None => (0, 0),
            };
        }
        Ok(Some(Ok(Row { line, text, values: &self.values, prechecked: false })))
    }

    /// Turns the reader into an iterator of owned rows (one allocation per value).
    pub fn into_rows(self) -> OwnedRows<R> {
        OwnedRows(self)
    }

    /// The delimiter in use (configured or detected).
    pub fn delimiter(&self) -> u8 {
        self.delimiter
    }

    /// Header names as written in the file (trimmed), in file order.
    pub fn headers(&self) -> &[String] {
        &self.headers
    }

    /// The wanted columns, as passed to [`new`](Self::new).
    pub fn columns(&self) -> &[ColumnSpec] {
        &self.columns
    }

    /// Whether the file has wanted column `column` (index into [`columns`](Self::columns)).
    /// Panics if `column` is out of range.
    pub fn has_column(&self, column: usize) -> bool {
        self.slot_of_column[column].is_some()
    }

    /// Data rows read so far, rejected ones included, blank ones not.
    pub fn rows_read(&self) -> u64 {
        self.rows
    }

    /// Blank rows skipped so far.
    pub fn blank_rows_skipped(&self) -> u64 {
        self.blank_rows
    }

    /// The same reader with every data record going through `csv_core` (the reference the
    /// in-place reading is compared with).
    #[cfg(test)]
    pub(super) fn without_in_place_reading(mut self) -> Self {
        self.read_in_place = false;
        self
    }

    #[cfg(test)]
    pub(super) fn record_buffer_len(&self) -> usize {
        self.data.len()
    }

    fn current_line(&self) -> u64 {
        self.breaks + 1
    }

    fn fault_error(&self, fault: Fault) -> FileError {
        match fault {
            Fault::Io(e) => FileError::Io(e),
            Fault::TooLarge => FileError::TooLarge { limit: self.max_file },
            Fault::InvalidUtf8 { offset } => FileError::InvalidUtf8 { line: self.current_line(), byte_offset: offset },
        }
    }

    /// Reads the next non-blank record into `data`/`spans` and sets `self.line`.
    fn parse_record(&mut self, mode: Mode) -> Result<Option<Parsed>, FileError> {
        loop {
            if !self.skip_blank_lines()? {
                return Ok(None);
            }
            let start_line = self.current_line();
            self.in_place = None;
            let parsed = match mode {
                Mode::Header => self.parse_header_fields(start_line)?,
                Mode::Data => match self.read_in_place.then(|| self.parse_line()).flatten() {
                    Some(parsed) => Some(parsed),
                    None => self.parse_data_fields(start_line)?,
                },
            };
            let Some((parsed, has_content)) = parsed else {
                return Ok(None);
            };
            if has_content {
                self.line = start_line;
                return Ok(Some(parsed));
            }
            if mode == Mode::Data {
                self.blank_rows += 1;
            }
        }
    }

    /// Consumes empty lines before a record, so that the record's start line is exact. False
    /// at the end of the input.
    fn skip_blank_lines(&mut self) -> Result<bool, FileError> {
        loop {
            let input = match self.src.fill() {
                Ok(input) => input,
                Err(fault) => return Err(self.fault_error(fault)),
            };
            if input.is_empty() {
                return Ok(false);
            }
            // The common case: one LF, then the record.
            if input.len() > 1 && input[0] == b'\n' && !matches!(input[1], b'\r' | b'\n') {
                self.breaks += u64::from(!self.after_cr);
                self.after_cr = false;
                self.src.consume(1);
                return Ok(true);
            }
            let skip = input.iter().position(|&b| b != b'\r' && b != b'\n').unwrap_or(input.len());
            count_breaks(&mut self.breaks, &mut self.after_cr, &input[..skip]);
            let found = skip < input.len();
            self.src.consume(skip);
            if found {
                return Ok(true);
            }
        }
    }

    /// Parses the header record field by field, keeping every field. Returns the record and
    /// whether it has content.
    fn parse_header_fields(&mut self, start_line: u64) -> Result<Option<(Parsed, bool)>, FileError> {
        let mut field = 0usize;
        let mut field_start = 0usize;
        let mut field_len = 0usize;
        let mut overflowed = false;
        // Where the current field stands with its quotes (`None` before its first byte): at the
        // end of the input, a field still inside its quotes was never closed.
        let mut quotes: Option<QuoteScan> = None;
        let mut too_long = None;
        let mut has_content = false;
        self.data_len = 0;
        self.spans.clear();
        loop {
            let input = match self.src.fill() {
                Ok(input) => input,
                Err(fault) => return Err(self.fault_error(fault)),
            };
            let at_eof = input.is_empty();
            if quotes.is_none() && !at_eof {
                quotes = Some(if input[0] == QUOTE { QuoteScan::Start } else { QuoteScan::Closed });
            }
            let (result, nin, nout) = if overflowed {
                self.core.read_field(input, &mut self.scratch)
            } else {
                if self.data_len == self.data.len() {
                    let grown = (self.data.len() * 2).max(1024);
                    self.data.resize(grown, 0);
                }
                let room = (self.data.len() - self.data_len).min((self.max_field - field_len).saturating_add(1));
                let out = &mut self.data[self.data_len..self.data_len + room];
                self.core.read_field(input, out)
            };
            if let Some(scan) = quotes {
                quotes = Some(scan.advance(&input[..nin]));
            }
            count_breaks(&mut self.breaks, &mut self.after_cr, &input[..nin]);
            self.src.consume(nin);
            field_len += nout;
            if !overflowed {
                self.data_len += nout;
                if field_len > self.max_field {
                    overflowed = true;
                    has_content = true;
                    too_long.get_or_insert(field);
                    self.data_len = field_start;
                }
            }
            match result {
                ReadFieldResult::InputEmpty | ReadFieldResult::OutputFull => {}
                ReadFieldResult::End => return Ok(None),
                ReadFieldResult::Field { record_end } => {
                    let span = (field_start, self.data_len);
                    has_content = has_content || !blank(&self.data[span.0..span.1]);
                    self.spans.push(span);
                    if record_end && at_eof && quotes == Some(QuoteScan::InQuotes) {
                        return Err(FileError::UnterminatedQuote { line: start_line });
                    }
                    field += 1;
                    field_start = self.data_len;
                    field_len = 0;
                    overflowed = false;
                    quotes = None;
                    if field > self.max_columns {
                        return Err(FileError::TooManyColumns { limit: self.max_columns });
                    }
                    if record_end {
                        return Ok(Some((Parsed { fields: field, too_long }, has_content)));
                    }
                }
            }
        }
    }

    /// Reads the common record in place, without `csv_core` and without copying: a whole line
    /// already in the buffer whose fields are unquoted, or quoted with no quote, CR or LF
    /// inside and the closing quote right before a delimiter or the line's end. For such a line
    /// this gives exactly what [`parse_data_fields`](Self::parse_data_fields) would. Any other
    /// record (or a line not wholly buffered yet) gives `None`, with nothing consumed, for
    /// that full parser. Consumes the line up to its line break, which the next
    /// [`skip_blank_lines`](Self::skip_blank_lines) counts.
    fn parse_line(&mut self) -> Option<(Parsed, bool)> {
        let input = self.src.buffered();
        let line = &input[..memchr::memchr2(b'\n', b'\r', input)?];
        let delimiter = self.delimiter;
        let mut field = 0;
        let mut pos = 0;
        let mut too_long = None;
        let mut has_content = false;
        self.spans.fill((0, 0));
        loop {
            // The field's value, and where the field ends (its delimiter or the line's end).
            let (start, end, stop) = if line.get(pos) == Some(&QUOTE) {
                let close = pos + 1 + find_byte(&line[pos + 1..], QUOTE)?;
                match line.get(close + 1) {
                    Some(&b) if b != delimiter => return None, // a doubled quote, or text after the quote
                    _ => (pos + 1, close, close + 1),
                }
            } else {
                // Quotes inside an unquoted value are text.
                let rest = &line[pos..];
                let stop = pos + find_byte(rest, delimiter).unwrap_or(rest.len());
                (pos, stop, stop)
            };
            let slot = self.slot_of_field.get(field).copied().flatten();
            if let Some(slot) =
                file_field(slot, field, &line[start..end], self.max_field, &mut too_long, &mut has_content)
            {
                self.spans[slot] = (start, end);
            }
            field += 1;
            if stop >= line.len() {
                break;
            }
            pos = stop + 1;
        }
        let (start, len) = (self.src.position(), line.len());
        self.src.consume(len);
        // The line is not empty (a record never starts at a line break) and holds none.
        self.after_cr = false;
        self.in_place = Some((start, start + len));
        Some((Parsed { fields: field, too_long }, has_content))
    }

    /// Parses one data record with `csv_core`'s record reader (one call per record in the
    /// common case, where field-by-field reading pays its overhead ten times). Returns the
    /// record and whether it has content.
    ///
    /// Memory stays bounded however long a field is: the record buffer grows to
    /// [`COMPACT_AT`], after which a full buffer is compacted to the wanted fields (each at
    /// most `max_field` bytes) before it may grow again. After a compaction the record is
    /// compacted once more at its end, so `data` holds only whole wanted fields.
    ///
    /// The end of the input is fed to the parser as one line break: inside a quoted field it
    /// becomes part of the field (the file ends inside quotes, never closed), anywhere else it
    /// ends the record.
    fn parse_data_fields(&mut self, start_line: u64) -> Result<Option<(Parsed, bool)>, FileError> {
        let mut rec = RecordState { field: 0, field_start: 0, dropped: 0, overflowed: false, compacted: false };
        let mut too_long = None;
        let mut has_content = false;
        self.data_len = 0;
        self.spans.fill((0, 0));
        loop {
            if self.data_len == self.data.len() {
                self.make_room(&mut rec, &mut too_long, &mut has_content);
            }
            let input = match self.src.fill() {
                Ok(input) => input,
                Err(fault) => return Err(self.fault_error(fault)),
            };
            let at_eof = input.is_empty();
            let input: &[u8] = if at_eof { b"\n" } else { input };
            let (result, nin, nout, nend) =
                self.core.read_record(input, &mut self.data[self.data_len..], &mut self.ends[..]);
            if !at_eof {
                count_breaks(&mut self.breaks, &mut self.after_cr, &input[..nin]);
                self.src.consume(nin);
            }
            self.data_len += nout;
            for &end in &self.ends[..nend] {
                let end = end - rec.dropped;
                let bytes = &self.data[rec.field_start..end];
                match self.slot_of_field.get(rec.field).copied().flatten() {
                    // Already marked too long, and its bytes dropped, while it was read.
                    Some(_) if rec.overflowed => {}
                    slot => {
                        if let Some(slot) =
                            file_field(slot, rec.field, bytes, self.max_field, &mut too_long, &mut has_content)
                        {
                            self.spans[slot] = (rec.field_start, end);
                        }
                    }
                }
                rec.field += 1;
                rec.field_start = end;
                rec.overflowed = false;
            }
            match result {
                ReadRecordResult::Record => {
                    if rec.compacted {
                        self.compact(&mut rec, false);
                    }
                    return Ok(Some((Parsed { fields: rec.field, too_long }, has_content)));
                }
                ReadRecordResult::InputEmpty if at_eof => {
                    return Err(FileError::UnterminatedQuote { line: start_line });
                }
                ReadRecordResult::End => return Ok(None),
                ReadRecordResult::InputEmpty | ReadRecordResult::OutputFull | ReadRecordResult::OutputEndsFull => {}
            }
        }
    }

    /// The record buffer is full: grow it while it is small, else drop what no wanted field
    /// needs (and grow only if the wanted fields still fill half of it).
    fn make_room(&mut self, rec: &mut RecordState, too_long: &mut Option<usize>, has_content: &mut bool) {
        if self.data.len() >= COMPACT_AT {
            let current = &self.data[rec.field_start..self.data_len];
            let wanted = self.slot_of_field.get(rec.field).copied().flatten().is_some();
            if wanted && !rec.overflowed && current.len() > self.max_field {
                rec.overflowed = true;
                too_long.get_or_insert(rec.field);
                *has_content = true;
            } else if !wanted && !*has_content {
                *has_content = !blank(current);
            }
            let keep_current = wanted && !rec.overflowed;
            self.compact(rec, keep_current);
            if self.data_len <= self.data.len() / 2 {
                return;
            }
        }
        let grown = (self.data.len() * 2).max(1024);
        self.data.resize(grown, 0);
    }

    /// Moves the wanted fields read so far (and the field being read, if `keep_current`) to
    /// the front of the buffer, dropping everything else.
    fn compact(&mut self, rec: &mut RecordState, keep_current: bool) {
        let position = self.data_len + rec.dropped;
        let mut order: Vec<usize> = (0..self.spans.len()).collect();
        order.sort_unstable_by_key(|&slot| self.spans[slot].0);
        let mut write = 0;
        for slot in order {
            let (start, end) = self.spans[slot];
            self.data.copy_within(start..end, write);
            self.spans[slot] = (write, write + (end - start));
            write += end - start;
        }
        let current = rec.field_start..self.data_len;
        rec.field_start = write;
        if keep_current {
            self.data.copy_within(current.clone(), write);
            write += current.len();
        }
        self.data_len = write;
        rec.dropped = position - write;
        rec.compacted = true;
    }
}

/// Where [`CsvReader::parse_data_fields`] stands in the record being read.
struct RecordState {
    /// Fields completed so far.
    field: usize,
    /// Where the field being read starts in `data`.
    field_start: usize,
    /// Bytes the parser wrote that compaction removed: its positions minus ours.
    dropped: usize,
    /// The field being read is wanted but already longer than the limit (its bytes dropped).
    overflowed: bool,
    /// Whether the record was compacted while being read.
    compacted: bool,
}

/// Where a field stands with its quotes, as `csv_core` reads them: a field that opens with a
/// quote is inside quotes until a quote not doubled closes it; whatever follows a closing quote
/// (`"abc"def"`) is plain text, its quotes included. Only a field still inside its quotes at
/// the end of the input was never closed (counting quotes would call `"abc"def"` unclosed).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum QuoteScan {
    /// Before the opening quote.
    Start,
    InQuotes,
    /// A quote inside quotes: doubled (`""`, still inside) or closing, as the next byte tells.
    AfterQuote,
    /// Not quoted, or closed: quotes from here on are text.
    Closed,
}

impl QuoteScan {
    /// The state after the next raw bytes of the field.
    fn advance(mut self, bytes: &[u8]) -> QuoteScan {
        let mut i = 0;
        while i < bytes.len() {
            match self {
                QuoteScan::Closed => break,
                QuoteScan::InQuotes => match memchr::memchr(QUOTE, &bytes[i..]) {
                    Some(k) => {
                        self = QuoteScan::AfterQuote;
                        i += k + 1;
                    }
                    None => break,
                },
                QuoteScan::Start | QuoteScan::AfterQuote => {
                    self = if bytes[i] == QUOTE { QuoteScan::InQuotes } else { QuoteScan::Closed };
                    i += 1;
                }
            }
        }
        self
    }
}

/// The first `byte` in `haystack`, eight bytes at a time: values are short, so this beats a
/// `memchr` call's set-up (BENCHMARKS.md, "What the numbers expose").
#[inline]
pub(super) fn find_byte(haystack: &[u8], byte: u8) -> Option<usize> {
    const ONES: u64 = 0x0101_0101_0101_0101;
    const HIGHS: u64 = 0x8080_8080_8080_8080;
    let pattern = ONES * u64::from(byte);
    let mut words = haystack.chunks_exact(8);
    let mut base = 0;
    for word in &mut words {
        let x = u64::from_le_bytes(word.try_into().expect("eight bytes")) ^ pattern;
        // Bytes of `x` that are zero set their high bit here; a borrow can set it in a byte
        // above a zero byte too, never below one, so the lowest set bit is exact.
        let zeros = x.wrapping_sub(ONES) & !x & HIGHS;
        if zeros != 0 {
            return Some(base + (zeros.trailing_zeros() / 8) as usize);
        }
        base += 8;
    }
    words.remainder().iter().position(|&b| b == byte).map(|i| base + i)
}

/// Files field number `field` of a data record, its value `bytes` (kept in `slot` if wanted):
/// a wanted value over `max_field` marks the record too long (and as having content), any
/// other value may give the record content. Returns the slot to keep the value's span in:
/// `None` for an unwanted field or one too long. Inlined: it runs for every field, where a
/// call's cost shows in the first pass.
#[inline(always)]
fn file_field(
    slot: Option<usize>,
    field: usize,
    bytes: &[u8],
    max_field: usize,
    too_long: &mut Option<usize>,
    has_content: &mut bool,
) -> Option<usize> {
    if slot.is_some() && bytes.len() > max_field {
        too_long.get_or_insert(field);
        *has_content = true;
        return None;
    }
    *has_content = *has_content || !blank(bytes);
    slot
}

/// Whether a field is blank: only ASCII white space (a record of blank fields is a blank row).
fn blank(bytes: &[u8]) -> bool {
    bytes.iter().all(u8::is_ascii_whitespace)
}

/// The part of `bytes[start..end]` that [`super::trim`] keeps, as a range of `bytes`: two byte tests
/// decide the common case.
#[inline]
fn trimmed_span(bytes: &[u8], (start, end): (usize, usize)) -> (usize, usize) {
    let field = &bytes[start..end];
    if !maybe_padded(field) {
        return (start, end);
    }
    let kept = trimmed_range(field);
    (start + kept.start, start + kept.end)
}

/// Adds the line breaks in `bytes` (the next bytes consumed) to `breaks`: an LF, a CR, or a CRLF
/// pair each end one line. `after_cr` carries a CR at the end of one chunk over to the next.
fn count_breaks(breaks: &mut u64, after_cr: &mut bool, bytes: &[u8]) {
    let Some(&last) = bytes.last() else { return };
    for i in memchr::memchr2_iter(b'\r', b'\n', bytes) {
        let lf_after_cr = bytes[i] == b'\n' && if i == 0 { *after_cr } else { bytes[i - 1] == b'\r' };
        if !lf_after_cr {
            *breaks += 1;
        }
    }
    *after_cr = last == b'\r';
}

/// Picks `,`, `;` or tab: the most frequent outside quotes on the first non-empty line (ended by
/// LF, CRLF or a lone CR); ties and no candidate at all give `,`. Looks at most [`PEEK_LIMIT`]
/// bytes ahead; consumes nothing.
fn detect_delimiter<R: Read>(src: &mut Source<R>) -> u8 {
    const CANDIDATES: [u8; 3] = [b',', b';', b'\t'];
    let mut counts = [0usize; 3];
    let mut in_quotes = false;
    let mut started = false;
    let mut scanned = 0;
    let pick = |counts: [usize; 3]| {
        let mut best = 0;
        for i in 1..counts.len() {
            if counts[i] > counts[best] {
                best = i;
            }
        }
        CANDIDATES[best]
    };
    loop {
        let buf = src.buffered();
        for &b in &buf[scanned..] {
            scanned += 1;
            if !started {
                if b == b'\r' || b == b'\n' {
                    continue;
                }
                started = true;
            }
            match b {
                QUOTE => in_quotes = !in_quotes,
                // The header line ends at its first line break: LF, CRLF or a lone CR.
                b'\n' | b'\r' if !in_quotes => return pick(counts),
                _ if !in_quotes => {
                    if let Some(i) = CANDIDATES.iter().position(|&c| c == b) {
                        counts[i] += 1;
                    }
                }
                _ => {}
            }
        }
        if scanned >= PEEK_LIMIT || !src.read_more() {
            return pick(counts);
        }
    }
}

/// One data row, borrowed from the reader until the next call to `next_row`.
#[derive(Clone, Copy)]
pub struct Row<'r> {
    line: u64,
    text: &'r str,
    /// Per wanted column: the trimmed range of its value in `text`.
    values: &'r [(usize, usize)],
    /// Whether the reader's thread found that the row passes the rules that need only the row
    /// (see [`PipedRows::spawn_with`](super::PipedRows::spawn_with)).
    prechecked: bool,
}

impl<'r> Row<'r> {
    /// 1-based physical line where the row starts.
    pub fn line(&self) -> u64 {
        self.line
    }

    /// Value of wanted column `column` (index into the `ColumnSpec`s given to the reader),
    /// trimmed of whitespace; `""` if the file lacks that optional column. Panics if `column`
    /// is out of range.
    pub fn get(&self, column: usize) -> &'r str {
        let (start, end) = self.values[column];
        self.text.get(start..end).unwrap_or_default()
    }

    /// Number of wanted columns.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// Whether no columns were wanted.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// A row over `text` whose values are the ranges `values` of it.
    pub(super) fn from_parts(line: u64, text: &'r str, values: &'r [(usize, usize)], prechecked: bool) -> Self {
        Row { line, text, values, prechecked }
    }

    /// Whether the row was found on the reader's thread to pass the checks given to
    /// [`PipedRows::spawn_with`](super::PipedRows::spawn_with) (always `false` otherwise).
    pub fn prechecked(&self) -> bool {
        self.prechecked
    }

    /// The row's text and its values' ranges in it.
    pub(super) fn parts(&self) -> (&'r str, &'r [(usize, usize)]) {
        (self.text, self.values)
    }

    /// Copies the row out of the reader.
    pub fn to_owned_row(&self) -> OwnedRow {
        OwnedRow { line: self.line, values: (0..self.len()).map(|i| self.get(i).to_owned()).collect() }
    }
}

impl fmt::Debug for Row<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Row")
            .field("line", &self.line)
            .field("values", &(0..self.len()).map(|i| self.get(i)).collect::<Vec<_>>())
            .finish()
    }
}

/// A row copied out of the reader.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRow {
    /// 1-based physical line where the row starts.
    pub line: u64,
    /// Trimmed values of the wanted columns, in `ColumnSpec` order (`""` for absent columns).
    pub values: Vec<String>,
}

impl OwnedRow {
    /// Value of wanted column `column`. Panics if `column` is out of range.
    pub fn get(&self, column: usize) -> &str {
        &self.values[column]
    }
}

/// Iterator of owned rows, from [`CsvReader::into_rows`]. Items are `Ok(Ok(row))`, a rejected
/// row `Ok(Err(..))`, or a file-level error `Err(..)`, after which the iterator ends.
pub struct OwnedRows<R>(CsvReader<R>);

impl<R: Read> Iterator for OwnedRows<R> {
    type Item = Result<Result<OwnedRow, RowError>, FileError>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.0.next_row() {
            Ok(None) => None,
            Ok(Some(Ok(row))) => Some(Ok(Ok(row.to_owned_row()))),
            Ok(Some(Err(rejected))) => Some(Ok(Err(rejected))),
            Err(e) => Some(Err(e)),
        }
    }
}
