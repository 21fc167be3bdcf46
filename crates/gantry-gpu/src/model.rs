//! GPU model keys: the names workload specs, node labels and the scheduler use (`H100-80GB`).

use crate::types::GpuDevice;

/// The model key of a device, family and sold memory as in `H100-80GB`; the product name otherwise.
pub fn model_key(device: &GpuDevice) -> String {
    model_key_of(&device.name, device.memory_total_mib)
}

/// The model key of a product name (`NVIDIA H100 80GB HBM3`, `NVIDIA-A100-SXM4-40GB`) and its memory.
pub fn model_key_of(product: &str, memory_mib: u64) -> String {
    const FAMILIES: &[&str] = &["H200", "H100", "A100", "L40S", "L4", "A10", "T4", "V100"];
    let upper = product.to_uppercase();
    let family = upper
        .split(|c: char| !c.is_ascii_alphanumeric())
        .find_map(|w| FAMILIES.iter().find(|f| **f == w));
    match family {
        Some(f) => format!("{f}-{}GB", sold_gb(memory_mib)),
        None => product.to_string(),
    }
}

/// The memory size a GPU is sold as, in GB (vendors round: 81,559 MiB is an 80 GB part).
pub fn sold_gb(memory_mib: u64) -> u64 {
    let gb = (memory_mib as f64 / 1024.0).round() as u64;
    [16u64, 24, 32, 40, 48, 80, 94, 141]
        .into_iter()
        .min_by_key(|s| s.abs_diff(gb))
        .filter(|s| s.abs_diff(gb) <= 4)
        .unwrap_or(gb)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keys_from_product_names_and_memory() {
        assert_eq!(model_key_of("NVIDIA H100 80GB HBM3", 81_559), "H100-80GB");
        assert_eq!(model_key_of("NVIDIA A100-SXM4-40GB", 40_960), "A100-40GB");
        assert_eq!(model_key_of("Tesla T4", 15_360), "T4-16GB");
        assert_eq!(model_key_of("NVIDIA H200", 143_771), "H200-141GB");
        assert_eq!(model_key_of("Mystery GPU", 1), "Mystery GPU");
        // Far from any sold size: the rounded GB.
        assert_eq!(sold_gb(64 * 1024), 64);
    }
}
