//! What a WGSL kernel is to the host: source, entry point, bind-group layout, the layout of its
//! uniform struct, its workgroup size and the workgroup memory it declares.
//!
//! One kernel per `shaders/*.wgsl`; the file stem names the entry point and labels every wgpu
//! object made for it. Code shared by several kernels lives in `shaders/common/*.wgsl` and is
//! prepended to their source at compile time. The [`Kernel`] constants live beside each
//! kernel's host code ([`crate::gpu::direct`], [`crate::gpu::maddness`]);
//! [`crate::gpu::KERNELS`] lists them all. [`Kernel::validate`] parses a source with naga (no
//! GPU needed) and checks it against the host: bindings (index, address space, access), the
//! uniform struct field by field (name, offset, type), the workgroup size and the workgroup
//! memory bytes, so that the limits checked before pipeline creation
//! ([`crate::gpu::limits`]) are the shader's real ones.
//!
//! This module imports no other `gpu` module.

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

/// The type of a uniform field: a 4-byte scalar or a nested struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FieldType {
    /// `u32`.
    U32,
    /// `i32`.
    I32,
    /// `f32`.
    F32,
    /// A struct declared with `uniform_struct!` (its size a multiple of 16, as WGSL requires
    /// of a struct member of a uniform).
    Struct(&'static UniformLayout),
}

/// Rust types allowed as fields of a uniform struct, with their WGSL counterpart.
pub trait UniformMember: bytemuck::Pod {
    /// The WGSL type of this Rust type.
    const TYPE: FieldType;
}
impl UniformMember for u32 {
    const TYPE: FieldType = FieldType::U32;
}
impl UniformMember for i32 {
    const TYPE: FieldType = FieldType::I32;
}
impl UniformMember for f32 {
    const TYPE: FieldType = FieldType::F32;
}

/// One field of a host uniform struct: name, byte offset and type, as the shader must declare
/// it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniformField {
    /// Field name (the same in Rust and WGSL).
    pub name: &'static str,
    /// Byte offset in the struct.
    pub offset: u32,
    /// Scalar type.
    pub ty: FieldType,
}

/// The layout of a host `#[repr(C)]` uniform struct.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct UniformLayout {
    /// Name of the Rust struct (for messages).
    pub name: &'static str,
    /// Size in bytes.
    pub size: u32,
    /// Fields in declaration order.
    pub fields: &'static [UniformField],
}

/// Declares a `#[repr(C)]`, `Pod` uniform struct of 4-byte scalars and nested such structs,
/// together with its
/// [`UniformLayout`] (`Self::LAYOUT`), which [`Kernel::validate`] checks field by field against
/// the shader's struct.
macro_rules! uniform_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        #[repr(C)]
        #[derive(Clone, Copy, Debug, Default, bytemuck::Pod, bytemuck::Zeroable)]
        $vis struct $name {
            $( $(#[$fmeta])* pub $field: $ty ),*
        }
        impl $name {
            /// The layout the shader's uniform struct must have.
            pub const LAYOUT: $crate::gpu::kernel::UniformLayout =
                $crate::gpu::kernel::UniformLayout {
                    name: stringify!($name),
                    size: std::mem::size_of::<$name>() as u32,
                    fields: &[$($crate::gpu::kernel::UniformField {
                        name: stringify!($field),
                        offset: std::mem::offset_of!($name, $field) as u32,
                        ty: <$ty as $crate::gpu::kernel::UniformMember>::TYPE,
                    }),*],
                };
        }
        impl $crate::gpu::kernel::UniformMember for $name {
            const TYPE: $crate::gpu::kernel::FieldType =
                $crate::gpu::kernel::FieldType::Struct(&$name::LAYOUT);
        }
    };
}
pub(crate) use uniform_struct;

uniform_struct! {
    /// The sizes of a convolution on a concrete input, the first member (`geo`) of every
    /// kernel's uniform (struct `GeometryParams` in `shaders/common/geometry.wgsl`). All fit
    /// 32 bits: [`crate::ConvSpec::geometry`] checks.
    pub struct GeometryParams {
        /// N.
        batch: u32,
        /// C.
        in_channels: u32,
        /// H (1 for conv1d).
        in_h: u32,
        /// W (L for conv1d).
        in_w: u32,
        /// O.
        out_channels: u32,
        /// OH.
        out_h: u32,
        /// OW.
        out_w: u32,
        /// Groups.
        groups: u32,
        /// Vertical stride.
        stride_h: u32,
        /// Horizontal stride.
        stride_w: u32,
        /// Zero rows above the input.
        pad_top: u32,
        /// Zero columns left of the input.
        pad_left: u32,
        /// C / groups.
        in_per_group: u32,
        /// O / groups.
        out_per_group: u32,
        /// Padding to 64 bytes (WGSL starts the member after a struct at a multiple of 16).
        reserved0: u32,
        /// Padding.
        reserved1: u32,
    }
}

impl GeometryParams {
    /// The geometry's sizes.
    pub fn new(g: &crate::spec::Geometry) -> Self {
        GeometryParams {
            batch: g.batch as u32,
            in_channels: g.in_channels as u32,
            in_h: g.in_h as u32,
            in_w: g.in_w as u32,
            out_channels: g.out_channels as u32,
            out_h: g.out_h as u32,
            out_w: g.out_w as u32,
            groups: g.groups as u32,
            stride_h: g.stride_h as u32,
            stride_w: g.stride_w as u32,
            pad_top: g.pad_top as u32,
            pad_left: g.pad_left as u32,
            in_per_group: g.in_per_group() as u32,
            out_per_group: g.out_per_group() as u32,
            reserved0: 0,
            reserved1: 0,
        }
    }
}

/// A compute kernel: one WGSL file, one entry point named like the file.
#[derive(Debug)]
pub struct Kernel {
    /// File stem of `shaders/NAME.wgsl` and name of its entry point.
    pub name: &'static str,
    /// The WGSL source: `shaders/NAME.wgsl`, after the `shaders/common/*.wgsl` files it uses
    /// (WGSL has no includes, so they are concatenated at compile time).
    pub source: &'static str,
    /// Bindings in order `@binding(0)`, `@binding(1)`, ... of `@group(0)`; binding 0 is the
    /// uniform.
    pub bindings: &'static [Binding],
    /// The host struct written to the uniform binding.
    pub uniform: UniformLayout,
    /// Invocations per workgroup (`@workgroup_size(N)`, one-dimensional).
    pub workgroup_size: u32,
    /// Bytes of `var<workgroup>` memory the shader declares (all of its workgroup variables).
    pub workgroup_bytes: u32,
    /// The shader uses subgroup operations; only run it on devices with `Features::SUBGROUP`.
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

    /// `shaders/NAME.wgsl`. Where common files are prepended, error line numbers count from the
    /// start of the composed [`source`](Self::source).
    pub fn file(&self) -> String {
        format!("shaders/{}.wgsl", self.name)
    }

    /// Parses and validates the WGSL with naga (no GPU needed), then checks it against the
    /// host: the entry point exists with [`Self::workgroup_size`]; the `@group(0)` bindings are
    /// exactly [`Self::bindings`]; the uniform struct has [`Self::uniform`]'s fields (names,
    /// offsets, types) and size; the workgroup variables add up to [`Self::workgroup_bytes`].
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
        let file = self.file();
        let entry = module
            .entry_points
            .iter()
            .find(|e| e.name == self.name && e.stage == naga::ShaderStage::Compute)
            .ok_or_else(|| format!("{file}: no compute entry point named {:?}", self.name))?;
        if entry.workgroup_size != [self.workgroup_size, 1, 1] {
            return Err(format!(
                "{file}: @workgroup_size is {:?}, the host's {}",
                entry.workgroup_size, self.workgroup_size
            ));
        }
        let mut found: Vec<(u32, Binding)> = Vec::new();
        let mut workgroup_bytes = 0u32;
        for (_, var) in module.global_variables.iter() {
            let ty = &module.types[var.ty];
            if var.space == naga::AddressSpace::WorkGroup {
                workgroup_bytes += ty.inner.size(module.to_ctx());
            }
            let Some(rb) = &var.binding else { continue };
            let name = var.name.clone().unwrap_or_default();
            if rb.group != 0 {
                return Err(format!("{file}: {name} is in group {}, not 0", rb.group));
            }
            let kind = match var.space {
                naga::AddressSpace::Uniform => {
                    self.check_uniform(&module, ty)?;
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
                        "{file}: binding {} ({name}) is in address space {other:?}, which the \
                         host does not bind",
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
                "{file}: the shader declares bindings {found:?} but the host layout is \
                 {expected:?}"
            ));
        }
        if workgroup_bytes != self.workgroup_bytes {
            return Err(format!(
                "{file}: the shader declares {workgroup_bytes} bytes of workgroup memory, the \
                 host says {}",
                self.workgroup_bytes
            ));
        }
        Ok(module)
    }

    /// Checks the shader's uniform struct against [`Self::uniform`], field by field.
    fn check_uniform(&self, module: &naga::Module, ty: &naga::Type) -> Result<(), String> {
        check_struct(module, ty, &self.uniform, "")
            .map_err(|e| format!("{}: uniform {e}", self.file()))
    }
}

/// Compares a naga struct type with a host layout, recursing into nested structs; the error
/// names the field path, both sides' (name, offset, type) and the host struct.
fn check_struct(
    module: &naga::Module,
    ty: &naga::Type,
    host: &UniformLayout,
    path: &str,
) -> Result<(), String> {
    let naga::TypeInner::Struct { members, span } = &ty.inner else {
        return Err(format!(
            "{path}: not a struct in the shader, {} on the host",
            host.name
        ));
    };
    for (i, f) in host.fields.iter().enumerate() {
        let here = members.get(i);
        let (name, offset) = here
            .map(|m| (m.name.clone().unwrap_or_default(), m.offset))
            .unwrap_or_default();
        let inner = here.map(|m| &module.types[m.ty]);
        let same_type = match (inner.map(|t| &t.inner), f.ty) {
            (Some(naga::TypeInner::Scalar(s)), t) if s.width == 4 => matches!(
                (s.kind, t),
                (naga::ScalarKind::Uint, FieldType::U32)
                    | (naga::ScalarKind::Sint, FieldType::I32)
                    | (naga::ScalarKind::Float, FieldType::F32)
            ),
            (Some(naga::TypeInner::Struct { .. }), FieldType::Struct(_)) => true,
            _ => false,
        };
        if name != f.name || offset != f.offset || !same_type {
            return Err(format!(
                "field {path}{i} is {:?} in the shader but {:?} in the host's {} (name, offset, \
                 type)",
                here.map(|_| (name, offset, inner.map(|t| &t.inner))),
                (f.name, f.offset, f.ty),
                host.name
            ));
        }
        if let (Some(t), FieldType::Struct(nested)) = (inner, f.ty) {
            check_struct(module, t, nested, &format!("{path}{}.", f.name))?;
        }
    }
    if members.len() != host.fields.len() || *span != host.size {
        return Err(format!(
            "struct {path}: {} fields and {span} bytes in the shader, the host's {} {} fields and \
             {} bytes",
            members.len(),
            host.name,
            host.fields.len(),
            host.size
        ));
    }
    Ok(())
}

/// Concatenates `shaders/common/NAME.wgsl` files and `shaders/KERNEL.wgsl` into one source, in
/// the order given: `shader_source!("common/conv_params", "direct")`.
macro_rules! shader_source {
    ($($file:literal),+ $(,)?) => {
        concat!($(include_str!(concat!("../../shaders/", $file, ".wgsl"))),+)
    };
}
pub(crate) use shader_source;
