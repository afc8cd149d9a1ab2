//! Encoding records as rows of a file: JSON lines or CSV.

use std::io::Write;
use std::path::Path;

use eddy_engine::element::Record;
use serde::Serialize;

use crate::error::ConnectorError;

/// How a file sink writes records.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RowFormat {
    /// One JSON value per line (`.jsonl`).
    JsonLines,
    /// CSV (`.csv`) with a header row from the record type's field names,
    /// written at the top of each file.
    Csv,
}

impl RowFormat {
    /// The file name extension, with its dot.
    pub fn extension(self) -> &'static str {
        match self {
            RowFormat::JsonLines => ".jsonl",
            RowFormat::Csv => ".csv",
        }
    }

    /// Appends `records` to `out`, the file at `path`; `first` says whether
    /// they are the first rows of the file (CSV writes its header then).
    pub(crate) fn write<W: Write, T: Serialize>(
        self,
        out: &mut W,
        records: &[Record<T>],
        first: bool,
        path: &Path,
    ) -> Result<(), ConnectorError> {
        match self {
            RowFormat::JsonLines => records
                .iter()
                .try_for_each(|r| write_json_line(out, &r.value, path)),
            RowFormat::Csv => {
                let mut csv = csv::WriterBuilder::new()
                    .has_headers(first)
                    .from_writer(&mut *out);
                for r in records {
                    csv.serialize(&r.value).map_err(|e| csv_error(e, path))?;
                }
                csv.flush()
                    .map_err(|e| ConnectorError::io("write", path, e))
            }
        }
    }
}

fn csv_error(e: csv::Error, path: &Path) -> ConnectorError {
    match e.into_kind() {
        csv::ErrorKind::Io(e) => ConnectorError::io("write", path, e),
        other => ConnectorError::Encode {
            path: path.to_owned(),
            reason: format!(
                "as CSV: {other:?} (CSV rows need flat structs: no nested structs, lists or maps)"
            ),
        },
    }
}

/// Appends `value` as one JSON line to `out`.
fn write_json_line<W: Write, T: Serialize>(
    out: &mut W,
    value: &T,
    path: &Path,
) -> Result<(), ConnectorError> {
    serde_json::to_writer(&mut *out, value).map_err(|e| match e.io_error_kind() {
        Some(kind) => ConnectorError::io("write", path, std::io::Error::new(kind, e)),
        None => ConnectorError::Encode {
            path: path.to_owned(),
            reason: e.to_string(),
        },
    })?;
    out.write_all(b"\n")
        .map_err(|e| ConnectorError::io("write", path, e))
}

#[cfg(test)]
mod tests {
    use std::collections::HashMap;

    use eddy_engine::element::Timestamp;

    use super::*;

    #[derive(Serialize)]
    struct Alert {
        card: u64,
        reason: &'static str,
    }

    fn records(alerts: Vec<Alert>) -> Vec<Record<Alert>> {
        alerts
            .into_iter()
            .map(|value| Record {
                ts: Timestamp(0),
                value,
            })
            .collect()
    }

    #[test]
    fn csv_rows_have_one_header_per_file_and_are_quoted() -> Result<(), ConnectorError> {
        let path = Path::new("out/part-0.csv");
        let mut out = Vec::new();
        let first = records(vec![Alert {
            card: 1,
            reason: "big, fast",
        }]);
        RowFormat::Csv.write(&mut out, &first, true, path)?;
        let more = records(vec![Alert {
            card: 2,
            reason: "x",
        }]);
        RowFormat::Csv.write(&mut out, &more, false, path)?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "card,reason\n1,\"big, fast\"\n2,x\n"
        );
        Ok(())
    }

    #[test]
    fn each_value_becomes_one_json_line() -> Result<(), ConnectorError> {
        let mut out = Vec::new();
        let path = Path::new("out/part-0.jsonl");
        write_json_line(
            &mut out,
            &Alert {
                card: 7,
                reason: "a\nb",
            },
            path,
        )?;
        write_json_line(
            &mut out,
            &Alert {
                card: 8,
                reason: "",
            },
            path,
        )?;
        assert_eq!(
            String::from_utf8_lossy(&out),
            "{\"card\":7,\"reason\":\"a\\nb\"}\n{\"card\":8,\"reason\":\"\"}\n"
        );
        Ok(())
    }

    #[test]
    fn a_value_json_cannot_encode_is_an_encode_error_naming_the_file() {
        let mut bad = HashMap::new();
        bad.insert(vec![1u8], 1);
        let err = write_json_line(&mut Vec::new(), &bad, Path::new("out/part-3.jsonl")).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(
            msg.contains("'out/part-3.jsonl'") && msg.contains("encode"),
            "{msg}"
        );
    }
}
