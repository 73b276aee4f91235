//! `maddconv info`: what the GPU adapter is and what it allows.

use anyhow::Result;
use clap::Args;

/// Arguments of `maddconv info`.
#[derive(Args, Debug)]
pub struct InfoArgs {
    /// Print every limit the device was granted, not only the key ones.
    #[arg(long)]
    pub all_limits: bool,
}

/// Prints the adapter, backend, device type, key limits and features.
pub fn run(args: InfoArgs) -> Result<()> {
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
    Ok(())
}
