//! The tuning cache: which kernel variant (kernel and tile sizes) measured fastest on this
//! adapter for each shape class, kept in memory and, natively, in one JSON file per adapter.
//!
//! A *shape class* buckets what decides a kernel's speed: the kernel family (direct, look-up),
//! which kernels the layer allows, and the positions, outputs per group, window length and
//! codebooks, each rounded up to a power of two ([`bucket`]). The first time a layer meets a
//! class, [`crate::gpu::DirectConv::tune`] / [`crate::gpu::MaddnessConv::tune`] time every
//! variant the device runs on an input of that shape and record the fastest here; later layers
//! of the same class reuse the choice without timing.
//!
//! On disk (natively): `<dir>/tune-<16 hex digits>.json`, the digits a hash of the adapter's
//! identity (name, backend, device type, driver, driver info); `<dir>` is
//! `$MADDCONV_TUNE_CACHE` or the platform's cache directory + `maddconv`
//! (`~/.cache/maddconv` on Linux). The file holds its format, the maddconv version and the
//! adapter identity; a file that cannot be read or parsed (corrupt), or whose version or adapter
//! differ (stale), is ignored with a warning and rewritten on the next insert. Writes go through
//! [`crate::io::write_atomic`]. This module imports no other `gpu` module: variants are stored
//! as JSON values and each kernel's host code (de)serialises its own.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// The environment variable naming the directory of the tuning cache (tests and scripts point it
/// at a temporary directory).
pub const CACHE_ENV: &str = "MADDCONV_TUNE_CACHE";
/// The environment variable that turns tuning off (`1`) for [`TuneMode::from_env`].
pub const NO_TUNE_ENV: &str = "MADDCONV_NO_TUNE";
/// The version of the cache file's layout.
pub const FORMAT: u32 = 1;

/// Whether and where kernel variants are tuned ([`crate::gpu::ContextOptions::tune`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum TuneMode {
    /// The fixed defaults: no timing, no cache (`--no-tune`).
    Off,
    /// Tune, and keep the choices for the life of the context only.
    Memory,
    /// Tune, and keep the choices in a file per adapter in this directory (`None`:
    /// [`default_cache_dir`]). Natively only; on the web this acts as [`TuneMode::Memory`].
    Disk(Option<PathBuf>),
}

impl TuneMode {
    /// [`TuneMode::Off`] when `MADDCONV_NO_TUNE=1`, else `Disk(None)` natively and `Memory` on
    /// the web.
    pub fn from_env() -> Self {
        if std::env::var(NO_TUNE_ENV).as_deref() == Ok("1") {
            TuneMode::Off
        } else if cfg!(target_arch = "wasm32") {
            TuneMode::Memory
        } else {
            TuneMode::Disk(None)
        }
    }
}

/// The cache directory: `$MADDCONV_TUNE_CACHE`, else the platform's cache directory +
/// `maddconv`; `None` where neither exists (then tuning stays in memory).
pub fn default_cache_dir() -> Option<PathBuf> {
    if let Some(d) = std::env::var_os(CACHE_ENV).filter(|d| !d.is_empty()) {
        return Some(PathBuf::from(d));
    }
    #[cfg(not(target_arch = "wasm32"))]
    {
        dirs::cache_dir().map(|d| d.join("maddconv"))
    }
    #[cfg(target_arch = "wasm32")]
    {
        None
    }
}

/// The smallest power of two ≥ `n` (1 for 0): the bucket of a size in a shape class.
pub fn bucket(n: usize) -> usize {
    n.max(1).next_power_of_two()
}

/// What identifies an adapter for the cache: a cache file holds the choices of one identity.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct AdapterIdentity {
    /// Adapter name.
    pub name: String,
    /// Backend ("vulkan", "metal", ...).
    pub backend: String,
    /// Device type ("Cpu", "DiscreteGpu", ...).
    pub device_type: String,
    /// Driver name.
    pub driver: String,
    /// Driver version / information.
    pub driver_info: String,
}

impl AdapterIdentity {
    /// The identity of an adapter.
    pub fn of(info: &wgpu::AdapterInfo) -> Self {
        AdapterIdentity {
            name: info.name.clone(),
            backend: format!("{:?}", info.backend).to_lowercase(),
            device_type: format!("{:?}", info.device_type),
            driver: info.driver.clone(),
            driver_info: info.driver_info.clone(),
        }
    }

    /// The cache file name of this identity: `tune-<16 hex digits of its SHA-256>.json`.
    pub fn file_name(&self) -> String {
        use sha2::Digest;
        let text = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.name, self.backend, self.device_type, self.driver, self.driver_info
        );
        let digest = sha2::Sha256::digest(text.as_bytes());
        let hex: String = digest[..8].iter().map(|b| format!("{b:02x}")).collect();
        format!("tune-{hex}.json")
    }
}

/// One measured choice: the variant (as its kernel's host code serialises it), its median time
/// and the fixed default's, in milliseconds, on the input the class was tuned on.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct TuneEntry {
    /// The fastest variant.
    pub variant: serde_json::Value,
    /// Its median kernel time, ms.
    pub median_ms: f64,
    /// The fixed default variant's median kernel time in the same run, ms.
    pub default_ms: f64,
    /// Variants timed.
    pub candidates: usize,
    /// The input shape the class was tuned on.
    pub shape: Vec<usize>,
}

/// The cache file's content.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct CacheFile {
    /// [`FORMAT`].
    pub format: u32,
    /// The maddconv version that wrote it.
    pub maddconv: String,
    /// The adapter it was measured on.
    pub adapter: AdapterIdentity,
    /// Shape class → choice.
    pub entries: BTreeMap<String, TuneEntry>,
}

impl CacheFile {
    /// An empty cache for `adapter` and this version of maddconv.
    pub fn new(adapter: AdapterIdentity) -> Self {
        CacheFile {
            format: FORMAT,
            maddconv: env!("CARGO_PKG_VERSION").to_string(),
            adapter,
            entries: BTreeMap::new(),
        }
    }

    /// Reads the cache at `path` for `adapter`. Absent: `Ok(None)`. Unreadable, not JSON of this
    /// layout, of another format, version or adapter: `Err` with what is wrong (the caller
    /// warns and starts afresh).
    pub fn read(path: &Path, adapter: &AdapterIdentity) -> Result<Option<CacheFile>> {
        let text = match std::fs::read_to_string(path) {
            Ok(t) => t,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(Error::io(path, e)),
        };
        let file: CacheFile = serde_json::from_str(&text).map_err(|e| {
            Error::Argument(format!(
                "the tuning cache {} is corrupt ({e})",
                path.display()
            ))
        })?;
        let version = env!("CARGO_PKG_VERSION");
        if file.format != FORMAT || file.maddconv != version {
            return Err(Error::Argument(format!(
                "the tuning cache {} is stale: format {} of maddconv {}, this is format {FORMAT} \
                 of maddconv {version}",
                path.display(),
                file.format,
                file.maddconv
            )));
        }
        if &file.adapter != adapter {
            return Err(Error::Argument(format!(
                "the tuning cache {} is for another adapter or driver ({:?}), not {:?}",
                path.display(),
                file.adapter,
                adapter
            )));
        }
        Ok(Some(file))
    }

    /// Writes the cache to `path` atomically, creating its directory.
    pub fn write(&self, path: &Path) -> Result<()> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
        }
        let text = serde_json::to_string_pretty(self)
            .map_err(|e| Error::Argument(format!("serialising the tuning cache: {e}")))?;
        crate::io::write_atomic(path, |w| {
            use std::io::Write;
            w.write_all(text.as_bytes())?;
            w.write_all(b"\n")
        })
    }
}

/// The tuning cache of one context: the choices in memory and, with a file, on disk.
#[derive(Debug)]
pub struct Tuner {
    path: Option<PathBuf>,
    cache: Mutex<CacheFile>,
}

impl Tuner {
    /// A tuner for `adapter` under `mode` (`None` for [`TuneMode::Off`]). With a file, its
    /// choices are loaded; a corrupt or stale file is ignored with a warning (and replaced at
    /// the next [`Self::insert`]).
    pub fn new(mode: &TuneMode, adapter: AdapterIdentity) -> Option<Tuner> {
        let dir = match mode {
            TuneMode::Off => return None,
            TuneMode::Memory => None,
            TuneMode::Disk(d) if cfg!(target_arch = "wasm32") => {
                let _ = d;
                None
            }
            TuneMode::Disk(Some(d)) => Some(d.clone()),
            TuneMode::Disk(None) => default_cache_dir(),
        };
        let path = dir.map(|d| d.join(adapter.file_name()));
        let cache = match &path {
            Some(p) => match CacheFile::read(p, &adapter) {
                Ok(Some(f)) => f,
                Ok(None) => CacheFile::new(adapter),
                Err(e) => {
                    log::warn!("{e}; ignoring it, it is rebuilt as layers are tuned");
                    CacheFile::new(adapter)
                }
            },
            None => CacheFile::new(adapter),
        };
        Some(Tuner {
            path,
            cache: Mutex::new(cache),
        })
    }

    /// The cache file, when the choices are kept on disk.
    pub fn path(&self) -> Option<&Path> {
        self.path.as_deref()
    }

    /// A copy of every choice made or loaded so far.
    pub fn snapshot(&self) -> CacheFile {
        self.cache
            .lock()
            .map(|c| c.clone())
            .unwrap_or_else(|e| e.into_inner().clone())
    }

    /// The choice for a shape class.
    pub fn get(&self, class: &str) -> Option<TuneEntry> {
        let cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.entries.get(class).cloned()
    }

    /// Records a choice and, with a file, writes the whole cache (atomically). A write failure
    /// is returned; the choice stays in memory either way.
    pub fn insert(&self, class: &str, entry: TuneEntry) -> Result<()> {
        let snapshot = {
            let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
            cache.entries.insert(class.to_string(), entry);
            cache.clone()
        };
        match &self.path {
            Some(p) => snapshot.write(p),
            None => Ok(()),
        }
    }
}

/// The index of the variant to keep among `medians` (ms, one per candidate; `default` is the
/// fixed default's index): the fastest, unless the default is within `margin` (e.g. 0.03 =
/// 3 %) of it — a choice that measurement cannot tell from the default keeps the default.
pub fn pick(medians: &[f64], default: usize, margin: f64) -> usize {
    let best = medians
        .iter()
        .enumerate()
        .filter(|(_, m)| m.is_finite())
        .min_by(|a, b| a.1.total_cmp(b.1))
        .map(|(i, _)| i)
        .unwrap_or(default);
    match medians.get(default) {
        Some(d) if d.is_finite() && *d <= medians[best] * (1.0 + margin) => default,
        _ => best,
    }
}

/// The shared end of a layer's `tune`: times `layers` (one per entry of `variants`, the default
/// first) interleaved on a seeded random input of `shape`, keeps the default unless another is
/// more than 3 % faster ([`pick`]), records the choice for `class` (a cache that cannot be
/// written is warned about, not fatal) and returns the chosen variant.
pub(crate) async fn time_and_record<L, V>(
    ctx: &crate::gpu::Context,
    tuner: &Tuner,
    class: &str,
    shape: &[usize],
    layers: &[L],
    variants: &[V],
    name: impl Fn(&V) -> String,
) -> Result<V>
where
    L: crate::gpu::GpuConv,
    V: Serialize + Copy,
{
    let input = crate::bench::random_input(shape, 0x7e57)?;
    let x = ctx.upload("tune input", &input)?;
    let out_shape = layers
        .first()
        .ok_or_else(|| Error::Argument("no variant to tune".into()))?
        .output_shape(shape)?;
    let outputs = layers
        .iter()
        .map(|_| ctx.create_tensor("tune output", &out_shape))
        .collect::<Result<Vec<_>>>()?;
    let methods: Vec<crate::bench::Method> = layers
        .iter()
        .zip(&outputs)
        .map(|(l, y)| crate::bench::Method {
            conv: l,
            input: &x,
            output: y,
        })
        .collect();
    let timings =
        crate::bench::time_interleaved(ctx, &methods, crate::bench::Repetitions::tuning()).await?;
    let medians: Vec<f64> = timings.iter().map(|t| t.median_ms).collect();
    let best = pick(&medians, 0, 0.03);
    log::info!(
        "tuned {class} on {shape:?}: {} ({:.3} ms; default {} {:.3} ms; {} variants)",
        name(&variants[best]),
        medians[best],
        name(&variants[0]),
        medians[0],
        variants.len()
    );
    let entry = TuneEntry {
        variant: serde_json::to_value(variants[best])
            .map_err(|e| Error::Argument(format!("serialising a variant: {e}")))?,
        median_ms: medians[best],
        default_ms: medians[0],
        candidates: variants.len(),
        shape: shape.to_vec(),
    };
    if let Err(e) = tuner.insert(class, entry) {
        log::warn!("the tuning cache could not be written: {e}");
    }
    Ok(variants[best])
}
