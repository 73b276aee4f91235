//! The [`Context`]: adapter info, device, queue, granted limits, a pipeline cache keyed by
//! (kernel, override constants), and GPU error collection.
//!
//! Made by [`Context::new`] (finds an adapter), [`Context::from_adapter`] (an adapter the
//! caller found, e.g. a browser's WebGPU adapter) or [`Context::from_device`] (an embedder's or
//! a test's own device). Async only at the edges: creating a context and reading back are
//! `async`; recording and submitting work is synchronous. GPU errors are collected by an error
//! handler and returned as [`Error::Gpu`] at the next readback or [`Context::check_errors`],
//! never as panics. Buffers and tensors: [`crate::gpu::buffer`].

use std::collections::HashMap;
use std::sync::{Arc, Mutex};

use crate::error::{Error, Result};
use crate::gpu::kernel::Kernel;
use crate::gpu::limits;
use crate::gpu::tune::{AdapterIdentity, TuneMode, Tuner};

/// Options for [`Context::new`].
#[derive(Clone, Debug)]
pub struct ContextOptions {
    /// Backends to consider. `None` reads `WGPU_BACKEND` (e.g. `vulkan`, `metal`, `dx12`, `gl`),
    /// or all backends when it is unset.
    pub backends: Option<wgpu::Backends>,
    /// Substring of the adapter name to pick (case-insensitive). `None` reads
    /// `WGPU_ADAPTER_NAME`, or takes the default high-performance adapter when it is unset.
    pub adapter_name: Option<String>,
    /// Limits to request. `None` requests everything the adapter offers; the kernels then use
    /// what was granted, never assuming more than the WebGPU defaults unless granted.
    pub limits: Option<wgpu::Limits>,
    /// Request `TIMESTAMP_QUERY` when the adapter has it (for kernel timings).
    pub timestamps: bool,
    /// Request `SUBGROUP` when the adapter has it (for the subgroup-shuffle look-up kernel).
    pub subgroups: bool,
    /// Whether layers made without an explicit variant time the kernel variants on this
    /// adapter and keep the fastest per shape class ([`crate::gpu::tune`]), and where the
    /// choices are kept. Default [`TuneMode::from_env`]: a file in the platform's cache
    /// directory, or [`TuneMode::Off`] (the fixed defaults) when `MADDCONV_NO_TUNE=1`.
    pub tune: TuneMode,
}

impl Default for ContextOptions {
    fn default() -> Self {
        ContextOptions {
            backends: None,
            adapter_name: None,
            limits: None,
            timestamps: true,
            subgroups: true,
            tune: TuneMode::from_env(),
        }
    }
}

/// A key for the pipeline cache: kernel name and its override constants.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
struct PipelineKey {
    kernel: &'static str,
    overrides: Vec<(&'static str, u64)>,
}

/// What one GPU adapter is, for display (`maddconv info`) and benchmark tables.
#[derive(Clone, Debug)]
pub struct AdapterSummary {
    /// Adapter name, e.g. "llvmpipe (LLVM 19.1.7, 256 bits)" or "NVIDIA H100".
    pub name: String,
    /// Backend, e.g. "vulkan".
    pub backend: String,
    /// Device type, e.g. "Cpu", "DiscreteGpu".
    pub device_type: String,
    /// Driver name and version.
    pub driver: String,
}

impl std::fmt::Display for AdapterSummary {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} ({}, {})", self.name, self.backend, self.device_type)
    }
}

/// A pipeline and the bind-group layout it was made with.
pub(crate) struct Pipeline {
    pub pipeline: wgpu::ComputePipeline,
    pub layout: wgpu::BindGroupLayout,
}

/// The GPU: adapter info, device, queue, granted limits and a pipeline cache.
///
/// Cheap to share by reference; one per process is enough (tests share one per binary).
pub struct Context {
    device: wgpu::Device,
    queue: wgpu::Queue,
    info: wgpu::AdapterInfo,
    limits: wgpu::Limits,
    features: wgpu::Features,
    adapter_features: wgpu::Features,
    pipelines: Mutex<HashMap<PipelineKey, Arc<Pipeline>>>,
    errors: Arc<Mutex<Vec<String>>>,
    tuner: Option<Tuner>,
}

impl std::fmt::Debug for Context {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Context")
            .field("adapter", &self.info.name)
            .field("backend", &self.info.backend)
            .finish_non_exhaustive()
    }
}

impl Context {
    /// Finds an adapter and creates a device on it.
    pub async fn new(options: ContextOptions) -> Result<Context> {
        let backends = match options.backends {
            Some(b) => b,
            None => match std::env::var("WGPU_BACKEND") {
                Ok(v) => {
                    let b = wgpu::Backends::from_comma_list(&v);
                    if b.is_empty() {
                        return Err(Error::NoAdapter(format!(
                            "WGPU_BACKEND={v:?} names no known backend \
                             (vulkan, metal, dx12, gl, webgpu)"
                        )));
                    }
                    b
                }
                Err(_) => wgpu::Backends::all(),
            },
        };
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backends;
        desc.flags = wgpu::InstanceFlags::from_build_config().with_env();
        let instance = wgpu::Instance::new(desc);
        let wanted = options
            .adapter_name
            .clone()
            .or_else(|| std::env::var("WGPU_ADAPTER_NAME").ok())
            .map(|s| s.to_lowercase());
        let adapter = match wanted {
            #[cfg(not(target_arch = "wasm32"))]
            Some(name) => {
                let adapters = instance.enumerate_adapters(backends).await;
                let names: Vec<String> = adapters.iter().map(|a| a.get_info().name).collect();
                adapters
                    .into_iter()
                    .find(|a| a.get_info().name.to_lowercase().contains(&name))
                    .ok_or_else(|| {
                        Error::NoAdapter(format!(
                            "no adapter's name contains {name:?} (backends {backends:?}); \
                             adapters found: {names:?}"
                        ))
                    })?
            }
            _ => instance
                .request_adapter(&wgpu::RequestAdapterOptions {
                    power_preference: wgpu::PowerPreference::HighPerformance,
                    ..Default::default()
                })
                .await
                .map_err(|e| Error::NoAdapter(format!("{e} (backends {backends:?})")))?,
        };
        Context::from_adapter(&adapter, &options).await
    }

    /// Creates a device on an adapter the caller found (a browser's WebGPU adapter, say):
    /// with `options.limits` (all the adapter offers when `None`) and, where the adapter has
    /// them and the options ask for them, timestamp queries and subgroups. `options.backends`
    /// and `options.adapter_name` are not used.
    pub async fn from_adapter(
        adapter: &wgpu::Adapter,
        options: &ContextOptions,
    ) -> Result<Context> {
        let info = adapter.get_info();
        let limits = match &options.limits {
            Some(l) => l.clone(),
            None => adapter.limits(),
        };
        let mut features = wgpu::Features::empty();
        if options.timestamps && adapter.features().contains(wgpu::Features::TIMESTAMP_QUERY) {
            features |= wgpu::Features::TIMESTAMP_QUERY;
        }
        if options.subgroups && adapter.features().contains(wgpu::Features::SUBGROUP) {
            features |= wgpu::Features::SUBGROUP;
        }
        let (device, queue) = adapter
            .request_device(&wgpu::DeviceDescriptor {
                label: Some("maddconv"),
                required_features: features,
                required_limits: limits,
                experimental_features: wgpu::ExperimentalFeatures::disabled(),
                memory_hints: wgpu::MemoryHints::Performance,
                trace: wgpu::Trace::Off,
            })
            .await
            .map_err(|e| Error::RequestDevice(format!("{e} on {}", info.name)))?;
        log::info!(
            "GPU: {} ({:?}, {:?}, driver {} {})",
            info.name,
            info.backend,
            info.device_type,
            info.driver,
            info.driver_info
        );
        let mut ctx = Context::from_device(info, device, queue);
        ctx.adapter_features = adapter.features();
        ctx.set_tuning(&options.tune);
        Ok(ctx)
    }

    /// Creates a context natively, blocking until the device is ready.
    #[cfg(not(target_arch = "wasm32"))]
    pub fn new_blocking(options: ContextOptions) -> Result<Context> {
        pollster::block_on(Context::new(options))
    }

    /// Wraps an existing device and queue (an embedder's, or a test's with special limits).
    /// The limits and features used are the device's own. Tuning is off (the fixed defaults)
    /// until [`Self::set_tuning`] turns it on.
    pub fn from_device(info: wgpu::AdapterInfo, device: wgpu::Device, queue: wgpu::Queue) -> Self {
        let errors: Arc<Mutex<Vec<String>>> = Arc::default();
        let sink = errors.clone();
        device.on_uncaptured_error(Arc::new(move |e: wgpu::Error| {
            log::error!("wgpu: {e}");
            if let Ok(mut v) = sink.lock() {
                v.push(e.to_string());
            }
        }));
        Context {
            limits: device.limits(),
            features: device.features(),
            adapter_features: device.features(),
            device,
            queue,
            info,
            pipelines: Mutex::default(),
            errors,
            tuner: None,
        }
    }

    /// Turns tuning on or off ([`TuneMode`]); on, the choices are loaded from the cache file of
    /// this adapter (a corrupt or stale file is ignored with a warning).
    pub fn set_tuning(&mut self, mode: &TuneMode) {
        self.tuner = Tuner::new(mode, AdapterIdentity::of(&self.info));
    }

    /// The tuning cache, or `None` when tuning is off (the fixed defaults).
    pub fn tuner(&self) -> Option<&Tuner> {
        self.tuner.as_ref()
    }

    /// Replaces the adapter's name in [`Self::adapter_info`] and [`Self::summary`] (browsers
    /// often leave it empty and say more through their own adapter info).
    pub fn set_adapter_name(&mut self, name: String) {
        self.info.name = name;
    }

    /// The device.
    pub fn device(&self) -> &wgpu::Device {
        &self.device
    }
    /// The queue.
    pub fn queue(&self) -> &wgpu::Queue {
        &self.queue
    }
    /// The limits the device was granted.
    pub fn limits(&self) -> &wgpu::Limits {
        &self.limits
    }
    /// The features the device was granted.
    pub fn features(&self) -> wgpu::Features {
        self.features
    }
    /// Everything the adapter offers (a superset of [`Self::features`]).
    pub fn adapter_features(&self) -> wgpu::Features {
        self.adapter_features
    }
    /// The adapter's description.
    pub fn adapter_info(&self) -> &wgpu::AdapterInfo {
        &self.info
    }
    /// True when the device has subgroup operations.
    pub fn has_subgroups(&self) -> bool {
        self.features.contains(wgpu::Features::SUBGROUP)
    }
    /// True when kernel times can be read from timestamp queries.
    pub fn has_timestamps(&self) -> bool {
        self.features.contains(wgpu::Features::TIMESTAMP_QUERY)
    }

    /// Name, backend, type and driver of the adapter.
    pub fn summary(&self) -> AdapterSummary {
        AdapterSummary {
            name: self.info.name.clone(),
            backend: format!("{:?}", self.info.backend).to_lowercase(),
            device_type: format!("{:?}", self.info.device_type),
            driver: format!("{} {}", self.info.driver, self.info.driver_info)
                .trim()
                .to_string(),
        }
    }

    /// Returns (and clears) the GPU errors reported since the last check.
    pub fn check_errors(&self) -> Result<()> {
        let mut v = self
            .errors
            .lock()
            .map_err(|_| Error::Gpu("error list poisoned".into()))?;
        if v.is_empty() {
            return Ok(());
        }
        let msg = v.join("; ");
        v.clear();
        Err(Error::Gpu(msg))
    }

    /// The largest storage buffer binding, in bytes (also bounded by `max_buffer_size`).
    /// The largest storage buffer binding, in bytes (also bounded by `max_buffer_size`).
    pub fn max_binding_bytes(&self) -> u64 {
        limits::max_binding_bytes(&self.limits)
    }

    /// Fails with [`Error::TooLarge`] when a storage binding of `bytes` exceeds the limits.
    pub fn check_binding_size(&self, what: &str, bytes: u64) -> Result<()> {
        limits::check_binding_size(&self.limits, &self.info.name, what, bytes)
    }

    /// The compute pipeline of `kernel` specialised with `overrides`, created once and cached.
    pub(crate) fn pipeline(
        &self,
        kernel: &'static Kernel,
        overrides: &[(&'static str, u32)],
    ) -> Result<Arc<Pipeline>> {
        let key = PipelineKey {
            kernel: kernel.name,
            overrides: overrides.iter().map(|&(k, v)| (k, v as u64)).collect(),
        };
        if let Some(p) = self
            .pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?
            .get(&key)
        {
            return Ok(p.clone());
        }
        if kernel.subgroups && !self.has_subgroups() {
            return Err(Error::Unsupported(format!(
                "the {} kernel needs subgroup operations, which {} lacks",
                kernel.name, self.info.name
            )));
        }
        limits::check_kernel(&self.limits, &self.info.name, kernel)?;
        // Browsers require the WGSL extension to be enabled; naga takes the built-ins as they are.
        let source: std::borrow::Cow<'static, str> =
            if kernel.subgroups && cfg!(target_arch = "wasm32") {
                format!("enable subgroups;\n{}", kernel.source).into()
            } else {
                kernel.source.into()
            };
        let module = self
            .device
            .create_shader_module(wgpu::ShaderModuleDescriptor {
                label: Some(kernel.name),
                source: wgpu::ShaderSource::Wgsl(source),
            });
        let layout = self
            .device
            .create_bind_group_layout(&wgpu::BindGroupLayoutDescriptor {
                label: Some(kernel.name),
                entries: &kernel.layout_entries(),
            });
        let pipeline_layout = self
            .device
            .create_pipeline_layout(&wgpu::PipelineLayoutDescriptor {
                label: Some(kernel.name),
                bind_group_layouts: &[Some(&layout)],
                immediate_size: 0,
            });
        let constants: Vec<(&str, f64)> = overrides.iter().map(|&(k, v)| (k, v as f64)).collect();
        let pipeline = self
            .device
            .create_compute_pipeline(&wgpu::ComputePipelineDescriptor {
                label: Some(kernel.name),
                layout: Some(&pipeline_layout),
                module: &module,
                entry_point: Some(kernel.name),
                compilation_options: wgpu::PipelineCompilationOptions {
                    constants: &constants,
                    zero_initialize_workgroup_memory: false,
                },
                cache: None,
            });
        self.check_errors()?;
        let p = Arc::new(Pipeline { pipeline, layout });
        self.pipelines
            .lock()
            .map_err(|_| Error::Gpu("pipeline cache poisoned".into()))?
            .insert(key, p.clone());
        Ok(p)
    }

    /// A bind group for `pipeline` over whole buffers, in binding order.
    pub(crate) fn bind_group(
        &self,
        label: &str,
        pipeline: &Pipeline,
        buffers: &[&wgpu::Buffer],
    ) -> wgpu::BindGroup {
        let entries: Vec<wgpu::BindGroupEntry> = buffers
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupEntry {
                binding: i as u32,
                resource: b.as_entire_binding(),
            })
            .collect();
        self.device.create_bind_group(&wgpu::BindGroupDescriptor {
            label: Some(label),
            layout: &pipeline.layout,
            entries: &entries,
        })
    }

    /// Records one compute pass of `kernel` (specialised with `overrides`) with `buffers` bound
    /// in binding order, over `workgroups` workgroups folded into a grid within the device's
    /// per-dimension limit (see [`Self::grid`]), with optional timestamp writes around it.
    pub(crate) fn dispatch(
        &self,
        encoder: &mut wgpu::CommandEncoder,
        kernel: &'static Kernel,
        overrides: &[(&'static str, u32)],
        buffers: &[&wgpu::Buffer],
        workgroups: u64,
        timestamps: Option<wgpu::ComputePassTimestampWrites<'_>>,
    ) -> Result<()> {
        let workgroups = u32::try_from(workgroups).map_err(|_| Error::TooLarge {
            what: format!("workgroups of the {} kernel", kernel.name),
            value: workgroups,
            limit: u32::MAX as u64,
            why: "32-bit workgroup index".into(),
        })?;
        let grid = self.grid(workgroups)?;
        let pipeline = self.pipeline(kernel, overrides)?;
        let bind = self.bind_group(kernel.name, &pipeline, buffers);
        let mut pass = encoder.begin_compute_pass(&wgpu::ComputePassDescriptor {
            label: Some(kernel.name),
            timestamp_writes: timestamps,
        });
        pass.set_pipeline(&pipeline.pipeline);
        pass.set_bind_group(0, &bind, &[]);
        pass.dispatch_workgroups(grid.0, grid.1, grid.2);
        Ok(())
    }

    /// Waits until all submitted work has finished.
    pub async fn wait_idle(&self) -> Result<()> {
        let (tx, rx) = futures_channel::oneshot::channel();
        self.queue.on_submitted_work_done(move || {
            let _ = tx.send(());
        });
        self.poll_wait()?;
        rx.await
            .map_err(|_| Error::Gpu("the device dropped the completion callback".into()))?;
        self.check_errors()
    }

    /// Natively: blocks until the queue is empty. On the web the browser drives completion.
    pub(crate) fn poll_wait(&self) -> Result<()> {
        #[cfg(not(target_arch = "wasm32"))]
        self.device
            .poll(wgpu::PollType::wait_indefinitely())
            .map_err(|e| Error::Gpu(format!("waiting for the GPU failed: {e}")))?;
        Ok(())
    }

    /// A command encoder labelled `label`.
    pub fn encoder(&self, label: &str) -> wgpu::CommandEncoder {
        self.device
            .create_command_encoder(&wgpu::CommandEncoderDescriptor { label: Some(label) })
    }

    /// Submits recorded work.
    pub fn submit(&self, encoder: wgpu::CommandEncoder) {
        self.queue.submit([encoder.finish()]);
    }

    /// Splits `total` workgroups into a grid no dimension of which exceeds the device's
    /// `max_compute_workgroups_per_dimension`. Kernels rebuild the linear index as
    /// `wid.x + wid.y * num_workgroups.x` and skip indices ≥ `total`.
    pub fn grid(&self, total: u32) -> Result<(u32, u32, u32)> {
        let max = self.limits.max_compute_workgroups_per_dimension.max(1);
        if total <= max {
            return Ok((total.max(1), 1, 1));
        }
        let y = total.div_ceil(max);
        if y > max {
            return Err(Error::TooLarge {
                what: "workgroups in one dispatch".into(),
                value: total as u64,
                limit: max as u64 * max as u64,
                why: "max_compute_workgroups_per_dimension squared".into(),
            });
        }
        Ok((max, y, 1))
    }
}
