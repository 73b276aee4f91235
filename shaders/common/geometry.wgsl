// geometry — the sizes of a convolution applied to a concrete input, shared by the uniform
// structs of every kernel (`Params` in conv_params.wgsl, `MaddParams` in maddness_params.wgsl,
// member `geo`). WGSL has no includes: the host prepends this file. Mirrors
// gpu::kernel::GeometryParams field by field (tests check name, offset and type of every field).

struct GeometryParams {
    batch: u32,          // N
    in_channels: u32,    // C
    in_h: u32,           // H (1 for conv1d)
    in_w: u32,           // W (L for conv1d)
    out_channels: u32,   // O
    out_h: u32,          // OH
    out_w: u32,          // OW
    groups: u32,
    stride_h: u32,
    stride_w: u32,
    pad_top: u32,
    pad_left: u32,
    in_per_group: u32,   // C / groups
    out_per_group: u32,  // O / groups
    reserved0: u32,      // padding to 64 bytes: in a uniform, the member after a struct
    reserved1: u32,      // starts at a multiple of 16
}
