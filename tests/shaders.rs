//! Tier 0: every shader parses and validates with naga (no GPU needed), its bindings match the
//! host's bind-group layout, and every `shaders/*.wgsl` file is registered as a kernel.

use maddconv::gpu::kernel::{self, Binding, Kernel};

#[test]
fn every_kernel_validates_and_matches_its_layout() {
    let mut failures = Vec::new();
    for k in kernel::ALL {
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
    let mut registered: Vec<String> = kernel::ALL.iter().map(|k| k.name.to_string()).collect();
    registered.sort();
    assert_eq!(files, registered, "shaders/ and kernel::ALL differ");
    for k in kernel::ALL {
        let on_disk = std::fs::read_to_string(dir.join(format!("{}.wgsl", k.name))).unwrap();
        assert_eq!(on_disk, k.source, "{} is not the file it claims", k.name);
    }
}

/// The checker itself must reject a layout that disagrees with the shader.
#[test]
fn layout_check_rejects_a_wrong_layout() {
    let wrong = Kernel {
        name: kernel::DIRECT.name,
        source: kernel::DIRECT.source,
        bindings: &[Binding::Uniform, Binding::StorageRead, Binding::StorageRead],
        params_size: kernel::DIRECT.params_size,
        subgroups: false,
    };
    let err = wrong.validate().unwrap_err();
    assert!(err.contains("host layout"), "{err}");
    let broken = Kernel {
        name: "direct",
        source: "@compute @workgroup_size(64) fn direct() { let x: u32 = 1.5; }",
        bindings: &[],
        params_size: 0,
        subgroups: false,
    };
    assert!(broken.validate().is_err());
    let wrong_size = Kernel {
        params_size: kernel::DIRECT.params_size + 4,
        ..kernel::DIRECT
    };
    let err = wrong_size.validate().unwrap_err();
    assert!(err.contains("uniform struct"), "{err}");
}
