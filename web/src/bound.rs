//! A GPU layer bound to one resident input, timed one run at a time, so that JS can interleave
//! its runs with another engine's (ONNX Runtime Web) on the same adapter.

use std::cell::Cell;
use std::rc::Rc;

use maddconv::clock::Instant;
use maddconv::gpu::timer::GpuTimer;
use maddconv::gpu::{Context, GpuConv, GpuTensor};
use maddconv::Tensor;
use wasm_bindgen::prelude::*;

use crate::{js_err, shape_of, ConvOutput};

/// A GPU layer bound to one resident input (made by `DirectLayer.bind` or
/// `MaddnessLayer.bind`), timed one run at a time so that JS can interleave its runs with
/// another engine's.
#[wasm_bindgen]
pub struct BoundRun {
    ctx: Rc<Context>,
    conv: Rc<dyn GpuConv>,
    input: GpuTensor,
    output: GpuTensor,
    timer: Cell<Option<GpuTimer>>,
    has_timer: bool,
    busy: Cell<bool>,
    runs: Cell<u32>,
}

impl BoundRun {
    /// Uploads `input` (checked against the layer, finite) and creates the output, filled with
    /// NaN so that an element no run wrote shows in [`Self::output`].
    pub(crate) fn new(
        ctx: Rc<Context>,
        conv: Rc<dyn GpuConv>,
        input: Vec<f32>,
        input_shape: &[u32],
    ) -> maddconv::Result<BoundRun> {
        let x = Tensor::new(shape_of(input_shape), input)?;
        let out_shape = conv.output_shape(x.shape())?;
        x.check_finite("input")?;
        let input = ctx.upload("bound input", &x)?;
        let output = ctx.create_tensor("bound output", &out_shape)?;
        ctx.fill(&output, f32::NAN);
        let timer = GpuTimer::new(&ctx, conv.passes().max(1) as u32);
        Ok(BoundRun {
            ctx,
            conv,
            input,
            output,
            has_timer: timer.is_some(),
            timer: Cell::new(timer),
            busy: Cell::new(false),
            runs: Cell::new(0),
        })
    }

    /// Encodes, submits and waits for one run: (kernel ms from the timer or NaN, wall ms).
    async fn run_once(&self, timer: Option<&mut GpuTimer>) -> maddconv::Result<(f64, f64)> {
        let start = Instant::now();
        let mut encoder = self.ctx.encoder("bound run");
        let mut timer = timer;
        self.conv.encode(
            &self.ctx,
            &mut encoder,
            &self.input,
            &self.output,
            timer.as_deref_mut(),
        )?;
        if let Some(t) = timer.as_deref() {
            t.resolve(&mut encoder);
        }
        self.ctx.submit(encoder);
        let kernel_ms = match timer {
            Some(t) => t.read(&self.ctx).await?.iter().sum(),
            None => {
                self.ctx.wait_idle().await?;
                f64::NAN
            }
        };
        Ok((kernel_ms, start.elapsed().as_secs_f64() * 1e3))
    }
}

#[wasm_bindgen]
impl BoundRun {
    /// One run of the layer on the bound input, timed ([`RunTime`]).
    #[wasm_bindgen(js_name = timeOnce)]
    pub async fn time_once(&self) -> Result<RunTime, JsError> {
        if self.busy.replace(true) {
            return Err(JsError::new(
                "BoundRun.timeOnce: the previous run has not finished (await it first)",
            ));
        }
        // The timer leaves its cell for the run, so no borrow is held across the awaits.
        let mut timer = self.timer.take();
        let result = self.run_once(timer.as_mut()).await;
        self.timer.replace(timer);
        self.busy.set(false);
        let (kernel_ms, wall_ms) = result.map_err(js_err)?;
        self.runs.set(self.runs.get() + 1);
        Ok(RunTime {
            kernel_ms,
            wall_ms,
            clock: if self.has_timer { "timestamp" } else { "wall" },
        })
    }

    /// Records and submits one run without waiting for it (no timing): for a chain of GPU work
    /// on one device, where the next engine's commands, queued after these, read the output
    /// buffer ([`Self::output_buffer`]). Refused while a [`Self::time_once`] is in flight.
    pub fn submit(&self) -> Result<(), JsError> {
        if self.busy.get() {
            return Err(JsError::new(
                "BoundRun.submit: a timed run has not finished (await it first)",
            ));
        }
        let mut encoder = self.ctx.encoder("bound run");
        self.conv
            .encode(&self.ctx, &mut encoder, &self.input, &self.output, None)
            .map_err(js_err)?;
        self.ctx.submit(encoder);
        self.runs.set(self.runs.get() + 1);
        Ok(())
    }

    /// Replaces the bound input's values (same length as the bound shape, finite).
    pub fn write(&self, input: &[f32]) -> Result<(), JsError> {
        let want = self.input.len();
        if input.len() != want {
            return Err(JsError::new(&format!(
                "BoundRun.write: {} values given, the bound input {:?} holds {want}",
                input.len(),
                self.input.shape()
            )));
        }
        if let Some(i) = input.iter().position(|v| !v.is_finite()) {
            return Err(JsError::new(&format!(
                "BoundRun.write: input value {i} is {} (inputs must be finite)",
                input[i]
            )));
        }
        if !input.is_empty() {
            self.ctx
                .queue()
                .write_buffer(&self.input.buffer, 0, bytemuck::cast_slice(input));
        }
        Ok(())
    }

    /// The input's `GPUBuffer` (usage STORAGE | COPY_SRC | COPY_DST, f32 in the bound shape),
    /// for another engine on the same `GPUDevice` ([`crate::Gpu::device`]) to write into, e.g.
    /// as a pre-allocated output of ONNX Runtime Web (`ort.Tensor.fromGpuBuffer`).
    #[wasm_bindgen(getter, js_name = inputBuffer)]
    pub fn input_buffer(&self) -> Result<JsValue, JsError> {
        web_buffer(&self.input.buffer)
    }

    /// The output's `GPUBuffer` (same usage), which the next engine on the same device can read.
    #[wasm_bindgen(getter, js_name = outputBuffer)]
    pub fn output_buffer(&self) -> Result<JsValue, JsError> {
        web_buffer(&self.output.buffer)
    }

    /// The bound input's shape.
    #[wasm_bindgen(getter, js_name = inputShape)]
    pub fn input_shape(&self) -> Vec<u32> {
        self.input.shape().iter().map(|&d| d as u32).collect()
    }

    /// The output's shape.
    #[wasm_bindgen(getter, js_name = outputShape)]
    pub fn output_shape(&self) -> Vec<u32> {
        self.output.shape().iter().map(|&d| d as u32).collect()
    }

    /// The output of the runs so far, read back. Fails before the first run, and when an
    /// element is not finite (the kernel missed it, or overflowed).
    pub async fn output(&self) -> Result<ConvOutput, JsError> {
        if self.runs.get() == 0 {
            return Err(JsError::new(
                "BoundRun.output: no run yet (call timeOnce first)",
            ));
        }
        let y = self.ctx.download(&self.output).await.map_err(js_err)?;
        y.check_finite("GPU output").map_err(js_err)?;
        Ok(ConvOutput::untimed(y))
    }
}

/// The times of one [`BoundRun`] run.
#[wasm_bindgen]
pub struct RunTime {
    kernel_ms: f64,
    wall_ms: f64,
    clock: &'static str,
}

#[wasm_bindgen]
impl RunTime {
    /// GPU time of the layer's passes in milliseconds, from timestamp queries (NaN where the
    /// adapter has none).
    #[wasm_bindgen(getter, js_name = kernelMs)]
    pub fn kernel_ms(&self) -> f64 {
        self.kernel_ms
    }
    /// Milliseconds from just before the commands are recorded until the GPU has finished
    /// them (`performance.now()`): the span JS measures around another engine's run.
    #[wasm_bindgen(getter, js_name = wallMs)]
    pub fn wall_ms(&self) -> f64 {
        self.wall_ms
    }
    /// "timestamp" (kernel times from timestamp queries) or "wall" (none).
    #[wasm_bindgen(getter)]
    pub fn clock(&self) -> String {
        self.clock.into()
    }
}

/// The browser's `GPUBuffer` behind a wgpu buffer.
fn web_buffer(buffer: &wgpu::Buffer) -> Result<JsValue, JsError> {
    buffer
        .as_webgpu()
        .map(|b| JsValue::from(b.clone()))
        .ok_or_else(|| JsError::new("this buffer is not a WebGPU buffer (not in a browser?)"))
}
