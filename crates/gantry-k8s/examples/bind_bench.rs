//! Pods bound per second by the Gantry scheduler against a fake API server that answers at once: the
//! in-process fake (a tower service) and a loopback HTTP/1.1 one.
//!
//! `cargo run --release -p gantry-k8s --example bind_bench -- [NODES] [PODS]` (default 5000 10000).

use gantry_k8s::scheduler::BenchReport;

fn show(r: &BenchReport) {
    println!(
        "{:>10}: {} nodes, {} pending pods: {} bound ({} binding requests) in {:.3} s ({:.3} s deciding): {:.0} pods/s",
        r.transport,
        r.nodes,
        r.pods,
        r.bound,
        r.bind_requests,
        r.total_secs,
        r.decide_secs,
        r.pods_per_sec
    );
}

#[tokio::main(flavor = "multi_thread")]
async fn main() {
    let mut args = std::env::args().skip(1);
    let nodes = args.next().and_then(|a| a.parse().ok()).unwrap_or(5000);
    let pods = args.next().and_then(|a| a.parse().ok()).unwrap_or(10_000);
    show(&gantry_k8s::scheduler::bench(nodes, pods).await);
    match gantry_k8s::scheduler::bench_http(nodes, pods).await {
        Ok(r) => show(&r),
        Err(e) => eprintln!("http bench: {e}"),
    }
}
