//! Finding and reading the files `tale check` is given: folders are walked
//! for `*.yaml`/`*.yml`, and each file is classified by its name.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::check::SourceFile;
use crate::diagnostic::{Code, Diagnostic};
use crate::span::Span;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FileKind {
    Story,
    /// `*.test.yaml`: story tests, checked by `tale test`.
    StoryTest,
    /// `*.mocks.yaml`: dry-run mocks, read by `tale dry-run --mocks`.
    Mocks,
    /// `resources.yaml`: shared resources.
    Resources,
}

pub fn classify(path: &Path) -> Option<FileKind> {
    let name = path.file_name()?.to_str()?;
    let stem = name.strip_suffix(".yaml").or_else(|| name.strip_suffix(".yml"))?;
    Some(if stem.ends_with(".test") {
        FileKind::StoryTest
    } else if stem.ends_with(".mocks") {
        FileKind::Mocks
    } else if stem == "resources" {
        FileKind::Resources
    } else {
        FileKind::Story
    })
}

/// The files found under `paths`, sorted, each read; unreadable ones are diagnostics.
#[derive(Debug, Default)]
pub struct Discovered {
    pub stories: Vec<SourceFile>,
    /// Story files that could not be read (each has a diagnostic).
    pub unreadable: usize,
    pub resources: Vec<SourceFile>,
    pub skipped: Vec<(PathBuf, FileKind)>,
    pub diagnostics: Vec<Diagnostic>,
}

pub fn discover(paths: &[PathBuf]) -> Discovered {
    let mut found = Discovered::default();
    for path in paths {
        let mut files = Vec::new();
        if path.is_dir() {
            walk(path, &mut files, &mut found.diagnostics);
            files.sort();
        } else {
            files.push(path.clone());
        }
        for file in files {
            match classify(&file) {
                Some(FileKind::Story) if path.is_dir() || file.exists() => {
                    let before = found.stories.len();
                    read_into(&file, &mut found.stories, &mut found.diagnostics);
                    found.unreadable += usize::from(found.stories.len() == before);
                }
                Some(FileKind::Story) => {
                    found.unreadable += 1;
                    found.diagnostics.push(unreadable(&file, "no such file"));
                }
                Some(FileKind::Resources) => read_into(&file, &mut found.resources, &mut found.diagnostics),
                Some(kind) => found.skipped.push((file, kind)),
                None if path.is_dir() => {}
                // A file named explicitly is checked whatever its extension.
                None => read_into(&file, &mut found.stories, &mut found.diagnostics),
            }
        }
    }
    found
}

/// Story files of one folder (not recursive), for finding sub-stories.
pub fn library(dir: &Path) -> Vec<SourceFile> {
    let mut out = Vec::new();
    let mut ignored = Vec::new();
    let mut files = Vec::new();
    walk(dir, &mut files, &mut ignored);
    files.sort();
    for f in files {
        if classify(&f) == Some(FileKind::Story) {
            read_into(&f, &mut out, &mut ignored);
        }
    }
    out
}

fn walk(dir: &Path, files: &mut Vec<PathBuf>, diagnostics: &mut Vec<Diagnostic>) {
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            diagnostics.push(unreadable(dir, &e.to_string()));
            return;
        }
    };
    for entry in entries.flatten() {
        let path = entry.path();
        let name = entry.file_name();
        let name = name.to_string_lossy();
        if name.starts_with('.') || name == "target" || name == "node_modules" {
            continue;
        }
        match entry.file_type() {
            Ok(t) if t.is_dir() => walk(&path, files, diagnostics),
            Ok(_) if classify(&path).is_some() => files.push(path),
            _ => {}
        }
    }
}

/// Most bytes read of one file tale is given (stories parse up to 4 MiB;
/// this is far beyond, and far below what `/dev/zero` would give).
pub const MAX_FILE_BYTES: u64 = 64 * 1024 * 1024;

/// `O_NONBLOCK`: a FIFO swapped in after the type check does not block the open.
#[cfg(target_os = "linux")]
const O_NONBLOCK: i32 = 0o4000;

/// What kind of file this is, for the error.
fn file_kind(meta: &std::fs::Metadata) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        let t = meta.file_type();
        if t.is_fifo() {
            return "a FIFO";
        } else if t.is_char_device() || t.is_block_device() {
            return "a device";
        } else if t.is_socket() {
            return "a socket";
        }
    }
    if meta.is_dir() {
        "a folder"
    } else {
        "not a regular file"
    }
}

/// Reads a regular file (a symlink is followed to one), at most `limit`
/// bytes. FIFOs, devices and sockets are refused before they are opened —
/// reading a FIFO blocks forever, `/dev/zero` never ends — and the limit
/// holds while reading, whatever the size the file claims.
pub fn read_regular(path: &Path, limit: u64) -> std::io::Result<Vec<u8>> {
    use std::io::Read as _;
    let refuse = |meta: &std::fs::Metadata| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            format!("{} (only regular files are read)", file_kind(meta)),
        )
    };
    let meta = std::fs::metadata(path)?;
    if !meta.is_file() {
        return Err(refuse(&meta));
    }
    let mut options = std::fs::OpenOptions::new();
    options.read(true);
    #[cfg(target_os = "linux")]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.custom_flags(O_NONBLOCK);
    }
    let file = options.open(path)?;
    // What was opened, not what was looked at before (a swap in between).
    let meta = file.metadata()?;
    if !meta.is_file() {
        return Err(refuse(&meta));
    }
    let mut bytes = Vec::with_capacity(meta.len().min(limit) as usize);
    file.take(limit.saturating_add(1)).read_to_end(&mut bytes)?;
    if bytes.len() as u64 > limit {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("larger than {limit} bytes"),
        ));
    }
    Ok(bytes)
}

/// [`read_regular`] as UTF-8 text.
pub fn read_regular_text(path: &Path, limit: u64) -> std::io::Result<String> {
    String::from_utf8(read_regular(path, limit)?)
        .map_err(|e| std::io::Error::new(std::io::ErrorKind::InvalidData, format!("not UTF-8 text: {e}")))
}

fn read_into(file: &Path, out: &mut Vec<SourceFile>, diagnostics: &mut Vec<Diagnostic>) {
    match read_regular(file, MAX_FILE_BYTES) {
        Ok(bytes) => match String::from_utf8(bytes) {
            Ok(text) => out.push(SourceFile::new(
                file,
                text.strip_prefix('\u{feff}').map(str::to_owned).unwrap_or(text),
            )),
            Err(e) => diagnostics.push(not_utf8(file, e.as_bytes(), e.utf8_error().valid_up_to())),
        },
        Err(e) => diagnostics.push(unreadable(file, &e.to_string())),
    }
}

/// Where the first invalid byte is, and what the file probably is.
fn not_utf8(file: &Path, bytes: &[u8], valid_up_to: usize) -> Diagnostic {
    let path = Arc::new(file.to_path_buf());
    if bytes.starts_with(&[0xFF, 0xFE]) || bytes.starts_with(&[0xFE, 0xFF]) {
        return Diagnostic::new(
            Code::FileRead,
            &path,
            Span::start_of_file(),
            format!("{} is UTF-16 text, not UTF-8", file.display()),
        )
        .help("PowerShell's `Out-File` writes UTF-16: save the file as UTF-8 (`Set-Content -Encoding utf8`, or `iconv -f UTF-16 -t UTF-8`)");
    }
    let valid = String::from_utf8_lossy(&bytes[..valid_up_to]);
    let line = valid.matches('\n').count() as u32 + 1;
    let col = valid.rsplit('\n').next().map_or(0, |l| l.chars().count()) as u32 + 1;
    Diagnostic::new(
        Code::FileRead,
        &path,
        Span::new(valid_up_to, valid_up_to, line, col),
        format!(
            "{} is not UTF-8 text: byte 0x{:02X} at line {line}, column {col}",
            file.display(),
            bytes[valid_up_to]
        ),
    )
    .help("save the file as UTF-8 (for Latin-1: `iconv -f LATIN1 -t UTF-8`)")
}

fn unreadable(path: &Path, why: &str) -> Diagnostic {
    Diagnostic::new(
        Code::FileRead,
        &Arc::new(path.to_path_buf()),
        Span::start_of_file(),
        format!("cannot read {}: {why}", path.display()),
    )
}

/// Why a credentials file must not be read: group or others may read it.
#[cfg(unix)]
pub fn permission_problem(path: &Path) -> Option<String> {
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(path).ok()?.permissions().mode();
    (mode & 0o077 != 0).then(|| {
        format!(
            "the credentials file is readable by other users (mode {:o}); tale refuses to read it",
            mode & 0o777
        )
    })
}

#[cfg(not(unix))]
pub fn permission_problem(_: &Path) -> Option<String> {
    None
}
