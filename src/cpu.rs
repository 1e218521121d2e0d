//! llama.cpp's CPU kernels and this CPU.
//!
//! Two builds exist. Development and test builds link llama.cpp statically with AVX2-class kernels
//! (x86-64-v3, see `.cargo/config.toml`); on a CPU without them the first vector instruction would
//! kill the process with SIGILL, so `main` runs [`check`] before anything else and turns that into a
//! clear error. The list is the kernels `.cargo/config.toml` forces on (`GGML_AVX`, `GGML_AVX2`,
//! `GGML_FMA`, `GGML_F16C`, `GGML_BMI2`); keep the two in step.
//!
//! The release packages are built with the `runtime-kernels` feature: llama.cpp as shared libraries
//! plus one CPU kernel module per x86 level (`libggml-cpu-haswell.so`, `-icelake.so`,
//! `-sapphirerapids.so`, …) in [`PACKAGED_KERNELS_DIR`], of which ggml loads the best this CPU runs.
//! Any x86-64 CPU then works, and a newer one gets its AVX-512 or AMX kernels. [`load_kernels`]
//! loads them before llama.cpp's backend starts and says which one was chosen.

/// Where the packages install llama.cpp's shared libraries and CPU kernel modules; the binary's
/// RUNPATH (see `build.rs`) names it too.
pub const PACKAGED_KERNELS_DIR: &str = "/usr/lib/rapport";

/// The x86 instruction-set extensions the packaged llama.cpp kernels use.
pub const REQUIRED_X86_FEATURES: [&str; 5] = ["avx", "avx2", "fma", "f16c", "bmi2"];

/// The required extensions this CPU lacks; empty where all are present (and on other architectures,
/// whose builds do not use these kernels).
pub fn missing_features() -> Vec<&'static str> {
    #[cfg(target_arch = "x86_64")]
    {
        let present = [
            std::arch::is_x86_feature_detected!("avx"),
            std::arch::is_x86_feature_detected!("avx2"),
            std::arch::is_x86_feature_detected!("fma"),
            std::arch::is_x86_feature_detected!("f16c"),
            std::arch::is_x86_feature_detected!("bmi2"),
        ];
        REQUIRED_X86_FEATURES
            .iter()
            .zip(present)
            .filter(|(_, present)| !present)
            .map(|(name, _)| *name)
            .collect()
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        Vec::new()
    }
}

/// The start-up error for a CPU that lacks `missing`: what is wrong, why, and what to do.
pub fn unsupported_cpu_message(missing: &[&str]) -> String {
    format!(
        "this CPU lacks {} ({}). Rapport's inference engine is built for x86-64-v3 CPUs \
         (Intel Haswell, AMD Excavator or newer, from 2013 on) and would crash on this one. \
         Run Rapport on a newer CPU; in a virtual machine, pass the host CPU's features through \
         (for example the \"host-passthrough\" CPU model).",
        missing.join(", "),
        if missing.len() == 1 {
            "an instruction-set extension"
        } else {
            "instruction-set extensions"
        },
    )
}

/// `Err(message)` when this CPU cannot run the inference kernels. A `runtime-kernels` build runs on
/// any x86-64 CPU (ggml picks a module this CPU supports), so it never refuses.
pub fn check() -> Result<(), String> {
    let missing = missing_features();
    if missing.is_empty() || cfg!(feature = "runtime-kernels") {
        Ok(())
    } else {
        Err(unsupported_cpu_message(&missing))
    }
}

/// The kernel modules' file names start with this; the rest names the x86 level.
#[cfg(feature = "runtime-kernels")]
const MODULE_PREFIX: &str = "libggml-cpu-";

/// Directories searched for the kernel modules, in order: [`PACKAGED_KERNELS_DIR`], where the
/// binary's RUNPATH finds the libraries the modules belong with, and, in a debug build only, the
/// directory llama-cpp-sys-2's build put them in. A release binary never loads code from a path of
/// the machine it was built on.
#[cfg(feature = "runtime-kernels")]
fn kernel_dirs() -> Vec<std::path::PathBuf> {
    let mut dirs = vec![std::path::PathBuf::from(PACKAGED_KERNELS_DIR)];
    if cfg!(debug_assertions) {
        if let Some(built) = llama_cpp_sys_2::BACKENDS_DIR {
            dirs.push(built.into());
        }
    }
    dirs
}

#[cfg(feature = "runtime-kernels")]
fn has_modules(dir: &std::path::Path) -> bool {
    std::fs::read_dir(dir).is_ok_and(|entries| {
        entries.filter_map(Result::ok).any(|entry| {
            entry
                .file_name()
                .to_str()
                .is_some_and(|name| name.starts_with(MODULE_PREFIX))
        })
    })
}

/// The kernel module this process has loaded (from its memory map), e.g.
/// `/usr/lib/rapport/libggml-cpu-icelake.so`.
#[cfg(feature = "runtime-kernels")]
fn loaded_module() -> Option<std::path::PathBuf> {
    let maps = std::fs::read_to_string("/proc/self/maps").ok()?;
    maps.lines()
        .filter_map(|line| line.split_whitespace().nth(5))
        .find(|path| {
            std::path::Path::new(path)
                .file_name()
                .and_then(|name| name.to_str())
                .is_some_and(|name| name.starts_with(MODULE_PREFIX))
        })
        .map(std::path::PathBuf::from)
}

/// Loads llama.cpp's CPU kernel modules (once; before its backend starts) and describes the one
/// chosen for this CPU, e.g. "icelake kernels (/usr/lib/rapport/libggml-cpu-icelake.so)".
#[cfg(feature = "runtime-kernels")]
pub fn load_kernels() -> Result<String, String> {
    static LOADED: std::sync::OnceLock<Result<String, String>> = std::sync::OnceLock::new();
    LOADED
        .get_or_init(|| {
            let dirs = kernel_dirs();
            let Some(dir) = dirs.iter().find(|dir| has_modules(dir)) else {
                let searched: Vec<String> =
                    dirs.iter().map(|dir| dir.display().to_string()).collect();
                return Err(format!(
                    "llama.cpp's CPU kernel modules ({MODULE_PREFIX}*.so) are in none of {}; \
                     reinstall the rapport package",
                    searched.join(", ")
                ));
            };
            // ggml announces each module it loads on stderr, where commands print only their
            // errors; `rapport check` names the chosen one instead.
            llama_cpp_2::send_logs_to_tracing(
                llama_cpp_2::LogOptions::default().with_logs_enabled(false),
            );
            llama_cpp_2::llama_backend::load_backends_from_path(dir);
            let has_cpu = llama_cpp_2::list_llama_ggml_backend_devices()
                .iter()
                .any(|device| device.device_type == llama_cpp_2::LlamaBackendDeviceType::Cpu);
            if !has_cpu {
                return Err(format!(
                    "none of llama.cpp's CPU kernel modules in {} loads on this CPU; \
                     reinstall the rapport package",
                    dir.display()
                ));
            }
            Ok(match loaded_module() {
                Some(module) => {
                    let level = module
                        .file_stem()
                        .and_then(|stem| stem.to_str())
                        .and_then(|stem| stem.strip_prefix(MODULE_PREFIX))
                        .unwrap_or("unknown")
                        .to_owned();
                    format!(
                        "{level} kernels ({}), chosen for this CPU",
                        module.display()
                    )
                }
                None => format!("kernels from {}", dir.display()),
            })
        })
        .clone()
}

/// What `rapport check` and the benchmark say about the kernels this binary runs.
pub fn kernels_note() -> Result<String, String> {
    #[cfg(feature = "runtime-kernels")]
    {
        load_kernels().map(|chosen| {
            let missing = missing_features();
            if missing.is_empty() {
                format!("llama.cpp CPU kernels: {chosen}")
            } else {
                format!(
                    "llama.cpp CPU kernels: {chosen}; this CPU lacks {}, so analysis runs several \
                     times slower than on an x86-64-v3 CPU (Intel Haswell, AMD Excavator or newer)",
                    missing.join(", ")
                )
            }
        })
    }
    #[cfg(not(feature = "runtime-kernels"))]
    {
        Ok(
            "llama.cpp CPU kernels: linked in, chosen when this binary was built (AVX2 or better)"
                .to_owned(),
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_message_names_each_missing_extension_and_what_to_do() {
        let message = unsupported_cpu_message(&["avx2", "fma"]);
        assert!(
            message.starts_with("this CPU lacks avx2, fma "),
            "{message}"
        );
        assert!(message.contains("instruction-set extensions"), "{message}");
        assert!(message.contains("x86-64-v3"), "{message}");
        assert!(message.contains("host-passthrough"), "{message}");
        let one = unsupported_cpu_message(&["bmi2"]);
        assert!(
            one.contains("lacks bmi2 (an instruction-set extension)"),
            "{one}"
        );
    }

    #[test]
    fn missing_features_are_a_subset_of_the_required_ones() {
        // Whatever this machine has, the answer only ever names required extensions, and
        // `check` agrees with it.
        let missing = missing_features();
        assert!(missing
            .iter()
            .all(|name| REQUIRED_X86_FEATURES.contains(name)));
        assert_eq!(
            check().is_ok(),
            missing.is_empty() || cfg!(feature = "runtime-kernels")
        );
    }
}
