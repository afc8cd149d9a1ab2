//! Decoding one JSON line, one CSV record or one message into a user type,
//! and the text of a record that could not be decoded. Pure functions, no
//! I/O; the file and Kafka connectors share them.

use csv::ByteRecord;
use serde::de::DeserializeOwned;

/// What one input line or record turned out to be.
#[derive(Debug, PartialEq)]
pub(crate) enum Decoded<T> {
    /// An empty or blank line: skipped.
    Blank,
    /// A decoded record.
    Value(T),
    /// Not decodable; the decoder's reason.
    Invalid(String),
}

/// The UTF-8 byte-order mark some editors put at the start of a file.
const BOM: &[u8] = b"\xEF\xBB\xBF";

/// Decodes one line of a JSON-lines file (with or without its line end).
pub(crate) fn decode_json_line<T: DeserializeOwned>(line: &[u8]) -> Decoded<T> {
    let line = line.strip_prefix(BOM).unwrap_or(line);
    if line.iter().all(u8::is_ascii_whitespace) {
        return Decoded::Blank;
    }
    match serde_json::from_slice(line) {
        Ok(value) => Decoded::Value(value),
        Err(e) => Decoded::Invalid(e.to_string()),
    }
}

/// Decodes one CSV record by its header names.
pub(crate) fn decode_csv_record<T: DeserializeOwned>(
    record: &ByteRecord,
    headers: &ByteRecord,
) -> Decoded<T> {
    match record.deserialize(Some(headers)) {
        Ok(value) => Decoded::Value(value),
        Err(e) => Decoded::Invalid(csv_reason(&e)),
    }
}

/// Decodes one CSV record by position: the fields of `T` in declaration
/// order (for input without a header row).
pub(crate) fn decode_csv_positional<T: DeserializeOwned>(record: &ByteRecord) -> Decoded<T> {
    match record.deserialize(None) {
        Ok(value) => Decoded::Value(value),
        Err(e) => Decoded::Invalid(csv_reason(&e)),
    }
}

/// The reason a CSV record was rejected, without the `csv` crate's idea of
/// its position (the dead letter carries the exact line).
fn csv_reason(err: &csv::Error) -> String {
    match err.kind() {
        csv::ErrorKind::Deserialize { err, .. } => err.to_string(),
        csv::ErrorKind::Utf8 { err, .. } => err.to_string(),
        _ => err.to_string(),
    }
}

/// A line as text for a dead letter: lossy UTF-8, without its line end.
pub(crate) fn raw_line(line: &[u8]) -> String {
    let line = line.strip_suffix(b"\n").unwrap_or(line);
    let line = line.strip_suffix(b"\r").unwrap_or(line);
    String::from_utf8_lossy(line).into_owned()
}

/// A CSV record as text for a dead letter, re-quoted as CSV.
pub(crate) fn raw_record(record: &ByteRecord) -> String {
    let mut writer = csv::WriterBuilder::new()
        .terminator(csv::Terminator::Any(b'\n'))
        .from_writer(Vec::new());
    let bytes = match writer.write_byte_record(record) {
        Ok(()) => writer.into_inner().unwrap_or_default(),
        // Writing into a Vec cannot fail for I/O reasons; fall back to the
        // plain field bytes rather than lose the record.
        Err(_) => record.as_slice().to_vec(),
    };
    raw_line(&bytes)
}

#[cfg(test)]
mod tests {
    use serde::Deserialize;

    use super::*;

    #[derive(Debug, PartialEq, Deserialize)]
    struct Reading {
        sensor: String,
        value: f64,
    }

    fn reading(sensor: &str, value: f64) -> Reading {
        Reading {
            sensor: sensor.into(),
            value,
        }
    }

    #[test]
    fn a_json_line_decodes_with_or_without_its_line_end() {
        let expected = Decoded::Value(reading("a", 1.5));
        assert_eq!(
            decode_json_line::<Reading>(br#"{"sensor":"a","value":1.5}"#),
            expected
        );
        let expected = Decoded::Value(reading("a", 1.5));
        assert_eq!(
            decode_json_line::<Reading>(b"{\"sensor\":\"a\",\"value\":1.5}\r\n"),
            expected
        );
    }

    #[test]
    fn blank_lines_are_skipped_not_rejected() {
        for line in [&b""[..], b"\n", b"   \r\n", b"\xEF\xBB\xBF\n"] {
            assert_eq!(decode_json_line::<Reading>(line), Decoded::Blank);
        }
    }

    #[test]
    fn a_bad_json_line_is_rejected_with_the_decoders_reason() {
        let Decoded::Invalid(reason) = decode_json_line::<Reading>(br#"{"sensor":"a"}"#) else {
            panic!("a record without `value` must be rejected");
        };
        assert!(reason.contains("missing field `value`"), "{reason}");
        assert!(matches!(
            decode_json_line::<Reading>(b"{not json"),
            Decoded::Invalid(_)
        ));
        assert!(matches!(
            decode_json_line::<Reading>(b"\xFF\xFE"),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn a_byte_order_mark_on_the_first_line_is_ignored() {
        let line = b"\xEF\xBB\xBF{\"sensor\":\"b\",\"value\":2}";
        assert_eq!(
            decode_json_line::<Reading>(line),
            Decoded::Value(reading("b", 2.0))
        );
    }

    #[test]
    fn a_csv_record_decodes_by_header_name_in_any_column_order() {
        let headers = ByteRecord::from(vec!["value", "sensor"]);
        let record = ByteRecord::from(vec!["3.25", "c"]);
        assert_eq!(
            decode_csv_record::<Reading>(&record, &headers),
            Decoded::Value(reading("c", 3.25))
        );
        let bad = ByteRecord::from(vec!["hot", "c"]);
        let Decoded::Invalid(reason) = decode_csv_record::<Reading>(&bad, &headers) else {
            panic!("a non-number `value` must be rejected");
        };
        assert!(reason.contains("float"), "{reason}");
    }

    #[test]
    fn a_csv_record_without_header_decodes_by_field_order() {
        let record = ByteRecord::from(vec!["d", "4.5"]);
        assert_eq!(
            decode_csv_positional::<Reading>(&record),
            Decoded::Value(reading("d", 4.5))
        );
        let short = ByteRecord::from(vec!["d"]);
        assert!(matches!(
            decode_csv_positional::<Reading>(&short),
            Decoded::Invalid(_)
        ));
    }

    #[test]
    fn raw_text_keeps_the_record_readable() {
        assert_eq!(raw_line(b"abc\r\n"), "abc");
        assert_eq!(raw_line(b"a\xFFb"), "a\u{FFFD}b");
        let record = ByteRecord::from(vec!["x", "has,comma", "q\"uote"]);
        assert_eq!(raw_record(&record), r#"x,"has,comma","q""uote""#);
    }
}
