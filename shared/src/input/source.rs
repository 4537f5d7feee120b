//! The byte source under the CSV parser: enforces the file-size limit, decodes Windows-1252 and
//! checks UTF-8 as the bytes stream by, so the parser only ever sees valid UTF-8 and an
//! encoding error can name the exact byte offset.

use std::io::{self, Read};

use encoding_rs_io::{DecodeReaderBytes, DecodeReaderBytesBuilder};

use super::Encoding;

const BUF_SIZE: usize = 64 * 1024;

/// Why the source stopped delivering bytes.
#[derive(Debug)]
pub(super) enum Fault {
    Io(io::Error),
    TooLarge,
    /// Stream offset (0-based) of the first byte that is not UTF-8.
    InvalidUtf8 {
        offset: u64,
    },
}

/// Marker carried inside an `io::Error` by [`Limited`].
#[derive(Debug)]
struct TooLarge;

impl std::fmt::Display for TooLarge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("input larger than the configured limit")
    }
}

impl std::error::Error for TooLarge {}

impl From<io::Error> for Fault {
    fn from(e: io::Error) -> Self {
        if e.get_ref().is_some_and(|inner| inner.is::<TooLarge>()) { Fault::TooLarge } else { Fault::Io(e) }
    }
}

/// Counts raw bytes and fails once more than `limit` have been read.
struct Limited<R> {
    inner: R,
    read: u64,
    limit: u64,
}

impl<R: Read> Read for Limited<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(TooLarge));
        }
        Ok(n)
    }
}

enum Decoded<R> {
    Utf8(Limited<R>),
    Legacy(Box<DecodeReaderBytes<Limited<R>, Vec<u8>>>),
}

impl<R: Read> Read for Decoded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        match self {
            Decoded::Utf8(r) => r.read(buf),
            Decoded::Legacy(r) => r.read(buf),
        }
    }
}

/// A growable buffer over the decoded stream. `buf[pos..valid_end]` is checked UTF-8 not yet
/// consumed; `buf[valid_end..end]` is at most an incomplete character waiting for its tail (or
/// bytes after an invalid sequence, never delivered).
pub(super) struct Source<R> {
    inner: Decoded<R>,
    buf: Vec<u8>,
    pos: usize,
    valid_end: usize,
    end: usize,
    /// Stream offset of `buf[0]`.
    offset: u64,
    eof: bool,
    pending: Option<Fault>,
}

impl<R: Read> Source<R> {
    pub(super) fn new(reader: R, encoding: Encoding, max_bytes: u64) -> Self {
        let limited = Limited { inner: reader, read: 0, limit: max_bytes };
        let inner = match encoding {
            Encoding::Utf8 => Decoded::Utf8(limited),
            Encoding::Windows1252 => Decoded::Legacy(Box::new(
                DecodeReaderBytesBuilder::new()
                    .encoding(Some(encoding_rs::WINDOWS_1252))
                    .bom_override(true)
                    .strip_bom(true)
                    .build(limited),
            )),
        };
        Self { inner, buf: vec![0; BUF_SIZE], pos: 0, valid_end: 0, end: 0, offset: 0, eof: false, pending: None }
    }

    /// Checked bytes not consumed yet; empty at the end of the input. A fault is reported only
    /// once every valid byte before it has been consumed.
    pub(super) fn fill(&mut self) -> Result<&[u8], Fault> {
        while self.pos == self.valid_end {
            if !self.read_more() {
                return match self.pending.take() {
                    Some(fault) => {
                        self.eof = true;
                        Err(fault)
                    }
                    None => Ok(&[]),
                };
            }
        }
        Ok(&self.buf[self.pos..self.valid_end])
    }

    pub(super) fn consume(&mut self, n: usize) {
        debug_assert!(self.pos + n <= self.valid_end);
        self.pos += n;
    }

    /// Where the next unconsumed byte is in the buffer, for [`consumed`](Self::consumed).
    pub(super) fn position(&self) -> usize {
        self.pos
    }

    /// Bytes consumed from [`position`](Self::position) `start` to `end`: valid until the
    /// next read, which may move them.
    pub(super) fn consumed(&self, start: usize, end: usize) -> &[u8] {
        debug_assert!(start <= end && end <= self.pos);
        &self.buf[start..end]
    }

    /// Checked bytes buffered and not consumed (no reading).
    pub(super) fn buffered(&self) -> &[u8] {
        &self.buf[self.pos..self.valid_end]
    }

    /// Raw bytes buffered and not consumed, including unchecked ones (for BOM sniffing).
    pub(super) fn raw(&self) -> &[u8] {
        &self.buf[self.pos..self.end]
    }

    /// Appends more bytes to the buffer, growing it if it is full of unconsumed bytes. False
    /// when nothing was appended: end of input or a fault (kept for `fill` to report).
    pub(super) fn read_more(&mut self) -> bool {
        if self.eof || self.pending.is_some() {
            return false;
        }
        if self.pos > 0 && (self.pos == self.valid_end || self.end == self.buf.len()) {
            self.buf.copy_within(self.pos..self.end, 0);
            self.offset += self.pos as u64;
            self.valid_end -= self.pos;
            self.end -= self.pos;
            self.pos = 0;
        }
        if self.end == self.buf.len() {
            self.buf.resize(self.buf.len() * 2, 0);
        }
        loop {
            match self.inner.read(&mut self.buf[self.end..]) {
                Ok(0) => {
                    self.eof = true;
                    if self.valid_end < self.end {
                        // The input ends in the middle of a character.
                        self.pending = Some(Fault::InvalidUtf8 { offset: self.offset + self.valid_end as u64 });
                    }
                    return false;
                }
                Ok(n) => {
                    self.end += n;
                    self.check_utf8();
                    return true;
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    self.pending = Some(Fault::from(e));
                    return false;
                }
            }
        }
    }

    fn check_utf8(&mut self) {
        // simdutf8 checks 32 bytes per step where the standard library checks 16 at best; its
        // `compat` flavour says where the valid part ends, as `std::str::from_utf8` does.
        match simdutf8::compat::from_utf8(&self.buf[self.valid_end..self.end]) {
            Ok(_) => self.valid_end = self.end,
            Err(e) => {
                self.valid_end += e.valid_up_to();
                if e.error_len().is_some() {
                    self.pending = Some(Fault::InvalidUtf8 { offset: self.offset + self.valid_end as u64 });
                }
            }
        }
    }
}
