"""The report: every registered claim beside what was measured, with statistics, a claim audit and figures.

Three layers: ``fer_bench.verdicts`` (the data: runs, groups, verdicts), ``fer_bench.figures`` (the figures) and
this module (markdown, the output files, the README table). ``generate`` is `fer-bench report`: it writes
OUT/REPORT.md, OUT/summary.csv (one row per claim), OUT/measured.csv (one row per group, split and metric),
OUT/audit.csv and OUT/figures/*.png. Statistics: ``fer_bench.stats``; the audit: ``fer_bench.audit``.
"""

from __future__ import annotations

import json
import math
import os
from pathlib import Path

import pandas as pd

from .audit import SEVERITIES
from .data import CLASSES
from .errors import UserError
from .figures import per_class_table, write_figures
from .rules import CONVENTIONS, QUESTION, VERDICT_RULES
from .stats import METHOD
from .verdicts import DECIDED, GROUP, VERDICTS, Report, build, fmt_measured

# ---------------------------------------------------------------- markdown

def _md_cell(x) -> str:
    if x is None or (isinstance(x, float) and math.isnan(x)):
        return ""
    return str(x).replace("|", "\\|").replace("\n", " ")


def md_table(df: pd.DataFrame, columns: dict[str, str]) -> str:
    """A GitHub markdown table of ``df``'s columns (key) under headers (value)."""
    if df.empty:
        return "_none_\n"
    lines = ["| " + " | ".join(columns.values()) + " |", "|" + "---|" * len(columns)]
    for _, r in df.iterrows():
        lines.append("| " + " | ".join(_md_cell(r[c]) for c in columns) + " |")
    return "\n".join(lines) + "\n"


SUMMARY_COLUMNS = {"paper": "Paper", "model": "Model", "claim": "Claim", "refers_to": "Refers to", "kind": "Kind",
                   "measured_display": "Measured mean [95% interval]", "predicted_display": "One run [95% prediction]",
                   "n": "Seeds", "gap_display": "Gap", "p_display": "p (q)", "verdict": "Verdict",
                   "readings": "Holds under readings"}


def _summary_view(summary: pd.DataFrame) -> pd.DataFrame:
    s = summary.copy()
    s["claim"] = [f"{m.replace('_', ' ')} {d}".strip() for m, d in zip(s.metric, s.claimed_display)]
    s["refers_to"] = [f"{r}; {src}" for r, src in zip(s.refers_to, s.source)]
    s["n"] = [f"{int(n)}" if n else "" for n in s.n]
    s["p_display"] = [f"{p:.2g} ({q:.2g})" if isinstance(p, float) and not math.isnan(p) else ""
                      for p, q in zip(s.p.astype(float), s.q.astype(float))]
    s["verdict"] = [v + (f" (same finding as {d})" if d else "") for v, d in zip(s.verdict, s.depends_on)]
    return s


def _measured_view(report: Report, paper_id: str | None = None) -> pd.DataFrame:
    m = report.measured
    if paper_id is not None:
        m = m[m.paper == paper_id]
    m = m[m.metric.isin(["accuracy", "macro_f1", "loss"])]
    if m.empty:
        return pd.DataFrame()
    rows = []
    for key, g in m.groupby(GROUP + ["split"], sort=False, dropna=False):
        r = dict(zip(GROUP + ["split"], key))
        for metric in ("accuracy", "macro_f1", "loss"):
            x = g[g.metric == metric]
            if x.empty:
                continue
            st = x.iloc[0]
            pct = metric == "accuracy"
            cell = fmt_measured(st.to_dict(), pct)
            if st.n >= 2:
                cell += f" (sd {100 * st['std']:.2f})" if pct else f" (sd {st['std']:.4f})"
            r[metric] = cell
            r["n"] = int(st.n)
            r["n_test"] = st.n_test
        r["budget"] = "full" if r["full"] else "reduced"
        rows.append(r)
    return pd.DataFrame(rows)


MEASURED_COLUMNS = {"model": "Model", "dataset": "Dataset", "protocol": "Protocol", "tta": "TTA",
                    "profile": "Profile", "variant": "Recipe changes", "budget": "Budget", "split": "Split",
                    "n": "Seeds", "n_test": "Test images", "accuracy": "Accuracy [95% interval]",
                    "macro_f1": "Macro F1", "loss": "Loss"}


def _runs_view(units: pd.DataFrame) -> pd.DataFrame:
    u = units.copy()
    u["epochs"] = [f"{_int(c)}/{_int(p)}" for c, p in zip(u.epochs_completed, u.epochs_planned)]
    u["budget"] = ["full" if f else f"reduced: {r}" for f, r in zip(u.full, u.budget_reasons)]
    u["hardware"] = [f"{d} x{n or 1} ({a}, {p})" for d, n, a, p in zip(u.device, u.devices, u.accelerator,
                                                                       u.precision)]
    u["train"] = [f"{s / 60:.1f} min" if s else "" for s in u.train_s]
    u["sha"] = [str(s)[:12] + ("-dirty" if str(s).endswith("-dirty") else "") for s in u.git_sha]
    u["run"] = [f"{r}" + (f" ({_int(f)} folds)" if _int(f) else "") for r, f in zip(u.run_id, u.folds)]
    for col in ("seed", "best_epoch"):
        u[col] = [_int(x) for x in u[col]]
    return u


def _int(x) -> str:
    """An integer as text ('' for missing values, which pandas turns into NaN)."""
    try:
        return "" if x is None or math.isnan(float(x)) else str(int(x))
    except (TypeError, ValueError):
        return str(x)


RUNS_COLUMNS = {"run": "Run", "model": "Model", "profile": "Profile", "protocol": "Protocol", "seed": "Seed",
                "status": "Status", "epochs": "Epochs", "best_epoch": "Best epoch", "selected_on": "Selected on",
                "budget": "Budget", "hardware": "Hardware", "train": "Train time", "sha": "Code (git sha)"}
FINDING_COLUMNS = {"severity": "Severity", "check": "Check", "finding": "Finding", "sources": "Source"}
CLAIM_COLUMNS = {"model": "Model", "claim": "Claim", "refers_to": "Refers to", "kind": "Kind",
                 "measured_display": "Measured", "predicted_display": "One run [prediction]", "n": "Seeds",
                 "unleaked": "Unleaked", "gap_display": "Gap", "p_display": "p (q)", "verdict": "Verdict",
                 "readings": "Holds under readings", "reason": "Why", "group": "Runs used"}


def _verdict_counts(summary: pd.DataFrame) -> str:
    counts = summary.verdict.value_counts()
    text = ", ".join(f"{v}: {counts[v]}" for v in VERDICTS if v in counts)
    decided = summary[summary.verdict.isin(DECIDED)]
    if not decided.empty:
        fdr = decided[decided.q.astype(float) < 0.05]
        text += (f". Below/above/mixed: {len(decided)} claim(s) at 5% each, {int(decided.finding.sum())} independent "
                 f"finding(s) (a claim that repeats another's finding counted once); {len(fdr)} of them still decided "
                 f"with the false discovery rate controlled at 5% (Benjamini-Hochberg q < 0.05), "
                 f"{int(fdr.finding.sum())} independent")
    return text


def _plain(r) -> str:
    """One finding in words: the claim, what was measured, its interval and the verdict."""
    claim = f"{r.model}'s {r.metric.replace('_', ' ')} {r.claimed_display} ({r.source}; {r.refers_to})"
    measured = f"measured {r.measured_display}" if r.measured_display else ""
    pred = (f", {r.predicted_display}" if r.metric == "trainable_params" else
            f", one run within {r.predicted_display}") if r.predicted_display else ""
    seeds = f", {int(r.n)} seed(s)" if r.n else ""
    p = f", p = {float(r.p):.2g}, q = {float(r.q):.2g}" if not math.isnan(float(r.p)) else ""
    also = f"; holds under readings: {r.readings}" if r.readings else ""
    return f"- **{r.paper}**: {claim}: {measured}{pred}{seeds}{p}: **{r.verdict}**{also}."


def findings_md(report: Report) -> list[str]:
    """What holds, what does not, what the papers' own numbers contradict, what is untested: in plain words."""
    s = report.summary
    out = ["## Findings", ""]
    decided = s[s.verdict.isin(DECIDED)]
    holds = s[s.verdict == "consistent"]
    out += ["**Does not hold** (the claim lies outside where one run of the recipe falls):", ""]
    out += [_plain(r) + (f" Same finding as {r.depends_on}." if r.depends_on else "")
            for r in decided.itertuples()] or ["- none yet"]
    out += ["", "**Holds**:", ""] + ([_plain(r) for r in holds.itertuples()] or ["- none yet"])
    high = report.findings[report.findings.severity == "high"]
    out += ["", f"**The papers' own numbers contradict each other** ({len(high)} high-severity audit finding(s), "
            "no run needed; all in the claim audit below):", ""]
    out += [f"- **{r.paper}** ({r.check}): {r.finding.split('. ')[0].rstrip('.')}." for r in high.itertuples()] \
        or ["- none"]
    weak = s[s.verdict == "inconclusive"]
    unrun = s[(s.verdict == "not yet run") & (s.kind == "own")]
    out += ["", f"**Still open**: {len(weak)} claim(s) inconclusive (each names what would decide it: mostly "
            f">= 3 seeds), {len(unrun)} of the papers' own claims not yet run, "
            f"{int((s.verdict == 'not comparable').sum())} not comparable. Readings fer-bench cannot test here: "
            + "; ".join(f"{p.id}: {v}" for p in report.papers for k, v in p.interpretations.items()
                        if k.startswith("open reading")).rstrip(".") + "."
            + "".join(f" {p.id}'s reading `{m}` has {n} run(s): see its Measured table." for p in report.papers
                      for m in getattr(p, "readings", {}) if (n := _reading_runs(report, p, m))), ""]
    return out


def _reading_runs(report: Report, paper, model: str) -> int:
    """How many runs of one of a paper's readings (registry.Paper.readings) the report holds."""
    u = report.units
    return int(((u.paper == paper.id) & (u.model == model)).sum()) if not u.empty else 0


def _severity_counts(findings: pd.DataFrame) -> str:
    counts = findings.severity.value_counts()
    return ", ".join(f"{s}: {counts[s]}" for s in SEVERITIES if s in counts) or "none"


def _recipe_table(paper) -> str:
    lines = ["| Key | Value |", "|---|---|"]
    for k, v in paper.recipe.items():
        lines.append(f"| `{k}` | {_md_cell(v)} |")
    for name, spec in {**paper.models, **getattr(paper, "readings", {})}.items():
        if spec.recipe:
            lines.append(f"| `{name}` | " + ", ".join(f"{k}={v}" for k, v in spec.recipe.items()) + " |")
    return "\n".join(lines) + "\n"


def _per_class_md(report: Report, paper) -> str:
    df = per_class_table(report, paper)
    if df.empty:
        return ""
    wide = df.groupby(["dataset", "series", "class"], sort=False).accuracy.mean().unstack("class")
    wide = wide[[c for c in CLASSES if c in wide.columns]].round(1).reset_index()
    return md_table(wide, {"dataset": "Dataset", "series": "Series", **{c: c for c in CLASSES if c in wide}})


def to_markdown(report: Report, figures: dict[str, list[Path]], out: Path) -> str:
    s = _summary_view(report.summary)
    lines = [
        "# fer-bench report: claimed vs measured",
        "",
        f"Generated by `fer-bench report` from {int((report.units.status == 'completed').sum())} completed run(s) "
        f"under `{report.runs_dir}/runs` ({len(report.units)} record(s) in all; cross-validation folds pooled). "
        f"Papers: {', '.join(p.id for p in report.papers) or 'none registered'}.",
        "",
        f"Verdicts: {_verdict_counts(report.summary) or 'no claims'}. Audit findings: "
        f"{_severity_counts(report.findings)}.",
        "",
    ]
    if report.skipped:
        lines += ["Unreadable results files (skipped): " + "; ".join(report.skipped), ""]
    lines += findings_md(report)
    lines += ["## Summary", "", md_table(s, SUMMARY_COLUMNS)]
    lines += [f"![{p.stem.replace('_', ' ')}]({os.path.relpath(p, out)})" for p in figures.get("", [])] + [""]
    lines += [
        "## How to read this report", "",
        QUESTION, "",
        "**Measured** is the mean over distinct seeds with its 95% confidence interval. " + METHOD, "",
        "**Gap** is measured mean minus claimed value, in accuracy points (loss: in its own units). **Seeds** counts "
        "distinct seeds (a cross-validation counts once, its folds pooled). A number from reduced-budget runs is "
        "marked '(reduced budget)' wherever it appears (tables, README, figures: hollow markers). **Unleaked**: "
        "the accuracy on the test images without an exact or near copy in Training, where a run measured it "
        "(`--set exclude_leaked=true`).", "",
        "**Verdict rules**, applied in this order:", "",
        *[f"- **{v}**: {rule}" for v, rule in VERDICT_RULES],
        "", CONVENTIONS, "",
        "Cited claims (kind `cited`) are numbers a paper quotes from other work; they are listed, and judged only "
        "if fer-bench implements the cited model.", "",
        "**Audit severity**: high = over 5 points off (or a chance-level matrix beside a high claim); medium = "
        "1-5 points, a test split of the paper's own, or a checkpoint selected on the test set; low = under 1 "
        "point or a labelling issue; info = consistent within the rounding of the printed digits (listed to show "
        "what was checked).", "",
        "## Claim audit (all papers)", "",
        md_table(report.findings[report.findings.severity != "info"],
                 {"paper": "Paper", **FINDING_COLUMNS}),
    ]
    lines += _data_audit_md(Path(report.runs_dir))
    for paper in report.papers:
        lines += _paper_section(report, paper, s[s.paper == paper.id], figures.get(paper.id, []), out)
    others = report.units[~report.units.paper.isin([p.id for p in report.papers])]
    if not others.empty:
        lines += ["## Runs of unregistered papers", "", md_table(_runs_view(others), {"paper": "Paper",
                                                                                     **RUNS_COLUMNS})]
    return "\n".join(lines) + "\n"


def _data_audit_md(runs_dir: Path) -> list[str]:
    """The counts of `fer-bench data audit --out <runs>/data_audit`, when it was run."""
    path = runs_dir / "data_audit" / "summary.json"
    if not path.is_file():
        return ["## Dataset audit", "", "_not run: `fer-bench data audit --out results/data_audit`_", ""]
    d = json.loads(path.read_text())
    rows = pd.DataFrame([{"what": k, "count": v} for k, v in d["counts"].items()])
    return ["## Dataset audit", "", f"`fer-bench data audit` on FER-2013 ({d['dataset']['format']} release, "
            f"fingerprint `{d['dataset']['fingerprint']}`): pairs of images, or single images for blanks. Exact = "
            "identical pixels; near = equal 64-bit difference hash.", "", md_table(rows, {"what": "Finding",
                                                                                           "count": "Count"})]


def _paper_section(report: Report, paper, s: pd.DataFrame, figures: list[Path], out: Path) -> list[str]:
    source = f"Source text: `{paper.seed}`. " if paper.seed else f"Source: {paper.source}. "
    lines = [f"## {paper.id}: {paper.title}", "", source + "Models: " +
             ", ".join(f"`{m}` ({spec.summary})" if spec.summary else f"`{m}`" for m, spec in paper.models.items()),
             "", "### Recipe and interpretations", "", _recipe_table(paper)]
    if getattr(paper, "readings", None):
        lines[3:3] = ["", "Readings (fer-bench's, not the paper's models; judged against none of its claims): " +
                      "; ".join(f"`{m}` ({spec.summary}), run with `fer-bench run --paper {paper.id} --model {m}`: "
                                + (f"{n} run(s) below" if (n := _reading_runs(report, paper, m)) else "not yet run")
                                for m, spec in paper.readings.items()) + "."]
    lines += [f"- **{k}**: {v}" for k, v in paper.interpretations.items()] + [""]
    lines += ["### Claims", "", md_table(s, CLAIM_COLUMNS)]
    lines += ["### Measured", "", md_table(_measured_view(report, paper.id), MEASURED_COLUMNS)]
    per_class = _per_class_md(report, paper)
    if per_class:
        lines += ["### Per-class accuracy (%), measured vs claimed", "", per_class]
    f = report.findings[report.findings.paper == paper.id]
    lines += ["### Audit findings", "", md_table(f, FINDING_COLUMNS)]
    if figures:
        lines += ["### Figures", ""] + [f"![{p.stem}]({os.path.relpath(p, out)})" for p in figures] + [""]
    runs = report.units[report.units.paper == paper.id]
    lines += ["### Runs", "", md_table(_runs_view(runs), RUNS_COLUMNS) if not runs.empty else "_no runs yet_\n"]
    return lines


# ---------------------------------------------------------------- outputs

def write(report: Report, out: str | Path, figures: bool = True) -> dict[str, Path]:
    """OUT/REPORT.md, summary.csv (per claim), measured.csv (per group/split/metric), audit.csv, figures/."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    figures = write_figures(report, out) if figures else {}
    paths = {"report": out / "REPORT.md", "summary": out / "summary.csv", "measured": out / "measured.csv",
             "audit": out / "audit.csv", "figures": out / "figures"}
    paths["report"].write_text(to_markdown(report, figures, out))
    report.summary.drop(columns=["claimed_display", "measured_display", "gap_display"]).to_csv(
        paths["summary"], index=False)
    report.measured.to_csv(paths["measured"], index=False)
    f = report.findings.copy()
    f["numbers"] = [json.dumps(n, default=float) for n in f.numbers]
    f.to_csv(paths["audit"], index=False)
    return paths


def readme_table(report: Report, report_path: str) -> str:
    """The papers' own headline claims (accuracy, gains): the rest is in REPORT.md."""
    s = _summary_view(report.summary)
    s = s[(s.kind == "own") & s.metric.isin(["accuracy", "accuracy_gain"])]
    cols = {"paper": "Paper", "model": "Model", "claim": "Claim", "refers_to": "Refers to",
            "measured_display": "Measured mean [95% interval]", "n": "n", "verdict": "Verdict",
            "readings": "Holds under readings"}
    full = report.summary
    found = [_plain(r) for r in full[full.verdict.isin(DECIDED) | (full.verdict == "consistent")].itertuples()
             if not r.depends_on]
    intro = ("Findings so far (claims decided by the runs, each counted once; the open ones are in the report):\n\n"
             + "\n".join(found or ["- none yet"]) + "\n\n")
    return (intro + f"Generated by `fer-bench report --readme` from "
            f"{int((report.units.status == 'completed').sum())} "
            f"completed run(s): the papers' own accuracy claims. All {len(report.summary)} claims "
            f"({_verdict_counts(report.summary)}), the statistics, the claim audit (findings: "
            f"{_severity_counts(report.findings)}) and the figures are in [{report_path}]({report_path}).\n\n"
            + md_table(s, cols))


def refresh_readme(readme: str | Path, table: str | None, section: str = "report") -> None:
    """Replace what lies between the ``<!-- SECTION:start -->`` and ``<!-- SECTION:end -->`` markers in README.md
    with ``table`` (None: only check that the markers are there)."""
    readme = Path(readme)
    start, end = f"<!-- {section}:start -->", f"<!-- {section}:end -->"
    text = readme.read_text() if readme.is_file() else ""
    if start not in text or end not in text:
        raise UserError(f"{readme} has no generated-table markers: add the two lines {start} and {end} where the "
                        f"table should go, then run the command again.")
    if table is None:
        return
    head, rest = text.split(start, 1)
    _, tail = rest.split(end, 1)
    readme.write_text(f"{head}{start}\n{table}{end}{tail}")


def generate(runs: str | Path = "results", out: str | Path | None = None,
             readme: str | Path | None = None) -> tuple[Report, dict]:
    """`fer-bench report`: build, write, and optionally refresh README.md. Returns the report and the paths."""
    if readme is not None:  # fail before any work if the README cannot take the table
        refresh_readme(readme, None)
    report = build(runs)
    paths = write(report, out if out is not None else runs)
    if readme is not None:
        rel = os.path.relpath(paths["report"], Path(readme).resolve().parent)
        refresh_readme(readme, readme_table(report, rel))
        paths["readme"] = Path(readme)
    return report, paths
