//! `rapport init`: everything a first boot needs — configuration, data directory, master key,
//! a self-signed certificate, and the initialised database — created together or not at all.

use std::fs;
use std::io::Write as _;
use std::net::SocketAddr;
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::config::{self, Config, TemplateValues};
use crate::context::{AppContext, ContextError};
use crate::store::{MasterKey, OpenMode};

#[derive(Debug, thiserror::Error)]
pub enum InitError {
    #[error("master key file {0} already exists; refusing to overwrite it (the data it protects would become unreadable)")]
    KeyExists(PathBuf),
    #[error("data directory {0} already holds a database; it is initialised already")]
    AlreadyInitialised(PathBuf),
    #[error("existing configuration {config} names data directory {configured}, not {requested}")]
    DataDirMismatch {
        config: PathBuf,
        configured: PathBuf,
        requested: PathBuf,
    },
    #[error("cannot create {path}: {source}")]
    Create {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("cannot create the TLS certificate: {0}")]
    Certificate(String),
    #[error(transparent)]
    Config(#[from] config::ConfigError),
    #[error(transparent)]
    Context(#[from] ContextError),
}

pub struct InitOptions {
    pub config_path: PathBuf,
    pub data_dir: PathBuf,
    pub listen: SocketAddr,
    pub tls: bool,
}

/// Writes `bytes` to a new file readable only by its owner.
pub fn write_private_file(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut file = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)?;
    file.write_all(bytes)?;
    file.sync_all()
}

/// Everything created so far, removed again (newest first) if a later step fails.
#[derive(Default)]
struct Created {
    paths: Vec<(PathBuf, bool)>,
    committed: bool,
}

impl Created {
    fn file(&mut self, path: &Path) {
        self.paths.push((path.to_path_buf(), false));
    }

    fn dir(&mut self, path: &Path) {
        self.paths.push((path.to_path_buf(), true));
    }

    fn create_dir(&mut self, path: &Path) -> Result<(), InitError> {
        if path.exists() {
            return Ok(());
        }
        if let Some(parent) = path
            .parent()
            .filter(|p| !p.as_os_str().is_empty() && !p.exists())
        {
            self.create_dir(parent)?;
        }
        fs::DirBuilder::new()
            .mode(0o700)
            .create(path)
            .map_err(|source| InitError::Create {
                path: path.to_path_buf(),
                source,
            })?;
        self.dir(path);
        Ok(())
    }
}

impl Drop for Created {
    fn drop(&mut self) {
        if self.committed {
            return;
        }
        for (path, is_dir) in self.paths.iter().rev() {
            let _ = if *is_dir {
                fs::remove_dir_all(path)
            } else {
                fs::remove_file(path)
            };
        }
    }
}

fn absolute(path: &Path) -> Result<PathBuf, InitError> {
    std::path::absolute(path).map_err(|source| InitError::Create {
        path: path.to_path_buf(),
        source,
    })
}

/// What `init` will create, resolved from the options and any existing configuration.
struct Plan {
    config_path: PathBuf,
    config_dir: PathBuf,
    data_dir: PathBuf,
    key_path: PathBuf,
    tls_paths: Option<(PathBuf, PathBuf)>,
    keep_config: bool,
}

/// Resolves every path and refuses (before anything is created) when a key or database exists.
fn plan(options: &InitOptions) -> Result<Plan, InitError> {
    let config_path = absolute(&options.config_path)?;
    let data_dir = absolute(&options.data_dir)?;
    let config_dir = config_path
        .parent()
        .map_or_else(|| PathBuf::from("/"), Path::to_path_buf);
    let existing = config_path
        .exists()
        .then(|| Config::load(&config_path))
        .transpose()?;
    if let Some(existing) = &existing {
        if absolute(&existing.storage.data_dir)? != data_dir {
            return Err(InitError::DataDirMismatch {
                config: config_path,
                configured: existing.storage.data_dir.clone(),
                requested: data_dir,
            });
        }
    }
    let key_path = existing.as_ref().map_or_else(
        || config_dir.join("master.key"),
        |c| c.storage.master_key_file.clone(),
    );
    let tls_paths = match &existing {
        Some(config) => config
            .server
            .tls
            .as_ref()
            .map(|tls| (tls.cert.clone(), tls.key.clone())),
        None => options.tls.then(|| {
            let dir = config_dir.join("tls");
            (dir.join("cert.pem"), dir.join("key.pem"))
        }),
    };
    if key_path.exists() {
        return Err(InitError::KeyExists(key_path));
    }
    if data_dir.join("db").exists() {
        return Err(InitError::AlreadyInitialised(data_dir));
    }
    Ok(Plan {
        config_path,
        config_dir,
        data_dir,
        key_path,
        tls_paths,
        keep_config: existing.is_some(),
    })
}

fn create_data_dir(plan: &Plan, created: &mut Created) -> Result<(), InitError> {
    let existed = plan.data_dir.exists();
    created.create_dir(&plan.data_dir)?;
    if existed {
        fs::set_permissions(&plan.data_dir, fs::Permissions::from_mode(0o700)).map_err(
            |source| InitError::Create {
                path: plan.data_dir.clone(),
                source,
            },
        )?;
    }
    Ok(())
}

fn create_master_key(path: &Path, created: &mut Created) -> Result<(), InitError> {
    MasterKey::create_file(path).map_err(|error| match error {
        crate::store::KeyError::Exists(path) => InitError::KeyExists(path),
        other => InitError::Create {
            path: path.to_path_buf(),
            source: std::io::Error::other(other.to_string()),
        },
    })?;
    created.file(path);
    Ok(())
}

/// Writes a self-signed certificate unless the configured files exist; true when it wrote one.
fn create_certificate(cert: &Path, key: &Path, created: &mut Created) -> Result<bool, InitError> {
    if cert.exists() || key.exists() {
        return Ok(false);
    }
    if let Some(parent) = cert.parent() {
        created.create_dir(parent)?;
    }
    created.file(cert);
    created.file(key);
    crate::web::tls::write_self_signed(cert, key, &[]).map_err(InitError::Certificate)?;
    Ok(true)
}

/// Runs `rapport init`; returns one line per thing created, for printing.
pub fn run(options: &InitOptions) -> Result<Vec<String>, InitError> {
    let plan = plan(options)?;
    let mut created = Created::default();
    let mut report = Vec::new();
    created.create_dir(&plan.config_dir)?;
    create_data_dir(&plan, &mut created)?;
    report.push(format!(
        "data directory  {} (mode 0700)",
        plan.data_dir.display()
    ));
    create_master_key(&plan.key_path, &mut created)?;
    report.push(format!(
        "master key      {} (32 bytes, mode 0600)",
        plan.key_path.display()
    ));
    if let Some((cert, key)) = &plan.tls_paths {
        if create_certificate(cert, key, &mut created)? {
            report.push(format!(
                "certificate     {} (self-signed, for first boot)",
                cert.display()
            ));
            report.push(format!("TLS key         {} (mode 0600)", key.display()));
        }
    }
    if !plan.keep_config {
        let text = config::template(&TemplateValues {
            listen: options.listen,
            data_dir: &plan.data_dir,
            master_key_file: &plan.key_path,
            tls: plan
                .tls_paths
                .as_ref()
                .map(|(cert, key)| (cert.as_path(), key.as_path())),
        });
        write_private_file(&plan.config_path, text.as_bytes()).map_err(|source| {
            InitError::Create {
                path: plan.config_path.clone(),
                source,
            }
        })?;
        created.file(&plan.config_path);
        report.push(format!("configuration   {}", plan.config_path.display()));
    }
    created.dir(&plan.data_dir.join("db"));
    created.dir(&plan.data_dir.join("audit"));
    let config = Config::load(&plan.config_path)?;
    drop(AppContext::open(config, OpenMode::CreateIfMissing)?);
    report.push(format!(
        "database        {} (initialised, sealed)",
        plan.data_dir.join("db").display()
    ));
    created.committed = true;
    Ok(report)
}
