//! Tier 0: every shader parses and validates with naga (no GPU needed); its bindings, its
//! uniform struct (field by field) and its workgroup size and memory match the host's
//! declaration; and every `shaders/*.wgsl` file is registered as a kernel.

use maddconv::gpu::direct::DIRECT;
use maddconv::gpu::kernel::{Binding, FieldType, Kernel, UniformField, UniformLayout};
use maddconv::gpu::KERNELS;

#[test]
fn every_kernel_validates_and_matches_its_layout() {
    let mut failures = Vec::new();
    for k in KERNELS {
        if let Err(e) = k.validate() {
            failures.push(e);
        }
    }
    assert!(failures.is_empty(), "{}", failures.join("\n\n"));
}

#[test]
fn every_shader_file_is_a_registered_kernel() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("shaders");
    let mut files: Vec<String> = std::fs::read_dir(&dir)
        .unwrap()
        .filter_map(|e| {
            let p = e.unwrap().path();
            if p.extension()? != "wgsl" {
                return None;
            }
            Some(p.file_stem()?.to_string_lossy().into_owned())
        })
        .collect();
    files.sort();
    let mut registered: Vec<String> = KERNELS.iter().map(|k| k.name.to_string()).collect();
    registered.sort();
    assert_eq!(files, registered, "shaders/ and gpu::KERNELS differ");
    // Each source is its own file, after zero or more of the common files (whole, in the
    // order of `shaders/common`'s file names), and every common file is used by some kernel.
    let common_dir = dir.join("common");
    let mut common: Vec<(String, String)> = std::fs::read_dir(&common_dir)
        .unwrap()
        .map(|e| {
            let p = e.unwrap().path();
            let name = p.file_name().unwrap().to_string_lossy().into_owned();
            (name, std::fs::read_to_string(&p).unwrap())
        })
        .collect();
    common.sort();
    let mut used = vec![false; common.len()];
    for k in KERNELS {
        let on_disk = std::fs::read_to_string(dir.join(format!("{}.wgsl", k.name))).unwrap();
        let prelude = k
            .source
            .strip_suffix(on_disk.as_str())
            .unwrap_or_else(|| panic!("{}: the source does not end with shaders/{0}.wgsl", k.name));
        let mut rest = prelude;
        for (i, (_, text)) in common.iter().enumerate() {
            if let Some(r) = rest.strip_prefix(text.as_str()) {
                rest = r;
                used[i] = true;
            }
        }
        assert!(
            rest.is_empty(),
            "{}: the source has {} bytes before its file that are not shaders/common files",
            k.name,
            rest.len()
        );
    }
    for ((name, _), used) in common.iter().zip(used) {
        assert!(used, "shaders/common/{name} is used by no kernel");
    }
}

/// The checker itself must reject a host declaration that disagrees with the shader.
#[test]
fn layout_check_rejects_a_wrong_layout() {
    let wrong = Kernel {
        bindings: &[Binding::Uniform, Binding::StorageRead, Binding::StorageRead],
        ..DIRECT
    };
    let err = wrong.validate().unwrap_err();
    assert!(err.contains("host layout"), "{err}");
    let broken = Kernel {
        source: "@compute @workgroup_size(64) fn direct() { let x: u32 = 1.5; }",
        ..DIRECT
    };
    assert!(broken.validate().is_err());
    let wrong_bytes = Kernel {
        workgroup_bytes: 16384,
        ..DIRECT
    };
    let err = wrong_bytes.validate().unwrap_err();
    assert!(err.contains("12288 bytes of workgroup memory"), "{err}");
    let wrong_size = Kernel {
        workgroup_size: 128,
        ..DIRECT
    };
    assert!(wrong_size
        .validate()
        .unwrap_err()
        .contains("@workgroup_size"));
}

/// Two swapped uniform fields (same size, same types) are caught by name and offset, a wrong
/// type by type, a missing field by count.
#[test]
fn uniform_check_is_field_by_field() {
    let host = DIRECT.uniform.fields;
    let mut swapped: Vec<UniformField> = host.to_vec();
    let (a, b) = (swapped[2].offset, swapped[3].offset);
    swapped.swap(2, 3);
    swapped[2].offset = a;
    swapped[3].offset = b;
    let with = |fields: Vec<UniformField>, size: u32| Kernel {
        uniform: UniformLayout {
            name: "Test",
            size,
            fields: Vec::leak(fields),
        },
        ..DIRECT
    };
    let err = with(swapped, DIRECT.uniform.size).validate().unwrap_err();
    assert!(
        err.contains("uniform field 2") && err.contains("k_len"),
        "{err}"
    );
    // ... also inside the nested geometry struct.
    let FieldType::Struct(geo) = host[0].ty else {
        panic!("field 0 is the geometry")
    };
    let mut geo_swapped: Vec<UniformField> = geo.fields.to_vec();
    geo_swapped.swap(2, 3);
    geo_swapped[2].offset = 8;
    geo_swapped[3].offset = 12;
    let geo_swapped: &'static UniformLayout = Box::leak(Box::new(UniformLayout {
        fields: Vec::leak(geo_swapped),
        ..*geo
    }));
    let mut outer = host.to_vec();
    outer[0].ty = FieldType::Struct(geo_swapped);
    let err = with(outer, DIRECT.uniform.size).validate().unwrap_err();
    assert!(err.contains("field geo.2") && err.contains("in_w"), "{err}");
    let mut typed = host.to_vec();
    typed[5].ty = FieldType::F32;
    let err = with(typed, DIRECT.uniform.size).validate().unwrap_err();
    assert!(err.contains("uniform field 5"), "{err}");
    let short = host[..host.len() - 1].to_vec();
    let err = with(short, DIRECT.uniform.size - 4).validate().unwrap_err();
    assert!(err.contains("fields"), "{err}");
}
