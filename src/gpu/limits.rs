//! Checks of work against the device's granted limits, made before anything reaches the GPU:
//! a kernel's workgroup size and workgroup memory (its real declared bytes, see
//! [`crate::gpu::Kernel`]), storage-binding sizes, and how many samples of a batch fit one
//! dispatch. Every error names the kernel or buffer, the value needed and the limit granted.
//!
//! The functions take the granted [`wgpu::Limits`] and the adapter's name, so this module
//! depends on [`crate::gpu::kernel`] only.

use crate::error::{Error, Result};
use crate::gpu::kernel::{Binding, Kernel};

/// The largest storage buffer binding, in bytes (`max_storage_buffer_binding_size`, bounded by
/// `max_buffer_size`).
pub fn max_binding_bytes(limits: &wgpu::Limits) -> u64 {
    limits
        .max_storage_buffer_binding_size
        .min(limits.max_buffer_size)
}

/// Fails with [`Error::TooLarge`] when a storage binding of `bytes` exceeds the limits.
pub fn check_binding_size(
    limits: &wgpu::Limits,
    adapter: &str,
    what: &str,
    bytes: u64,
) -> Result<()> {
    let limit = max_binding_bytes(limits);
    if bytes > limit {
        return Err(Error::TooLarge {
            what: format!("{what} (bytes)"),
            value: bytes,
            limit,
            why: format!("max_storage_buffer_binding_size/max_buffer_size of {adapter}"),
        });
    }
    Ok(())
}

/// Fails with [`Error::TooLarge`] when the device grants less than `kernel` needs: invocations
/// per workgroup, workgroup size along x, workgroup memory (the bytes the shader declares), or
/// storage buffers per shader stage.
pub fn check_kernel(limits: &wgpu::Limits, adapter: &str, kernel: &Kernel) -> Result<()> {
    let storage = kernel
        .bindings
        .iter()
        .filter(|b| **b != Binding::Uniform)
        .count() as u32;
    let need = [
        (
            "invocations per workgroup",
            "max_compute_invocations_per_workgroup",
            limits.max_compute_invocations_per_workgroup,
            kernel.workgroup_size,
        ),
        (
            "workgroup size along x",
            "max_compute_workgroup_size_x",
            limits.max_compute_workgroup_size_x,
            kernel.workgroup_size,
        ),
        (
            "bytes of workgroup memory",
            "max_compute_workgroup_storage_size",
            limits.max_compute_workgroup_storage_size,
            kernel.workgroup_bytes,
        ),
        (
            "storage buffers",
            "max_storage_buffers_per_shader_stage",
            limits.max_storage_buffers_per_shader_stage,
            storage,
        ),
    ];
    for (what, name, have, want) in need {
        if have < want {
            return Err(Error::TooLarge {
                what: format!("{what} of the {} kernel", kernel.name),
                value: want as u64,
                limit: have as u64,
                why: format!("{name} granted by {adapter}; choose another kernel or adapter"),
            });
        }
    }
    Ok(())
}

/// How many of `batch` samples fit one dispatch when each sample takes `per_sample` bytes in
/// each of the named buffers (input, output, codes, ...); fails when not even one does.
pub fn batch_chunk(
    limits: &wgpu::Limits,
    adapter: &str,
    batch: usize,
    per_sample: &[(&str, u64)],
) -> Result<usize> {
    let limit = max_binding_bytes(limits);
    let (what, per) = per_sample
        .iter()
        .copied()
        .max_by_key(|&(_, b)| b)
        .unwrap_or(("a sample", 1));
    let chunk = (limit / per.max(1)) as usize;
    if chunk == 0 {
        return Err(Error::TooLarge {
            what: format!("one sample of the {what} (bytes)"),
            value: per,
            limit,
            why: format!(
                "max_storage_buffer_binding_size of {adapter}; slicing goes no finer than one \
                 sample"
            ),
        });
    }
    Ok(chunk.min(batch).max(1))
}
