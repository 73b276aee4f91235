//! maddconv in the browser: a thin wasm-bindgen API over the `maddconv` library, compiled to
//! `wasm32-unknown-unknown` and run on WebGPU. No kernel or host logic lives here: this crate
//! only converts between JS values and the library's types, creates the device, and times runs.
//!
//! From JS (`wasm-bindgen --target web` output, see `build.sh`):
//!
//! ```js
//! import init, { Gpu, Layer, Tables, nmse } from "./pkg/maddconv_web.js";
//! await init();
//! const gpu = await Gpu.create();                  // throws a clear Error without WebGPU
//! gpu.adapterInfo();                               // {name, backend, limits, features, ...}
//! const layer = Layer.demoFilter("sobel");         // or new Layer(weight, shape, bias, options)
//! const exact = await gpu.direct(layer).run(x, [1, 3, 256, 256], 10);
//! exact.data; exact.shape; exact.kernelMs; exact.clock;
//! const tables = Tables.train(layer, xTrain, shapeTrain, 9);   // CPU, in wasm
//! const again = Tables.fromBytes(tables.toBytes());           // the .safetensors table file
//! const approx = await gpu.maddness(tables).run(x, [1, 3, 256, 256], 10);
//! nmse(exact.data, approx.data, exact.shape);
//! ```
//!
//! Tensors cross the boundary as flat `Float32Array`s in C order plus a shape array
//! (input `N×C×H×W` or `N×C×L`, weight `O×(C/groups)×KH×KW` or `O×(C/groups)×K`).
//! Every error reaches JS as an exception carrying the library's message; nothing panics on
//! user input.
//!
//! Async only at the edges: device creation and runs (upload, dispatch, readback) return
//! promises; everything else is synchronous.

mod bound;
mod tables;

use std::rc::Rc;

use maddconv::bench::{self, Repetitions};
use maddconv::clock::Instant;
use maddconv::filters::{ColourMix, ImageFilter};
use maddconv::gpu::direct::DirectConv;
use maddconv::gpu::maddness::MaddnessConv;
use maddconv::gpu::{Context, ContextOptions, GpuConv};
use maddconv::{ConvKind, ConvLayer, ConvSpec, Tensor};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use wasm_bindgen::prelude::*;
use wasm_bindgen::JsCast;

pub use bound::{BoundRun, RunTime};
pub use tables::Tables;

#[cfg(all(test, target_arch = "wasm32"))]
wasm_bindgen_test::wasm_bindgen_test_configure!(run_in_browser);

/// The converted error type: a JS `Error` whose message is the library's.
fn js_err(e: maddconv::Error) -> JsError {
    JsError::new(&e.to_string())
}

/// Shapes come from JS as `u32` arrays.
fn shape_of(shape: &[u32]) -> Vec<usize> {
    shape.iter().map(|&d| d as usize).collect()
}

/// Parses an optional options object from JS (`undefined`/`null` give the defaults) through
/// JSON, naming `what` and the `expected` fields in the error.
pub(crate) fn parse_options<T: DeserializeOwned + Default>(
    options: &JsValue,
    what: &str,
    expected: &str,
) -> Result<T, JsError> {
    if options.is_undefined() || options.is_null() {
        return Ok(T::default());
    }
    let text = js_sys::JSON::stringify(options)
        .ok()
        .and_then(|s| s.as_string())
        .ok_or_else(|| JsError::new(&format!("{what} must be a plain object")))?;
    serde_json::from_str(&text)
        .map_err(|e| JsError::new(&format!("{what} {text}: {e} (expected {expected})")))
}

/// What the kernels need beyond nothing at all: the tiled direct kernel and the MADDNESS
/// kernels use 256 invocations per workgroup and up to 16 KiB of workgroup memory (the WebGPU
/// defaults; some adapters grant less).
pub const REQUIRED_LIMITS: [(&str, u32); 3] = [
    ("maxComputeInvocationsPerWorkgroup", 256),
    ("maxComputeWorkgroupSizeX", 256),
    ("maxComputeWorkgroupStorageSize", 16384),
];

/// Checks an adapter's limits against [`REQUIRED_LIMITS`]; the error names the limit, the
/// adapter's value and the value needed.
pub fn check_limits(limits: &wgpu::Limits, adapter: &str) -> Result<(), String> {
    for (name, need) in REQUIRED_LIMITS {
        let have = match name {
            "maxComputeInvocationsPerWorkgroup" => limits.max_compute_invocations_per_workgroup,
            "maxComputeWorkgroupSizeX" => limits.max_compute_workgroup_size_x,
            _ => limits.max_compute_workgroup_storage_size,
        };
        if have < need {
            return Err(format!(
                "the WebGPU adapter \"{adapter}\" offers {name} = {have}, but maddconv's kernels \
                 need at least {need}; try another browser or GPU"
            ));
        }
    }
    Ok(())
}

/// True when the global object has a `navigator.gpu` (the WebGPU entry point).
fn has_navigator_gpu() -> bool {
    let global = js_sys::global();
    js_sys::Reflect::get(&global, &JsValue::from_str("navigator"))
        .ok()
        .filter(|n| n.is_object())
        .and_then(|n| js_sys::Reflect::get(&n, &JsValue::from_str("gpu")).ok())
        .is_some_and(|g| g.is_object())
}

/// What the browser itself says about its adapter (`navigator.gpu.requestAdapter()`): wgpu
/// keeps only the description, which browsers often leave empty, and only the features it maps.
#[derive(Default)]
struct BrowserAdapter {
    /// `info.vendor`, `info.architecture`, `info.device`, `info.description`.
    info: [String; 4],
    /// `features`, as the browser names them (e.g. "subgroups", which wgpu 30 does not map).
    features: Vec<String>,
}

async fn browser_adapter() -> Option<BrowserAdapter> {
    let get = |o: &JsValue, k: &str| js_sys::Reflect::get(o, &JsValue::from_str(k)).ok();
    let gpu = get(&js_sys::global(), "navigator").and_then(|n| get(&n, "gpu"))?;
    let request: js_sys::Function = get(&gpu, "requestAdapter")?.dyn_into().ok()?;
    let promise: js_sys::Promise = request.call0(&gpu).ok()?.dyn_into().ok()?;
    let adapter = wasm_bindgen_futures::JsFuture::from(promise).await.ok()?;
    let info = get(&adapter, "info").filter(|i| i.is_object())?;
    let field = |k: &str| {
        get(&info, k)
            .and_then(|v| v.as_string())
            .unwrap_or_default()
    };
    let mut features: Vec<String> = get(&adapter, "features")
        .map(|f| {
            js_sys::Array::from(&f)
                .to_vec()
                .into_iter()
                .filter_map(|v| v.as_string())
                .collect()
        })
        .unwrap_or_default();
    features.sort();
    Some(BrowserAdapter {
        info: [
            field("vendor"),
            field("architecture"),
            field("device"),
            field("description"),
        ],
        features,
    })
}

/// The message when a browser has no WebGPU at all.
pub const NO_WEBGPU: &str = "WebGPU is not available in this browser (navigator.gpu is missing). \
    Use a browser with WebGPU enabled (Chrome or Edge 113+, Firefox 141+ on Windows, Safari 26); \
    on Linux Chromium may need --enable-unsafe-webgpu. The page must be served over http(s) \
    from localhost or https, not opened as a file.";

/// The WebGPU device and what the adapter offers.
#[wasm_bindgen]
pub struct Gpu {
    ctx: Rc<Context>,
    /// What the browser says about the adapter.
    browser: BrowserAdapter,
    adapter_limits: wgpu::Limits,
    adapter_features: wgpu::Features,
}

#[wasm_bindgen]
impl Gpu {
    /// Requests a WebGPU adapter (high performance) and a device with all of its limits and,
    /// where the adapter has it, `timestamp-query`. Rejects with a clear message when WebGPU
    /// is missing, no adapter is returned, or the adapter lacks a limit the kernels need.
    pub async fn create() -> Result<Gpu, JsError> {
        if !has_navigator_gpu() {
            return Err(JsError::new(NO_WEBGPU));
        }
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = wgpu::Backends::BROWSER_WEBGPU;
        let instance = wgpu::Instance::new(desc);
        let adapter = instance
            .request_adapter(&wgpu::RequestAdapterOptions {
                power_preference: wgpu::PowerPreference::HighPerformance,
                ..Default::default()
            })
            .await
            .map_err(|e| {
                JsError::new(&format!(
                    "WebGPU is present but returned no adapter ({e}): the GPU may be \
                     blocklisted or WebGPU disabled; on Linux Chromium try \
                     --enable-unsafe-webgpu"
                ))
            })?;
        let mut info = adapter.get_info();
        let browser = browser_adapter().await.unwrap_or_default();
        if info.name.is_empty() {
            // e.g. "google swiftshader": vendor, architecture and device, where known.
            info.name = browser.info[..3]
                .iter()
                .filter(|s| !s.is_empty())
                .cloned()
                .collect::<Vec<_>>()
                .join(" ");
        }
        let adapter_limits = adapter.limits();
        let adapter_features = adapter.features();
        check_limits(&adapter_limits, &info.name).map_err(|m| JsError::new(&m))?;
        // All of the adapter's limits; timestamps and subgroups where the adapter has them
        // (wgpu 30's WebGPU backend does not map "subgroups", so the MADDNESS look-ups run
        // from workgroup memory).
        let mut ctx = Context::from_adapter(&adapter, &ContextOptions::default())
            .await
            .map_err(js_err)?;
        ctx.set_adapter_name(info.name);
        Ok(Gpu {
            ctx: Rc::new(ctx),
            browser,
            adapter_limits,
            adapter_features,
        })
    }

    /// The adapter's name (may be empty where the browser hides it).
    #[wasm_bindgen(getter, js_name = adapterName)]
    pub fn adapter_name(&self) -> String {
        self.ctx.adapter_info().name.clone()
    }

    /// A plain object: `{name, backend, deviceType, vendor, architecture, device,
    /// description, timestamps, features: [..], browserFeatures: [..], limits: {..},
    /// subgroupMinSize, subgroupMaxSize}` (strings from the browser's `GPUAdapterInfo`;
    /// `features` as wgpu sees them, `browserFeatures` as the browser names them); `limits`
    /// holds those the kernels care about (the device was granted all of the adapter's).
    #[wasm_bindgen(js_name = adapterInfo)]
    pub fn adapter_info(&self) -> Result<JsValue, JsError> {
        let s = self.ctx.summary();
        let info = self.ctx.adapter_info();
        let [vendor, architecture, device, description] = &self.browser.info;
        let l = &self.adapter_limits;
        let features: Vec<String> = self
            .adapter_features
            .iter_names()
            .map(|(n, _)| n.to_lowercase().replace('_', "-"))
            .collect();
        let value = serde_json::json!({
            "name": s.name,
            "backend": s.backend,
            "deviceType": s.device_type,
            "vendor": vendor,
            "architecture": architecture,
            "device": device,
            "description": description,
            "timestamps": self.ctx.has_timestamps(),
            "features": features,
            "browserFeatures": self.browser.features,
            "limits": {
                "maxComputeInvocationsPerWorkgroup": l.max_compute_invocations_per_workgroup,
                "maxComputeWorkgroupSizeX": l.max_compute_workgroup_size_x,
                "maxComputeWorkgroupStorageSize": l.max_compute_workgroup_storage_size,
                "maxComputeWorkgroupsPerDimension": l.max_compute_workgroups_per_dimension,
                "maxStorageBufferBindingSize": l.max_storage_buffer_binding_size,
                "maxBufferSize": l.max_buffer_size,
                "maxStorageBuffersPerShaderStage": l.max_storage_buffers_per_shader_stage,
            },
            "subgroupMinSize": info.subgroup_min_size,
            "subgroupMaxSize": info.subgroup_max_size,
        });
        js_sys::JSON::parse(&value.to_string())
            .map_err(|_| JsError::new("could not build the adapter info object"))
    }

    /// The browser's `GPUDevice` our kernels run on, for another engine to share (ONNX Runtime
    /// Web: `executionProviders: [{ name: "webgpu", device }]`), so that buffers pass between
    /// the two without copies ([`BoundRun::input_buffer`](crate::bound::BoundRun)).
    #[wasm_bindgen(getter)]
    pub fn device(&self) -> Result<JsValue, JsError> {
        self.ctx
            .device()
            .as_webgpu()
            .map(|d| JsValue::from(d.clone()))
            .ok_or_else(|| JsError::new("the device is not a WebGPU device (not in a browser?)"))
    }

    /// Uploads `layer` for the exact direct-convolution kernel.
    pub fn direct(&self, layer: &Layer) -> Result<DirectLayer, JsError> {
        let conv = DirectConv::new(&self.ctx, &layer.inner).map_err(js_err)?;
        Ok(DirectLayer {
            ctx: self.ctx.clone(),
            conv: Rc::new(conv),
        })
    }
}

#[wasm_bindgen]
impl Gpu {
    /// Uploads trained tables for the MADDNESS kernels (`encode`, then the look-ups).
    pub fn maddness(&self, tables: &Tables) -> Result<MaddnessLayer, JsError> {
        let conv = MaddnessConv::new(&self.ctx, &tables.inner).map_err(js_err)?;
        Ok(MaddnessLayer {
            ctx: self.ctx.clone(),
            conv: Rc::new(conv),
        })
    }
}

/// Optional convolution parameters from JS: `{stride, padding, dilation, groups}`; each of the
/// first three is one number (for every axis or side) or a list (per axis; padding per side in
/// ONNX order `[top, left, bottom, right]` / `[left, right]`).
#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct LayerOptions {
    stride: Option<OneOrMany>,
    padding: Option<OneOrMany>,
    dilation: Option<OneOrMany>,
    groups: Option<usize>,
}

#[derive(Debug, Deserialize)]
#[serde(untagged)]
enum OneOrMany {
    One(usize),
    Many(Vec<usize>),
}

impl OneOrMany {
    fn expand(self, n: usize) -> Vec<usize> {
        match self {
            OneOrMany::One(v) => vec![v; n],
            OneOrMany::Many(v) => v,
        }
    }
}

/// A convolution layer on the host: its parameters, weight and optional bias.
#[wasm_bindgen]
pub struct Layer {
    /// The checked layer (the library's own type).
    pub(crate) inner: ConvLayer,
}

#[wasm_bindgen]
impl Layer {
    /// `weight`: flat f32, C order, of shape `weightShape` (`[O, C/groups, KH, KW]` for a
    /// conv2d, `[O, C/groups, K]` for a conv1d); `bias`: `O` values or `undefined`;
    /// `options`: `{stride, padding, dilation, groups}` or `undefined` (stride 1, no padding,
    /// dilation 1, one group).
    #[wasm_bindgen(constructor)]
    pub fn new(
        weight: Vec<f32>,
        weight_shape: Vec<u32>,
        bias: Option<Vec<f32>>,
        options: JsValue,
    ) -> Result<Layer, JsError> {
        let opts: LayerOptions = parse_options(
            &options,
            "layer options",
            "{stride, padding, dilation, groups}: each a number or a list of numbers, groups a \
             number",
        )?;
        Self::from_parts(weight, &shape_of(&weight_shape), bias, opts).map_err(js_err)
    }

    fn from_parts(
        weight: Vec<f32>,
        weight_shape: &[usize],
        bias: Option<Vec<f32>>,
        opts: LayerOptions,
    ) -> maddconv::Result<Layer> {
        let mut spec =
            ConvSpec::for_weight(weight_shape, opts.groups.unwrap_or(1), bias.is_some())?;
        let dims = spec.kind.spatial_dims();
        if let Some(s) = opts.stride {
            spec.stride = s.expand(dims);
        }
        if let Some(p) = opts.padding {
            spec.padding = p.expand(2 * dims);
        }
        if let Some(d) = opts.dilation {
            spec.dilation = d.expand(dims);
        }
        spec.validate()?;
        let weight = Tensor::new(weight_shape.to_vec(), weight)?;
        let bias = match bias {
            Some(b) => Some(Tensor::new(vec![b.len()], b)?),
            None => None,
        };
        Self::from_tensors(spec, weight, bias)
    }

    pub(crate) fn from_tensors(
        spec: ConvSpec,
        weight: Tensor,
        bias: Option<Tensor>,
    ) -> maddconv::Result<Layer> {
        Ok(Layer {
            inner: ConvLayer::new(spec, weight, bias)?,
        })
    }

    /// One of the demo's filter banks (the library's `maddconv::filters::ImageFilter`, read per
    /// colour channel) as a conv2d with 3 input channels (R, G, B) and 6 outputs, two per
    /// colour channel (output `2·c + j` is filter `j` on channel `c`), zero padding of half the
    /// kernel so the output has the input's size, no bias:
    /// * `"sobel"`: 3×3 Sobel x and y (horizontal and vertical gradients);
    /// * `"gaussian"`: 5×5 Gaussian blurs with σ = 1 and σ = 2 (their difference is a band-pass).
    ///
    /// The layer is dense (`groups = 1`, weight `6×3×K×K`, zero where an output does not read a
    /// channel), so its window has `D = 3·K·K` dimensions (27 or 75), which bounds the number
    /// of codebooks.
    #[wasm_bindgen(js_name = demoFilter)]
    pub fn demo_filter(name: &str) -> Result<Layer, JsError> {
        let filter = ImageFilter::parse(name).map_err(js_err)?;
        let (spec, weight) = filter.layer(ColourMix::PerChannel, filter.kernel_size() / 2);
        Layer::from_tensors(spec, weight, None).map_err(js_err)
    }

    /// A layer from the files of a layer folder (the format of the project's data sets and
    /// fixtures): the `layer.json` text, the bytes of `weight.npy`, and the bytes of `bias.npy`
    /// when `layer.json` says the layer has a bias (`undefined` otherwise).
    #[wasm_bindgen(js_name = fromFolder)]
    pub fn from_folder(
        layer_json: &str,
        weight_npy: &[u8],
        bias_npy: Option<Vec<u8>>,
    ) -> Result<Layer, JsError> {
        let inner = maddconv::data::layer_from_bytes(layer_json, weight_npy, bias_npy.as_deref())
            .map_err(js_err)?;
        Ok(Layer { inner })
    }

    /// Input channels `C`.
    #[wasm_bindgen(getter, js_name = inChannels)]
    pub fn in_channels(&self) -> usize {
        self.inner.spec().in_channels
    }
    /// Output channels `O`.
    #[wasm_bindgen(getter, js_name = outChannels)]
    pub fn out_channels(&self) -> usize {
        self.inner.spec().out_channels
    }
    /// Length `D = (C/groups)·KH·KW` of one window (the most codebooks MADDNESS can use).
    #[wasm_bindgen(getter, js_name = windowLen)]
    pub fn window_len(&self) -> usize {
        self.inner.weight().len() / self.inner.spec().out_channels
    }
    /// The layer's parameters as JSON (the `layer.json` format of the data folders).
    #[wasm_bindgen(js_name = specJson)]
    pub fn spec_json(&self) -> String {
        serde_json::to_string(self.inner.spec()).unwrap_or_default()
    }
    /// The output shape for an input of shape `inputShape`.
    #[wasm_bindgen(js_name = outputShape)]
    pub fn output_shape(&self, input_shape: Vec<u32>) -> Result<Vec<u32>, JsError> {
        let s = self
            .inner
            .output_shape(&shape_of(&input_shape))
            .map_err(js_err)?;
        Ok(s.into_iter().map(|d| d as u32).collect())
    }

    /// The exact convolution on the CPU in f64 (the library's oracle), in wasm.
    pub fn reference(&self, input: Vec<f32>, input_shape: Vec<u32>) -> Result<ConvOutput, JsError> {
        let start = Instant::now();
        let x = Tensor::new(shape_of(&input_shape), input).map_err(js_err)?;
        let y = self.inner.exact(&x).map_err(js_err)?;
        Ok(ConvOutput::cpu(y, start.elapsed().as_secs_f64() * 1e3))
    }
}

/// A layer on the GPU for the exact direct kernel (`shaders/direct.wgsl`).
#[wasm_bindgen]
pub struct DirectLayer {
    ctx: Rc<Context>,
    conv: Rc<DirectConv>,
}

#[wasm_bindgen]
impl DirectLayer {
    /// Convolves `input` (flat, shape `inputShape`): one run whose output is returned (the
    /// output buffer is filled with NaN first, so anything the kernel missed shows), then
    /// `reps` timed runs after one warm-up (none when `reps` is 0).
    pub async fn run(
        &self,
        input: Vec<f32>,
        input_shape: Vec<u32>,
        reps: u32,
    ) -> Result<ConvOutput, JsError> {
        run_timed(&self.ctx, self.conv.as_ref(), input, &input_shape, reps)
            .await
            .map_err(js_err)
    }

    /// Uploads `input` (flat, shape `inputShape`) once, for runs timed one at a time
    /// ([`BoundRun::time_once`]).
    pub fn bind(&self, input: Vec<f32>, input_shape: Vec<u32>) -> Result<BoundRun, JsError> {
        BoundRun::new(self.ctx.clone(), self.conv.clone(), input, &input_shape).map_err(js_err)
    }
}

/// A MADDNESS layer on the GPU (`shaders/encode.wgsl` + `shaders/accumulate.wgsl` with two
/// positions per invocation in browsers, which expose no subgroups to wgpu), tables resident.
#[wasm_bindgen]
pub struct MaddnessLayer {
    ctx: Rc<Context>,
    conv: Rc<MaddnessConv>,
}

#[wasm_bindgen]
impl MaddnessLayer {
    /// Which look-up kernel runs after `encode` ([`maddconv::gpu::LookupKernel`]):
    /// "two-positions" (the default without subgroups), "one-position" or "shuffle".
    #[wasm_bindgen(getter)]
    pub fn kernels(&self) -> String {
        self.conv.kernels().name().to_string()
    }

    /// Applies the approximate layer to `input` (flat, shape `inputShape`): one run whose
    /// output is returned (output buffer NaN-poisoned first), then `reps` timed runs after one
    /// warm-up; the kernel time is that of all its passes.
    pub async fn run(
        &self,
        input: Vec<f32>,
        input_shape: Vec<u32>,
        reps: u32,
    ) -> Result<ConvOutput, JsError> {
        run_timed(&self.ctx, self.conv.as_ref(), input, &input_shape, reps)
            .await
            .map_err(js_err)
    }

    /// Uploads `input` (flat, shape `inputShape`) once, for runs timed one at a time
    /// ([`BoundRun::time_once`]).
    pub fn bind(&self, input: Vec<f32>, input_shape: Vec<u32>) -> Result<BoundRun, JsError> {
        BoundRun::new(self.ctx.clone(), self.conv.clone(), input, &input_shape).map_err(js_err)
    }
}

/// One convolution's result and timings.
#[wasm_bindgen]
pub struct ConvOutput {
    data: Vec<f32>,
    shape: Vec<usize>,
    kernel_ms: f64,
    kernel_min_ms: f64,
    repetitions: u32,
    clock: String,
    total_ms: f64,
}

#[wasm_bindgen]
impl ConvOutput {
    /// The output, flat in C order (a copy).
    #[wasm_bindgen(getter)]
    pub fn data(&self) -> Vec<f32> {
        self.data.clone()
    }
    /// The output's shape, `N×O×OH×OW` or `N×O×OL`.
    #[wasm_bindgen(getter)]
    pub fn shape(&self) -> Vec<u32> {
        self.shape.iter().map(|&d| d as u32).collect()
    }
    /// Median kernel time in milliseconds over the timed runs (NaN when none were timed).
    #[wasm_bindgen(getter, js_name = kernelMs)]
    pub fn kernel_ms(&self) -> f64 {
        self.kernel_ms
    }
    /// Fastest timed run in milliseconds (NaN when none were timed).
    #[wasm_bindgen(getter, js_name = kernelMinMs)]
    pub fn kernel_min_ms(&self) -> f64 {
        self.kernel_min_ms
    }
    /// Number of timed runs.
    #[wasm_bindgen(getter)]
    pub fn repetitions(&self) -> u32 {
        self.repetitions
    }
    /// How kernel times were measured: `"timestamp"` (GPU timestamp queries, which browsers
    /// may quantise, e.g. to 100 µs), `"wall"` (submit until the GPU is done, from
    /// `performance.now()`), or `"wall (CPU)"` for the CPU reference.
    #[wasm_bindgen(getter)]
    pub fn clock(&self) -> String {
        self.clock.clone()
    }
    /// Wall time of the first run in milliseconds: upload, pipeline creation on first use,
    /// dispatch and readback.
    #[wasm_bindgen(getter, js_name = totalMs)]
    pub fn total_ms(&self) -> f64 {
        self.total_ms
    }
}

impl ConvOutput {
    /// A GPU output read back without timings.
    pub(crate) fn untimed(y: Tensor) -> Self {
        ConvOutput {
            shape: y.shape().to_vec(),
            data: y.into_data(),
            kernel_ms: f64::NAN,
            kernel_min_ms: f64::NAN,
            repetitions: 0,
            clock: "none".into(),
            total_ms: f64::NAN,
        }
    }

    /// A CPU result that took `ms` milliseconds.
    pub(crate) fn cpu(y: Tensor, ms: f64) -> Self {
        ConvOutput {
            shape: y.shape().to_vec(),
            data: y.into_data(),
            kernel_ms: ms,
            kernel_min_ms: ms,
            repetitions: 1,
            clock: "wall (CPU)".into(),
            total_ms: ms,
        }
    }

    /// The output as a tensor (for Rust callers and tests).
    pub fn to_tensor(&self) -> maddconv::Result<Tensor> {
        Tensor::new(self.shape.clone(), self.data.clone())
    }
}

/// Uploads `input` (flat, shape `input_shape`), poisons the output with NaN, records one run
/// of `conv` and reads the output back; then times `reps` runs (after one warm-up) with the
/// library's bench harness. Fails when the input does not fit the layer or the output has a
/// non-finite value (the kernel missed an element, or overflowed).
pub(crate) async fn run_timed(
    ctx: &Context,
    conv: &dyn GpuConv,
    input: Vec<f32>,
    input_shape: &[u32],
    reps: u32,
) -> maddconv::Result<ConvOutput> {
    let input = &Tensor::new(shape_of(input_shape), input)?;
    let out_shape = &conv.output_shape(input.shape())?;
    input.check_finite("input")?;
    let start = Instant::now();
    let x = ctx.upload("input", input)?;
    let y = ctx.create_tensor("output", out_shape)?;
    ctx.fill(&y, f32::NAN);
    let mut encoder = ctx.encoder("run");
    conv.encode(ctx, &mut encoder, &x, &y, None)?;
    ctx.submit(encoder);
    let out = ctx.download(&y).await?;
    let total_ms = start.elapsed().as_secs_f64() * 1e3;
    out.check_finite("GPU output")?;
    let (kernel_ms, kernel_min_ms, clock) = if reps > 0 {
        let method = bench::Method {
            conv,
            input: &x,
            output: &y,
        };
        let timings = bench::time_interleaved(
            ctx,
            &[method],
            Repetitions {
                warmup: 1,
                timed: reps as usize,
            },
        )
        .await?;
        let t = &timings[0];
        (t.median_ms, t.min_ms, t.clock.to_string())
    } else {
        (f64::NAN, f64::NAN, "none".to_string())
    };
    Ok(ConvOutput {
        shape: out.shape().to_vec(),
        data: out.into_data(),
        kernel_ms,
        kernel_min_ms,
        repetitions: reps,
        clock,
        total_ms,
    })
}

/// An f32 `.npy` array read in wasm (the library's reader: little- or big-endian f32 or f64,
/// C order).
#[wasm_bindgen]
pub struct NpyArray {
    inner: Tensor,
}

#[wasm_bindgen]
impl NpyArray {
    /// Parses the bytes of a `.npy` file; `name` is used in error messages.
    #[wasm_bindgen(constructor)]
    pub fn new(bytes: &[u8], name: &str) -> Result<NpyArray, JsError> {
        let inner = Tensor::from_npy_bytes(bytes, name).map_err(js_err)?;
        Ok(NpyArray { inner })
    }
    /// The values, flat in C order (a copy).
    #[wasm_bindgen(getter)]
    pub fn data(&self) -> Vec<f32> {
        self.inner.data().to_vec()
    }
    /// The shape.
    #[wasm_bindgen(getter)]
    pub fn shape(&self) -> Vec<u32> {
        self.inner.shape().iter().map(|&d| d as u32).collect()
    }
}

/// NMSE as in DESIGN.md §5 (`maddconv::metrics::nmse`): `Σ (y − ŷ)² / Σ (y − ȳ_m)²` where
/// `ȳ_m` is the mean of output channel `m` (axis 1 of `shape`, `N×O×OH×OW` or `N×O×OL`) over
/// all samples and positions. `exact` and `approx` are flat in C order.
#[wasm_bindgen]
pub fn nmse(exact: Vec<f32>, approx: Vec<f32>, shape: Vec<u32>) -> Result<f64, JsError> {
    let shape = shape_of(&shape);
    let kind = match shape.len() {
        3 => ConvKind::Conv1d,
        _ => ConvKind::Conv2d,
    };
    let y = Tensor::new(shape.clone(), exact).map_err(js_err)?;
    let yh = Tensor::new(shape, approx).map_err(js_err)?;
    maddconv::metrics::nmse(kind, &yh, &y).map_err(js_err)
}

/// Relative L2 error `‖y − e‖ / ‖e‖` in f64 (the exactness measure of DESIGN.md §5).
#[wasm_bindgen(js_name = relativeL2)]
pub fn relative_l2(computed: &[f32], expected: &[f32]) -> Result<f64, JsError> {
    if computed.len() != expected.len() {
        return Err(JsError::new(&format!(
            "relativeL2: {} computed values but {} expected",
            computed.len(),
            expected.len()
        )));
    }
    Ok(maddconv::metrics::relative_l2(computed, expected))
}

/// The boxes of one image's YOLOX detector output (`[1, N, 5 + classes]` flat, with its shape)
/// for an input image of `height × width` pixels, as `maddconv::boxes::decode_yolox` decodes
/// them (scores above `score`, greedy NMS at IoU `nmsIou`): 5 values per box, highest score
/// first: left, top, right, bottom (input pixels), score.
#[wasm_bindgen(js_name = decodeYolox)]
pub fn decode_yolox(
    output: Vec<f32>,
    shape: Vec<u32>,
    height: u32,
    width: u32,
    score: f32,
    nms_iou: f32,
) -> Result<Vec<f32>, JsError> {
    let t = Tensor::new(shape_of(&shape), output).map_err(js_err)?;
    let d = maddconv::boxes::YoloxDecode {
        score,
        nms_iou,
        ..Default::default()
    };
    let boxes =
        maddconv::boxes::decode_yolox(&t, height as usize, width as usize, &d).map_err(js_err)?;
    Ok(boxes
        .iter()
        .flat_map(|b| [b.bbox[0], b.bbox[1], b.bbox[2], b.bbox[3], b.score])
        .collect())
}

/// Matches two images' boxes ([`decode_yolox`]'s layout, 5 values per box) one to one at
/// IoU ≥ `minIou` as `maddconv::boxes::match_boxes` does: `[matched, exact boxes, approximate
/// boxes]`.
#[wasm_bindgen(js_name = matchBoxes)]
pub fn match_boxes(exact: &[f32], approx: &[f32], min_iou: f32) -> Result<Vec<u32>, JsError> {
    let parse = |v: &[f32], what: &str| -> Result<Vec<maddconv::boxes::Detection>, JsError> {
        if !v.len().is_multiple_of(5) {
            return Err(JsError::new(&format!(
                "matchBoxes: {what} holds {} values, not 5 per box",
                v.len()
            )));
        }
        Ok(v.chunks(5)
            .map(|c| maddconv::boxes::Detection {
                bbox: [c[0], c[1], c[2], c[3]],
                score: c[4],
                class: 0,
            })
            .collect())
    };
    let m =
        maddconv::boxes::match_boxes(&parse(exact, "exact")?, &parse(approx, "approx")?, min_iou);
    Ok(vec![m.matched as u32, m.exact as u32, m.approx as u32])
}
