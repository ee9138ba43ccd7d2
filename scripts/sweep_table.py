#!/usr/bin/env python3
"""The README's comparison table of stage-1 losses × classifier stages, built from run folders.

    python3 scripts/sweep_table.py SAVED_DIR [--reference "CE"] [--json OUT.json]

Reads every run folder under SAVED_DIR (its `config.yaml` and `metrics.jsonl`, as `mislas`
writes them) and prints a Markdown table: for each stage-1 setup (loss, re-weighting, mixup,
classifier) and each stage (stage 1, then every classifier stage that resumed one of its
stage-1 runs: MiSLAS, cRT, …), the mean ± sample standard deviation (ddof = 1, NumPy's
`std(ddof=1)`) over seeds of top-1, many/medium/few-shot accuracy, ECE and NLL at each run's
**last** epoch (no epoch is picked on the test set). A stage-2 run belongs to the stage-1 setup
of the run folder its `resume` names (`<stage-1 run>/ckps/….safetensors`), so the stage-2
configurations, identical but for `resume`, are told apart.

Only finished runs count (as many evaluated epochs as `num_epochs`), one per seed (the first to
finish, as `mislas`'s seed groups do). After the table it lists which differences to the
reference setup (`--reference`, default "CE": mixup cross-entropy, MiSLAS's stage 1) are larger
than the spread: |mean_a − mean_b| > std_a + std_b (the two mean ± std intervals do not
overlap), for top-1, ECE and NLL in every stage; and the sweep's times: from the first run folder
created to the last metrics line written; the time at least one run was going (the union of the
runs' spans, folder created to last metrics line, pauses under a minute counted in), and in
how many sittings (a sweep stopped and taken up again later has a gap between its sittings); and the summed train + evaluation
seconds.

Standard library only: it runs with any Python 3.8+.
"""
import argparse
import json
import math
import os
import sys

LOSS_LABELS = {
    "ce": "CE",
    "balanced_softmax": "Balanced Softmax",
    "logit_adjusted": "LA loss",
    "ldam": "LDAM",
    "focal": "Focal",
}
RECIPE_LABELS = {"mislas": "MiSLAS", "crt": "cRT", "lws": "LWS", "wb": "WB"}
# (column header, key of the evaluation record, decimals)
FIGURES = [
    ("top-1 %", "top1", 2),
    ("many %", "many_shot", 2),
    ("medium %", "medium_shot", 2),
    ("few %", "few_shot", 2),
    ("ECE %", "ece", 2),
    ("NLL", "nll", 3),
]
COMPARED = [("top-1", "top1", 2), ("ECE", "ece", 2), ("NLL", "nll", 3)]


def read_config(path):
    """The flat `key: value` lines of a run's config.yaml (mislas writes one key a line; the
    lists it writes as `- item` lines are skipped: no key of the setup is a list)."""
    cfg = {}
    with open(path) as f:
        for line in f:
            if line.startswith((" ", "-", "#")) or ":" not in line:
                continue
            key, _, value = line.partition(":")
            value = value.strip().strip("'\"")
            cfg[key.strip()] = value
    return cfg


def read_runs(saved):
    runs = []
    for name in sorted(os.listdir(saved)):
        d = os.path.join(saved, name)
        cfg_path, met_path = os.path.join(d, "config.yaml"), os.path.join(d, "metrics.jsonl")
        if not (os.path.isfile(cfg_path) and os.path.isfile(met_path)):
            continue
        with open(met_path) as f:
            epochs = [json.loads(l) for l in f if l.strip()]
        runs.append(
            {
                "dir": os.path.realpath(d),
                "config": read_config(cfg_path),
                "epochs": epochs,
                "created": os.path.getmtime(cfg_path),
                "ended": os.path.getmtime(met_path),
            }
        )
    return runs


def finished(run):
    if not run["epochs"]:
        return False
    last = run["epochs"][-1]
    return last["epoch"] + 1 >= last["num_epochs"]


def setup_label(cfg):
    """A stage-1 setup in words: `LDAM-DRW`, `CE + CB`, `CE (no mixup)`, `LA loss (τ = 1)`."""
    loss = cfg.get("loss", "ce")
    label = LOSS_LABELS.get(loss, loss)
    reweight = cfg.get("reweight", "none")
    if reweight == "drw":
        label += "-DRW"
        label += " (DRW from epoch %s)" % cfg.get("drw_epoch", "?")
    elif reweight == "cb":
        label += " + CB (β = %s)" % cfg.get("cb_beta", "?")
    if loss == "logit_adjusted":
        label += " (τ = %s)" % cfg.get("la_tau", "1.0")
    if loss == "focal":
        label += " (γ = %s)" % cfg.get("focal_gamma", "1.0")
    if cfg.get("mixup", "true") == "false":
        label += ", no mixup"
    return label


def mean_std(xs):
    """(mean, sample std with ddof = 1 or None for one value, n); None for no value."""
    xs = [x for x in xs if x is not None]
    if not xs:
        return None
    m = sum(xs) / len(xs)
    s = math.sqrt(sum((x - m) ** 2 for x in xs) / (len(xs) - 1)) if len(xs) > 1 else None
    return (m, s, len(xs))


def fmt(ms, p):
    if ms is None:
        return "—"
    m, s, _ = ms
    return "%.*f ± %s" % (p, m, "—" if s is None else "%.*f" % (p, s))


def group(runs):
    """{(setup, stage): {seed: run}}: per seed the first finished run (earliest metrics end)."""
    by_dir = {r["dir"]: r for r in runs}
    groups, order = {}, []
    for r in sorted(runs, key=lambda r: r["ended"]):
        if not finished(r):
            continue
        cfg = r["config"]
        if cfg.get("mode") == "stage1":
            setup, stage = setup_label(cfg), "stage 1"
        else:
            resume = cfg.get("resume", "")
            parent = by_dir.get(os.path.realpath(os.path.dirname(os.path.dirname(resume))))
            if parent is None:
                continue  # a stage 2 of a stage-1 run outside this folder
            setup = setup_label(parent["config"])
            recipe = cfg.get("recipe", "mislas")
            stage = RECIPE_LABELS.get(recipe, recipe)
        key = (setup, stage)
        if key not in groups:
            groups[key] = {}
            order.append(key)
        groups[key].setdefault(int(cfg.get("seed", "0")), r)
    return groups, order


def figures(group_runs):
    evals = [r["epochs"][-1]["eval"] for r in group_runs.values()]
    return {key: mean_std([e.get(key) for e in evals]) for _, key, _ in FIGURES}


def build(saved, reference):
    runs = read_runs(saved)
    groups, order = group(runs)
    setups = []
    for s, _ in order:
        if s not in setups:
            setups.append(s)
    stages = ["stage 1"] + sorted({st for _, st in order if st != "stage 1"})
    # Reference first, then the others in the order their first run finished.
    if reference in setups:
        setups.remove(reference)
        setups.insert(0, reference)
    table = {k: figures(v) for k, v in groups.items()}
    seeds = {k: sorted(v) for k, v in groups.items()}
    cols = [c for c in FIGURES if any(table[k][c[1]] for k in table)]
    lines = [
        "| stage-1 setup | stage | seeds | " + " | ".join(c[0] for c in cols) + " |",
        "|---|---|---|" + "---|" * len(cols),
    ]
    for s in setups:
        for st in stages:
            if (s, st) not in table:
                continue
            f = table[(s, st)]
            cells = [fmt(f[key], p) for _, key, p in cols]
            seed_list = ",".join(str(x) for x in seeds[(s, st)])
            lines.append("| %s | %s | %s | %s |" % (s, st, seed_list, " | ".join(cells)))
    dropped = [c[0] for c in FIGURES if c not in cols]
    notes = []
    if dropped:
        notes.append(
            "No run has a figure for %s (no class in that group), so the column is left out."
            % ", ".join(dropped)
        )
    # Differences larger than the spread, against the reference setup.
    diffs = []
    for st in stages:
        ref = table.get((reference, st))
        if ref is None:
            continue
        for s in setups:
            if s == reference or (s, st) not in table:
                continue
            for label, key, p in COMPARED:
                a, b = table[(s, st)][key], ref[key]
                if a is None or b is None or a[1] is None or b[1] is None:
                    continue
                d = a[0] - b[0]
                if abs(d) > a[1] + b[1]:
                    diffs.append(
                        "%s, %s: %s %+.*f (%s vs %s)"
                        % (st, s, label, p, d, fmt(a, p), fmt(b, p))
                    )
    spans = [r for r in runs if finished(r)]
    timing = None
    if spans:
        wall = max(r["ended"] for r in spans) - min(r["created"] for r in spans)
        busy = sum(e.get("train_seconds", 0) + e.get("eval_seconds", 0) for r in spans for e in r["epochs"])
        going, sittings = union_of_spans([(r["created"], r["ended"]) for r in spans])
        timing = {
            "runs": len(spans),
            "wall_seconds": wall,
            "going_seconds": going,
            "sittings": sittings,
            "train_eval_seconds": busy,
        }
    return {
        "markdown": "\n".join(lines),
        "notes": notes,
        "larger_than_spread": diffs,
        "timing": timing,
        "table": {"%s | %s" % k: {kk: v for kk, v in f.items()} for k, f in table.items()},
        "seeds": {"%s | %s" % k: v for k, v in seeds.items()},
    }


# A pause between runs shorter than this (seconds) is the scheduler starting the next run, not
# a sweep stopped and taken up again.
JOIN_SECONDS = 60.0


def union_of_spans(spans, join=JOIN_SECONDS):
    """The length of the union of the (start, end) spans, pauses shorter than `join` seconds
    counted in, and its number of pieces: the time the sweep was going, and in how many
    sittings."""
    total, pieces, end = 0.0, 0, None
    for a, b in sorted(spans):
        if end is not None and end < a <= end + join:
            total += a - end
            end = a
        if end is None or a > end:
            pieces += 1
            total += b - a
            end = b
        elif b > end:
            total += b - end
            end = b
    return total, pieces


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("saved", help="folder of run folders (mislas --saved)")
    ap.add_argument("--reference", default="CE", help="the stage-1 setup differences are taken to")
    ap.add_argument("--json", help="also write everything as JSON to this file")
    a = ap.parse_args()
    if not os.path.isdir(a.saved):
        sys.exit("error: %s is not a folder of run folders" % a.saved)
    out = build(a.saved, a.reference)
    if not out["table"]:
        sys.exit("error: %s holds no finished run (config.yaml and metrics.jsonl)" % a.saved)
    print(out["markdown"])
    for n in out["notes"]:
        print("\n" + n)
    print("\nDifferences to %s larger than the spread (|Δ mean| > std + std):" % a.reference)
    for d in out["larger_than_spread"] or ["none"]:
        print("* " + d)
    t = out["timing"]
    if t:
        print(
            "\n%d finished runs; wall time %.1f min in %d sitting%s (the pauses between "
            "sittings left out; %.1f min from the first run folder to the last metrics line); "
            "train + evaluation %.1f min summed over runs"
            % (
                t["runs"],
                t["going_seconds"] / 60,
                t["sittings"],
                "" if t["sittings"] == 1 else "s",
                t["wall_seconds"] / 60,
                t["train_eval_seconds"] / 60,
            )
        )
    if a.json:
        with open(a.json, "w") as f:
            json.dump(out, f, indent=1)


if __name__ == "__main__":
    main()
