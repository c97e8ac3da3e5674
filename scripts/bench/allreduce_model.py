#!/usr/bin/python3
"""allreduce_model.py - A MODEL, not a measurement: the gradient all-reduce
cost of one data-parallel kd-train step on 8 GPUs (docs/DISTRIBUTED.md).

    scripts/bench/allreduce_model.py        (builds build/bench/bench_params)

Bytes per step: the student's trainable parameters, counted by kd-train's own
model code (build/bench/bench_params, kdc_model_param_count, 1000 classes), x 4
bytes (float32 gradients, as DDP all-reduces them without a compression hook).
DOT all-reduces its task and distillation gradients apart: 2x.

Ring all-reduce time (NCCL's ring; Patarasuk & Yuan 2009): each rank sends and
receives 2 (R - 1) / R of the bytes over its slowest link,
    t = 2 (R - 1) / R * bytes / bandwidth,
latency ignored (DDP's buckets are 25 MiB; a few microseconds per ring hop
against milliseconds of transfer).

Bandwidths assumed (one direction, nominal link rates; NCCL reaches less):
  NVLink 4 (H100/H200 SXM, 8 GPUs on NVSwitch): 900 GB/s per GPU in total,
      450 GB/s each way (NVIDIA H100 datasheet);
  InfiniBand NDR 400 Gb/s, one NIC per GPU, 8 GPUs on 8 nodes: 50 GB/s;
  InfiniBand HDR 200 Gb/s: 25 GB/s.

Step time it is set against: NVIDIA DeepLearningExamples, PyTorch ResNet50
v1.5 README, "Training performance: NVIDIA DGX A100 (8x A100 80GB)": one
A100 trains 938 img/s in TF32 and 2470 img/s with mixed precision. A step of
the per-GPU batch b then takes b / rate. resnet18 and mobilenet_v1 are scaled
from resnet50 by multiply-adds per image (He et al. 2016, Table 1: 1.8e9 and
3.8e9; Howard et al. 2017, Table: 569e6), which overstates mobilenet_v1's
speed (depthwise layers are memory-bound): its fraction is an upper bound.
An H100/H200 computes faster than an A100 and shrinks the step, not the
transfer: the fractions grow by that factor.
"""
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
R = 8
PER_GPU_BATCH = 64  # global batch 512 on 8 GPUs, the DOT/projector ImageNet recipes' size
RATE_RESNET50 = {"TF32": 938.0, "AMP": 2470.0}  # img/s, one A100 (source above)
MACS = {"resnet18": 1.8e9, "resnet50": 3.8e9, "mobilenet_v1": 569e6}
LINKS = [("NVLink 4, 450 GB/s", 450e9), ("IB NDR 400 Gb/s, 50 GB/s", 50e9),
         ("IB HDR 200 Gb/s, 25 GB/s", 25e9)]


def param_counts(archs):
    subprocess.run(["make", "-s", "build/bench/bench_params"], cwd=ROOT, check=True,
                   stdout=subprocess.DEVNULL)
    out = subprocess.run([os.path.join(ROOT, "build/bench/bench_params"), "1000", *archs],
                         check=True, capture_output=True, text=True).stdout
    return {a: int(n) for a, _, n in (line.split() for line in out.splitlines())}


def main():
    archs = list(MACS)
    counts = param_counts(archs)
    print(f"MODEL (not measured): ring all-reduce of float32 gradients, R = {R}, "
          f"per-GPU batch {PER_GPU_BATCH}")
    print()
    print("| student | parameters | MB per step (SGD / DOT) | link | all-reduce ms (SGD / DOT) "
          "| step ms TF32 / AMP | all-reduce / step, DOT, TF32 / AMP |")
    print("|---|---:|---:|---|---:|---:|---:|")
    for a in archs:
        p = counts[a]
        mb = 4.0 * p
        step = {k: PER_GPU_BATCH / (r * MACS["resnet50"] / MACS[a])
                for k, r in RATE_RESNET50.items()}
        for name, bw in LINKS:
            t = [2 * (R - 1) / R * mb * k / bw for k in (1, 2)]
            print(f"| {a} | {p:,} | {mb / 1e6:.1f} / {2 * mb / 1e6:.1f} | {name} | "
                  f"{t[0] * 1e3:.2f} / {t[1] * 1e3:.2f} | "
                  f"{step['TF32'] * 1e3:.1f} / {step['AMP'] * 1e3:.1f} | "
                  f"{t[1] / step['TF32']:.0%} / {t[1] / step['AMP']:.0%} |")
    return 0


if __name__ == "__main__":
    sys.exit(main())
