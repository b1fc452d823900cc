//! Reading an export, CSV (RFC 4180, one header line) or JSON Lines (one object a line, `null`
//! for no value), into numbered rows of seven fields. A row that cannot be split into the seven
//! fields carries its reason; an unreadable file or a wrong header ends the import.

use std::fs::File;
use std::io::{BufRead, BufReader};
use std::path::Path;

use anyhow::Context;
use serde_json::Value;

use super::row::{Fields, RowError, COLUMNS};

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    Csv,
    Jsonl,
}

impl Format {
    /// By the file's extension: `.csv`, or `.jsonl`/`.ndjson`.
    pub fn of_path(path: &Path) -> Option<Self> {
        let ext = path.extension()?.to_str()?.to_ascii_lowercase();
        match ext.as_str() {
            "csv" => Some(Self::Csv),
            "jsonl" | "ndjson" => Some(Self::Jsonl),
            _ => None,
        }
    }
}

/// One data row: its line (the header is line 1), and where the file has been read up to.
pub struct RawRow {
    pub line: u64,
    pub offset: u64,
    pub fields: Result<Fields, RowError>,
}

pub trait Rows: Iterator<Item = anyhow::Result<RawRow>> + Send {}
impl<T: Iterator<Item = anyhow::Result<RawRow>> + Send> Rows for T {}

pub fn open(path: &Path, format: Format) -> anyhow::Result<Box<dyn Rows>> {
    let file = File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let reader = BufReader::with_capacity(1 << 20, file);
    Ok(match format {
        Format::Csv => Box::new(CsvRows::new(reader)?),
        Format::Jsonl => Box::new(JsonRows {
            reader,
            line: 0,
            offset: 0,
            buffer: Vec::new(),
        }),
    })
}

struct CsvRows {
    reader: csv::Reader<BufReader<File>>,
    record: csv::ByteRecord,
}

impl CsvRows {
    fn new(reader: BufReader<File>) -> anyhow::Result<Self> {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .flexible(true)
            .from_reader(reader);
        let mut header = csv::ByteRecord::new();
        anyhow::ensure!(reader.read_byte_record(&mut header)?, "the file is empty");
        let names: Vec<String> = header
            .iter()
            .map(|h| {
                String::from_utf8_lossy(h)
                    .trim_start_matches('\u{feff}')
                    .trim()
                    .to_string()
            })
            .collect();
        anyhow::ensure!(
            names == COLUMNS,
            "the header line must be {} (found {})",
            COLUMNS.join(","),
            names.join(",")
        );
        Ok(Self {
            reader,
            record: csv::ByteRecord::new(),
        })
    }
}

impl Iterator for CsvRows {
    type Item = anyhow::Result<RawRow>;

    fn next(&mut self) -> Option<Self::Item> {
        match self.reader.read_byte_record(&mut self.record) {
            Ok(false) => None,
            Err(error) => Some(Err(error).context("unreadable CSV")),
            Ok(true) => {
                let line = self.record.position().map_or(0, csv::Position::line);
                let offset = self.reader.position().byte();
                Some(Ok(RawRow {
                    line,
                    offset,
                    fields: csv_fields(&self.record),
                }))
            }
        }
    }
}

fn csv_fields(record: &csv::ByteRecord) -> Result<Fields, RowError> {
    if record.len() != COLUMNS.len() {
        return Err(RowError::FieldCount {
            found: record.len(),
        });
    }
    let mut fields: Fields = Default::default();
    for (slot, raw) in fields.iter_mut().zip(record.iter()) {
        let text = std::str::from_utf8(raw).map_err(|_| RowError::NotUtf8)?;
        *slot = (!text.is_empty()).then(|| text.to_string());
    }
    Ok(fields)
}

struct JsonRows {
    reader: BufReader<File>,
    line: u64,
    offset: u64,
    buffer: Vec<u8>,
}

impl Iterator for JsonRows {
    type Item = anyhow::Result<RawRow>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            self.buffer.clear();
            let read = match self.reader.read_until(b'\n', &mut self.buffer) {
                Ok(0) => return None,
                Ok(n) => n,
                Err(error) => return Some(Err(error).context("unreadable JSON Lines")),
            };
            self.line += 1;
            self.offset += read as u64;
            if self.buffer.iter().all(u8::is_ascii_whitespace) {
                continue;
            }
            return Some(Ok(RawRow {
                line: self.line,
                offset: self.offset,
                fields: json_fields(&self.buffer),
            }));
        }
    }
}

fn json_fields(line: &[u8]) -> Result<Fields, RowError> {
    let text = std::str::from_utf8(line).map_err(|_| RowError::NotUtf8)?;
    let object = match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(object)) => object,
        Ok(_) => return Err(RowError::NotJson("another JSON value".into())),
        Err(error) => return Err(RowError::NotJson(error.to_string())),
    };
    if let Some(extra) = object.keys().find(|k| !COLUMNS.contains(&k.as_str())) {
        return Err(RowError::Fields(format!("unknown field {extra:?}")));
    }
    let mut fields: Fields = Default::default();
    for (slot, name) in fields.iter_mut().zip(COLUMNS) {
        *slot = match object.get(name) {
            None => return Err(RowError::Fields(format!("{name} missing"))),
            Some(Value::Null) => None,
            Some(Value::String(s)) => (!s.is_empty()).then(|| s.clone()),
            // A spreadsheet turned into JSON may give a phone or an ID as a number.
            Some(Value::Number(n)) => Some(n.to_string()),
            Some(_) => return Err(RowError::Fields(format!("{name} is not a string"))),
        };
    }
    Ok(fields)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_rows_need_the_seven_fields() {
        let good = br#"{"source":"hue-s","legacy_id":"HS1","full_name":"A","birthdate":null,"phone":null,"personal_id":"","email":null}"#;
        let fields = json_fields(good).expect("fields");
        assert_eq!(fields[0].as_deref(), Some("hue-s"));
        assert_eq!(fields[3], None);
        assert_eq!(fields[5], None);
        let missing = br#"{"source":"hue-s","legacy_id":"HS1","full_name":"A","birthdate":null,"phone":null,"personal_id":null}"#;
        assert_eq!(
            json_fields(missing),
            Err(RowError::Fields("email missing".into()))
        );
        let extra = br#"{"source":"s","legacy_id":"1","full_name":"A","birthdate":null,"phone":null,"personal_id":null,"email":null,"x":1}"#;
        assert!(json_fields(extra).is_err());
        assert!(json_fields(b"[1,2]").is_err());
        assert!(json_fields(b"{\"source\":").is_err());
    }

    #[test]
    fn formats_by_extension() {
        assert_eq!(Format::of_path(Path::new("a/b.CSV")), Some(Format::Csv));
        assert_eq!(Format::of_path(Path::new("b.jsonl")), Some(Format::Jsonl));
        assert_eq!(Format::of_path(Path::new("b.txt")), None);
    }
}
