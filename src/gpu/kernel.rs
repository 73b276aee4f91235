//! The registry of WGSL kernels: source, entry point and the bind-group layout the host uses.
//!
//! One kernel per `shaders/*.wgsl`; the file stem names the entry point and labels every wgpu
//! object made for it. Code shared by several kernels lives in `shaders/common/*.wgsl` and is
//! prepended to their source at compile time. Tests parse each source with naga and check that the bindings declared
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
    /// The WGSL source: `shaders/NAME.wgsl`, after the `shaders/common/*.wgsl` files it uses
    /// (WGSL has no includes, so they are concatenated at compile time).
    pub source: &'static str,
    /// Bindings in order `@binding(0)`, `@binding(1)`, ... of `@group(0)`.
    pub bindings: &'static [Binding],
    /// Size in bytes of the host struct written to the uniform binding (checked against the
    /// shader's struct by [`Kernel::validate`]).
    pub params_size: usize,
    /// The shader uses subgroup operations (`enable subgroups;`); only run it on devices with
    /// `Features::SUBGROUP`.
    pub subgroups: bool,
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

impl Kernel {
    /// Parses and validates the WGSL with naga (no GPU needed), then checks that the entry
    /// point exists and that the shader's `@group(0)` bindings are exactly [`Self::bindings`].
    /// Errors are rendered with source locations.
    pub fn validate(&self) -> Result<naga::Module, String> {
        let module = naga::front::wgsl::parse_str(self.source)
            .map_err(|e| e.emit_to_string_with_path(self.source, &self.file()))?;
        let caps = if self.subgroups {
            naga::valid::Capabilities::SUBGROUP
        } else {
            naga::valid::Capabilities::empty()
        };
        let mut validator = naga::valid::Validator::new(naga::valid::ValidationFlags::all(), caps);
        if self.subgroups {
            validator
                .subgroup_stages(naga::valid::ShaderStages::COMPUTE)
                .subgroup_operations(naga::valid::SubgroupOperationSet::all());
        }
        validator
            .validate(&module)
            .map_err(|e| e.emit_to_string_with_path(self.source, &self.file()))?;
        if !module
            .entry_points
            .iter()
            .any(|e| e.name == self.name && e.stage == naga::ShaderStage::Compute)
        {
            return Err(format!(
                "{}: no compute entry point named {:?}",
                self.file(),
                self.name
            ));
        }
        let mut found: Vec<(u32, Binding)> = Vec::new();
        let mut uniform_sizes = Vec::new();
        for (_, var) in module.global_variables.iter() {
            let Some(rb) = &var.binding else { continue };
            let name = var.name.clone().unwrap_or_default();
            if rb.group != 0 {
                return Err(format!(
                    "{}: {name} is in group {}, not 0",
                    self.file(),
                    rb.group
                ));
            }
            let kind = match var.space {
                naga::AddressSpace::Uniform => {
                    uniform_sizes.push(module.types[var.ty].inner.size(module.to_ctx()) as usize);
                    Binding::Uniform
                }
                naga::AddressSpace::Storage { access } => {
                    if access.contains(naga::StorageAccess::STORE) {
                        Binding::StorageReadWrite
                    } else {
                        Binding::StorageRead
                    }
                }
                other => {
                    return Err(format!(
                        "{}: binding {} ({name}) is in address space {other:?}, which the host \
                         does not bind",
                        self.file(),
                        rb.binding
                    ))
                }
            };
            found.push((rb.binding, kind));
        }
        found.sort_by_key(|b| b.0);
        let expected: Vec<(u32, Binding)> = self
            .bindings
            .iter()
            .enumerate()
            .map(|(i, b)| (i as u32, *b))
            .collect();
        if found != expected {
            return Err(format!(
                "{}: the shader declares bindings {found:?} but the host layout is {expected:?}",
                self.file()
            ));
        }
        if uniform_sizes.iter().any(|&s| s != self.params_size) {
            return Err(format!(
                "{}: the shader's uniform struct is {uniform_sizes:?} bytes, the host's {}",
                self.file(),
                self.params_size
            ));
        }
        Ok(module)
    }

    /// `shaders/NAME.wgsl`. Where common files are prepended, error line numbers count from the
    /// start of the composed [`source`](Self::source).
    pub fn file(&self) -> String {
        format!("shaders/{}.wgsl", self.name)
    }
}

use crate::gpu::direct::ConvParams;
use crate::gpu::maddness::MaddParams;
use std::mem::size_of;
use Binding::{StorageRead as R, StorageReadWrite as RW, Uniform as U};

/// Exact convolution, implicit GEMM tiled through workgroup memory.
pub const DIRECT: Kernel = Kernel {
    name: "direct",
    source: concat!(
        include_str!("../../shaders/common/conv_params.wgsl"),
        include_str!("../../shaders/direct.wgsl")
    ),
    bindings: &[U, R, R, R, RW],
    params_size: size_of::<ConvParams>(),
    subgroups: false,
};

/// Exact convolution, one output per invocation, no tiling: the naive baseline for benchmarks.
pub const DIRECT_NAIVE: Kernel = Kernel {
    name: "direct_naive",
    source: concat!(
        include_str!("../../shaders/common/conv_params.wgsl"),
        include_str!("../../shaders/direct_naive.wgsl")
    ),
    bindings: &[U, R, R, R, RW],
    params_size: size_of::<ConvParams>(),
    subgroups: false,
};

/// Exact convolution, one position × 8 channels per invocation, weights by subgroup
/// broadcast (adapters with subgroups of ≥ 8 invocations).
pub const DIRECT_SUBGROUP: Kernel = Kernel {
    name: "direct_subgroup",
    source: concat!(
        include_str!("../../shaders/common/conv_params.wgsl"),
        include_str!("../../shaders/direct_subgroup.wgsl")
    ),
    bindings: &[U, R, R, R, RW],
    params_size: size_of::<ConvParams>(),
    subgroups: true,
};

/// MADDNESS hashing: 4-bit codes per (position, codebook), packed 8 per word.
pub const ENCODE: Kernel = Kernel {
    name: "encode",
    source: concat!(
        include_str!("../../shaders/common/maddness_params.wgsl"),
        include_str!("../../shaders/common/maddness_tree.wgsl"),
        include_str!("../../shaders/encode.wgsl")
    ),
    bindings: &[U, R, R, R, RW],
    params_size: size_of::<MaddParams>(),
    subgroups: false,
};

/// MADDNESS table look-ups: exact u32 sums of u8 entries, then scale, offset and bias.
pub const ACCUMULATE: Kernel = Kernel {
    name: "accumulate",
    source: concat!(
        include_str!("../../shaders/common/maddness_params.wgsl"),
        include_str!("../../shaders/common/maddness_sums.wgsl"),
        include_str!("../../shaders/accumulate.wgsl")
    ),
    bindings: &[U, R, R, R, R, RW],
    params_size: size_of::<MaddParams>(),
    subgroups: false,
};

/// MADDNESS encode and accumulate in one dispatch, codes in workgroup memory.
pub const FUSED: Kernel = Kernel {
    name: "fused",
    source: concat!(
        include_str!("../../shaders/common/maddness_params.wgsl"),
        include_str!("../../shaders/common/maddness_sums.wgsl"),
        include_str!("../../shaders/common/maddness_tree.wgsl"),
        include_str!("../../shaders/fused.wgsl")
    ),
    bindings: &[U, R, R, R, R, R, R, RW],
    params_size: size_of::<MaddParams>(),
    subgroups: false,
};

/// MADDNESS table look-ups through subgroup shuffles (adapters with subgroups).
pub const ACCUMULATE_SHUFFLE: Kernel = Kernel {
    name: "accumulate_shuffle",
    source: concat!(
        include_str!("../../shaders/common/maddness_params.wgsl"),
        include_str!("../../shaders/common/maddness_sums.wgsl"),
        include_str!("../../shaders/accumulate_shuffle.wgsl")
    ),
    bindings: &[U, R, R, R, R, RW],
    params_size: size_of::<MaddParams>(),
    subgroups: true,
};

/// `accumulate` with two positions per invocation (an experiment, see BENCHMARKS.md).
pub const ACCUMULATE2: Kernel = Kernel {
    name: "accumulate2",
    source: concat!(
        include_str!("../../shaders/common/maddness_params.wgsl"),
        include_str!("../../shaders/common/maddness_sums.wgsl"),
        include_str!("../../shaders/accumulate2.wgsl")
    ),
    bindings: &[U, R, R, R, R, RW],
    params_size: size_of::<MaddParams>(),
    subgroups: false,
};

/// Every kernel of the crate, for validation tests and warm-up.
pub const ALL: &[&Kernel] = &[
    &DIRECT,
    &DIRECT_SUBGROUP,
    &DIRECT_NAIVE,
    &ENCODE,
    &ACCUMULATE,
    &FUSED,
    &ACCUMULATE_SHUFFLE,
    &ACCUMULATE2,
];
