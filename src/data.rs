//! Layer folders: a `layer.json` (the conv spec, as in [`ConvSpec`]'s JSON form) next to
//! `weight.npy`, optional `bias.npy`, and `train.npy` / `test.npy` / `test_expected.npy`.
//! This is the format of the project's real-data folders; `maddconv bench --layer DIR` and the
//! tests read it.

use std::path::{Path, PathBuf};

use crate::error::{Error, Result};
use crate::layer::ConvLayer;
use crate::spec::ConvSpec;
use crate::tensor::Tensor;

/// The checked conv spec of a `layer.json` text; `what` names the text in errors.
pub fn parse_layer_json(text: &str, what: &str) -> Result<ConvSpec> {
    let spec: ConvSpec = serde_json::from_str(text)
        .map_err(|e| Error::Argument(format!("{what}: not a valid layer description: {e}")))?;
    spec.validate()?;
    Ok(spec)
}

/// A layer from the contents of a layer folder's files: the `layer.json` text and the bytes of
/// `weight.npy` and (when the spec has a bias) `bias.npy`, checked as [`LayerDir::layer`]
/// checks them. For callers without a file system (the browser).
pub fn layer_from_bytes(
    layer_json: &str,
    weight_npy: &[u8],
    bias_npy: Option<&[u8]>,
) -> Result<ConvLayer> {
    let spec = parse_layer_json(layer_json, "layer.json")?;
    let weight = Tensor::from_npy_bytes(weight_npy, "weight.npy")?;
    spec.check_weight(weight.shape())?;
    let bias = match (spec.bias, bias_npy) {
        (false, None) => None,
        (false, Some(_)) => {
            return Err(Error::Argument(
                "layer.json says the layer has no bias, but a bias.npy was given".into(),
            ))
        }
        (true, None) => {
            return Err(Error::Argument(
                "layer.json says the layer has a bias, but no bias.npy was given".into(),
            ))
        }
        (true, Some(b)) => {
            let b = Tensor::from_npy_bytes(b, "bias.npy")?;
            spec.check_bias(Some(b.shape()))?;
            Some(b)
        }
    };
    ConvLayer::new(spec, weight, bias)
}

/// A layer folder.
#[derive(Clone, Debug)]
pub struct LayerDir {
    /// Folder name, used as the layer's name in reports.
    pub name: String,
    /// The folder.
    pub path: PathBuf,
    /// The conv spec from `layer.json`.
    pub spec: ConvSpec,
}

impl LayerDir {
    /// Reads `DIR/layer.json` and checks it.
    pub fn open(dir: impl AsRef<Path>) -> Result<LayerDir> {
        let path = dir.as_ref().to_path_buf();
        let json_path = path.join("layer.json");
        let text = std::fs::read_to_string(&json_path).map_err(|e| Error::io(&json_path, e))?;
        let spec = parse_layer_json(&text, &json_path.display().to_string())?;
        let name = path
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string());
        Ok(LayerDir { name, path, spec })
    }

    /// All layer folders (those holding a `layer.json`) directly under `root`, sorted by name.
    pub fn list(root: impl AsRef<Path>) -> Result<Vec<LayerDir>> {
        let root = root.as_ref();
        let mut out = Vec::new();
        for entry in std::fs::read_dir(root).map_err(|e| Error::io(root, e))? {
            let entry = entry.map_err(|e| Error::io(root, e))?;
            if entry.path().join("layer.json").is_file() {
                out.push(LayerDir::open(entry.path())?);
            }
        }
        out.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(out)
    }

    fn npy(&self, file: &str) -> Result<Tensor> {
        Tensor::read_npy(self.path.join(file))
    }

    /// The weight, checked against the spec.
    pub fn weight(&self) -> Result<Tensor> {
        let w = self.npy("weight.npy")?;
        self.spec.check_weight(w.shape())?;
        Ok(w)
    }

    /// The bias if the spec has one.
    pub fn bias(&self) -> Result<Option<Tensor>> {
        if !self.spec.bias {
            return Ok(None);
        }
        let b = self.npy("bias.npy")?;
        self.spec.check_bias(Some(b.shape()))?;
        Ok(Some(b))
    }

    /// The layer: spec, weight and bias, checked ([`ConvLayer::new`]).
    pub fn layer(&self) -> Result<ConvLayer> {
        ConvLayer::new(self.spec.clone(), self.weight()?, self.bias()?)
    }

    /// Training inputs (`train.npy`).
    pub fn train(&self) -> Result<Tensor> {
        self.npy("train.npy")
    }

    /// Held-out inputs (`test.npy`).
    pub fn test(&self) -> Result<Tensor> {
        self.npy("test.npy")
    }

    /// The exact output on `test.npy`, computed by another engine (`test_expected.npy`).
    pub fn test_expected(&self) -> Result<Tensor> {
        self.npy("test_expected.npy")
    }
}
