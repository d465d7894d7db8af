"""Draws bench/results/benchmarks.png from results.json: throughput ratio and p99 per
scenario, Wasmq beside Mosquitto. Usage: bench_chart.py RESULTS_JSON OUTPUT_PNG"""

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


def main(results_path, out_path):
    with open(results_path) as f:
        report = json.load(f)
    by = {(s["scenario"], s["broker"]): s for s in report["summaries"]}
    flows = [s for s in report["scenarios"] if "flow" in s["kind"]]
    throughput = [s["name"] for s in flows if "full_speed" in s["kind"]["flow"]["pace"]]
    latency = [s["name"] for s in flows if "fixed_rate" in s["kind"]["flow"]["pace"]]
    brokers = [("wasmq", "#1f77b4"), ("mosquitto", "#ff7f0e")]

    fig, (top, middle, bottom) = plt.subplots(3, 1, figsize=(12, 13))
    width = 0.4
    for i, (broker, color) in enumerate(brokers):
        xs = [j + (i - 0.5) * width for j in range(len(throughput))]
        top.bar(xs, [by[(n, broker)]["throughput"] for n in throughput], width, label=broker, color=color)
    top.set_yscale("log")
    top.set_ylabel("deliveries / s (log)")
    top.set_title("Throughput at full speed (median)")
    top.set_xticks(range(len(throughput)), throughput, rotation=30, ha="right")
    top.legend()

    for i, (broker, color) in enumerate(brokers):
        xs = [j + (i - 0.5) * width for j in range(len(throughput))]
        middle.bar(xs, [by[(n, broker)]["p99_us"] / 1000 for n in throughput], width, label=broker, color=color)
    middle.set_ylabel("p99 ms")
    middle.set_title("p99 latency at full speed (mostly queueing)")
    middle.set_xticks(range(len(throughput)), throughput, rotation=30, ha="right")
    middle.legend()

    for i, (broker, color) in enumerate(brokers):
        xs = [j + (i - 0.5) * width for j in range(len(latency))]
        bottom.bar(xs, [by[(n, broker)]["p99_us"] / 1000 for n in latency], width, label=broker, color=color)
    bottom.set_ylabel("p99 ms")
    bottom.set_title("p99 latency at a fixed rate (median)")
    bottom.set_xticks(range(len(latency)), latency, rotation=30, ha="right")
    bottom.legend()

    meta = report["meta"]
    fig.suptitle(f"Wasmq {meta['wasmq_rev']} vs {meta['mosquitto']}, {meta['cores']} cores, {meta['date']}")
    fig.tight_layout()
    fig.savefig(out_path, dpi=90)


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
