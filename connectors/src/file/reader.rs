//! The per-subtask reader of a [`FileSource`](super::FileSource).
//!
//! Reads its splits one file at a time, in the order they were assigned
//! (Flink's file source does the same), so only one file is open per
//! subtask. A split not yet started has no records, which holds this
//! subtask's watermark back until its turn comes (unless the watermark
//! strategy has an idleness timeout); a finished file no longer does.
//!
//! Buffers are reused: one line buffer for JSON lines and one record for
//! CSV, whatever the number of lines or files. Only a rejected record
//! allocates (its text and reason, for the dead letter).

use std::fs::File;
use std::io::{BufRead, BufReader, Seek, SeekFrom};
use std::marker::PhantomData;
use std::path::Path;

use csv::ByteRecord;
use eddy_engine::element::Data;
use eddy_engine::error::BoxError;
use eddy_engine::source::{ReadStatus, SourceOutput, SourceReader};
use tracing::debug;

use super::csv_records::CsvRecords;
use super::split::FileSplit;
use super::{FileFormat, OnDecodeError};
use crate::error::ConnectorError;
use crate::format::decode::{
    decode_csv_positional, decode_csv_record, decode_json_line, raw_line, raw_record, Decoded,
};

/// A file being read.
enum OpenFile {
    JsonLines(BufReader<File>),
    Csv {
        records: Box<CsvRecords<BufReader<File>>>,
        /// The header row, or `None` for files decoded by position.
        headers: Option<ByteRecord>,
    },
}

impl OpenFile {
    /// Whether every byte of the file has been consumed.
    fn at_end(&mut self) -> std::io::Result<bool> {
        match self {
            OpenFile::JsonLines(reader) => Ok(reader.fill_buf()?.is_empty()),
            OpenFile::Csv { records, .. } => records.at_end(),
        }
    }
}

#[derive(Debug)]
struct SplitState {
    split: FileSplit,
    done: bool,
}

/// Reads JSON-lines or CSV files into records of `T`.
pub struct FileReader<T> {
    format: FileFormat,
    on_error: OnDecodeError,
    splits: Vec<SplitState>,
    /// The split being read (its position in `splits`) and its open file.
    current: Option<(usize, OpenFile)>,
    line: Vec<u8>,
    record: ByteRecord,
    _out: PhantomData<fn() -> T>,
}

/// The outcome of reading one line or record.
enum Step<T> {
    /// The file has no more input.
    End,
    /// A line or record at 1-based line `line`.
    Read {
        line: u64,
        decoded: Decoded<T>,
        raw: RawInput,
    },
}

/// Where the text of a rejected input is, so it is only copied when needed.
enum RawInput {
    Line,
    Record,
}

impl<T: Data> FileReader<T> {
    pub(crate) fn new(format: FileFormat, on_error: OnDecodeError) -> Self {
        FileReader {
            format,
            on_error,
            splits: Vec::new(),
            current: None,
            line: Vec::with_capacity(1024),
            record: ByteRecord::new(),
            _out: PhantomData,
        }
    }

    /// Opens `split` at its position.
    fn open(format: FileFormat, split: &FileSplit) -> Result<OpenFile, ConnectorError> {
        let path = &split.path;
        let mut file = File::open(path).map_err(|e| ConnectorError::io("open", path, e))?;
        refuse_compressed(&mut file, path)?;
        match format {
            FileFormat::JsonLines => {
                if split.offset > 0 {
                    file.seek(SeekFrom::Start(split.offset))
                        .map_err(|e| ConnectorError::io("seek in", path, e))?;
                }
                Ok(OpenFile::JsonLines(BufReader::with_capacity(
                    64 * 1024,
                    file,
                )))
            }
            FileFormat::Csv { has_header } => {
                let input = BufReader::with_capacity(64 * 1024, file);
                let mut records = CsvRecords::new(input, 0, 0);
                // The header row names the fields; an empty file has none.
                let headers = if has_header {
                    let mut headers = ByteRecord::new();
                    records
                        .read(&mut headers)
                        .map_err(|e| ConnectorError::io("read the header of", path, e))?;
                    Some(headers)
                } else {
                    None
                };
                if split.offset > records.offset() {
                    records
                        .seek(split.offset, split.line)
                        .map_err(|e| ConnectorError::io("seek in", path, e))?;
                }
                Ok(OpenFile::Csv {
                    records: Box::new(records),
                    headers,
                })
            }
        }
    }

    /// Reads the next line or record of the open file, advancing the
    /// split's position past it.
    fn step(
        file: &mut OpenFile,
        split: &mut FileSplit,
        line: &mut Vec<u8>,
        record: &mut ByteRecord,
    ) -> Result<Step<T>, ConnectorError> {
        match file {
            OpenFile::JsonLines(reader) => {
                line.clear();
                let n = reader
                    .read_until(b'\n', line)
                    .map_err(|e| ConnectorError::io("read", &split.path, e))?;
                if n == 0 {
                    return Ok(Step::End);
                }
                split.offset += n as u64;
                split.line += 1;
                Ok(Step::Read {
                    line: split.line,
                    decoded: decode_json_line(line),
                    raw: RawInput::Line,
                })
            }
            OpenFile::Csv { records, headers } => {
                let start = records
                    .read(record)
                    .map_err(|e| ConnectorError::io("read", &split.path, e))?;
                split.offset = records.offset();
                split.line = records.lines();
                let Some(line) = start else {
                    return Ok(Step::End);
                };
                let decoded = match headers {
                    None => decode_csv_positional(record),
                    Some(headers) if record.len() == headers.len() => {
                        decode_csv_record(record, headers)
                    }
                    Some(headers) => Decoded::Invalid(format!(
                        "found {} fields, the header has {}",
                        record.len(),
                        headers.len()
                    )),
                };
                Ok(Step::Read {
                    line,
                    decoded,
                    raw: RawInput::Record,
                })
            }
        }
    }
}

/// Fails with a clear error when `file` starts like a gzip, zstd, bzip2 or
/// xz stream: read as text, every line would be a dead letter. Leaves the
/// file at its start.
fn refuse_compressed(file: &mut File, path: &Path) -> Result<(), ConnectorError> {
    const MAGIC: [(&[u8], &str, &str); 4] = [
        (b"\x1f\x8b", "gzip", "gunzip"),
        (b"\x28\xb5\x2f\xfd", "zstd", "unzstd"),
        (b"BZh", "bzip2", "bunzip2"),
        (b"\xfd7zXZ\x00", "xz", "unxz"),
    ];
    let mut head = [0u8; 6];
    let n =
        std::io::Read::read(file, &mut head).map_err(|e| ConnectorError::io("read", path, e))?;
    file.seek(SeekFrom::Start(0))
        .map_err(|e| ConnectorError::io("seek in", path, e))?;
    match MAGIC
        .iter()
        .find(|(magic, _, _)| head[..n].starts_with(magic))
    {
        Some((_, kind, tool)) => Err(ConnectorError::Compressed {
            path: path.to_owned(),
            kind,
            tool,
        }),
        None => Ok(()),
    }
}

/// What the reader found next, across its splits.
#[derive(Debug, PartialEq)]
enum Item<T> {
    /// A decoded record from split `.0`.
    Value(usize, T),
    /// A blank line: nothing to emit.
    Blank,
    /// An undecodable record, for the dead-letter stream.
    Rejected {
        split: usize,
        line: u64,
        reason: String,
        raw: String,
    },
    /// Split `.0` has been read to its end.
    SplitDone(usize),
    /// Every split has been read.
    AllDone,
}

impl<T: Data> FileReader<T> {
    /// Reads the next line or record, opening and finishing files as needed.
    /// Applies the decode-error policy: with [`OnDecodeError::Fail`] a bad
    /// record is an error naming the file and line.
    fn next_item(&mut self) -> Result<Item<T>, ConnectorError> {
        let (index, file) = match &mut self.current {
            Some((index, file)) => (*index, file),
            None => {
                let Some(index) = self.splits.iter().position(|s| !s.done) else {
                    return Ok(Item::AllDone);
                };
                let file = Self::open(self.format, &self.splits[index].split)?;
                debug!(split = %self.splits[index].split.path.display(), "file split opened");
                let (_, file) = self.current.insert((index, file));
                (index, file)
            }
        };
        let state = &mut self.splits[index];
        let (line, decoded, raw) =
            match Self::step(file, &mut state.split, &mut self.line, &mut self.record)? {
                Step::End => {
                    state.done = true;
                    self.current = None;
                    debug!(split = %state.split.path.display(), "file split finished");
                    return Ok(Item::SplitDone(index));
                }
                Step::Read { line, decoded, raw } => (line, decoded, raw),
            };
        let reason = match decoded {
            Decoded::Blank => return Ok(Item::Blank),
            Decoded::Value(value) => return Ok(Item::Value(index, value)),
            Decoded::Invalid(reason) => reason,
        };
        match self.on_error {
            OnDecodeError::DeadLetter => Ok(Item::Rejected {
                split: index,
                line,
                reason,
                raw: match raw {
                    RawInput::Line => raw_line(&self.line),
                    RawInput::Record => raw_record(&self.record),
                },
            }),
            OnDecodeError::Fail => Err(ConnectorError::Decode {
                path: state.split.path.clone(),
                line,
                format: self.format.name(),
                reason,
            }),
        }
    }
}

impl<T: Data> FileReader<T> {
    /// Finishes the open file if all of it has been read, and says which
    /// split that was: a poll that ends on a file's last line then leaves
    /// no exhausted split behind (for the watermark, and for a snapshot).
    fn finish_if_at_end(&mut self) -> Result<Option<usize>, ConnectorError> {
        let Some((index, file)) = &mut self.current else {
            return Ok(None);
        };
        let index = *index;
        let state = &mut self.splits[index];
        if !file
            .at_end()
            .map_err(|e| ConnectorError::io("read", &state.split.path, e))?
        {
            return Ok(None);
        }
        state.done = true;
        self.current = None;
        debug!(split = %state.split.path.display(), "file split finished");
        Ok(Some(index))
    }
}

impl<T: Data> SourceReader for FileReader<T> {
    type Out = T;
    type Split = FileSplit;

    fn add_splits(&mut self, splits: Vec<FileSplit>) -> Result<(), BoxError> {
        self.splits.extend(
            splits
                .into_iter()
                .map(|split| SplitState { split, done: false }),
        );
        Ok(())
    }

    fn poll_next(&mut self, out: &mut SourceOutput<'_, T>) -> Result<ReadStatus, BoxError> {
        // Blank and rejected lines count too, so that a poll always ends.
        let budget = out.room().max(1);
        let mut used = 0;
        while used < budget {
            match self.next_item()? {
                Item::Value(split, value) => out.emit(split, value),
                Item::Blank => {}
                Item::Rejected {
                    split,
                    line,
                    reason,
                    raw,
                } => out.dead_letter(split, format!("line {line}"), reason, raw),
                Item::SplitDone(split) => {
                    out.finish_split(split);
                    continue;
                }
                Item::AllDone => return Ok(ReadStatus::Finished),
            }
            used += 1;
        }
        if let Some(split) = self.finish_if_at_end()? {
            out.finish_split(split);
        }
        Ok(if self.splits.iter().all(|s| s.done) {
            ReadStatus::Finished
        } else {
            ReadStatus::MoreAvailable
        })
    }

    fn snapshot_splits(&self) -> Vec<FileSplit> {
        self.splits
            .iter()
            .filter(|s| !s.done)
            .map(|s| s.split.clone())
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use std::fs;
    use std::path::PathBuf;

    use eddy_engine::testing::{assert_resumes_exactly, Resumed};
    use serde::{Deserialize, Serialize};

    use super::super::FileSource;
    use super::*;

    #[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
    struct Payment {
        card: u64,
        amount: f64,
    }

    fn pay(card: u64, amount: f64) -> Payment {
        Payment { card, amount }
    }

    type TestResult = Result<(), Box<dyn std::error::Error>>;

    fn reader(
        format: FileFormat,
        on_error: OnDecodeError,
        paths: &[PathBuf],
    ) -> FileReader<Payment> {
        let mut r = FileReader::new(format, on_error);
        r.splits.extend(paths.iter().map(|p| SplitState {
            split: FileSplit::new(p.clone()),
            done: false,
        }));
        r
    }

    /// Reads items until `limit` or the end, like polls would.
    fn read(
        r: &mut FileReader<Payment>,
        limit: usize,
    ) -> Result<Vec<Item<Payment>>, ConnectorError> {
        let mut items = Vec::new();
        while items.len() < limit {
            match r.next_item()? {
                Item::AllDone => break,
                item => items.push(item),
            }
        }
        Ok(items)
    }

    fn values(items: &[Item<Payment>]) -> Vec<Payment> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Value(_, v) => Some(v.clone()),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn json_lines_skip_blank_lines_and_dead_letter_bad_ones_with_their_line() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.jsonl");
        let text = "{\"card\":1,\"amount\":2.5}\n\n{\"card\":\"x\"}\r\n{\"card\":2,\"amount\":1}";
        fs::write(&path, text)?;
        let mut r = reader(FileFormat::JsonLines, OnDecodeError::DeadLetter, &[path]);
        let items = read(&mut r, 100)?;
        assert_eq!(values(&items), [pay(1, 2.5), pay(2, 1.0)]);
        assert_eq!(items[1], Item::Blank);
        let Item::Rejected {
            split,
            line,
            reason,
            raw,
        } = &items[2]
        else {
            return Err(format!("expected a rejected line, got {:?}", items[2]).into());
        };
        assert_eq!((*split, *line, raw.as_str()), (0, 3, "{\"card\":\"x\"}"));
        assert!(reason.contains("invalid type"), "{reason}");
        assert_eq!(items.last(), Some(&Item::SplitDone(0)));
        assert!(r.snapshot_splits().is_empty());
        Ok(())
    }

    #[test]
    fn fail_on_error_names_the_file_and_line() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.jsonl");
        fs::write(&path, "{\"card\":1,\"amount\":2}\nnot json\n")?;
        let mut r = reader(FileFormat::JsonLines, OnDecodeError::Fail, &[path]);
        let err = read(&mut r, 100)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(
            err.contains("p.jsonl', line 2: cannot decode JSON lines record"),
            "{err}"
        );
        Ok(())
    }

    #[test]
    fn a_json_snapshot_resumes_at_the_next_line_with_line_numbers_intact() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.jsonl");
        let lines: Vec<String> = (0..10)
            .map(|i| format!("{{\"card\":{i},\"amount\":{i}}}"))
            .collect();
        fs::write(&path, lines.join("\n") + "\nbad\n")?;
        let mut first = reader(FileFormat::JsonLines, OnDecodeError::DeadLetter, &[path]);
        let before = read(&mut first, 4)?;
        let snapshot = first.snapshot_splits();
        assert_eq!(snapshot[0].line, 4);
        let mut second: FileReader<Payment> =
            FileReader::new(FileFormat::JsonLines, OnDecodeError::DeadLetter);
        second.add_splits(snapshot).map_err(|e| e.to_string())?;
        let after = read(&mut second, 100)?;
        let all: Vec<u64> = values(&before)
            .iter()
            .chain(&values(&after))
            .map(|p| p.card)
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(after
            .iter()
            .any(|i| matches!(i, Item::Rejected { line: 11, .. })));
        Ok(())
    }

    /// The line and raw text of every rejected item.
    fn rejected(items: &[Item<Payment>]) -> Vec<(u64, &str)> {
        items
            .iter()
            .filter_map(|i| match i {
                Item::Rejected { line, raw, .. } => Some((*line, raw.as_str())),
                _ => None,
            })
            .collect()
    }

    #[test]
    fn csv_decodes_by_header_and_dead_letters_bad_rows_with_their_line() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.csv");
        fs::write(&path, "amount,card\n2.5,1\n\nlots,2\n3,4,5\n\"1.0\",3\n")?;
        let mut r = reader(
            FileFormat::Csv { has_header: true },
            OnDecodeError::DeadLetter,
            &[path],
        );
        let items = read(&mut r, 100)?;
        assert_eq!(values(&items), [pay(1, 2.5), pay(3, 1.0)]);
        assert_eq!(rejected(&items), [(4, "lots,2"), (5, "3,4,5")]);
        Ok(())
    }

    #[test]
    fn csv_without_a_header_decodes_by_field_order_and_resumes_anywhere() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.csv");
        // The first row is data, not a header: none of it may be lost.
        fs::write(&path, "1,2.5\n2,lots\n\n3,1.0\n4\n5,0.5")?;
        let no_header = FileFormat::Csv { has_header: false };
        let mut r = reader(
            no_header,
            OnDecodeError::DeadLetter,
            std::slice::from_ref(&path),
        );
        let items = read(&mut r, 100)?;
        assert_eq!(values(&items), [pay(1, 2.5), pay(3, 1.0), pay(5, 0.5)]);
        assert_eq!(rejected(&items), [(2, "2,lots"), (5, "4")]);
        let cuts = resumes_exactly(&FileSource::<Payment>::csv(&path).has_header(false))?;
        assert!(cuts.len() > 3, "cut at every record");
        Ok(())
    }

    #[test]
    fn a_csv_snapshot_resumes_after_the_header_at_the_next_record() -> TestResult {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.csv");
        let mut text = String::from("card,amount\n");
        for i in 0..10 {
            text.push_str(&format!("{i},\"{i}.5\"\n"));
        }
        text.push_str("x,y\n");
        fs::write(&path, text)?;
        let mut first = reader(
            FileFormat::Csv { has_header: true },
            OnDecodeError::DeadLetter,
            &[path],
        );
        let before = read(&mut first, 3)?;
        let mut second: FileReader<Payment> = FileReader::new(
            FileFormat::Csv { has_header: true },
            OnDecodeError::DeadLetter,
        );
        second
            .add_splits(first.snapshot_splits())
            .map_err(|e| e.to_string())?;
        let after = read(&mut second, 100)?;
        let all: Vec<u64> = values(&before)
            .iter()
            .chain(&values(&after))
            .map(|p| p.card)
            .collect();
        assert_eq!(all, (0..10).collect::<Vec<_>>());
        assert!(
            after
                .iter()
                .any(|i| matches!(i, Item::Rejected { line: 12, .. })),
            "{after:?}"
        );
        Ok(())
    }

    #[test]
    fn files_are_read_one_after_another_and_each_is_finished() -> TestResult {
        let dir = tempfile::tempdir()?;
        let (a, b) = (dir.path().join("a.jsonl"), dir.path().join("b.jsonl"));
        fs::write(&a, "{\"card\":1,\"amount\":1}\n")?;
        fs::write(&b, "")?;
        let mut r = reader(FileFormat::JsonLines, OnDecodeError::DeadLetter, &[a, b]);
        let items = read(&mut r, 100)?;
        assert_eq!(
            items,
            [
                Item::Value(0, pay(1, 1.0)),
                Item::SplitDone(0),
                Item::SplitDone(1)
            ]
        );
        Ok(())
    }

    /// The lines of a JSON-lines file of payments `cards`, with a bad line
    /// after each card in `bad_after` and a blank line after card 3.
    fn json_lines(cards: std::ops::Range<u64>, bad_after: &[u64]) -> String {
        let mut text = String::new();
        for card in cards {
            text.push_str(&format!("{{\"card\":{card},\"amount\":{card}.25}}\n"));
            if bad_after.contains(&card) {
                text.push_str(&format!("{{\"card\":\"bad {card}\"}}\n"));
            }
            if card == 3 {
                text.push('\n');
            }
        }
        text
    }

    /// Checks every cut at several poll sizes; returns the cuts at room 1
    /// (a cut after every line).
    fn resumes_exactly(
        source: &FileSource<Payment>,
    ) -> Result<Vec<Resumed<Payment, FileSplit>>, BoxError> {
        for room in [2, 3, 100] {
            assert_resumes_exactly(source, room)?;
        }
        assert_resumes_exactly(source, 1)
    }

    #[test]
    fn a_json_lines_reader_resumes_from_any_snapshot() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.jsonl");
        // No line end after the last line.
        fs::write(&path, json_lines(0..9, &[]).trim_end())?;
        let cuts = resumes_exactly(&FileSource::json_lines(&path))?;
        let whole = &cuts[0].contents;
        assert_eq!(
            whole
                .records
                .iter()
                .map(|r| r.value.card)
                .collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        // A poll that ends on the last line finishes the file: no exhausted
        // split is left in a snapshot.
        assert!(cuts
            .iter()
            .all(|c| c.snapshot.is_empty() == (c.before == 9)));
        Ok(())
    }

    #[test]
    fn undecodable_lines_before_and_after_a_snapshot_are_dead_lettered_once() -> Result<(), BoxError>
    {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.jsonl");
        fs::write(&path, json_lines(0..8, &[0, 2, 7]))?;
        let cuts = resumes_exactly(&FileSource::json_lines(&path))?;
        let positions: Vec<&str> = cuts[0]
            .contents
            .dead_letters
            .iter()
            .map(|d| d.position.as_str())
            .collect();
        assert_eq!(positions, ["line 2", "line 5", "line 12"]);
        // Cuts right after a bad line (the snapshot's line is the bad one),
        // and right before the last one (then the file is finished).
        for bad_line in [2, 5, 11] {
            assert!(cuts
                .iter()
                .any(|c| c.snapshot.first().is_some_and(|s| s.line == bad_line)));
        }
        Ok(())
    }

    #[test]
    fn a_csv_reader_resumes_from_any_snapshot_without_rereading_the_header_as_a_row(
    ) -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        let path = dir.path().join("p.csv");
        // CRLF line ends, a blank line, a quoted field spanning two lines,
        // rows that do not decode, and no line end at the end. Were a row
        // read as the header after a resume, no later row would decode.
        let mut text = String::from("amount,card\r\n");
        for card in 0..8 {
            text.push_str(&format!("{card}.5,{card}\r\n"));
            if card == 2 {
                text.push_str("\r\nlots,9\r\n");
            }
            if card == 5 {
                text.push_str("\"x\r\ny\",9\r\n");
            }
        }
        fs::write(&path, format!("{text}\"4.5\",\"8\""))?;
        let cuts = resumes_exactly(&FileSource::csv(&path))?;
        let whole = &cuts[0].contents;
        assert_eq!(
            whole
                .records
                .iter()
                .map(|r| r.value.card)
                .collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        let positions: Vec<&str> = whole
            .dead_letters
            .iter()
            .map(|d| d.position.as_str())
            .collect();
        assert_eq!(positions, ["line 6", "line 10"]);
        assert!(cuts
            .iter()
            .any(|c| c.snapshot.first().is_some_and(|s| s.line > 1)));
        Ok(())
    }

    #[test]
    fn a_directory_resumes_with_finished_files_left_out() -> Result<(), BoxError> {
        let dir = tempfile::tempdir()?;
        fs::write(dir.path().join("a.jsonl"), json_lines(0..3, &[1]))?;
        fs::write(dir.path().join("b.jsonl"), "")?;
        fs::write(dir.path().join("c.jsonl"), json_lines(3..7, &[]))?;
        fs::write(dir.path().join("d.jsonl"), json_lines(7..9, &[8]))?;
        let cuts = resumes_exactly(&FileSource::json_lines(dir.path()))?;
        let whole = &cuts[0].contents;
        assert_eq!(
            whole
                .records
                .iter()
                .map(|r| r.value.card)
                .collect::<Vec<_>>(),
            (0..9).collect::<Vec<_>>()
        );
        assert_eq!(whole.dead_letters.len(), 2);
        let names = |c: &Resumed<Payment, FileSplit>| -> Vec<String> {
            c.snapshot
                .iter()
                .filter_map(|s| s.path.file_name())
                .map(|n| n.to_string_lossy().into_owned())
                .collect()
        };
        // Some cut has a.jsonl finished and c.jsonl started.
        assert!(cuts
            .iter()
            .any(|c| names(c) == ["c.jsonl", "d.jsonl"] && c.snapshot[0].offset > 0));
        // Some cut falls right after the last line of a.jsonl.
        assert!(cuts
            .iter()
            .any(|c| c.before == 3 && names(c)[0] != "a.jsonl"));
        Ok(())
    }

    #[test]
    fn a_file_that_vanished_is_an_error_naming_it() {
        let mut r = reader(
            FileFormat::Csv { has_header: true },
            OnDecodeError::DeadLetter,
            &[PathBuf::from("/no/such/file.csv")],
        );
        let err = read(&mut r, 1)
            .err()
            .map(|e| e.to_string())
            .unwrap_or_default();
        assert!(err.contains("cannot open '/no/such/file.csv'"), "{err}");
    }

    #[test]
    fn a_compressed_file_is_refused_with_the_tool_that_decompresses_it() -> TestResult {
        let dir = tempfile::tempdir()?;
        let gz = dir.path().join("bids.csv.gz");
        fs::write(&gz, b"\x1f\x8b\x08\x00rest-of-a-gzip-stream")?;
        let zst = dir.path().join("bids.jsonl.zst");
        fs::write(&zst, b"\x28\xb5\x2f\xfdframe")?;
        for (path, format, tool) in [
            (gz, FileFormat::Csv { has_header: false }, "gunzip"),
            (zst, FileFormat::JsonLines, "unzstd"),
        ] {
            let mut r = reader(
                format,
                OnDecodeError::DeadLetter,
                std::slice::from_ref(&path),
            );
            let err = read(&mut r, 10)
                .err()
                .map(|e| e.to_string())
                .unwrap_or_default();
            assert!(err.contains("compressed") && err.contains(tool), "{err}");
            assert!(err.contains(&path.display().to_string()), "{err}");
        }
        Ok(())
    }
}
