#!/usr/bin/python3
"""Fixtures for tests/models/test_zoo_student.c: a small 32 px ImageFolder (4
classes x 8 JPEG crops of the photographs, ref_precompute.crops) on which kd-train
trains CIFAR students for one epoch; scripts/ref/score_student.py then scores the
saved student in PyTorch.
Usage: ref_zoo_student.py OUTDIR
"""
import os
import shutil
import sys

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import refutil  # noqa: E402
from ref_precompute import crops, write_folder  # noqa: E402


def main():
    d = refutil.out_dir()
    data = os.path.join(d, "data")
    shutil.rmtree(data, ignore_errors=True)
    write_folder(data, crops(32, 32, np.random.default_rng(23)), ["c0", "c1", "c2", "c3"])
    print("ref_zoo_student: 32 images")


if __name__ == "__main__":
    main()
