//! Reading CSV records with exact positions.
//!
//! `csv::Reader` reports a record's position as where the reader was before
//! it, which is off after blank lines and CRLF line ends; a dead letter's
//! line number and a split's resume offset must be exact. So this module
//! drives `csv_core` (the same parser, RFC 4180 with the `csv` crate's
//! defaults: `,` delimiter, `"` quotes, LF, CR or CRLF line ends, blank lines
//! skipped) over its own buffered reader, counting bytes and line ends as
//! they are consumed.

use std::io::{self, BufRead, Seek, SeekFrom};

use csv::ByteRecord;
use csv_core::ReadRecordResult;

/// A streaming CSV record reader that knows its byte offset and line.
pub(crate) struct CsvRecords<R> {
    core: csv_core::Reader,
    input: R,
    /// Field bytes of the record being read.
    fields: Vec<u8>,
    /// End offsets of its fields in `fields`.
    ends: Vec<usize>,
    /// Bytes consumed since `offset` was last set.
    offset: u64,
    /// Line ends consumed, i.e. the number of complete lines before `offset`.
    lines: u64,
    /// The last byte consumed was a CR (so an LF right after it does not
    /// end another line).
    after_cr: bool,
}

impl<R: BufRead> CsvRecords<R> {
    /// A reader of `input`, which starts at byte `offset` after `lines` lines.
    pub fn new(input: R, offset: u64, lines: u64) -> Self {
        CsvRecords {
            core: csv_core::Reader::new(),
            input,
            fields: vec![0; 1024],
            ends: vec![0; 64],
            offset,
            lines,
            after_cr: false,
        }
    }

    /// Bytes consumed: where the next record starts (after any blank lines).
    pub fn offset(&self) -> u64 {
        self.offset
    }

    /// Complete lines before [`CsvRecords::offset`].
    pub fn lines(&self) -> u64 {
        self.lines
    }

    /// Whether the input is used up, so that no record follows. Only asks
    /// the input for more bytes when its buffer is empty.
    ///
    /// # Errors
    /// When the input cannot be read.
    pub fn at_end(&mut self) -> io::Result<bool> {
        Ok(self.input.fill_buf()?.is_empty())
    }

    /// Moves to byte `offset`, after `lines` lines (a position this reader
    /// reported after a record).
    ///
    /// # Errors
    /// When the input cannot seek.
    pub fn seek(&mut self, offset: u64, lines: u64) -> io::Result<()>
    where
        R: Seek,
    {
        self.input.seek(SeekFrom::Start(offset))?;
        self.core = csv_core::Reader::new();
        self.offset = offset;
        self.lines = lines;
        self.after_cr = false;
        Ok(())
    }

    /// Reads the next record into `record` and returns the 1-based line it
    /// starts on, or `None` at the end of input.
    ///
    /// # Errors
    /// Only I/O errors: the CSV parser accepts any input.
    pub fn read(&mut self, record: &mut ByteRecord) -> io::Result<Option<u64>> {
        record.clear();
        let (mut out_len, mut ends_len) = (0, 0);
        let mut start_line = None;
        loop {
            let input = self.input.fill_buf()?;
            let (result, n_in, n_out, n_ends) = self.core.read_record(
                input,
                &mut self.fields[out_len..],
                &mut self.ends[ends_len..],
            );
            let mut consumed = &input[..n_in];
            if start_line.is_none() {
                // Blank lines (CR, LF or CRLF only) come before the record.
                let blank = consumed
                    .iter()
                    .take_while(|&&b| b == b'\n' || b == b'\r')
                    .count();
                self.lines += count_line_ends(&consumed[..blank], &mut self.after_cr);
                consumed = &consumed[blank..];
                if !consumed.is_empty() {
                    start_line = Some(self.lines + 1);
                }
            }
            self.lines += count_line_ends(consumed, &mut self.after_cr);
            self.offset += n_in as u64;
            self.input.consume(n_in);
            out_len += n_out;
            ends_len += n_ends;
            match result {
                ReadRecordResult::InputEmpty => {}
                ReadRecordResult::OutputFull => {
                    let grown = self.fields.len() * 2;
                    self.fields.resize(grown, 0);
                }
                ReadRecordResult::OutputEndsFull => {
                    let grown = self.ends.len() * 2;
                    self.ends.resize(grown, 0);
                }
                ReadRecordResult::Record => {
                    let mut begin = 0;
                    for &end in &self.ends[..ends_len] {
                        record.push_field(&self.fields[begin..end]);
                        begin = end;
                    }
                    // The parser ends a CRLF record at the CR. Take the LF
                    // too, so that the offset after a record is where the
                    // next line starts and a resume counts lines right.
                    if self.after_cr && self.input.fill_buf()?.first() == Some(&b'\n') {
                        self.input.consume(1);
                        self.offset += 1;
                        self.after_cr = false;
                    }
                    return Ok(Some(start_line.unwrap_or(self.lines + 1)));
                }
                ReadRecordResult::End => return Ok(None),
            }
        }
    }
}

/// How many lines `bytes` ends: LF, CR and CRLF each count once.
/// `after_cr` carries "the previous byte was a CR" from call to call, so a
/// CRLF split between two reads is still one line end.
fn count_line_ends(bytes: &[u8], after_cr: &mut bool) -> u64 {
    let mut n = 0;
    for &b in bytes {
        n += u64::from(b == b'\r' || (b == b'\n' && !*after_cr));
        *after_cr = b == b'\r';
    }
    n
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<(u64, Vec<String>)> {
        records_with_buffer(text, 8 * 1024)
    }

    fn records_with_buffer(text: &str, capacity: usize) -> Vec<(u64, Vec<String>)> {
        let input = io::BufReader::with_capacity(capacity, text.as_bytes());
        let mut r = CsvRecords::new(input, 0, 0);
        let mut record = ByteRecord::new();
        let mut out = Vec::new();
        while let Some(line) = r.read(&mut record).unwrap_or_default() {
            let fields = record
                .iter()
                .map(|f| String::from_utf8_lossy(f).into_owned());
            out.push((line, fields.collect()));
        }
        out
    }

    fn lines_of(text: &str) -> Vec<u64> {
        records(text).into_iter().map(|r| r.0).collect()
    }

    #[test]
    fn line_numbers_are_exact_across_blank_lines_and_line_end_styles() {
        assert_eq!(lines_of("h\n1\n\n\nx\ny"), [1, 2, 5, 6]);
        assert_eq!(lines_of("h\r\n1\r\n\r\nx\r\ny\r\n"), [1, 2, 4, 5]);
        assert_eq!(lines_of("h\r1\r\rx\r"), [1, 2, 4]);
    }

    #[test]
    fn reads_split_anywhere_give_the_same_records_and_lines() {
        for text in [
            "h\r\n1\r\n\r\nx\r\ny\r\n",
            "h\r1\r\rx\r",
            "a,\"b\r\nc\"\r\n\n\r\nd,e",
        ] {
            assert_eq!(records_with_buffer(text, 1), records(text), "{text:?}");
            assert_eq!(records_with_buffer(text, 2), records(text), "{text:?}");
        }
    }

    #[test]
    fn a_quoted_field_may_span_lines() {
        let got = records("h,i\n\"a\nb\",c\n\nx,y\n");
        assert_eq!(got[1], (2, vec!["a\nb".to_owned(), "c".to_owned()]));
        assert_eq!(got[2].0, 5);
    }

    #[test]
    fn the_offset_after_a_record_resumes_at_the_next_one() -> io::Result<()> {
        let text = "h\r\n1\r\n\r\nx\r\ny\r\n";
        let mut r = CsvRecords::new(text.as_bytes(), 0, 0);
        let mut record = ByteRecord::new();
        r.read(&mut record)?;
        r.read(&mut record)?;
        let (offset, lines) = (r.offset(), r.lines());
        let rest = &text.as_bytes()[offset as usize..];
        let mut resumed = CsvRecords::new(rest, offset, lines);
        assert_eq!(resumed.read(&mut record)?, Some(4));
        assert_eq!(&record[0], b"x");
        assert_eq!(resumed.read(&mut record)?, Some(5));
        assert_eq!(resumed.read(&mut record)?, None);
        Ok(())
    }

    #[test]
    fn long_records_grow_the_buffers() -> io::Result<()> {
        let long = "z".repeat(5_000);
        let many = vec!["f"; 200].join(",");
        let text = format!("{long}\n{many}\n");
        let mut r = CsvRecords::new(text.as_bytes(), 0, 0);
        let mut record = ByteRecord::new();
        r.read(&mut record)?;
        assert_eq!(record[0].len(), 5_000);
        r.read(&mut record)?;
        assert_eq!(record.len(), 200);
        Ok(())
    }
}
