"""The report's figures (matplotlib Agg, no pyplot state): claimed vs measured, the gap with its interval,
confusion matrices, per-class accuracy, training curves. Built from ``fer_bench.verdicts.Report``."""

from __future__ import annotations

import math
import os
import re
from pathlib import Path

import numpy as np
import pandas as pd

from .audit import canonical_class, matrix_summary, per_class_rows
from .data import CLASSES
from .verdicts import GROUP, Report, best_group, group_label, resolve_split

PALETTE = {"consistent": "#2a9d8f", "below": "#e76f51", "above": "#457b9d", "mixed": "#9b5de5",
           "inconclusive": "#adb5bd", "not comparable": "#6c757d", "not yet run": "#ced4da"}


def _figure(width: float, height: float):
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    fig = Figure(figsize=(width, height), layout="constrained")
    FigureCanvasAgg(fig)  # the Agg backend, without touching pyplot's global state
    return fig


def _safe(name: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "_", name).strip("_")


def plot_claimed_vs_measured(summary: pd.DataFrame, title: str = "Claimed vs measured accuracy"):
    """Every accuracy-like claim (accuracy, a printed matrix's implied accuracy): the claimed value (x) beside
    the measured mean with its 95% interval, coloured by verdict."""
    import seaborn as sns

    df = summary[summary.metric.isin(["accuracy", "confusion_matrix"]) & summary.claimed.notna()].copy()
    df["label"] = [(f"{r.paper} · {r.model} · " + (r.as_printed if r.metric == "accuracy" else
                                                    f"implied by {r.source}"))[:70]
                   + (f" ({r.dataset})" if r.dataset != "fer2013" else "") + (" [cited]" if r.kind == "cited" else "")
                   for r in df.itertuples()]
    fig = _figure(11, 1.4 + 0.3 * max(len(df), 1))
    ax = fig.subplots()
    if df.empty:
        ax.text(0.5, 0.5, "no accuracy claims", ha="center", va="center")
        ax.set_axis_off()
        return fig
    y = np.arange(len(df))
    own = (df.kind != "cited").to_numpy()
    ax.scatter(100 * df.claimed[own], y[own], marker="x", s=60, color="black", label="claimed", zorder=3)
    if (~own).any():
        ax.scatter(100 * df.claimed[~own], y[~own], marker="x", s=60, color="#adb5bd", label="claimed (cited)",
                   zorder=3)
    m = df[df.measured.notna()]
    if not m.empty:
        ym = y[df.measured.notna().to_numpy()]
        lo = (m.measured - m.lo).fillna(0).clip(lower=0)
        hi = (m.hi - m.measured).fillna(0).clip(lower=0)
        ax.errorbar(100 * m.measured, ym, xerr=[100 * lo, 100 * hi], fmt="none", ecolor="#495057", capsize=3)
        full = ~m.reduced.astype(bool).to_numpy()
        if full.any():
            sns.scatterplot(x=100 * m.measured.to_numpy()[full], y=ym[full], hue=m.verdict.to_numpy()[full],
                            palette=PALETTE, s=60, ax=ax, zorder=4)
        if (~full).any():  # reduced budget: hollow, never mistaken for a reproduction
            ax.scatter(100 * m.measured.to_numpy()[~full], ym[~full], s=60, facecolors="none", edgecolors="#495057",
                       label="measured, reduced budget", zorder=4)
    ax.set_yticks(y, df.label)
    ax.invert_yaxis()
    ax.set_xlabel("accuracy (%); x: claimed, dot: measured mean (hollow: reduced budget), bar: 95% interval")
    ax.set_xlim(0, 101)
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    ax.legend(loc="best", fontsize=8)
    return fig


def plot_gaps(summary: pd.DataFrame, title: str = "Measured minus claimed"):
    """Every judged accuracy-like claim's gap (measured mean minus claimed value, points) with the 95% prediction
    interval of one run around it, coloured by verdict; hollow for reduced-budget runs. None without any."""
    df = summary[summary.metric.isin(["accuracy", "confusion_matrix", "accuracy_gain"]) & summary.gap.notna()]
    if df.empty:
        return None
    fig = _figure(10, 1.4 + 0.3 * len(df))
    ax = fig.subplots()
    y = np.arange(len(df))
    gap = 100 * df.gap.to_numpy(dtype=float)
    lo = np.nan_to_num(100 * (df.measured - df.pred_lo).to_numpy(dtype=float)).clip(0)
    hi = np.nan_to_num(100 * (df.pred_hi - df.measured).to_numpy(dtype=float)).clip(0)
    ax.errorbar(gap, y, xerr=[lo, hi], fmt="none", ecolor="#495057", capsize=3)
    for i, r in enumerate(df.itertuples()):
        color = PALETTE.get(r.verdict, "#495057")
        ax.scatter(gap[i], y[i], s=60, zorder=4, edgecolors=color,
                   facecolors="none" if r.reduced else color)
    ax.axvline(0, color="black", lw=1)
    ax.set_yticks(y, [f"{r.paper} · {r.model} · {r.metric.replace('_', ' ')} {r.as_printed}"[:70] for r in df.itertuples()])
    ax.invert_yaxis()
    ax.set_xlabel("measured - claimed (accuracy points); bar: 95% prediction interval of one run; hollow: reduced")
    ax.set_title(title)
    ax.grid(axis="x", alpha=0.3)
    return fig


def _display_units(units: pd.DataFrame, paper_id: str, model: str) -> tuple[pd.DataFrame, str]:
    """The runs that represent a model in figures: full budget, paper profile, plain recipe, canonical first."""
    mine = units[(units.paper == paper_id) & (units.model == model) & (units.status == "completed")]
    if mine.empty:
        return mine, ""
    best = best_group(mine, [("full", True), ("protocol", "canonical"), ("profile", "paper"), ("variant", "")])
    sel = mine[np.logical_and.reduce([mine[k] == best[k] for k in GROUP])]
    return sel, f"{best.protocol}, {group_label(best)}, n={len(sel)}"


def _pick_split(splits: dict, preferred: str | None = None) -> str | None:
    for s in (preferred, "PrivateTest", "test", *splits):
        if s and s in splits:
            return s
    return None


def plot_confusion(report: Report, paper, model: str):
    """The measured confusion matrix (row-normalised %, pooled over the runs' seeds) beside every confusion
    matrix the paper prints for the model (mapped to FER-2013's label order); None if there is neither."""
    import seaborn as sns

    printed = [c for c in paper.claims if c.metric == "confusion_matrix" and c.model == model and c.matrix]
    sel, label = _display_units(report.units, paper.id, model)
    panels = []
    if not sel.empty:
        split = _pick_split(sel.iloc[0].splits, resolve_split(printed[0].split, sel.iloc[0].splits) if printed
                            else None)
        mats = [np.asarray(s[split]["confusion_matrix"], float) for s in sel.splits
                if split in s and s[split].get("confusion_matrix")]
        if mats:
            panels.append((f"measured: {split}\n{label}", np.sum(mats, axis=0), list(CLASSES)))
    for c in printed:
        ms = matrix_summary(c)
        if ms["order"] is not None:
            panels.append((f"printed: {c.source}\n(reordered to FER-2013 order)", ms["fer_matrix"], list(CLASSES)))
        else:
            panels.append((f"printed: {c.source}", ms["matrix"], list(c.labels or [])))
    if not panels:
        return None
    fig = _figure(4.6 * len(panels), 4.4)
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (title, m, labels) in zip(axes, panels):
        rows = m.sum(axis=1, keepdims=True)
        pct = np.divide(100 * m, rows, out=np.zeros_like(m), where=rows > 0)
        sns.heatmap(pct, ax=ax, annot=True, fmt=".0f", cmap="Blues", vmin=0, vmax=100, cbar=False, square=True,
                    xticklabels=labels, yticklabels=labels, annot_kws={"fontsize": 8})
        ax.tick_params(axis="x", labelrotation=90)
        ax.tick_params(axis="y", labelrotation=0)
        ax.set_title(title, fontsize=9)
        ax.set_xlabel("predicted")
        ax.set_ylabel("true (row %)")
    fig.suptitle(f"{paper.id} · {model}: confusion matrices (% of each true class)", fontsize=10)
    return fig


def per_class_table(report: Report, paper) -> pd.DataFrame:
    """Per-class accuracy (%) of a paper: measured (one row per run), claimed tables, and the recall implied by
    printed confusion matrices. Columns: dataset, series, kind, class, accuracy."""
    rows = []
    models = list(dict.fromkeys([*paper.models, *(c.model for c in paper.claims)]))
    done = report.units[(report.units.paper == paper.id) & (report.units.status == "completed")]
    for model in models:  # every measured group of every model (a JAFFE cross-validation: its pooled folds)
        mine = done[done.model == model]
        for _, g in (mine.groupby(GROUP, sort=False, dropna=False) if not mine.empty else []):
            label = f"{g.protocol.iloc[0]}, {group_label(g.iloc[0])}, n={len(g)}"
            for u in g.itertuples():
                split = _pick_split(u.splits)
                for c, acc in (u.splits.get(split, {}).get("per_class_accuracy") or {}).items():
                    rows.append({"dataset": u.dataset, "series": f"{model} measured ({split}; {label})",
                                 "kind": "measured", "class": c, "accuracy": 100 * acc})
    for c in paper.claims:
        if c.metric == "per_class_accuracy" and c.matrix:
            for labels, frac, _, _ in per_class_rows(c):
                for lab, v in zip(labels, frac):
                    if canonical_class(lab):
                        rows.append({"dataset": c.dataset, "series": f"{c.model} claimed ({c.source})",
                                     "kind": "claimed", "class": canonical_class(lab), "accuracy": 100 * float(v)})
        if c.metric == "confusion_matrix" and c.matrix:
            ms = matrix_summary(c)
            for lab, r in zip(c.labels or [], ms["recalls"]):
                if canonical_class(lab) and not math.isnan(r):
                    rows.append({"dataset": c.dataset, "series": f"{c.model} implied by {c.source}",
                                 "kind": "implied", "class": canonical_class(lab), "accuracy": 100 * float(r)})
    return pd.DataFrame(rows, columns=["dataset", "series", "kind", "class", "accuracy"])


def plot_per_class(report: Report, paper):
    """Per-class accuracy, measured (bars: mean over seeds, error bars: seed sd) vs claimed/implied; one panel
    per dataset. None if the paper has neither measured nor printed per-class numbers."""
    import seaborn as sns

    df = per_class_table(report, paper)
    if df.empty:
        return None
    datasets = list(dict.fromkeys(df.dataset))
    n_series = df.groupby("dataset").series.nunique().max()
    fig = _figure(max(7, 1.2 * len(CLASSES) + 0.5 * n_series) * len(datasets), 4.6)
    axes = np.atleast_1d(fig.subplots(1, len(datasets)))
    for ax, ds in zip(axes, datasets):
        sns.barplot(data=df[df.dataset == ds], x="class", y="accuracy", hue="series", order=list(CLASSES),
                    errorbar="sd", ax=ax)
        ax.set_title(f"{paper.id}: per-class accuracy on {ds}", fontsize=10)
        ax.set_ylabel("accuracy (%)")
        ax.set_ylim(0, 105)
        ax.legend(fontsize=7, loc="upper center", bbox_to_anchor=(0.5, -0.12), ncol=1, frameon=False)
    return fig


def _partial_epochs(df: pd.DataFrame, cfg) -> set[int]:
    """The 0-based epochs whose train/acc and train/loss_epoch cover only part of the epoch: before issue 29 was
    fixed, a run resumed inside an epoch logged the means over the batches after the resume. The log shows them:
    every step of an epoch trains batch_size images (x10 with ten crops; the last partial batch is dropped), so a
    whole epoch's train/acc times its images is a whole number of correct predictions, and a part's in general is not
    (the committed du_resnet_fc runs were resumed this way)."""
    bs = (cfg or {}).get("batch_size") if isinstance(cfg, dict) else None
    if not bs or "train/acc" not in df:
        return set()
    rows = df[df["train/acc"].notna()].sort_values("step")
    views = 10 if cfg.get("train_views") == "tencrop" else 1
    steps = rows.step.diff().fillna(rows.step + 1)  # steps of each epoch, from where its row was logged
    correct = rows["train/acc"] * steps * bs * views
    off = (correct - correct.round()).abs() > (4e-7 * correct).clip(lower=1e-3)  # float32 allows a few ulps
    return set(rows.epoch[off].astype(int))


def training_curves(report: Report, paper_id: str | None = None) -> pd.DataFrame:
    """Epoch-level curves from the runs' logs/metrics.csv (Lightning's CSVLogger): one row per run, epoch,
    phase (train/val) and quantity (accuracy/loss); ``partial``: a train value logged over part of its epoch only
    (_partial_epochs)."""
    frames = []
    units = report.units if paper_id is None else report.units[report.units.paper == paper_id]
    columns = {"train/acc": ("train", "accuracy"), "val/acc": ("val", "accuracy"),
               "train/loss_epoch": ("train", "loss"), "val/loss": ("val", "loss")}
    for u in units.itertuples():
        for i, log in enumerate(u.logs):
            if not os.path.isfile(log):
                continue
            try:
                df = pd.read_csv(log)
            except (OSError, ValueError, pd.errors.EmptyDataError):
                continue
            if "epoch" not in df:
                continue
            have = [c for c in columns if c in df]
            ep = df.groupby("epoch")[have].first().reset_index().melt("epoch", var_name="column").dropna()
            partial = _partial_epochs(df, getattr(u, "config", None))
            ep["partial"] = ep.epoch.isin(partial) & ep.column.str.startswith("train/")
            ep["phase"] = ep.column.map(lambda c: columns[c][0])
            ep["quantity"] = ep.column.map(lambda c: columns[c][1])
            ep["epoch"] += 1
            ep["run"] = u.run_id + (f"/f{i + 1}" if len(u.logs) > 1 else "")
            ep["series"] = f"{u.model} [{u.profile}{'' if u.full else ', reduced'}]"
            ep["paper"] = u.paper
            frames.append(ep.drop(columns="column"))
    cols = ["paper", "series", "run", "epoch", "phase", "quantity", "value", "partial"]
    return pd.concat(frames, ignore_index=True)[cols] if frames else pd.DataFrame(columns=cols)


def _paper_curves(paper, models) -> list[tuple[str, str, list[float], list[float]]]:
    """The paper's own curve claims (accuracy_curve, loss_curve) of the plotted models, as (quantity, label, epochs,
    values): [[first, last]] is drawn at epoch 1 and at the recipe's last epoch, a single value (a bound over the
    whole curve) as a line across it (epochs empty)."""
    from .config import resolve

    out = []
    for c in paper.claims:
        if c.metric in ("accuracy_curve", "loss_curve") and c.model in models and c.matrix:
            values = [float(v) * (100 if c.metric == "accuracy_curve" else 1) for v in c.matrix[0]]
            epochs = [1, resolve(paper, c.model)["epochs"]] if len(values) == 2 else []
            out.append((c.metric.removesuffix("_curve"), f"paper: {c.model} {c.as_printed} ({c.split})", epochs,
                        values))
    return out


def plot_training_curves(report: Report, paper_id: str):
    """Accuracy and loss per epoch (train and validation), mean over seeds with a sd band, and the paper's own
    statements about its curves (_paper_curves) in black; None without logs."""
    import seaborn as sns
    from matplotlib.ticker import MaxNLocator

    df = training_curves(report, paper_id)
    if df.empty:
        return None
    paper = next((p for p in report.papers if p.id == paper_id), None)
    claimed = _paper_curves(paper, set(report.units[report.units.paper == paper_id].model)) if paper else []
    fig = _figure(12, 4.2)
    axes = fig.subplots(1, 2)
    for ax, quantity in zip(axes, ("accuracy", "loss")):
        d = df[df.quantity == quantity]
        if d.empty:
            ax.set_axis_off()
            continue
        if quantity == "accuracy":
            d = d.assign(value=100 * d.value)
        sns.lineplot(data=d, x="epoch", y="value", hue="series", style="phase", errorbar="sd", marker="o",
                     markersize=4, ax=ax)
        part = d[d.partial.astype(bool)]
        if not part.empty:  # resumed inside the epoch before issue 29's fix: a mean over its later batches only
            ax.plot(part.epoch, part.value, linestyle="none", marker="o", markersize=10, markerfacecolor="none",
                    markeredgecolor="red", label="train: epoch resumed mid-way, logged over its later batches only")
        for i, (label, epochs, values) in enumerate((lb, e, v) for q, lb, e, v in claimed if q == quantity):
            if epochs:
                ax.plot(epochs, values, linestyle="none", marker="XPDs"[i % 4], markersize=8, color="black",
                        label=label)
            else:
                ax.axhline(values[0], color="black", linestyle=":", linewidth=1, label=label)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylabel(f"{quantity}{' (%)' if quantity == 'accuracy' else ''}")
        ax.set_title(f"{paper_id}: {quantity} per epoch (mean over seeds, band: sd)", fontsize=10)
        ax.legend(fontsize=7)
    return fig


def png(fig) -> bytes:
    """A figure as PNG bytes (for IPython.display.Image in the notebook)."""
    import io

    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100)
    return buf.getvalue()


def papers_with_runs(report: Report) -> list:
    return [p for p in report.papers if p.id in set(report.units.paper)]


def write_figures(report: Report, out: Path) -> dict[str, list[Path]]:
    """figures/claimed_vs_measured.png (every paper) and, per paper with runs, its claimed-vs-measured,
    confusion, per-class and training-curve figures (those it has data for); a paper without runs gets its
    printed confusion matrices only. Returns {paper id or '': [paths]}."""
    fig_dir = out / "figures"
    fig_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, list[Path]] = {"": []}

    def save(fig, name, key):
        if fig is None:
            return
        path = fig_dir / f"{_safe(name)}.png"
        fig.savefig(path, dpi=100)
        written.setdefault(key, []).append(path)

    save(plot_claimed_vs_measured(report.summary), "claimed_vs_measured", "")
    save(plot_gaps(report.summary), "gaps", "")
    measured = {p.id for p in papers_with_runs(report)}
    for paper in report.papers:
        printed = [c.model for c in paper.claims if c.metric == "confusion_matrix"]
        models = list(dict.fromkeys([*paper.models, *printed]))
        if paper.id not in measured:  # nothing measured: only the printed matrices, reordered, for the audit
            for model in models:
                save(plot_confusion(report, paper, model), f"{paper.id}_confusion_{model}", paper.id)
            continue
        rows = report.summary[report.summary.paper == paper.id]
        if (rows.metric.isin(["accuracy", "confusion_matrix"]) & rows.claimed.notna()).any():
            save(plot_claimed_vs_measured(rows, f"{paper.id}: claimed vs measured accuracy"),
                 f"{paper.id}_claimed_vs_measured", paper.id)
        for model in models:
            save(plot_confusion(report, paper, model), f"{paper.id}_confusion_{model}", paper.id)
        save(plot_per_class(report, paper), f"{paper.id}_per_class", paper.id)
        save(plot_training_curves(report, paper.id), f"{paper.id}_training_curves", paper.id)
    return written
