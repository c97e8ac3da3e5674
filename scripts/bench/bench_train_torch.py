#!/usr/bin/python3
"""PyTorch baselines for scripts/bench/bench_train.sh: the same student step as
kd-train (resnet8x4, CE 0.1 + KD(T=4) 0.9, SGD momentum 0.9, wd 5e-4), images
decoded from the same JPEG folder (torchvision ImageFolder, ToTensor, Normalize),
same batch and threads.

  bench_train_torch.py cached DATA BATCH THREADS STEPS
      (a) teacher logits precomputed: a tensor in memory, indexed per sample
  bench_train_torch.py online DATA BATCH THREADS STEPS TEACHER
      (b) online KD: the teacher (eval mode, no_grad) runs every step
          TEACHER: resnet32x4 (mdistiller CIFAR) or resnet50 (torchvision)
Prints "steps_per_s X" over STEPS steps after 3 warm-up steps.
"""
import os
import sys
import time

import torch
import torch.nn.functional as F
import torchvision
from torchvision import transforms

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "ref"))
from ref_train import ResNet8x4, kd_loss  # noqa: E402
from ref_models import CifarResNet  # noqa: E402


class Indexed(torchvision.datasets.ImageFolder):
    def __getitem__(self, i):
        x, y = super().__getitem__(i)
        return x, y, i


def main():
    mode, data, batch, threads, steps = sys.argv[1], sys.argv[2], int(sys.argv[3]), \
        int(sys.argv[4]), int(sys.argv[5])
    torch.set_num_threads(threads)
    tf = transforms.Compose([transforms.ToTensor(),
                             transforms.Normalize([0.485, 0.456, 0.406], [0.229, 0.224, 0.225])])
    ds = Indexed(data, transform=tf)
    C = len(ds.classes)
    dl = torch.utils.data.DataLoader(ds, batch_size=batch, shuffle=True, num_workers=0,
                                     drop_last=True)
    student = ResNet8x4(C).train()
    opt = torch.optim.SGD(student.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    if mode == "cached":
        cached = torch.randn(len(ds), C)
    else:
        name = sys.argv[6]
        teacher = (CifarResNet(32, [32, 64, 128, 256], C) if name == "resnet32x4"
                   else torchvision.models.resnet50(num_classes=C)).eval()
    done, t0 = 0, None
    while done < steps + 3:
        for x, y, idx in dl:
            if done == 3:
                t0 = time.perf_counter()
            if mode == "cached":
                tl = cached[idx]
            else:
                with torch.no_grad():
                    tl = teacher(x)
            logits, _ = student(x)
            loss = 0.1 * F.cross_entropy(logits, y) + 0.9 * kd_loss(logits, tl, 4.0)
            opt.zero_grad()
            loss.backward()
            opt.step()
            done += 1
            if done == steps + 3:
                break
    print(f"steps_per_s {steps / (time.perf_counter() - t0):.3f}")


if __name__ == "__main__":
    main()
