//! [`LocalProvider`]: sandboxes on this host, with the same bookkeeping as a cloud provider.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;

use crate::backend::fs::remove_any;
use crate::backend::task::blocking;
use crate::command::{Command, Platform};
use crate::env::default_state_dir;
use crate::error::{Error, IoContext, Result};
use crate::ledger::{Ledger, LedgerRecord};
use crate::local::machine::LocalMachine;
use crate::local::mirror::mirror_tree;
use crate::local::processes::kill_machine_processes;
use crate::machine::{RemoteMachine, SyncOptions};
use crate::provider::{ManagedResource, PurgeReport, ResourceKind, ResourceProvider};
use crate::spec::{ImageRecipe, MachineSpec};

const PROVIDER: &str = "local";

/// Creates [`LocalMachine`] sandboxes under `<state>/local/machines/`, and images (template
/// sandboxes built by a recipe's bootstrap scripts) under `<state>/local/images/`.
///
/// Each sandbox is written to the ledger before its directory is created, and terminating
/// it kills every process it started (found by their [`MACHINE_ID`] environment variable)
/// before removing the directory. So [`purge`](ResourceProvider::purge) cleans up after a
/// creator that was killed with SIGKILL.
#[derive(Debug)]
pub struct LocalProvider {
    store: Store,
    prefix: String,
    image_locks: Mutex<HashMap<String, Arc<tokio::sync::Mutex<()>>>>,
}

impl LocalProvider {
    /// A provider keeping its state in `state_dir`.
    pub fn new(state_dir: impl AsRef<Path>) -> Result<Self> {
        let state_dir = state_dir.as_ref();
        let machines_dir = state_dir.join("local").join("machines");
        let images_dir = state_dir.join("local").join("images");
        for d in [&machines_dir, &images_dir] {
            std::fs::create_dir_all(d).at("create state directory", d, "localhost")?;
        }
        Ok(LocalProvider {
            store: Store {
                machines_dir,
                images_dir,
                ledger: Ledger::open(state_dir, PROVIDER)?,
            },
            prefix: "hgauto-".to_owned(),
            image_locks: Mutex::new(HashMap::new()),
        })
    }

    /// A provider in the default state directory (`$HGAUTO_STATE_DIR` or `~/.hgauto`).
    pub fn from_env() -> Result<Self> {
        Self::new(default_state_dir()?)
    }

    /// Sets the prefix of machine ids (default `hgauto-`).
    pub fn with_prefix(mut self, prefix: impl Into<String>) -> Result<Self> {
        let prefix = prefix.into();
        check_id_chars(&prefix, "machine id prefix")?;
        self.prefix = prefix;
        Ok(self)
    }

    /// The ledger this provider writes.
    pub fn ledger(&self) -> &Ledger {
        &self.store.ledger
    }

    /// Re-opens an existing sandbox by id (e.g. one created by another process).
    pub fn machine(&self, id: &str) -> Result<LocalMachine> {
        check_id_chars(id, "machine id")?;
        LocalMachine::open(id, self.store.machines_dir.join(id))
    }

    /// Removes what a provision made before it failed or was interrupted. The removal runs
    /// detached: a caller that stops waiting (an interrupt drops the provision) does not
    /// cut it short, and [`interrupt`](crate::cleanup::interrupt) waits for it.
    async fn undo(&self, ids: Vec<String>) {
        if ids.is_empty() {
            return;
        }
        let what = format!("removing the local machines {ids:?} of a failed provision");
        let work = destroy(self.store.clone(), ids);
        match crate::backend::background::run_detached(what, work).await {
            Some(Ok(())) => {}
            Some(Err(e)) => {
                tracing::error!(error = %e, "cleanup after a failed provision failed; run purge")
            }
            None => tracing::error!("cleanup after a failed provision did not run; run purge"),
        }
    }

    fn create_one(
        &self,
        spec: &MachineSpec,
        template: Option<&Path>,
    ) -> Result<Arc<dyn RemoteMachine>> {
        let id = format!(
            "{}{:012x}",
            self.prefix,
            rand::random::<u64>() & 0xffff_ffff_ffff
        );
        let home = self.store.machines_dir.join(&id);
        let mut record = LedgerRecord::new(&id, ResourceKind::Machine);
        record.deadline = Some(spec.deadline()?);
        record
            .details
            .insert("path".into(), home.display().to_string());
        record.details.extend(
            spec.labels
                .iter()
                .map(|(k, v)| (format!("label:{k}"), v.clone())),
        );
        self.store.ledger.record(&record)?;

        let created = (|| {
            std::fs::create_dir(&home).at("create sandbox", &home, &id)?;
            if let Some(t) = template {
                mirror_tree(t, &home, &SyncOptions::default()).at("copy image into", &home, &id)?;
            }
            let tmp = home.join("tmp");
            std::fs::create_dir_all(&tmp).at("create directory", &tmp, &id)?;
            LocalMachine::open(&id, &home)
        })();
        match created {
            Ok(m) => Ok(Arc::new(m)),
            Err(e) => {
                let _ = self.store.destroy_machine(&id);
                Err(e)
            }
        }
    }

    fn image_lock(&self, fingerprint: &str) -> Arc<tokio::sync::Mutex<()>> {
        let mut locks = self.image_locks.lock().unwrap_or_else(|p| p.into_inner());
        locks.entry(fingerprint.to_owned()).or_default().clone()
    }

    async fn build_image(&self, recipe: &ImageRecipe, image_id: &str) -> Result<()> {
        let mut record = LedgerRecord::new(image_id, ResourceKind::Image);
        record.details.insert("name".into(), recipe.name.clone());
        self.store.ledger.record(&record)?;
        let build_dir = self
            .store
            .images_dir
            .join(format!(".build-{image_id}-{:08x}", rand::random::<u32>()));
        let result = self.run_recipe(recipe, image_id, &build_dir).await;
        let result = match result {
            Ok(()) => std::fs::rename(&build_dir, self.store.image_path(image_id)?)
                .or_else(|e| {
                    // Another process built the same fingerprint first: use theirs.
                    if self
                        .store
                        .image_path(image_id)
                        .map(|p| p.is_dir())
                        .unwrap_or(false)
                    {
                        Ok(())
                    } else {
                        Err(e)
                    }
                })
                .at("publish image", &build_dir, image_id),
            Err(e) => Err(e),
        };
        let _ = remove_any(&build_dir);
        if result.is_err() {
            let _ = self.store.ledger.forget(image_id);
        }
        result
    }

    async fn run_recipe(
        &self,
        recipe: &ImageRecipe,
        image_id: &str,
        build_dir: &Path,
    ) -> Result<()> {
        std::fs::create_dir_all(build_dir.join("tmp")).at(
            "create image build directory",
            build_dir,
            image_id,
        )?;
        let builder = LocalMachine::open(format!("{image_id}-build"), build_dir)?;
        for f in &recipe.files {
            builder.put(&f.source, &f.dest).await?;
        }
        for (i, script) in recipe.bootstrap.iter().enumerate() {
            let cmd = Command::script(script.clone());
            let out = builder.exec(&cmd).await?;
            if !out.status.success() {
                kill_machine_processes(builder.id());
                return Err(Error::Provision {
                    provider: PROVIDER.into(),
                    action: "build image",
                    resource: image_id.to_owned(),
                    reason: format!(
                        "bootstrap script {} ended with {}: {}",
                        i + 1,
                        out.status,
                        out.stderr_str().trim_end()
                    ),
                    retryable: false,
                });
            }
        }
        kill_machine_processes(builder.id());
        Ok(())
    }
}

/// Where the local provider keeps sandboxes, images and its ledger. Cheap to clone, so
/// blocking work can take it to another thread.
#[derive(Debug, Clone)]
struct Store {
    machines_dir: PathBuf,
    images_dir: PathBuf,
    ledger: Ledger,
}

impl Store {
    fn sandbox_path(&self, id: &str) -> Result<PathBuf> {
        check_id_chars(id, "machine id")?;
        Ok(self.machines_dir.join(id))
    }

    fn image_path(&self, id: &str) -> Result<PathBuf> {
        check_id_chars(id, "image id")?;
        Ok(self.images_dir.join(id))
    }

    /// Kills the machine's processes, removes its sandbox, then forgets it.
    fn destroy_machine(&self, id: &str) -> Result<()> {
        let home = self.sandbox_path(id)?;
        kill_machine_processes(id);
        remove_any(&home).at("remove sandbox", &home, id)?;
        self.ledger.forget(id)
    }

    fn destroy_image(&self, id: &str) -> Result<()> {
        let path = self.image_path(id)?;
        remove_any(&path).at("remove image", &path, id)?;
        self.ledger.forget(id)
    }
}

#[async_trait]
impl ResourceProvider for LocalProvider {
    fn name(&self) -> &str {
        PROVIDER
    }

    async fn provision(
        &self,
        spec: &MachineSpec,
        count: usize,
    ) -> Result<Vec<Arc<dyn RemoteMachine>>> {
        if spec.platform != Platform::Linux {
            return Err(Error::NotSupported {
                backend: "local provider".into(),
                what: format!("{} machines", spec.platform),
            });
        }
        if spec.user_data.is_some() {
            return Err(Error::NotSupported {
                backend: "local provider".into(),
                what: "first-boot scripts (user data)".into(),
            });
        }
        // Validate everything before creating anything.
        let template = match &spec.image {
            Some(image) => {
                let path = self.store.image_path(image)?;
                if !path.is_dir() {
                    return Err(Error::NotFound {
                        what: format!("local image {image:?}"),
                    });
                }
                Some(path)
            }
            None => None,
        };
        let mut machines: Vec<Arc<dyn RemoteMachine>> = Vec::with_capacity(count);
        for _ in 0..count {
            let failed = if crate::cleanup::is_interrupted() {
                Err(Error::Interrupted {
                    signal: crate::cleanup::interrupt_signal(),
                })
            } else {
                self.create_one(spec, template.as_deref())
            };
            match failed {
                Ok(m) => machines.push(m),
                Err(e) => {
                    let ids: Vec<String> = machines.iter().map(|m| m.id().to_owned()).collect();
                    self.undo(ids).await;
                    return Err(e);
                }
            }
        }
        tracing::info!(count, ids = ?machines.iter().map(|m| m.id()).collect::<Vec<_>>(), "provisioned local machines");
        Ok(machines)
    }

    async fn terminate(&self, ids: &[String]) -> Result<()> {
        destroy(self.store.clone(), ids.to_vec()).await
    }

    /// Rewrites the machines' ledger records with the new deadline.
    async fn extend_deadline(&self, ids: &[String], until: u64) -> Result<()> {
        for id in ids {
            check_id_chars(id, "machine id")?;
        }
        let ids = ids.to_vec();
        let store = self.store.clone();
        blocking(move || {
            for id in &ids {
                store
                    .ledger
                    .update(id, "machine", |r| r.deadline = Some(until))?;
            }
            Ok(())
        })
        .await
    }

    /// Records the label as the machine's `name` in its ledger record.
    async fn set_label(&self, id: &str, label: &str) -> Result<()> {
        check_id_chars(id, "machine id")?;
        let (id, label) = (id.to_owned(), label.to_owned());
        let store = self.store.clone();
        blocking(move || {
            store.ledger.update(&id, "machine", |r| {
                r.details.insert("name".into(), label);
            })
        })
        .await
    }

    async fn ensure_image(&self, recipe: &ImageRecipe) -> Result<String> {
        if recipe.platform != Platform::Linux {
            return Err(Error::NotSupported {
                backend: "local provider".into(),
                what: format!("{} images", recipe.platform),
            });
        }
        check_id_chars(&recipe.name, "image name")?;
        for f in &recipe.files {
            if f.dest.is_empty()
                || Path::new(&f.dest).is_absolute()
                || f.dest.split('/').any(|c| c == "..")
            {
                return Err(Error::invalid(
                    format!("image file destination {:?}", f.dest),
                    "local images take relative paths inside the sandbox",
                ));
            }
        }
        let fingerprint = recipe.fingerprint()?;
        let image_id = format!("{}-{}", recipe.name, &fingerprint[..16]);
        let lock = self.image_lock(&fingerprint);
        let _guard = lock.lock().await;
        if self.store.image_path(&image_id)?.is_dir() {
            tracing::info!(image = %image_id, "image cache hit");
            return Ok(image_id);
        }
        tracing::info!(image = %image_id, "building image");
        self.build_image(recipe, &image_id).await?;
        // Remove stale images of the same name.
        for rec in self.store.ledger.records()? {
            if rec.kind == ResourceKind::Image
                && rec.id != image_id
                && rec.details.get("name") == Some(&recipe.name)
            {
                tracing::info!(image = %rec.id, "removing stale image");
                self.store.destroy_image(&rec.id)?;
            }
        }
        Ok(image_id)
    }

    async fn list_managed(&self) -> Result<Vec<ManagedResource>> {
        let mut out = Vec::new();
        for rec in self.store.ledger.records()? {
            let exists = match rec.kind {
                ResourceKind::Image => self.store.image_path(&rec.id)?.exists(),
                _ => self.store.sandbox_path(&rec.id)?.exists(),
            };
            out.push(ManagedResource {
                id: rec.id,
                kind: rec.kind,
                created_at: rec.created_at,
                deadline: rec.deadline,
                exists,
            });
        }
        Ok(out)
    }

    async fn purge(&self) -> Result<PurgeReport> {
        let mut report = PurgeReport::default();
        for rec in self.store.ledger.records()? {
            match rec.kind {
                ResourceKind::Image => self.store.destroy_image(&rec.id)?,
                _ => self.store.destroy_machine(&rec.id)?,
            }
            report.removed.push(rec.id);
        }
        // Anything else in our directories is ours too (e.g. an image build cut short).
        for dir in [&self.store.machines_dir, &self.store.images_dir] {
            for entry in std::fs::read_dir(dir).at("list", dir, "localhost")? {
                let entry = entry.at("list", dir, "localhost")?;
                let name = entry.file_name().to_string_lossy().into_owned();
                kill_machine_processes(&name);
                remove_any(&entry.path()).at("remove", &entry.path(), "localhost")?;
                report.removed.push(name);
            }
        }
        tracing::info!(removed = report.removed.len(), "purged local provider");
        Ok(report)
    }
}

/// Destroys the machines `ids` (their processes, directories and records).
async fn destroy(store: Store, ids: Vec<String>) -> Result<()> {
    for id in &ids {
        check_id_chars(id, "machine id")?;
    }
    blocking(move || {
        for id in &ids {
            store.destroy_machine(id)?;
            tracing::info!(machine = %id, "terminated");
        }
        Ok(())
    })
    .await
}

/// Ids become directory names: only `[A-Za-z0-9._-]`, not starting with `.`.
fn check_id_chars(id: &str, what: &str) -> Result<()> {
    let ok = !id.is_empty()
        && !id.starts_with('.')
        && id.len() <= 128
        && id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
    if ok {
        Ok(())
    } else {
        Err(Error::invalid(
            format!("{what} {id:?}"),
            "must be 1-128 characters of [A-Za-z0-9._-], not starting with '.'",
        ))
    }
}
