//! The openb CSV readers: good rows parse; bad rows are rejected naming file, line and column.

use gantry_core::model::{GpuDemand, GpuModels};
use gantry_sim::openb::{read_nodes, read_pods};
use std::path::PathBuf;

fn write(name: &str, text: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("gantry-csv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join(name);
    std::fs::write(&path, text).unwrap();
    path
}

const POD_HEADER: &str = "name,cpu_milli,memory_mib,num_gpu,gpu_milli,gpu_spec,qos,pod_phase,creation_time,deletion_time,scheduled_time\n";

#[test]
fn parses_shares_whole_gpus_cpu_pods_and_model_lists() {
    let path = write(
        "good.csv",
        &format!(
            "{POD_HEADER}p0,6000,12288,1,460,,LS,Running,0,1,0\np1,12000,16384,2,1000,V100M16|V100M32|,LS,Running,0,1,0\np2,8000,30517,0,0,nan,BE,Running,0,1,0\n"
        ),
    );
    let mut models = GpuModels::default();
    let pods = read_pods(&path, &mut models).unwrap();
    assert_eq!(pods.len(), 3);
    assert_eq!(pods[0].pod.gpu, GpuDemand::Share(460));
    assert_eq!(pods[1].pod.gpu, GpuDemand::Whole(2));
    assert_eq!(pods[1].gpu_spec, "V100M16|V100M32");
    assert!(pods[1].pod.models.allows(models.get("V100M32").unwrap()));
    assert!(pods[0].pod.models.is_any());
    assert_eq!(pods[2].pod.gpu, GpuDemand::None);
}

#[test]
fn bad_values_name_file_line_and_column() {
    let cases = [
        (
            "p0,-5,12288,1,460,,LS,Running,0,1,0",
            "cpu_milli",
            "non-negative integer",
        ),
        (
            "p0,6000,12288,1,1460,,LS,Running,0,1,0",
            "gpu_milli",
            "above the maximum 1000",
        ),
        (
            "p0,6000,12288,1,0,,LS,Running,0,1,0",
            "gpu_milli",
            "1..=1000",
        ),
        (
            "p0,6000,12288,4,500,,LS,Running,0,1,0",
            "gpu_milli",
            "must ask 1000",
        ),
        (
            "p0,6000,12288,99,1000,,LS,Running,0,1,0",
            "num_gpu",
            "maximum 16",
        ),
        (
            "p0,6000,lots,1,460,,LS,Running,0,1,0",
            "memory_mib",
            "\"lots\"",
        ),
    ];
    for (i, (row, column, message)) in cases.iter().enumerate() {
        let path = write(
            &format!("bad{i}.csv"),
            &format!("{POD_HEADER}p9,1000,1,0,0,,LS,Running,0,1,0\n{row}\n"),
        );
        let err = read_pods(&path, &mut GpuModels::default())
            .unwrap_err()
            .to_string();
        assert!(err.contains(&format!("bad{i}.csv:3:")), "{err}");
        assert!(err.contains(&format!("column \"{column}\"")), "{err}");
        assert!(err.contains(message), "{err}");
    }
}

#[test]
fn structural_problems_are_reported() {
    let missing = write("nocol.csv", "name,cpu_milli,memory_mib,num_gpu\np0,1,1,0\n");
    let err = read_pods(&missing, &mut GpuModels::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("missing column \"gpu_milli\""), "{err}");
    let ragged = write("ragged.csv", &format!("{POD_HEADER}p0,1,1\n"));
    let err = read_pods(&ragged, &mut GpuModels::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("ragged.csv:2"), "{err}");
    let empty = write("empty.csv", POD_HEADER);
    assert!(
        read_pods(&empty, &mut GpuModels::default())
            .unwrap_err()
            .to_string()
            .contains("no rows")
    );
    let absent = std::env::temp_dir().join("gantry-no-such-file.csv");
    assert!(
        read_pods(&absent, &mut GpuModels::default())
            .unwrap_err()
            .to_string()
            .contains("gantry-no-such-file.csv")
    );
    let nodes = write(
        "nodes.csv",
        "sn,cpu_milli,memory_mib,gpu,model\nn0,64000,262144,2,\n",
    );
    let err = read_nodes(&nodes, &mut GpuModels::default())
        .unwrap_err()
        .to_string();
    assert!(err.contains("nodes.csv:2: column \"model\""), "{err}");
}
