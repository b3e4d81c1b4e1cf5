"""`fer-bench check`: the CI reproducibility check.

1. every registered paper validates: models build, parameter counts equal the reference,
   claims are complete, every model has a smoke reference value on some CPU kind (else the
   failure names the command that measures it);
2. the smoke profile of every model runs on the real data (deterministic mode, seed 0);
3. one run is repeated and must give identical metrics;
4. smoke metrics are compared with the reference values committed in
   results/reference/smoke.json, within TOLERANCE;
5. (the whole check, not ``--only``) the learning check: the smallest model trained long enough to leave chance.
   On a CPU kind with a committed value (results/reference/learning.json) its seed must give exactly that value
   (the run is deterministic on one kind); on any other kind LEARNING_FRESH seeds the reference has never seen
   must not fall below it by a one-sided t test (``learning_threshold``). The smoke runs sit at chance and cannot
   see a change that stops a model from learning.

``--update`` writes the measured values of this CPU kind, each with the code version that measured it
(``measured_with``); with ``--only`` every other value keeps its value, parameter count and record.

Exit status 0 when all pass, 1 on any regression (2 stays reserved for bad input).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

from .data import CLASSES
from .errors import UserError
from papers import get_paper, list_papers
from .results import software, write_json_atomic

REFERENCE = Path("results/reference/smoke.json")
# smoke runs are deterministic on one machine; another CPU's float rounding can flip a few
# near-chance predictions of a one-epoch model, so accuracies get +-3 points and losses +-5%.
TOLERANCE = {"accuracy": 0.03, "loss_rel": 0.05}
# smoke runs use one precision on every machine, whatever a run there would default to (bf16-mixed on a CPU with
# native bf16, 32-true on others), so the values compare like with like; the reference records it
PRECISION = "32-true"
LEARNING_REFERENCE = Path("results/reference/learning.json")
# the learning check: miao's PResNet (the smallest network, 0.87 M parameters) with its own SGD (lr 0.01, momentum
# 0.9, weight decay 5e-4) on 6,144 Training images (drawn with the seed) for two epochs at batch 32, the lr x0.1 for
# the second, selected on 1,024 PublicTest images; its PrivateTest accuracy is the value checked. (Its recipe, one
# epoch of all of Training at batch 128, reached 28.6%; Adam 1e-3 left seed 4 of this run at chance, 24.3%, at batch
# 128 and at 32.)
LEARNING_RUN = ("miao_presnet_vgg", "presnet", ("train_subset=6144", "val_subset=1024", "epochs=2", "batch_size=32",
                                                "scheduler=step", "lr_hold=0", "step_size=1", "step_gamma=0.1"))
# The gate (`learning`): on a CPU kind with a committed value, exact equality with it (a run is deterministic on one
# kind, so any change of what it computes shows, and an unchanged one never fails). On another kind, k =
# LEARNING_FRESH seeds the reference has never seen, failing when their mean < m - t(0.99, n-1) s sqrt(1/k + 1/n)
# (m, s: mean and sd of the reference's values, all kinds pooled; n: its distinct seeds). False alarms: 1%
# (LEARNING_LEVEL, one-sided) when a change leaves the accuracy's distribution as it was (normal seed-to-seed
# spread). The drop of the true mean it catches with 90% probability is `detectable_drop` (noncentral t): with the
# committed reference (AVX2 and AVX512, seeds 0-4 each: m = 0.3456, s = 0.0166, n = 5), 6.82 points at k = 3 (k = 2:
# 7.82; k = 1: 10.23; `fer-bench check --learning --update` prints it). k = 3 costs two more runs (about 2.5 minutes
# each unloaded) than the old one-run gate, and only on a kind the reference lacks; a model at chance, 10.1 points
# below m, is caught with more than 90% probability at k = 3 or 2, not at k = 1. The old gate (seed 0, itself a
# reference seed, in a 99% prediction interval) had to lose 5.8 points to fail, but failed on any reshuffle of
# randomness that moved seed 0 out of the interval, and could not tell either from an unchanged run.
LEARNING_LEVEL = 0.99
LEARNING_POWER = 0.90
LEARNING_FRESH = 3
CLAIM_FIELDS = ("model", "metric", "as_printed", "split", "protocol", "source", "quote", "kind")


def validate_papers() -> list[tuple[str, str, str]]:
    """(paper, problem, detail) for every registry entry that is incomplete or inconsistent."""
    problems = []
    for pid in list_papers():
        paper = get_paper(pid)
        for c in paper.claims:
            missing = [f for f in CLAIM_FIELDS if not getattr(c, f)]
            if missing:
                problems.append((pid, "incomplete claim", f"{c.model}/{c.metric}: no {', '.join(missing)}"))
            if c.metric == "accuracy" and not (c.value is not None and 0 <= c.value <= 1):
                problems.append((pid, "accuracy not a fraction", f"{c.model}: {c.value}"))
            if c.kind not in ("own", "cited"):
                problems.append((pid, "bad claim kind", c.kind))
        if not paper.interpretations:
            problems.append((pid, "no interpretations", "every paper leaves choices open: record them"))
    return problems


def _smoke(pid: str, model: str, data, out: Path, precision: str = PRECISION, seed: int = 0,
           overrides: tuple[str, ...] = ()) -> dict:
    from .runner import run

    cfg = get_paper(pid).resolve(model, "smoke")
    overrides = [*overrides, *(["pretrained=false"] if cfg.get("pretrained") else [])]  # CI has no network for weights
    (path,) = run(pid, model=model, profile="smoke", seed=seed, data=data, out=out, overrides=overrides,
                  deterministic=True, progress=False, precision=precision)
    return json.loads(path.read_text())


def cpu_kind() -> str:
    """The kernels a CPU runs: smoke runs are exact on one kind of CPU, but an AVX2 and an AVX-512 machine round
    differently, and a one-epoch model near chance then predicts another class (0.24 -> 0.15 accuracy, measured on
    huang_fpn/resnet50). The reference keeps values per kind."""
    import torch

    kind = torch.backends.cpu.get_cpu_capability()
    if torch.cpu._is_avx512_bf16_supported():
        kind += "+BF16"
    if torch.cpu._is_amx_tile_supported():
        kind += "+AMX"
    return kind


def _kinds(ref: dict) -> dict:
    """The reference's per-CPU-kind entries as stored: {kind: {"values": {model: splits}, "measured_with": {model:
    software}, "software": ...}}. A reference from before CPU kinds were kept (values keyed by model) was measured
    on the AVX2 machine."""
    smoke = ref.get("smoke", {})
    if smoke and all("/" in k for k in smoke):
        return {"AVX2": {"software": ref.get("software", {}), "values": smoke}}
    return smoke


def smoke_values(ref: dict) -> dict:
    """{cpu kind: {"values": {model: splits}, "measured_with": {model: software}}}: each value with the code
    version (python, torch, lightning, fer_bench, git_sha) that measured it. ``measured_with`` is kept per model
    since `--update --only` re-measures some models and leaves the others' values, and their record, as they
    were; a model measured before that (a kind-level ``software`` only) gets the kind's record, the last
    ``--update`` on that kind."""
    out = {}
    for kind, entry in _kinds(ref).items():
        legacy, own = entry.get("software", {}), entry.get("measured_with", {})
        values = entry.get("values", {})
        out[kind] = {"values": values, "measured_with": {k: own.get(k, legacy) for k in values}}
    return out


def _updated(entry: dict, measured: dict, versions: dict) -> dict:
    """A kind's stored entry with ``measured`` values and their code ``versions`` replacing those models' values and
    records; every other model keeps its value and record untouched. The kind-level ``software`` of an older
    reference stays while some value still relies on it."""
    values = {**entry.get("values", {}), **measured}
    measured_with = {**entry.get("measured_with", {}), **versions}
    out = {"values": values, "measured_with": measured_with}
    if "software" in entry and any(k not in measured_with for k in values):
        out["software"] = entry["software"]
    return out


def measure_command(key: str, data=None, reference: Path = REFERENCE) -> str:
    """The command that measures ``key``'s reference values on this machine."""
    return (f"fer-bench check --update --only {key} --data {data or '../shared/datasets/fer2013'}"
            + ("" if Path(reference) == REFERENCE else f" --reference {reference}"))


def _missing(key: str, data, reference: Path) -> str:
    return (f"no smoke reference value on any CPU kind: measure it on the real FER-2013 with `"
            f"{measure_command(key, data, reference)}` and commit {reference}")


def consistency(d: dict, sizes: dict[str, int]) -> list[str]:
    """What is wrong with a smoke run's metrics.json: it completed, every test split holds all of the split's
    ``sizes`` images once, and its accuracies are those of its confusion matrix. Empty when all holds."""
    import numpy as np

    problems = [] if d.get("status") == "completed" else [f"status {d.get('status')}"]
    for split, n in sizes.items():
        m = d.get("splits", {}).get(split)
        if m is None:
            problems.append(f"no {split}")
            continue
        cm = np.asarray(m["confusion_matrix"])
        if cm.shape != (len(CLASSES),) * 2 or cm.sum() != m["n"] or m["n"] != n:
            problems.append(f"{split}: {cm.sum()} images in a {cm.shape} matrix, n {m['n']}, the split has {n}")
            continue
        rows = cm.sum(1)
        per_class = [cm[i, i] / rows[i] if rows[i] else 0.0 for i in range(len(cm))]
        if abs(m["accuracy"] - np.trace(cm) / n) > 1e-6 or any(
                abs(a - b) > 1e-6 for a, b in zip(m["per_class_accuracy"].values(), per_class)):
            problems.append(f"{split}: accuracies differ from the confusion matrix's")
    return problems


def _split_sizes(data) -> dict[str, int]:
    """Images per test split of the FER-2013 the smoke runs train on."""
    from .data import load_fer2013, resolve_data_path

    counts = load_fer2013(resolve_data_path(data)).counts()
    return {split: sum(counts[split].values()) for split in ("PrivateTest", "PublicTest")}


def _summary(d: dict) -> dict:
    return {split: {"accuracy": v["accuracy"], "loss": v["loss"]} for split, v in d["splits"].items()}


def compare(measured: dict, reference: dict) -> list[tuple[str, str, float, float, bool]]:
    """(model, metric, measured, reference, ok) for every reference value."""
    rows = []
    for key, ref in reference.items():
        got = measured.get(key)
        for split, values in ref.items():
            for metric, r in values.items():
                m = got[split][metric] if got else float("nan")
                tol = TOLERANCE["accuracy"] if metric == "accuracy" else TOLERANCE["loss_rel"] * abs(r)
                rows.append((key, f"{split} {metric}", m, r, abs(m - r) <= tol))
    return rows


def check(data=None, reference: Path = REFERENCE, update: bool = False, only: list[str] | None = None,
          out: Path | None = None, learning_reference: Path = LEARNING_REFERENCE) -> int:
    """Run the check; the smoke runs go to ``out`` (kept, e.g. results/) or a temporary directory."""
    failures = 0
    print("== registry")
    params = {f"{pid}/{m}": get_paper(pid).num_params(m) for pid in list_papers() for m in get_paper(pid).models}
    ref = json.loads(reference.read_text()) if reference.is_file() else {"params": {}, "smoke": {}}
    for problem in validate_papers():
        print("  FAIL", *problem)
        failures += 1
    keys = [k for k in params if not only or any(k == o or k.startswith(o.rstrip("/") + "/") for o in only)]
    if not keys:
        raise UserError(f"--only {' '.join(only)}: no such paper or model; see `fer-bench list`.")
    kind, kinds = cpu_kind(), smoke_values(ref)
    somewhere = {k for entry in kinds.values() for k in entry["values"]}
    for key, n in params.items():
        want = ref["params"].get(key)
        fresh = update and key in keys  # measured now: its count and smoke values are recorded anew
        if key not in somewhere and not fresh:  # e.g. a new paper's model: nothing to compare its smoke run with
            failures += 1
            print(f"  FAIL {key:<40} {n:>12,} params; {_missing(key, data, reference)}")
            continue
        # another model's count must still equal the reference's: its smoke values were measured with that network
        ok = fresh or want == n
        failures += not ok
        print(f"  {'ok  ' if ok else 'FAIL'} {key:<40} {n:>12,} params" + ("" if ok else f" (reference {want}: its "
              f"smoke values were measured with another network; `{measure_command(key, data, reference)}` "
              f"re-measures them, then commit {reference})"))
    measured, versions = {}, {}
    precision = PRECISION if update else ref.get("precision", PRECISION)
    sizes = _split_sizes(data)
    with tempfile.TemporaryDirectory() as tmp:
        print(f"== smoke runs (profile smoke, seed 0, deterministic, precision {precision})")
        for key in keys:
            pid, model = key.split("/")
            d = _smoke(pid, model, data, out or Path(tmp) / "a", precision)
            measured[key] = _summary(d)
            versions[key] = d.get("software") or software()  # the code version that measured it
            problems = consistency(d, sizes)
            failures += bool(problems)
            print(f"  {'ok  ' if not problems else 'FAIL'} {key:<40} PrivateTest acc "
                  f"{d['splits']['PrivateTest']['accuracy']:.4f}  train {d['timing']['train_s']:.0f}s  eval "
                  f"{d['timing']['eval_s']:.0f}s" + "".join(f"; {p}" for p in problems))
        print("== determinism (first model repeated)")
        pid, model = keys[0].split("/")
        again = _summary(_smoke(pid, model, data, Path(tmp) / "b", precision))  # never kept: it would count as a second seed
        same = again == measured[keys[0]]
        failures += not same
        print(f"  {'ok  ' if same else 'FAIL'} {keys[0]}: repeated run {'identical' if same else 'differs'}")

    if update:
        stored = _kinds(ref)
        stored[kind] = _updated(stored.get(kind, {}), measured, versions)
        # parameter counts: those of the models measured now, and of models the reference has none for; another
        # model keeps its recorded count (that of the network its values were measured with)
        counts = {k: n if k in keys or k not in ref["params"] else ref["params"][k] for k, n in params.items()}
        write_json_atomic(reference, {"note": "measured by `fer-bench check --update`; smoke profile, seed 0, per CPU "
                                              "kind (fer_bench.check.cpu_kind), each value with the code version "
                                              "that measured it (measured_with)",
                                      "precision": precision, "tolerance": TOLERANCE, "params": counts,
                                      "smoke": stored})
        print(f"== reference updated for CPU kind {kind}: {', '.join(measured)} ({reference}; commit it)")
        return int(failures > 0)
    mine = kinds.get(kind, {}).get("values", {})
    print(f"== against {reference}, CPU kind {kind} (accuracy +-{TOLERANCE['accuracy']}, loss "
          f"+-{TOLERANCE['loss_rel']:.0%})")
    print(f"  {'model':<40} {'metric':<22} {'measured':>9} {'reference':>9}")
    for key, metric, m, r, ok in compare(measured, {k: v for k, v in mine.items() if k in measured}):
        failures += not ok
        print(f"  {key:<40} {metric:<22} {m:>9.4f} {r:>9.4f}  {'ok' if ok else 'REGRESSION'}")
    for k in (k for k in measured if k not in mine):
        others = [c for c, v in kinds.items() if k in v.get("values", {})]
        if others:  # measured on other CPUs only: not comparable here, and not a failure
            print(f"  note {k}: no reference for CPU kind {kind} (only {', '.join(others)}); run "
                  f"`{measure_command(k, data, reference)}` on such a machine and commit {reference}")
        # a value on no CPU kind at all failed in the registry section above, with the command that measures it
    if only is None:  # the whole check; `--only` checks smoke references
        failures += learning(data, learning_reference)
    print(f"== {'FAILED: ' + str(failures) + ' problem(s)' if failures else 'all checks passed'}")
    return int(failures > 0)


def learning_reference(kinds: dict) -> tuple[float, float, int]:
    """(m, s, n): mean and sd of the reference's values, every CPU kind's pooled (another kind's rounding acts like
    another seed), and n, its distinct seeds. n counts a seed measured on two kinds once: both runs drew the same
    training images and initial weights, so their values may be correlated. With the same seeds on two kinds, the
    test's false alarms are then 0.13% (uncorrelated kinds) to 1.2% (perfectly correlated) instead of 1% (simulated
    in tests/test_check.py). Needs >= 3 seeds."""
    import numpy as np

    values = [a for k in kinds.values() for a in k["seeds"].values()]
    n = len({s for k in kinds.values() for s in k["seeds"]})
    if n < 3:
        raise UserError(f"the learning reference holds {n} seed(s); measure at least 3 with "
                        "`fer-bench check --learning --update`.")
    v = np.asarray(values, dtype=float)
    return float(v.mean()), float(v.std(ddof=1)), n


def learning_threshold(m: float, s: float, n: int, k: int = LEARNING_FRESH, level: float = LEARNING_LEVEL) -> float:
    """The lowest mean of k fresh seeds that passes: m - t(level, n - 1) s sqrt(1/k + 1/n), the one-sided ``level``
    bound of (mean of k fresh seeds) - m when the change leaves the accuracy's distribution as it was."""
    import math

    from scipy import stats

    if n < 3 or k < 1:
        raise UserError(f"the learning test needs >= 3 reference seeds and >= 1 fresh seed (got {n} and {k}).")
    return m - float(stats.t.ppf(level, n - 1)) * s * math.sqrt(1 / k + 1 / n)


def learning_fails(fresh: list[float], m: float, s: float, n: int, level: float = LEARNING_LEVEL) -> bool:
    """Whether the fresh seeds' values fail the one-sided test against the reference (m, s, n)."""
    return sum(fresh) / len(fresh) < learning_threshold(m, s, n, len(fresh), level)


def detectable_drop(s: float, n: int, k: int = LEARNING_FRESH, level: float = LEARNING_LEVEL,
                    power: float = LEARNING_POWER) -> float:
    """The drop d of the true mean accuracy that the one-sided test of k fresh seeds against n reference seeds catches
    with probability ``power``, the seed-to-seed sd estimated by s. T = (m - mean of k) / (s sqrt(1/k + 1/n)) is then
    noncentral t with n - 1 degrees of freedom and noncentrality d / (sd sqrt(1/k + 1/n)); the test fails when
    T > t(level, n - 1). Solves P(T > t(level, n - 1)) = power for the noncentrality nc: d = nc s sqrt(1/k + 1/n)."""
    import math

    from scipy import optimize, stats

    crit = float(stats.t.ppf(level, n - 1))
    nc = optimize.brentq(lambda nc: float(stats.nct.sf(crit, n - 1, nc)) - power, 0.0, 200.0, xtol=1e-10)
    return nc * s * math.sqrt(1 / k + 1 / n)


def fresh_seeds(kinds: dict, k: int = LEARNING_FRESH) -> list[int]:
    """The k smallest seeds measured on no CPU kind of the reference: they drew other training images and weights
    than every reference value, as the test assumes (the old gate's seed 0 was itself one of the reference's)."""
    used = {int(s) for entry in kinds.values() for s in entry["seeds"]}
    out, seed = [], 0
    while len(out) < k:
        out += [] if seed in used else [seed]
        seed += 1
    return out


def _learning_run(data, seed: int, out: Path) -> dict:
    pid, model, overrides = LEARNING_RUN
    d = _smoke(pid, model, data, out, PRECISION, seed=seed, overrides=overrides)
    cm = d["splits"]["PrivateTest"]["confusion_matrix"]
    return {"accuracy": d["splits"]["PrivateTest"]["accuracy"], "train_s": d["timing"]["train_s"],
            "eval_s": d["timing"]["eval_s"], "chance": max(map(sum, cm)) / sum(map(sum, cm)),
            "software": d.get("software") or software()}


def _gate(kinds: dict) -> str:
    m, s, n = learning_reference(kinds)
    return (f"m {m:.4f}, s {s:.4f}, n {n}: {LEARNING_FRESH} fresh seeds fail below "
            f"{learning_threshold(m, s, n):.4f}; false alarms {1 - LEARNING_LEVEL:.0%}, a drop of "
            f"{detectable_drop(s, n) * 100:.2f} points caught with {LEARNING_POWER:.0%} probability")


def learning(data=None, reference: Path = LEARNING_REFERENCE, update: bool = False,
             seeds: list[int] = (0, 1, 2, 3, 4)) -> int:
    """The learning check (step 5). On a CPU kind the reference has values for, its lowest seed is trained and must
    give exactly the committed value; on another kind LEARNING_FRESH fresh seeds must pass `learning_fails`'s
    one-sided test against all kinds' values. When the exact value differs, the fresh seeds are trained as well, to
    say whether the change still learns (the check fails either way: the committed value is stale).
    ``update``: measure ``seeds`` on this CPU kind and write them into ``reference`` (this kind's other seeds, and
    other kinds, keep theirs; a reference of another LEARNING_RUN starts anew). Returns the number of failures."""
    pid, model, overrides = LEARNING_RUN
    ref = json.loads(reference.read_text()) if reference.is_file() else {}
    recipe = {"run": f"{pid}/{model}", "profile": "smoke", "overrides": list(overrides), "precision": PRECISION}
    command = f"fer-bench check --learning --update --data {data or '../shared/datasets/fer2013'}"
    print(f"== learning ({pid}/{model}: {' '.join(overrides)}; precision {PRECISION}, deterministic)")
    kind, same_run = cpu_kind(), {k: ref.get(k) for k in recipe} == recipe
    with tempfile.TemporaryDirectory() as tmp:
        if update:
            runs = {}
            for seed in seeds:
                runs[str(seed)] = r = _learning_run(data, seed, Path(tmp) / f"s{seed}")
                print(f"  seed {seed}: PrivateTest acc {r['accuracy']:.4f}  train {r['train_s']:.0f}s  "
                      f"eval {r['eval_s']:.0f}s")
            kinds = ref.get("kinds", {}) if same_run else {}  # a reference of another run: anew
            had = kinds.get(kind, {})  # seeds measured before on this kind stay, unless measured again now
            kinds[kind] = {f: {**had.get(f, {}), **{s: r[key] for s, r in runs.items()}}
                           for f, key in (("seeds", "accuracy"), ("train_s", "train_s"), ("measured_with", "software"))}
            kinds[kind]["chance"] = runs[str(seeds[0])]["chance"]
            write_json_atomic(reference, {
                "note": "measured by `fer-bench check --learning --update`: PrivateTest accuracy of LEARNING_RUN "
                        "(fer_bench.check) per seed and CPU kind (fer_bench.check.cpu_kind). The check trains the "
                        "lowest seed of this CPU kind and requires exactly its value; on a kind not here it trains "
                        "seeds none of these has and tests their mean one-sided against all these values "
                        "(fer_bench.check.learning_threshold)",
                **recipe, "level": LEARNING_LEVEL, "kinds": kinds})
            print(f"== learning reference updated for CPU kind {kind} ({reference}; commit it): {_gate(kinds)}")
            return 0
        if not same_run:
            print(f"  FAIL {reference} was measured for another learning run (or is missing): `{command}`, then "
                  "commit it")
            return 1
        kinds = ref["kinds"]
        m, s, n = learning_reference(kinds)
        chance = max(k["chance"] for k in kinds.values())
        drop = detectable_drop(s, n)
        if m - drop <= chance:  # a model at chance would pass the fresh-seed test too often
            print(f"  FAIL the reference (mean {m:.4f}, sd {s:.4f}, {n} seeds) is too noisy: the test of "
                  f"{LEARNING_FRESH} fresh seeds catches a drop of {drop:.4f} with {LEARNING_POWER:.0%} probability, "
                  f"down to chance ({chance:.4f}) or below: it could not see a model that stopped learning")
            return 1
        failures = 0
        mine = kinds.get(kind, {}).get("seeds", {})
        if mine:
            seed = min(mine, key=int)
            r = _learning_run(data, int(seed), Path(tmp) / "exact")
            if r["accuracy"] == mine[seed]:
                print(f"  ok   seed {seed}: PrivateTest acc {r['accuracy']!r}, exactly the committed value for CPU "
                      f"kind {kind}  train {r['train_s']:.0f}s")
                return 0
            failures += 1
            print(f"  FAIL seed {seed}: PrivateTest acc {r['accuracy']!r}, committed for CPU kind {kind} "
                  f"{mine[seed]!r}: the run is deterministic on one CPU kind, so this change alters what it "
                  f"computes. If that is meant, re-measure `{command}` on each CPU kind of {reference} ("
                  f"{', '.join(kinds)}), or drop the kinds you cannot, and commit it. The fresh-seed test below "
                  "says whether it still learns")
        fresh = fresh_seeds(kinds)
        runs = [_learning_run(data, seed, Path(tmp) / f"s{seed}") for seed in fresh]
    accs = [r["accuracy"] for r in runs]
    mean, bound = sum(accs) / len(accs), learning_threshold(m, s, n, len(accs))
    bad = learning_fails(accs, m, s, n)
    print(f"  {'FAIL' if bad else 'ok  '} fresh seeds {', '.join(map(str, fresh))} on CPU kind {kind}: PrivateTest acc "
          f"{', '.join(f'{a:.4f}' for a in accs)}, mean {mean:.4f}, lowest passing mean {bound:.4f} (reference "
          f"{', '.join(kinds)}: {_gate(kinds)}; chance {chance:.4f})  train "
          f"{sum(r['train_s'] for r in runs):.0f}s")
    return failures + bad
