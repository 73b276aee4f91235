//! The bundle: one `.safetensors` file holding the tables of every replaced Conv node of a
//! model, keyed by node name, with the model file's sha256 and the calibration settings.
//!
//! # Tensors
//!
//! | name        | dtype | shape   | content |
//! |-------------|-------|---------|---------|
//! | `layer.{i}` | U8    | `[len]` | the bytes of layer `i`'s table file ([`Tables::to_bytes`], see [`crate::maddness::file`]) |
//!
//! Each layer is stored as a complete table file so that writing and checking it reuses the
//! table file's code as it is (every check of [`Tables::from_bytes`] runs on load).
//!
//! # Header metadata (`__metadata__`)
//!
//! * `format`: `"maddconv-bundle"`; `format_version`: [`BUNDLE_VERSION`];
//! * `maddconv`: JSON `{"model_sha256", "model_file", "layers": [{"node", "tensor"}], "settings"}`.

use std::path::Path;

use safetensors::tensor::TensorView;
use safetensors::{Dtype, SafeTensors};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::maddness::Tables;

/// Value of the `format` metadata key of a bundle.
pub const BUNDLE_FORMAT: &str = "maddconv-bundle";
/// The bundle format version this library writes and reads.
pub const BUNDLE_VERSION: u32 = 1;

/// How a bundle was calibrated (informational).
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct BundleSettings {
    /// Each layer trained on inputs captured with the earlier layers replaced (`true`) or on the
    /// exact model's inputs (`false`).
    pub sequential: bool,
    /// Codebooks asked for (`None`: the learner's default per layer).
    pub codebooks: Option<usize>,
    /// The learner and its settings.
    pub learner: String,
    /// Names of the calibration input files.
    pub sources: Vec<String>,
    /// Runs of the model the tables were trained on.
    pub runs: usize,
    /// The `--layers` choice ("all", "auto" or the names).
    #[serde(default)]
    pub layers: String,
    /// `--layers auto`'s target.
    #[serde(default)]
    pub target: Option<String>,
    /// The whole model measured on the held-out calibration inputs (fraction, runs, metric,
    /// per output errors and agreement, per layer 1 − NMSE in place).
    #[serde(default)]
    pub held_out: Option<serde_json::Value>,
    /// `--layers auto`: every candidate tried, its measured value, kept or not.
    #[serde(default)]
    pub auto_steps: Option<serde_json::Value>,
    /// Each replaced layer's median kernel times on the calibrating adapter (direct and
    /// look-ups, ms).
    #[serde(default)]
    pub kernel_times: Option<serde_json::Value>,
}

/// Tables for several Conv nodes of one model.
#[derive(Clone, Debug, PartialEq)]
pub struct Bundle {
    /// sha256 (hex) of the ONNX file the tables were calibrated on.
    pub model_sha256: String,
    /// File name of that model (informational).
    pub model_file: String,
    /// (node name, tables), in graph order.
    pub layers: Vec<(String, Tables)>,
    /// How the bundle was calibrated.
    pub settings: BundleSettings,
}

#[derive(Serialize, Deserialize)]
struct LayerEntry {
    node: String,
    tensor: String,
}

#[derive(Serialize, Deserialize)]
struct Header {
    model_sha256: String,
    model_file: String,
    layers: Vec<LayerEntry>,
    settings: BundleSettings,
}

impl Bundle {
    /// The tables of node `name`, if the bundle holds them.
    pub fn get(&self, name: &str) -> Option<&Tables> {
        self.layers.iter().find(|(n, _)| n == name).map(|(_, t)| t)
    }

    /// Fails with [`Error::Model`] unless the bundle was made for a model of this sha256.
    pub fn check_model(&self, sha256: &str) -> Result<()> {
        if self.model_sha256 != sha256 {
            return Err(Error::Model(format!(
                "the bundle was calibrated on another model ({} with sha256 {}); this model's \
                 sha256 is {sha256}",
                self.model_file, self.model_sha256
            )));
        }
        Ok(())
    }

    /// The bytes of a bundle file.
    pub fn to_bytes(&self) -> Result<Vec<u8>> {
        let blobs = self
            .layers
            .iter()
            .map(|(_, t)| t.to_bytes())
            .collect::<Result<Vec<_>>>()?;
        let names: Vec<String> = (0..blobs.len()).map(|i| format!("layer.{i}")).collect();
        let header = Header {
            model_sha256: self.model_sha256.clone(),
            model_file: self.model_file.clone(),
            layers: self
                .layers
                .iter()
                .zip(&names)
                .map(|((n, _), t)| LayerEntry {
                    node: n.clone(),
                    tensor: t.clone(),
                })
                .collect(),
            settings: self.settings.clone(),
        };
        let json = serde_json::to_string(&header)
            .map_err(|e| Error::Argument(format!("bundle metadata: {e}")))?;
        let views = names
            .iter()
            .zip(&blobs)
            .map(|(n, b)| TensorView::new(Dtype::U8, vec![b.len()], b).map(|v| (n.as_str(), v)))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|e| Error::Argument(format!("building the bundle: {e}")))?;
        let metadata = [
            ("format".to_string(), BUNDLE_FORMAT.to_string()),
            ("format_version".to_string(), BUNDLE_VERSION.to_string()),
            ("maddconv".to_string(), json),
        ];
        safetensors::serialize(views, Some(metadata.into_iter().collect()))
            .map_err(|e| Error::Argument(format!("writing the bundle: {e}")))
    }

    /// Writes the bundle atomically.
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        let bytes = self.to_bytes()?;
        crate::tensor::write_atomic(path.as_ref(), |w| std::io::Write::write_all(w, &bytes))
    }

    /// Reads and checks a bundle file.
    pub fn load(path: impl AsRef<Path>) -> Result<Bundle> {
        let path = path.as_ref();
        let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
        Bundle::from_bytes(&bytes, &path.display().to_string())
    }

    /// Parses and checks bundle bytes; `name` appears in errors. Never panics.
    pub fn from_bytes(bytes: &[u8], name: &str) -> Result<Bundle> {
        let fail = |message: String| Error::TableFile {
            path: name.into(),
            message,
        };
        let st = SafeTensors::deserialize(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
        let (_, metadata) = SafeTensors::read_metadata(bytes)
            .map_err(|e| fail(format!("not a valid safetensors file: {e}")))?;
        let meta = metadata
            .metadata()
            .as_ref()
            .ok_or_else(|| fail("no __metadata__: not a maddconv bundle".into()))?;
        let get = |k: &str| {
            meta.get(k)
                .ok_or_else(|| fail(format!("metadata key {k:?} is missing")))
        };
        let format = get("format")?;
        if format != BUNDLE_FORMAT {
            return Err(fail(format!(
                "format is {format:?}, expected {BUNDLE_FORMAT:?} (a single layer's table file \
                 is used with `maddconv eval/run`, not `maddconv model`)"
            )));
        }
        if get("format_version")? != &BUNDLE_VERSION.to_string() {
            return Err(fail(format!(
                "format version {} is not supported (this maddconv reads {BUNDLE_VERSION})",
                get("format_version")?
            )));
        }
        let header: Header = serde_json::from_str(get("maddconv")?)
            .map_err(|e| fail(format!("metadata \"maddconv\" is not valid: {e}")))?;
        let mut layers = Vec::new();
        for entry in &header.layers {
            let view = st
                .tensor(&entry.tensor)
                .map_err(|e| fail(format!("layer {:?}: {e}", entry.node)))?;
            if view.dtype() != Dtype::U8 {
                return Err(fail(format!("tensor {} is not U8", entry.tensor)));
            }
            let tables = Tables::from_bytes(view.data(), &format!("{name} [{}]", entry.node))?;
            layers.push((entry.node.clone(), tables));
        }
        Ok(Bundle {
            model_sha256: header.model_sha256,
            model_file: header.model_file,
            layers,
            settings: header.settings,
        })
    }
}
