//! Model files: where they are looked for, what their headers say, and which may be loaded.
//!
//! The directories are searched in order: the data directory's `models/`, the packaged
//! `/usr/share/rapport/models`, then the model cache that `scripts/fetch-model.sh` fills. A model is
//! loaded only through an [`ApprovedModel`], which only [`approve_for_loading`] makes, after it has
//! read the header with the safe reader in [`crate::inference::gguf`] and found the file's sha256 among
//! the approved ones. The default model's digest is built in and approved from the start; operators
//! approve others (kept by [`crate::inference::store::ModelApprovals`]).

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use sha2::{Digest, Sha256};

use crate::config::Config;
use crate::inference::gguf::{self, GgufError, GgufHeader};

/// The file name of the default model, Gemma 3 270M quantised `Q4_K_M`.
pub const DEFAULT_MODEL_FILE: &str = "gemma-3-270m-q4_k_m.gguf";
/// The default model's sha256, approved from the start.
pub const DEFAULT_MODEL_SHA256: &str =
    "a5fd3b62230aa5ec60212297dc9d20eaa70578ac519e00d93a17e44c087a6818";
/// Where packages install models.
pub const PACKAGED_MODELS_DIR: &str = "/usr/share/rapport/models";

#[derive(Debug, thiserror::Error)]
pub enum ModelError {
    #[error(transparent)]
    Header(#[from] GgufError),
    #[error("model file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error(
        "model file {path} (sha256 {sha256}) is not approved; an operator must approve this exact file before it is loaded"
    )]
    NotApproved { path: PathBuf, sha256: String },
    #[error("model file {path} was written to, replaced or removed while it was being loaded; it is not used (it is loaded again at the next analysis)")]
    Changed { path: PathBuf },
    #[error("no model file with sha256 {sha256} was found in {searched}")]
    NotFound { sha256: String, searched: String },
}

/// The model directories, in search order.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelDirectories(Vec<PathBuf>);

impl ModelDirectories {
    pub fn from_config(config: &Config) -> Self {
        Self(vec![
            config.storage.data_dir.join("models"),
            PathBuf::from(PACKAGED_MODELS_DIR),
            config.inference.models_cache_dir(),
        ])
    }

    pub fn new(directories: Vec<PathBuf>) -> Self {
        Self(directories)
    }

    pub fn as_slice(&self) -> &[PathBuf] {
        &self.0
    }

    /// Every `.gguf` file, directory by directory in search order, by name within one.
    pub fn model_files(&self) -> Vec<PathBuf> {
        let mut found = Vec::new();
        for directory in &self.0 {
            let Ok(entries) = std::fs::read_dir(directory) else {
                continue;
            };
            let mut files: Vec<PathBuf> = entries
                .filter_map(Result::ok)
                .map(|entry| entry.path())
                .filter(|path| {
                    path.is_file()
                        && path
                            .extension()
                            .is_some_and(|extension| extension.eq_ignore_ascii_case("gguf"))
                })
                .collect();
            files.sort();
            found.extend(files);
        }
        found
    }

    /// The first file named like the default model, without checking its digest.
    pub fn default_model_file(&self) -> Option<PathBuf> {
        self.0
            .iter()
            .map(|directory| directory.join(DEFAULT_MODEL_FILE))
            .find(|path| path.is_file())
    }

    /// The first model file whose sha256 is `sha256`. The file named like the default model is
    /// tried first for the default digest, so the common case hashes one file.
    pub fn find_by_sha256(&self, sha256: &str) -> Result<PathBuf, ModelError> {
        if sha256 == DEFAULT_MODEL_SHA256 {
            if let Some(path) = self.default_model_file() {
                if sha256_file(&path)? == sha256 {
                    return Ok(path);
                }
            }
        }
        for path in self.model_files() {
            if sha256_file(&path)? == sha256 {
                return Ok(path);
            }
        }
        Err(ModelError::NotFound {
            sha256: sha256.to_owned(),
            searched: self
                .0
                .iter()
                .map(|path| path.display().to_string())
                .collect::<Vec<_>>()
                .join(", "),
        })
    }
}

/// What the console shows about an installed model.
#[derive(Clone, Debug)]
pub struct ModelInfo {
    pub path: PathBuf,
    pub size_bytes: u64,
    pub sha256: String,
    pub header: GgufHeader,
}

/// Reads a model file's header and digest; the model itself is not loaded.
pub fn inspect(path: &Path) -> Result<ModelInfo, ModelError> {
    let header = gguf::read_header(path)?;
    let size_bytes = std::fs::metadata(path)
        .map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?
        .len();
    Ok(ModelInfo {
        path: path.to_path_buf(),
        size_bytes,
        sha256: sha256_file(path)?,
        header,
    })
}

/// The sha256 of a file, hex, read in 1 MiB blocks.
pub fn sha256_file(path: &Path) -> Result<String, ModelError> {
    let mut file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    sha256_open(path, &mut file)
}

/// The sha256 of an open file from its current offset, hex; `path` names it in errors.
fn sha256_open(path: &Path, file: &mut File) -> Result<String, ModelError> {
    let io_error = |source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    };
    let mut hasher = Sha256::new();
    let mut buffer = vec![0_u8; 1024 * 1024];
    loop {
        let read = file.read(&mut buffer).map_err(io_error)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hex::encode(hasher.finalize()))
}

/// A model file whose header was read and whose digest is approved: the only thing the engine
/// loads. It holds the descriptor the digest was read through, and llama.cpp is given that
/// descriptor's `/proc/self/fd/N` rather than the path, so a file renamed over the approved one
/// between the check and the load is never read; a change written into the approved file itself
/// (or its replacement or removal, which changes its status too) is caught by
/// [`ApprovedModel::check_unchanged`] after the load.
#[derive(Clone, Debug)]
pub struct ApprovedModel {
    info: ModelInfo,
    file: Arc<File>,
    identity: FileIdentity,
}

/// What a write to a file changes: its size, modification and status-change times (the last is
/// set by the kernel on every write and cannot be set back), and which file it is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct FileIdentity {
    device: u64,
    inode: u64,
    size: u64,
    modified: (i64, i64),
    changed: (i64, i64),
}

impl FileIdentity {
    fn of(file: &File, path: &Path) -> Result<Self, ModelError> {
        use std::os::unix::fs::MetadataExt as _;
        let metadata = file.metadata().map_err(|source| ModelError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        Ok(Self {
            device: metadata.dev(),
            inode: metadata.ino(),
            size: metadata.size(),
            modified: (metadata.mtime(), metadata.mtime_nsec()),
            changed: (metadata.ctime(), metadata.ctime_nsec()),
        })
    }
}

impl ApprovedModel {
    /// The file as the operator knows it (for messages and the catalogue).
    pub fn path(&self) -> &Path {
        &self.info.path
    }

    /// What llama.cpp opens: the descriptor the digest was read through.
    pub fn load_path(&self) -> PathBuf {
        use std::os::fd::AsRawFd as _;
        PathBuf::from(format!("/proc/self/fd/{}", self.file.as_raw_fd()))
    }

    /// Refuses the model when its file was written to since its digest was read.
    pub fn check_unchanged(&self) -> Result<(), ModelError> {
        if FileIdentity::of(&self.file, &self.info.path)? == self.identity {
            Ok(())
        } else {
            Err(ModelError::Changed {
                path: self.info.path.clone(),
            })
        }
    }

    pub fn sha256(&self) -> &str {
        &self.info.sha256
    }

    pub fn info(&self) -> &ModelInfo {
        &self.info
    }
}

/// Checks `path` (a GGUF header, an approved digest) and hands out an [`ApprovedModel`].
/// `approved` holds the operator's approvals; the default model's digest is always approved.
pub fn approve_for_loading(path: &Path, approved: &[String]) -> Result<ApprovedModel, ModelError> {
    let mut file = File::open(path).map_err(|source| ModelError::Io {
        path: path.to_path_buf(),
        source,
    })?;
    let identity = FileIdentity::of(&file, path)?;
    let header = gguf::read_header(path)?;
    let info = ModelInfo {
        path: path.to_path_buf(),
        size_bytes: identity.size,
        sha256: sha256_open(path, &mut file)?,
        header,
    };
    let is_approved = info.sha256 == DEFAULT_MODEL_SHA256 || approved.contains(&info.sha256);
    if is_approved {
        Ok(ApprovedModel {
            info,
            file: Arc::new(file),
            identity,
        })
    } else {
        Err(ModelError::NotApproved {
            path: path.to_path_buf(),
            sha256: info.sha256,
        })
    }
}
