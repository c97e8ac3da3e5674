#!/usr/bin/python3
"""Results of scripts/experiments/run_experiments.sh: the table, and docs/RESULTS.md with its plot.

    scripts/experiments/make_results.py RUN_DIR                      # print the results table
    scripts/experiments/make_results.py RUN_DIR --md docs/RESULTS.md --plot docs/dot_losses.png

Reads only what the run wrote: params.txt, times.tsv, teacher/eval.txt,
caches/*.info (kd-cache info) and the cache files' sizes, and for every student run
students/<config>-s<seed>/{metrics.csv,eval.txt,wall_s}. Nothing is typed in by
hand: every number and every verdict below comes from those files. The plot is drawn
by gnuplot (scripts/experiments/plot_dot.gp) from per-epoch means written next to the runs.
It does not run any experiment.
"""
import argparse
import csv
import glob
import math
import os
import re
import subprocess
import sys

CONFIGS = [
    ("ce", "(1) CE only, online pad-crop views"),
    ("kd_sgd", "(2) KD from the cache, SGD"),
    ("kd_dot", "(3) KD from the cache, DOT"),
    ("kd_proj_dot", "(4) KD + projector loss, DOT"),
    ("kd_dot_topk", "(5) KD from the top-5 cache, DOT"),
]
CACHES = [
    ("f32", "float32 logits"),
    ("f16", "float16 logits"),
    ("topk5", "top-5 logits (float16 values + int indices)"),
    ("f16_feat", "float16 logits + 512 float16 features"),
]


def die(msg):
    sys.exit(f"make_results: {msg}")


def read_params(run):
    p = os.path.join(run, "params.txt")
    if not os.path.exists(p):
        die(f"{p} missing: is {run} a run_experiments.sh output folder?")
    out = {}
    for line in open(p):
        for tok in re.findall(r"(\w+)=((?:(?! \w+=).)*)", line.rstrip("\n")):
            out[tok[0]] = tok[1].strip()
    return out


def read_eval(path):
    """kd-train --eval-only's line: images N top1 X top5 Y loss Z."""
    if not os.path.exists(path):
        return None
    m = re.search(r"images (\d+) top1 ([\d.]+) top5 ([\d.]+) loss ([\d.eE+-]+|nan|inf)",
                  open(path).read())
    if not m:
        die(f"{path}: not an eval line")
    return dict(images=int(m.group(1)), top1=float(m.group(2)), top5=float(m.group(3)),
                loss=float(m.group(4)))


def read_metrics(path):
    with open(path) as f:
        return [{k: float(v) if v not in ("", None) else math.nan for k, v in r.items()}
                for r in csv.DictReader(f)]


def mean_std(xs):
    xs = [x for x in xs if x is not None and not math.isnan(x)]
    if not xs:
        return math.nan, math.nan, 0
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else math.nan
    return m, s, len(xs)


def fmt_ms(m, s, n, digits=2):
    if n == 0:
        return "n/a"
    if n == 1 or math.isnan(s):
        return f"{m:.{digits}f}"
    return f"{m:.{digits}f} ± {s:.{digits}f}"


def load(run):
    params = read_params(run)
    times = {}
    tpath = os.path.join(run, "times.tsv")
    if os.path.exists(tpath):
        for line in open(tpath):
            k, v = line.rstrip("\n").split("\t")
            times[k] = float(v)
    teacher = read_eval(os.path.join(run, "teacher", "eval.txt"))
    tmetrics = os.path.join(run, "teacher", "metrics.csv")
    teacher_metrics = read_metrics(tmetrics) if os.path.exists(tmetrics) else []
    caches = {}
    for name, _ in CACHES:
        h5 = os.path.join(run, "caches", name + ".h5")
        info = os.path.join(run, "caches", name + ".info")
        if not os.path.exists(h5):
            continue
        c = dict(bytes=os.path.getsize(h5))
        if os.path.exists(info):
            txt = open(info).read()
            m = re.search(r"([\d.]+) bytes per view", txt)
            c["per_view"] = float(m.group(1)) if m else math.nan
            m = re.search(r"images\s+(\d+)", txt)
            c["images"] = int(m.group(1)) if m else 0
            m = re.search(r"views\s+(\d+) per image", txt)
            c["views"] = int(m.group(1)) if m else 0
        caches[name] = c
    students = {}
    for d in sorted(glob.glob(os.path.join(run, "students", "*-s*"))):
        m = re.match(r"(.+)-s(\d+)$", os.path.basename(d))
        if not m or not os.path.exists(os.path.join(d, "metrics.csv")):
            continue
        ev = read_eval(os.path.join(d, "eval.txt"))
        if ev is None:
            continue  # still training, or failed: run_experiments.sh reported it
        wall = os.path.join(d, "wall_s")
        students.setdefault(m.group(1), []).append(dict(
            seed=int(m.group(2)), eval=ev, metrics=read_metrics(os.path.join(d, "metrics.csv")),
            wall=float(open(wall).read()) if os.path.exists(wall) else math.nan))
    return params, times, teacher, teacher_metrics, caches, students


def top1s(runs):
    return [r["eval"]["top1"] for r in runs if r["eval"]]


def compare(a_runs, b_runs):
    """Difference of mean top-1 (b - a) and its standard error (Welch)."""
    a, b = top1s(a_runs), top1s(b_runs)
    ma, sa, na = mean_std(a)
    mb, sb, nb = mean_std(b)
    if na < 2 or nb < 2:
        return mb - ma, math.nan
    return mb - ma, math.sqrt(sa * sa / na + sb * sb / nb)


def verdict(diff, se, better, worse, same):
    if math.isnan(se):
        return f"{diff:+.2f} points (one seed: no error bar)"
    if diff > 2 * se:
        word = better
    elif diff < -2 * se:
        word = worse
    else:
        word = same
    return f"{diff:+.2f} ± {se:.2f} points: {word}"


def per_epoch_means(runs, key):
    n = min(len(r["metrics"]) for r in runs)
    return [sum(r["metrics"][e][key] for r in runs) / len(runs) for e in range(n)]


def results_table(params, times, teacher, caches, students):
    lines = []
    nseeds = len(params.get("seeds", "").split())
    lines.append(f"| configuration | val top-1 % (mean ± std, {nseeds} seed(s)) | "
                 "train + eval wall s (mean) |")
    lines.append("|---|---|---|")
    if teacher:
        lines.append(f"| teacher {params.get('teacher')} ({params.get('t_per_class')} img/class, "
                     f"{params.get('t_epochs')} ep) | {teacher['top1']:.2f} | "
                     f"{times.get('teacher', math.nan):.0f} |")
    for cfg, label in CONFIGS:
        runs = students.get(cfg, [])
        if not runs:
            continue
        m, s, n = mean_std(top1s(runs))
        w, _, _ = mean_std([r["wall"] for r in runs])
        seeds = ",".join(str(r["seed"]) for r in runs if r["eval"])
        lines.append(f"| {label} | {fmt_ms(m, s, n)} (n={n}{', seeds ' + seeds if seeds else ''})"
                     f" | {w:.0f} |")
    return lines


def cache_table(caches):
    lines = ["| cache | file bytes | bytes per view (kd-cache info) |", "|---|---|---|"]
    for name, label in CACHES:
        c = caches.get(name)
        if c:
            lines.append(f"| {name}: {label} | {c['bytes']:,} | {c.get('per_view', math.nan):.1f} |")
    return lines


def times_table(times):
    lines = ["| stage | wall s |", "|---|---|"]
    for k, v in times.items():
        lines.append(f"| {k} | {v:.0f} |")
    lines.append(f"| total | {sum(times.values()):.0f} |")
    return lines


def dot_data(run, students, outdir):
    """Per-epoch means (over seeds) of the task and distillation losses, SGD vs DOT."""
    os.makedirs(outdir, exist_ok=True)
    path = os.path.join(outdir, "dot_losses.dat")
    sgd, dot = students.get("kd_sgd", []), students.get("kd_dot", [])
    if not sgd or not dot:
        return None
    cols = [per_epoch_means(sgd, "ce_loss"), per_epoch_means(dot, "ce_loss"),
            per_epoch_means(sgd, "kd_loss"), per_epoch_means(dot, "kd_loss")]
    n = min(len(c) for c in cols)
    with open(path, "w") as f:
        f.write("# epoch sgd_ce dot_ce sgd_kd dot_kd (train epoch means over seeds)\n")
        for e in range(n):
            f.write(f"{e + 1} " + " ".join(f"{c[e]:.6f}" for c in cols) + "\n")
    return path


def plot(datfile, png, title):
    gp = os.path.join(os.path.dirname(os.path.abspath(__file__)), "plot_dot.gp")
    r = subprocess.run(["gnuplot", "-e", f"datafile='{datfile}'; outfile='{png}'; "
                        f"plottitle='{title}'", gp], capture_output=True, text=True)
    if r.returncode != 0:
        die(f"gnuplot failed: {r.stderr.strip()}")


def final_loss_table(students):
    lines = ["| final epoch (train means) | task loss (CE) | distillation loss (KD, T²·KL) "
             "| val CE loss | val top-1 % |", "|---|---|---|---|---|"]
    for cfg, label in CONFIGS[1:]:
        runs = students.get(cfg, [])
        if not runs:
            continue
        ce = mean_std([r["metrics"][-1]["ce_loss"] for r in runs])
        kd = mean_std([r["metrics"][-1]["kd_loss"] for r in runs])
        vl = mean_std([r["eval"]["loss"] for r in runs if r["eval"]])
        t1 = mean_std(top1s(runs))
        lines.append(f"| {label} | {fmt_ms(*ce, 4)} | {fmt_ms(*kd, 4)} | {fmt_ms(*vl, 4)} "
                     f"| {fmt_ms(*t1)} |")
    return lines


def dot_claim(students):
    """Does DOT end with lower task AND distillation loss than SGD (train, last epoch)?"""
    sgd, dot = students.get("kd_sgd", []), students.get("kd_dot", [])
    if not sgd or not dot:
        return "no SGD/DOT runs"
    out = []
    for key, name in (("ce_loss", "task loss"), ("kd_loss", "distillation loss")):
        a = [r["metrics"][-1][key] for r in sgd]
        b = [r["metrics"][-1][key] for r in dot]
        ma, sa, na = mean_std(a)
        mb, sb, nb = mean_std(b)
        se = math.sqrt(sa * sa / na + sb * sb / nb) if na > 1 and nb > 1 else math.nan
        d = mb - ma
        if math.isnan(se):
            word = "lower" if d < 0 else "higher"
        else:
            word = "lower" if d < -2 * se else "higher" if d > 2 * se else "no clearly different"
        out.append(f"{name}: DOT {mb:.4f} vs SGD {ma:.4f} ({word}; difference {d:+.4f}"
                   + ("" if math.isnan(se) else f" ± {se:.4f}") + ")")
    return "; ".join(out)


def expectations(students):
    ce, sgd, dot = students.get("ce", []), students.get("kd_sgd", []), students.get("kd_dot", [])
    topk = students.get("kd_dot_topk", [])
    proj = students.get("kd_proj_dot", [])
    out = []
    if ce and sgd:
        out.append("Cached KD (SGD) vs CE only: "
                   + verdict(*compare(ce, sgd), "KD beats CE", "KD is worse than CE", "no clear difference"))
    if ce and dot:
        out.append("Cached KD (DOT) vs CE only: "
                   + verdict(*compare(ce, dot), "KD beats CE", "KD is worse than CE", "no clear difference"))
    if sgd and dot:
        out.append("DOT vs SGD (same KD loss): "
                   + verdict(*compare(sgd, dot), "DOT is better", "DOT is worse", "no clear difference"))
    if dot and proj:
        out.append("Projector loss added (both DOT): "
                   + verdict(*compare(dot, proj), "it helps", "it hurts", "no clear difference"))
    if dot and topk:
        out.append("Top-5 cache vs float16 cache (both DOT): "
                   + verdict(*compare(dot, topk), "top-5 is better", "top-5 costs accuracy",
                             "no clear difference"))
    return out


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("run", help="run_experiments.sh output folder (runs/quick, runs/full)")
    ap.add_argument("--md", help="write this Markdown file (docs/RESULTS.md)")
    ap.add_argument("--plot", help="write the SGD-vs-DOT loss plot to this PNG")
    ap.add_argument("--notes", help="Markdown file appended as the discussion section")
    ap.add_argument("--extra", action="append", default=[],
                    help="another sweep's folder (run_experiments.sh --reuse RUN): its own "
                         "top-1 table, expectations and SGD-vs-DOT losses (repeatable)")
    a = ap.parse_args()
    params, times, teacher, tmetrics, caches, students = load(a.run)
    extras = []
    for d in a.extra:
        p, _, _, _, _, st = load(d)
        png = None
        if a.plot:
            root, ext = os.path.splitext(a.plot)
            png = f"{root}_{os.path.basename(os.path.normpath(d))}{ext}"
            dat = dot_data(d, st, os.path.join(d, "plot"))
            if dat:
                plot(dat, png, f"{p.get('student')} student, {p.get('s_per_class')} img/class, "
                     f"lr {student_lr(p)}, mean of seeds {p.get('seeds')}")
            else:
                png = None
        extras.append((d, p, st, png))

    head = (f"Fashion-MNIST, teacher {params.get('teacher')} on {params.get('t_per_class')} "
            f"images/class x {params.get('t_epochs')} epochs; student {params.get('student')} on "
            f"{params.get('s_per_class')} images/class x {params.get('s_epochs')} epochs; "
            f"{params.get('views')} pad-crop views per image in the caches"
            f"{' (' + params['chunk_images'] + ' images per chunk)' if 'chunk_images' in params else ''}; val: "
            f"{'the 10000-image test set' if params.get('val_per_class') == 'all' else str(params.get('val_per_class')) + ' test images/class'}; "
            f"seeds {params.get('seeds')}")
    print(f"== results ({params.get('profile')} profile) ==")
    print(head)
    for line in results_table(params, times, teacher, caches, students):
        print(line)
    print()
    for line in cache_table(caches):
        print(line)
    print()
    for line in times_table(times):
        print(line)
    print()
    for line in expectations(students):
        print("- " + line)
    print("- DOT paper's claim (final train losses): " + dot_claim(students))
    for d, p, st, _ in extras:
        print(f"\n== {d}: student lr {student_lr(p)} ==")
        for line in results_table(p, {}, None, {}, st):
            print(line)
        for line in expectations(st):
            print("- " + line)
        print("- DOT paper's claim (final train losses): " + dot_claim(st))

    if a.plot:
        dat = dot_data(a.run, students, os.path.join(a.run, "plot"))
        if dat:
            plot(dat, a.plot, f"{params.get('student')} student, {params.get('s_per_class')} img/class, "
                 f"lr {student_lr(params)}, mean of seeds {params.get('seeds')}")
    if a.md:
        write_md(a, params, times, teacher, tmetrics, caches, students, head, extras)


def student_lr(params):
    m = re.search(r"--lr ([\d.eE+-]+)", params.get("s_opt", params.get("opt", "")))
    return m.group(1) if m else "?"


def write_md(a, params, times, teacher, tmetrics, caches, students, head, extras):
    L = []
    L.append("# Results: Fashion-MNIST, teacher -> cache -> student\n")
    L.append("Generated by `scripts/experiments/make_results.py " + a.run
             + "".join(f" --extra {d}" for d in a.extra)
             + (f" --md {a.md}" if a.md else "") + (f" --plot {a.plot}" if a.plot else "")
             + (f" --notes {a.notes}" if a.notes else "")
             + "` from the run folder; do not edit by hand.\n")
    L.append(f"Produced by: `{params.get('command')}` (what `bash scripts/main_job.sh --full` runs).\n")
    L.append(head + ".\n")
    L.append(f"Recipe: 28 px images resized to 32 px; batch 64, SGD momentum 0.9, lr {student_lr(params)} cosine, "
             "wd 5e-4; KD: T = 4, 0.1 CE + 0.9 KD (mdistiller's CIFAR recipe); DOT delta 0.075; "
             "projector loss weight 2, alpha 4 (on the distillation side under DOT). "
             "Each student run uses one thread, two runs at a time; the val top-1 is the "
             "final weights' (`kd-train --eval-only`, center view).\n")
    L.append("## Top-1 per configuration\n")
    L += results_table(params, times, teacher, caches, students)
    L.append("")
    L.append("## What the expectations became\n")
    L.append("Differences are of mean top-1 (second minus first) with the standard error of "
             "that difference; 'beats'/'worse' needs more than two standard errors.\n")
    for line in expectations(students):
        L.append("- " + line)
    L.append("")
    L.append("## The DOT paper's claim on our data\n")
    L.append("The claim (Zhao et al., DOT): compared with SGD on the summed loss, DOT ends "
             "with a lower task loss *and* a lower distillation loss. Below: per-epoch train "
             "means (over seeds) of the task loss (CE) and the distillation loss (KD, "
             "T² · KL, unweighted) for configurations (2) and (3).\n")
    if a.plot:
        L.append(f"![task and distillation loss per epoch, SGD vs DOT]({os.path.basename(a.plot)})\n")
    L += final_loss_table(students)
    L.append("")
    L.append("(5)'s distillation loss is measured against the renormalised top-5 teacher "
             "distribution (docs/TRAINING_MATH.md), so it is not comparable with the rows above.\n")
    L.append("Observed: " + dot_claim(students) + ".\n")
    for d, p, st, png in extras:
        L.append(f"## Second sweep: student lr {student_lr(p)}, same teacher and caches\n")
        L.append(f"Produced by: `{p.get('command')}`; everything else as above.\n")
        L += results_table(p, {}, None, {}, st)
        L.append("")
        for line in expectations(st):
            L.append("- " + line)
        L.append("")
        if png:
            L.append(f"![task and distillation loss per epoch, SGD vs DOT, lr {student_lr(p)}]"
                     f"({os.path.basename(png)})\n")
        L += final_loss_table(st)
        L.append("")
        L.append("Observed: " + dot_claim(st) + ".\n")
    L.append("## Cache sizes per storage mode\n")
    c = caches.get("f16_feat") or next(iter(caches.values()), None)
    if c:
        L.append(f"{c.get('images', 0)} images x {c.get('views', 0)} views, LZ4-compressed "
                 "HDF5; every cache holds the same views (same seed).\n")
    L += cache_table(caches)
    L.append("")
    L.append("## Wall time per stage\n")
    L.append("On the shared 2-core development machine while other engineers' builds and "
             "tests ran, so absolute times are several times an idle machine's.\n")
    L += times_table(times)
    for d, p, _, _ in extras:
        t = os.path.join(d, "times.tsv")
        for line in open(t) if os.path.exists(t) else []:
            k, v = line.rstrip("\n").split("\t")
            if k == "students":
                L.append(f"\nSecond sweep (lr {student_lr(p)}, {p.get('configs')}): students "
                         f"{float(v):.0f} s.")
    L.append("")
    if tmetrics:
        L.append(f"Teacher training: {sum(r['seconds'] for r in tmetrics):.0f} s over "
                 f"{len(tmetrics)} epochs, {tmetrics[-1]['images_per_s']:.0f} img/s in the last.\n")
    if a.notes:
        L.append(open(a.notes).read().rstrip() + "\n")
    with open(a.md, "w") as f:
        f.write("\n".join(L))
    print(f"make_results: wrote {a.md}")


if __name__ == "__main__":
    main()
