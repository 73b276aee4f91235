//! MADDNESS tables from JS: training on the CPU in wasm, the table file, and the CPU mirror of
//! inference.

use maddconv::clock::Instant;
use maddconv::maddness::{self, mirror, TrainConfig};
use maddconv::Tensor;
use serde::Deserialize;
use wasm_bindgen::prelude::*;

use crate::{js_err, parse_options, shape_of, ConvOutput, Layer};

/// Optional training settings from JS: `{lambda, maxWindows, seed, source}`.
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
struct TrainOptions {
    /// Ridge λ (default 1).
    lambda: Option<f32>,
    /// Most training windows (default 200 000).
    max_windows: Option<usize>,
    /// Seed of the window sampling (default 0).
    seed: Option<u64>,
    /// A name for the training input, stored in the table file's metadata.
    source: Option<String>,
}

/// Learned hash trees and look-up tables of one layer (`maddconv::maddness::Tables`).
#[wasm_bindgen]
pub struct Tables {
    pub(crate) inner: maddness::Tables,
}

#[wasm_bindgen]
impl Tables {
    /// Learns the tables of `layer` on the CPU, in wasm (single-threaded in the browser), from
    /// the windows of `input` (flat, shape `inputShape`: `N×C×H×W` or `N×C×L`) with
    /// `codebooks` codebooks per group (`1 ≤ codebooks ≤ layer.windowLen`). `options`:
    /// `{lambda, maxWindows, seed, source}` or `undefined`. Synchronous: it blocks the calling
    /// thread for as long as training takes (call it from a worker for large layers).
    pub fn train(
        layer: &Layer,
        input: Vec<f32>,
        input_shape: Vec<u32>,
        codebooks: u32,
        options: JsValue,
    ) -> Result<Tables, JsError> {
        let opts: TrainOptions = parse_options(
            &options,
            "training options",
            "{lambda, maxWindows, seed, source}",
        )?;
        let x = Tensor::new(shape_of(&input_shape), input).map_err(js_err)?;
        let defaults = TrainConfig::default();
        let config = TrainConfig {
            codebooks: Some(codebooks as usize),
            lambda: opts.lambda.unwrap_or(defaults.lambda),
            max_windows: opts.max_windows.or(defaults.max_windows),
            seed: opts.seed.unwrap_or(defaults.seed),
            ..defaults
        };
        let mut inner =
            maddness::train(&layer.inner, std::slice::from_ref(&x), &config).map_err(js_err)?;
        inner.meta.sources = vec![opts.source.unwrap_or_else(|| "browser input".into())];
        Ok(Tables { inner })
    }

    /// Reads a table file (`.safetensors`, as written by `maddconv train` or [`Self::to_bytes`]).
    #[wasm_bindgen(js_name = fromBytes)]
    pub fn from_bytes(bytes: &[u8]) -> Result<Tables, JsError> {
        let inner = maddness::Tables::from_bytes(bytes, "table file").map_err(js_err)?;
        Ok(Tables { inner })
    }

    /// The table file's bytes (`.safetensors`).
    #[wasm_bindgen(js_name = toBytes)]
    pub fn to_bytes(&self) -> Result<Vec<u8>, JsError> {
        self.inner.to_bytes().map_err(js_err)
    }

    /// Codebooks per group.
    #[wasm_bindgen(getter)]
    pub fn codebooks(&self) -> usize {
        self.inner.codebooks
    }
    /// Output channels of the layer.
    #[wasm_bindgen(getter, js_name = outChannels)]
    pub fn out_channels(&self) -> usize {
        self.inner.spec.out_channels
    }
    /// The layer's parameters as JSON (the `layer.json` format).
    #[wasm_bindgen(js_name = specJson)]
    pub fn spec_json(&self) -> String {
        serde_json::to_string(&self.inner.spec).unwrap_or_default()
    }
    /// How the tables were trained (settings, windows, seconds, held-out error) as JSON.
    #[wasm_bindgen(js_name = metaJson)]
    pub fn meta_json(&self) -> String {
        serde_json::to_string(&self.inner.meta).unwrap_or_default()
    }

    /// 8-bit inference on the CPU (the library's mirror of the GPU kernels), in wasm.
    #[wasm_bindgen(js_name = applyCpu)]
    pub fn apply_cpu(&self, input: Vec<f32>, input_shape: Vec<u32>) -> Result<ConvOutput, JsError> {
        let start = Instant::now();
        let x = Tensor::new(shape_of(&input_shape), input).map_err(js_err)?;
        x.check_finite("input").map_err(js_err)?;
        let y = mirror::apply(&self.inner, &x).map_err(js_err)?;
        Ok(ConvOutput::cpu(y, start.elapsed().as_secs_f64() * 1e3))
    }
}
