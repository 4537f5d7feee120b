//! [`PipedRows`]: a [`CsvReader`] on its own thread, handing rows over in batches, so that
//! decoding and parsing overlap with the judging and indexing of earlier rows. On two cores a
//! 1,000,000-row pass then costs about the slower of the two halves instead of their sum.
//!
//! The rows, rejections and file errors come out exactly as the reader gives them, in order
//! ([`next_row`](PipedRows::next_row) has [`CsvReader::next_row`]'s contract). Only a few
//! batches are in flight, so memory stays flat; dropping the consumer stops the reader.

use std::io::Read;
use std::sync::mpsc::{Receiver, SyncSender, TryRecvError, sync_channel};
use std::thread::JoinHandle;

use super::reader::CsvReader;
use super::{FileError, Row, RowError};

/// Rows per batch: enough to make the hand-over cost nothing per row, few enough to start
/// the consumer at once.
const BATCH_ROWS: usize = 256;
/// Batches read ahead of the consumer.
const AHEAD: usize = 2;

/// A batch of consecutive reader items.
#[derive(Default)]
struct Batch {
    /// The rows' texts one after another (each a concatenation of whole UTF-8 values).
    text: String,
    /// `columns` trimmed value ranges per row, as positions in `text`.
    values: Vec<(usize, usize)>,
    items: Vec<Item>,
    /// After the last item: the end of the input, or the file error that stopped the reader.
    end: Option<Result<(), FileError>>,
}

enum Item {
    /// A row whose values start at `values[at]`, and what the precheck said of it.
    Row {
        line: u64,
        at: usize,
        prechecked: bool,
    },
    Rejected(RowError),
    /// A rejection already handed out.
    Taken,
}

/// Rows of a [`CsvReader`] running on another thread. See the module documentation.
pub struct PipedRows {
    full: Receiver<Batch>,
    spent: SyncSender<Batch>,
    batch: Batch,
    next: usize,
    columns: usize,
    done: bool,
    reader: Option<JoinHandle<()>>,
}

impl PipedRows {
    /// Moves `reader` (its header already read) to a new thread.
    pub fn spawn<R: Read + Send + 'static>(reader: CsvReader<R>) -> Self {
        Self::spawn_with(reader, |_| false)
    }

    /// [`spawn`](Self::spawn), also running `precheck` on each row on the reader's thread:
    /// its answer comes with the row as [`Row::prechecked`]. This moves checks that need
    /// only the row off the consumer's thread.
    pub fn spawn_with<R, P>(mut reader: CsvReader<R>, mut precheck: P) -> Self
    where
        R: Read + Send + 'static,
        P: FnMut(&Row<'_>) -> bool + Send + 'static,
    {
        let columns = reader.columns().len();
        let (full_tx, full) = sync_channel::<Batch>(AHEAD);
        let (spent, spent_rx) = sync_channel::<Batch>(AHEAD + 2);
        let handle = std::thread::Builder::new()
            .name("csv-reader".into())
            .spawn(move || {
                loop {
                    let mut batch = match spent_rx.try_recv() {
                        Ok(batch) => batch,
                        Err(TryRecvError::Empty) => Batch::default(),
                        Err(TryRecvError::Disconnected) => return,
                    };
                    fill(&mut reader, &mut precheck, &mut batch);
                    let last = batch.end.is_some();
                    if full_tx.send(batch).is_err() || last {
                        return;
                    }
                }
            })
            .expect("spawning the CSV reader thread");
        PipedRows { full, spent, batch: Batch::default(), next: 0, columns, done: false, reader: Some(handle) }
    }

    /// The next row, as [`CsvReader::next_row`] gives it.
    #[allow(clippy::type_complexity)]
    pub fn next_row(&mut self) -> Result<Option<Result<Row<'_>, RowError>>, FileError> {
        while self.next == self.batch.items.len() {
            if self.done {
                return Ok(None);
            }
            if let Some(end) = self.batch.end.take() {
                self.done = true;
                end?;
                return Ok(None);
            }
            let next = match self.full.recv() {
                Ok(batch) => batch,
                // The reader thread is gone without a last batch: it panicked.
                Err(_) => match self.reader.take().map(JoinHandle::join) {
                    Some(Err(panic)) => std::panic::resume_unwind(panic),
                    _ => unreachable!("the CSV reader thread ended without its last batch"),
                },
            };
            let spent = std::mem::replace(&mut self.batch, next);
            // A full return channel only means the reader has spares already.
            let _ = self.spent.try_send(spent);
            self.next = 0;
        }
        let i = self.next;
        self.next += 1;
        Ok(Some(match &mut self.batch.items[i] {
            &mut Item::Row { line, at, prechecked } => {
                Ok(Row::from_parts(line, &self.batch.text, &self.batch.values[at..at + self.columns], prechecked))
            }
            item => match std::mem::replace(item, Item::Taken) {
                Item::Rejected(e) => Err(e),
                _ => unreachable!("each item is handed out once"),
            },
        }))
    }
}

impl Drop for PipedRows {
    fn drop(&mut self) {
        // Closing the channels makes the reader's next hand-over fail, so it stops within a batch.
        let (_, closed) = sync_channel(0);
        drop(std::mem::replace(&mut self.full, closed));
        if let Some(handle) = self.reader.take()
            && let Err(panic) = handle.join()
            && !std::thread::panicking()
        {
            std::panic::resume_unwind(panic);
        }
    }
}

/// Reads the next items into `batch` (emptied first) until it is full or the reader ends.
fn fill<R: Read>(reader: &mut CsvReader<R>, precheck: &mut impl FnMut(&Row<'_>) -> bool, batch: &mut Batch) {
    batch.text.clear();
    batch.values.clear();
    batch.items.clear();
    batch.end = None;
    while batch.items.len() < BATCH_ROWS {
        match reader.next_row() {
            Ok(Some(Ok(row))) => {
                let (base, at) = (batch.text.len(), batch.values.len());
                let (text, values) = row.parts();
                batch.text.push_str(text);
                batch.values.extend(values.iter().map(|&(start, end)| (base + start, base + end)));
                batch.items.push(Item::Row { line: row.line(), at, prechecked: precheck(&row) });
            }
            Ok(Some(Err(e))) => batch.items.push(Item::Rejected(e)),
            Ok(None) => {
                batch.end = Some(Ok(()));
                return;
            }
            Err(e) => {
                batch.end = Some(Err(e));
                return;
            }
        }
    }
}
