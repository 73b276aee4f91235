//! The registry of WGSL kernels: source, entry point and the bind-group layout the host uses.
//!
//! One kernel per `shaders/*.wgsl`; the file stem names the entry point and labels every wgpu
//! object made for it. Tests parse each source with naga and check that the bindings declared
//! here match the shader's globals (binding index, address space, access).

/// How a kernel binding is used. Every binding lives in group 0.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Binding {
    /// `var<uniform>`: a small parameter struct.
    Uniform,
    /// `var<storage, read>`.
    StorageRead,
    /// `var<storage, read_write>`.
    StorageReadWrite,
}

/// A compute kernel: one WGSL file, one entry point named like the file.
#[derive(Debug)]
pub struct Kernel {
    /// File stem of `shaders/NAME.wgsl` and name of its entry point.
    pub name: &'static str,
    /// The WGSL source.
    pub source: &'static str,
    /// Bindings in order `@binding(0)`, `@binding(1)`, ... of `@group(0)`.
    pub bindings: &'static [Binding],
}

impl Kernel {
    /// The bind-group layout entries for [`Self::bindings`].
    pub fn layout_entries(&self) -> Vec<wgpu::BindGroupLayoutEntry> {
        self.bindings
            .iter()
            .enumerate()
            .map(|(i, b)| wgpu::BindGroupLayoutEntry {
                binding: i as u32,
                visibility: wgpu::ShaderStages::COMPUTE,
                ty: wgpu::BindingType::Buffer {
                    ty: match b {
                        Binding::Uniform => wgpu::BufferBindingType::Uniform,
                        Binding::StorageRead => {
                            wgpu::BufferBindingType::Storage { read_only: true }
                        }
                        Binding::StorageReadWrite => {
                            wgpu::BufferBindingType::Storage { read_only: false }
                        }
                    },
                    has_dynamic_offset: false,
                    min_binding_size: None,
                },
                count: None,
            })
            .collect()
    }
}

use Binding::{StorageRead as R, StorageReadWrite as RW, Uniform as U};

/// Exact convolution, implicit GEMM tiled through workgroup memory.
pub const DIRECT: Kernel = Kernel {
    name: "direct",
    source: include_str!("../../shaders/direct.wgsl"),
    bindings: &[U, R, R, R, RW],
};

/// Exact convolution, one output per invocation, no tiling: the naive baseline for benchmarks.
pub const DIRECT_NAIVE: Kernel = Kernel {
    name: "direct_naive",
    source: include_str!("../../shaders/direct_naive.wgsl"),
    bindings: &[U, R, R, R, RW],
};

/// Every kernel of the crate, for validation tests and warm-up.
pub const ALL: &[&Kernel] = &[&DIRECT, &DIRECT_NAIVE];
