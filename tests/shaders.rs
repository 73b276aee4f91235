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
    for k in kernel::ALL {
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
