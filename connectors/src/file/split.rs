//! File splits: one regular file each, and how far it has been read.

use std::fs;
use std::path::{Path, PathBuf};

use eddy_engine::source::Split;
use serde::{Deserialize, Serialize};

use crate::error::ConnectorError;

/// One input file and the position to resume reading it from.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct FileSplit {
    /// The file.
    pub path: PathBuf,
    /// Byte offset of the next line or record, right after the last one
    /// read (emitted, dead-lettered or blank). 0: the start of the file.
    /// For CSV, 0 means the header row comes first, and any other offset is
    /// past the header: a resumed reader reads the header names from the
    /// start of the file, then continues at `offset`, so no mid-file row is
    /// ever taken for the header.
    pub offset: u64,
    /// Lines before `offset`, so that line numbers in errors and dead
    /// letters stay right after a resume.
    pub line: u64,
}

impl FileSplit {
    /// A split reading `path` from the start.
    pub fn new(path: PathBuf) -> Self {
        FileSplit {
            path,
            offset: 0,
            line: 0,
        }
    }
}

impl Split for FileSplit {
    fn id(&self) -> String {
        self.path.display().to_string()
    }
}

/// Whether a directory entry is skipped, as Flink's default file filter
/// does: hidden files (`.name`) and marker files (`_SUCCESS`, `_tmp`).
fn is_hidden(name: &std::ffi::OsStr) -> bool {
    let name = name.as_encoded_bytes();
    name.first().is_some_and(|&c| c == b'.' || c == b'_')
}

/// The splits of `path`: the file itself, or every regular, non-hidden file
/// directly inside the directory (not recursive), sorted by name.
///
/// # Errors
/// [`ConnectorError::PathUnreadable`] when `path` does not exist or cannot
/// be listed.
pub(crate) fn list_splits(path: &Path) -> Result<Vec<FileSplit>, ConnectorError> {
    let unreadable = |source| ConnectorError::PathUnreadable {
        path: path.to_owned(),
        source,
    };
    let meta = fs::metadata(path).map_err(unreadable)?;
    if !meta.is_dir() {
        return Ok(vec![FileSplit::new(path.to_owned())]);
    }
    let mut files = Vec::new();
    for entry in fs::read_dir(path).map_err(unreadable)? {
        let entry = entry.map_err(unreadable)?;
        if is_hidden(&entry.file_name()) {
            continue;
        }
        let file = entry.path();
        // `fs::metadata` follows symbolic links: a link to a file counts.
        let is_file = fs::metadata(&file)
            .map_err(|source| ConnectorError::io("inspect", &file, source))?
            .is_file();
        if is_file {
            files.push(file);
        }
    }
    files.sort();
    Ok(files.into_iter().map(FileSplit::new).collect())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_directory_gives_one_split_per_visible_file_sorted_by_name() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        for name in ["b.jsonl", "a.jsonl", ".hidden", "_SUCCESS"] {
            fs::write(dir.path().join(name), "{}\n")?;
        }
        fs::create_dir(dir.path().join("sub"))?;
        let splits = list_splits(dir.path()).map_err(std::io::Error::other)?;
        let names: Vec<String> = splits
            .iter()
            .filter_map(|s| s.path.file_name())
            .map(|n| n.to_string_lossy().into_owned())
            .collect();
        assert_eq!(names, ["a.jsonl", "b.jsonl"]);
        assert!(splits.iter().all(|s| s.offset == 0 && s.line == 0));
        Ok(())
    }

    #[test]
    fn a_file_is_its_own_split() -> std::io::Result<()> {
        let dir = tempfile::tempdir()?;
        let file = dir.path().join("in.csv");
        fs::write(&file, "a\n1\n")?;
        let splits = list_splits(&file).map_err(std::io::Error::other)?;
        assert_eq!(splits, [FileSplit::new(file)]);
        Ok(())
    }

    #[test]
    fn a_missing_path_is_an_error_naming_the_path() {
        let err = list_splits(Path::new("/definitely/not/here.jsonl")).err();
        let msg = err.map(|e| e.to_string()).unwrap_or_default();
        assert!(msg.contains("'/definitely/not/here.jsonl'"), "{msg}");
        assert!(msg.contains("check that the path exists"), "{msg}");
    }
}
