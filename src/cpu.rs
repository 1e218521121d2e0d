//! The CPU check that `main` runs before anything else: llama.cpp is built with AVX2-class kernels
//! (x86-64-v3, see `.cargo/config.toml`), and on a CPU without them its first vector instruction
//! would kill the process with SIGILL. Checking first turns that into a clear error.
//!
//! The list is the kernels `.cargo/config.toml` forces on (`GGML_AVX`, `GGML_AVX2`, `GGML_FMA`,
//! `GGML_F16C`, `GGML_BMI2`); keep the two in step.

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

/// `Err(message)` when this CPU cannot run the inference kernels.
pub fn check() -> Result<(), String> {
    let missing = missing_features();
    if missing.is_empty() {
        Ok(())
    } else {
        Err(unsupported_cpu_message(&missing))
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
        assert_eq!(check().is_ok(), missing.is_empty());
    }
}
