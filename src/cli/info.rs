//! `maddconv info`: what the GPU adapter is and what it allows.

use anyhow::Result;
use clap::Args;

/// Arguments of `maddconv info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print every limit the device was granted, not only the key ones.
    #[arg(long)]
    pub all_limits: bool,
    /// List every adapter wgpu finds on each backend (Vulkan, GL, Metal, DX12): name, type,
    /// driver, key limits and features, without creating a device; then exit.
    #[arg(long)]
    pub all_backends: bool,
}

/// Prints every adapter of each backend.
fn all_backends() -> Result<()> {
    for (name, backend) in [
        ("vulkan", wgpu::Backends::VULKAN),
        ("gl", wgpu::Backends::GL),
        ("metal", wgpu::Backends::METAL),
        ("dx12", wgpu::Backends::DX12),
    ] {
        let mut desc = wgpu::InstanceDescriptor::new_without_display_handle();
        desc.backends = backend;
        desc.flags = wgpu::InstanceFlags::from_build_config().with_env();
        let instance = wgpu::Instance::new(desc);
        let adapters = pollster::block_on(instance.enumerate_adapters(backend));
        println!("backend {name}: {} adapter(s)", adapters.len());
        for a in adapters {
            let i = a.get_info();
            let l = a.limits();
            println!("  adapter:     {}", i.name);
            println!("    type:      {:?}", i.device_type);
            println!("    driver:    {} {}", i.driver, i.driver_info);
            println!("    vendor/device: {:#06x}/{:#06x}", i.vendor, i.device);
            println!(
                "    subgroups: {}..={}",
                i.subgroup_min_size, i.subgroup_max_size
            );
            println!(
                "    limits:    storage binding {} B, buffer {} B, workgroup memory {} B, \
                 invocations {}, workgroups/dim {}, storage buffers/stage {}",
                l.max_storage_buffer_binding_size,
                l.max_buffer_size,
                l.max_compute_workgroup_storage_size,
                l.max_compute_invocations_per_workgroup,
                l.max_compute_workgroups_per_dimension,
                l.max_storage_buffers_per_shader_stage
            );
            println!("    features:  {:?}", a.features());
        }
    }
    Ok(())
}

/// Prints the tuning cache of the context's adapter.
fn tuning(ctx: &maddconv::gpu::Context) {
    let Some(t) = ctx.tuner() else {
        println!("tuning:       off (--no-tune or MADDCONV_NO_TUNE=1): fixed kernel defaults");
        return;
    };
    let cache = t.snapshot();
    println!(
        "tuning cache: {} ({} shape classes, maddconv {})",
        t.path()
            .map(|p| p.display().to_string())
            .unwrap_or_else(|| "memory only".into()),
        cache.entries.len(),
        cache.maddconv
    );
    for (class, e) in &cache.entries {
        println!(
            "  {class:<40} {:<36} {:>9.3} ms (default {:.3} ms, {} variants, tuned on {:?})",
            e.variant.to_string(),
            e.median_ms,
            e.default_ms,
            e.candidates,
            e.shape
        );
    }
}

/// Prints the adapter, backend, device type, key limits and features.
pub fn run(args: InfoArgs) -> Result<()> {
    if args.all_backends {
        return all_backends();
    }
    let ctx = super::gpu()?;
    let s = ctx.summary();
    let l = ctx.limits();
    println!("adapter:      {}", s.name);
    println!("backend:      {}", s.backend);
    println!("device type:  {}", s.device_type);
    println!("driver:       {}", s.driver);
    println!(
        "timestamps:   {}",
        if ctx.has_timestamps() { "yes" } else { "no" }
    );
    let info = ctx.adapter_info();
    println!(
        "subgroups:    {}",
        if ctx.has_subgroups() {
            format!(
                "yes, size {}..={}",
                info.subgroup_min_size, info.subgroup_max_size
            )
        } else {
            "no".into()
        }
    );
    println!("features in use:   {:?}", ctx.features());
    println!("adapter features:  {:?}", ctx.adapter_features());
    println!("key limits:");
    let key: [(&str, u64); 8] = [
        (
            "max_storage_buffer_binding_size",
            l.max_storage_buffer_binding_size,
        ),
        ("max_buffer_size", l.max_buffer_size),
        (
            "max_compute_workgroup_storage_size",
            l.max_compute_workgroup_storage_size as u64,
        ),
        (
            "max_compute_invocations_per_workgroup",
            l.max_compute_invocations_per_workgroup as u64,
        ),
        (
            "max_compute_workgroup_size_x",
            l.max_compute_workgroup_size_x as u64,
        ),
        (
            "max_compute_workgroups_per_dimension",
            l.max_compute_workgroups_per_dimension as u64,
        ),
        (
            "max_storage_buffers_per_shader_stage",
            l.max_storage_buffers_per_shader_stage as u64,
        ),
        (
            "min_storage_buffer_offset_alignment",
            l.min_storage_buffer_offset_alignment as u64,
        ),
    ];
    for (name, v) in key {
        println!("  {name:<40} {v}");
    }
    if args.all_limits {
        println!("all limits: {l:#?}");
    }
    tuning(&ctx);
    Ok(())
}
