"""`fer-bench check`: the CI reproducibility check.

1. every registered paper validates: models build, parameter counts equal the reference,
   claims are complete, every model has a smoke reference value on some CPU kind (else the
   failure names the command that measures it);
2. the smoke profile of every model runs on the real data (deterministic mode, seed 0);
3. one run is repeated and must give identical metrics;
4. smoke metrics are compared with the reference values committed in
   results/reference/smoke.json, within TOLERANCE.

``--update`` writes the measured values of this CPU kind, each with the code version that measured it
(``measured_with``); with ``--only`` every other value keeps its value, parameter count and record.

Exit status 0 when all pass, 1 on any regression (2 stays reserved for bad input).
"""

from __future__ import annotations

import json
import tempfile
from pathlib import Path

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


def _smoke(pid: str, model: str, data, out: Path, precision: str = PRECISION) -> dict:
    from .runner import run

    cfg = get_paper(pid).resolve(model, "smoke")
    overrides = ["pretrained=false"] if cfg.get("pretrained") else []  # CI has no network for weights
    (path,) = run(pid, model=model, profile="smoke", seed=0, data=data, out=out, overrides=overrides,
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
          out: Path | None = None) -> int:
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
    with tempfile.TemporaryDirectory() as tmp:
        print(f"== smoke runs (profile smoke, seed 0, deterministic, precision {precision})")
        for key in keys:
            pid, model = key.split("/")
            d = _smoke(pid, model, data, out or Path(tmp) / "a", precision)
            measured[key] = _summary(d)
            versions[key] = d.get("software") or software()  # the code version that measured it
            print(f"  {key:<40} PrivateTest acc {d['splits']['PrivateTest']['accuracy']:.4f}  "
                  f"train {d['timing']['train_s']:.0f}s  eval {d['timing']['eval_s']:.0f}s")
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
    print(f"== {'FAILED: ' + str(failures) + ' problem(s)' if failures else 'all checks passed'}")
    return int(failures > 0)
