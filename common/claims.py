"""The claims scorecard: every claim of a paper (``papers/<paper>/claims.yaml``) against the per-seed outputs of a
tier's runs, written as ``results/<tier>/claims.md`` and ``claims.csv``.

    python -m common.claims --tier <tier> --claims papers/*/claims.yaml --out-md results/<tier>/claims.md \\
        --out-csv results/<tier>/claims.csv [--root .] [--var KEY=VALUE ...]

A claim names two *arms* (treatment and control: which runs, which metric) over *strata* (games or presets),
the *direction* the paper asserts, and its *preconditions*. Ours is an effect size with a 95% interval over seeds:

* per stratum s, the effect d_s of the treatment's seed mean against the control's:
  ``difference`` d_s = mean(T) - mean(C); ``relative`` d_s = (mean(T) - mean(C)) / |mean(C)|;
  ``scaled`` d_s = (mean(T) - mean(C)) / |mean(S) - mean(C)| with a third arm S (e.g. the teacher: the
  difference as a fraction of the teacher's margin over random); ``value`` d_s = mean(T) (no control);
* the claim's effect is the mean of d_s over the strata that ran;
* its interval is a stratified percentile bootstrap: each replicate resamples, with replacement, the seeds of
  every arm within every stratum, independently (``BOOT_REPS`` replicates, numpy generator seeded ``BOOT_SEED``:
  a pure function of the data). An arm marked ``fixed`` (one reference number, e.g. a teacher's score) is
  not resampled and does not count as seeds.

Verdicts (first that applies):

1. ``not testable``: the claim has ``testable: false`` (e.g. a method we do not run); its reason is shown;
2. ``not run``: no stratum has values in every arm in this tier;
3. ``precondition not met``: a precondition fails (or cannot be checked) in a stratum that ran; which one is shown
   (its ``bound`` is a number, or ``{reference: table, fraction: f}`` = f x the table's value for the stratum, or
   for ``stratum: name`` where the precondition is about another game's teacher, e.g. a Pong expert in Bowling);
4. below ``MIN_SEEDS`` seeds in any non-fixed arm of any stratum: ``inconclusive``, with per-seed values and
   mean [min, max] and no interval (2-4 seeds give no calibrated 95% interval);
5. otherwise, with margin m (default 0) and interval [lo, hi]:
   ``greater``: supported if lo > m, contradicted if hi <= m; ``less``: supported if hi < m, contradicted if
   lo >= m; ``equal`` (tolerance t): supported if [lo, hi] lies inside [m - t, m + t], contradicted if it lies
   wholly outside; anything else is ``inconclusive``.
   With ``aggregate: each`` every stratum is judged on its own interval: supported if all are, contradicted if
   any is, inconclusive otherwise ("better ... across all experiments").

Metrics (an arm's ``source``), each giving per stratum one value per seed:

* ``json``: ``path`` (template, ``{seed}`` = every seed directory present), ``key`` (dotted; a dict is reduced
  with ``reduce``: max | min | mean);
* ``csv_rows``: one CSV for all seeds (GAS's results.csv): rows with ``method`` (one name, or ``{stratum:
  name}``), value ``column`` (or every
  column matching the glob ``columns``, reduced per row with ``reduce``);
* ``curve``: a per-seed CSV curve (``x``, ``y``, optional ``filter: {column: value}``) reduced by ``stat``:
  ``last_mean`` (mean of the last ``window`` rows), ``max``, ``plateau`` (how much the curve still rises: mean of
  the last ``fraction`` (0.1) of training against the ``fraction`` before it, relative; the "converged"
  precondition), or ``steps_to_threshold`` (the first x where the
  mean of the last ``window`` rows reaches the threshold: ``threshold: {value: v}``, ``{values: {stratum: v}}``
  or ``{fraction: f, of: <arm>}``; a seed that never reaches it counts as its last x, a lower bound, and the
  claim says how many were censored);
* ``constant``: ``values: {stratum: v}`` (a published number, always ``fixed``).

Templates take ``{tier}``, ``{stratum}``, ``{stratum_slug}`` ('MinAtar/Breakout' -> 'MinAtar-Breakout'),
``{seed}`` and the variables passed with ``--var`` (the report rule passes the run names the papers' plans give,
and a tier's ``claims.vars``); ``{name|default}`` falls back to ``default`` when ``name`` is not given (the
paper's run names, e.g. ``{kf_two_teachers|kf_seaquest_riverraid}``, which a MinAtar tier renames).
This module reads files only; it imports nothing from ``papers/``.
"""

from __future__ import annotations

import argparse
import fnmatch
import math
import re
import sys
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
import yaml

from common.io import atomic_path, read_json

MIN_SEEDS = 5
BOOT_REPS = 2000
BOOT_SEED = 0
CI_SIZE = 0.95
VERDICTS = ("supported", "contradicted", "inconclusive", "precondition not met", "not run", "not testable")
# "not run" and "not testable" are states, not verdicts; "error" (a run file that cannot be read) is shown too
EFFECTS = ("difference", "relative", "scaled", "value")
DIRECTIONS = ("greater", "less", "equal")
CLAIM_KEYS = {"id", "claim", "quote", "where", "paper_evidence", "paper_effect", "kind", "comparison",
              "preconditions", "verdict_rule", "testable", "reason", "note"}
COMPARISON_KEYS = {"treatment", "control", "scale", "strata", "effect", "direction", "margin", "tolerance",
                   "aggregate", "metric"}
ARM_KEYS = {"source", "path", "key", "reduce", "method", "column", "columns", "x", "y", "filter", "stat", "window",
            "threshold", "values", "fixed", "label", "fraction"}
PRECONDITION_KEYS = {"name", "arm", "op", "bound", "reduce"}
BOUND_KEYS = {"reference", "fraction", "stratum"}


class ClaimsError(ValueError):
    """A claims.yaml that cannot be read as claims: the message names the file, the claim and the fix."""


class MissingVariable(KeyError):
    """A template names a variable this tier does not define (e.g. Table 7's runs in a tier without Table 7):
    the arm counts as not run."""


# ------------------------------------------------------------------------------------------------ reading
def slug(stratum: str) -> str:
    return str(stratum).replace("/", "-")


def load_claims(path) -> dict:
    """Read and check one claims.yaml: {paper, title, references, claims: [...]}; unknown keys are errors."""
    path = Path(path)
    doc = yaml.safe_load(path.read_text()) or {}
    if not isinstance(doc.get("claims"), list):
        raise ClaimsError(f"{path}: needs a top-level list 'claims'")
    seen = set()
    for c in doc["claims"]:
        cid = c.get("id", "?")
        bad = set(c) - CLAIM_KEYS
        if bad:
            raise ClaimsError(f"{path}: claim {cid}: unknown keys {sorted(bad)}; valid: {sorted(CLAIM_KEYS)}")
        for k in ("id", "claim", "quote", "where"):
            if not c.get(k):
                raise ClaimsError(f"{path}: claim {cid}: '{k}' is required")
        if cid in seen:
            raise ClaimsError(f"{path}: claim id {cid} appears twice")
        seen.add(cid)
        if c.get("testable", True) is False:
            if not c.get("reason"):
                raise ClaimsError(f"{path}: claim {cid}: testable: false needs a 'reason'")
            continue
        comp = c.get("comparison") or {}
        bad = set(comp) - COMPARISON_KEYS
        if bad:
            raise ClaimsError(f"{path}: claim {cid}: unknown comparison keys {sorted(bad)}")
        if comp.get("effect", "difference") not in EFFECTS:
            raise ClaimsError(f"{path}: claim {cid}: effect must be one of {EFFECTS}")
        if comp.get("direction") not in DIRECTIONS:
            raise ClaimsError(f"{path}: claim {cid}: direction must be one of {DIRECTIONS}")
        if comp.get("direction") == "equal" and "tolerance" not in comp:
            raise ClaimsError(f"{path}: claim {cid}: direction 'equal' needs a 'tolerance'")
        if not comp.get("strata"):
            raise ClaimsError(f"{path}: claim {cid}: comparison.strata (games or presets) is required")
        needs_control = comp.get("effect", "difference") != "value"
        arms = [("treatment", True), ("control", needs_control), ("scale", comp.get("effect") == "scaled")]
        for name, required in arms:
            if required and not comp.get(name):
                raise ClaimsError(f"{path}: claim {cid}: comparison.{name} is required for effect "
                                  f"'{comp.get('effect', 'difference')}'")
            if comp.get(name):
                _check_arm(path, cid, name, comp[name])
        for p in c.get("preconditions") or []:
            bad = set(p) - PRECONDITION_KEYS
            if bad or not {"name", "arm", "op", "bound"} <= set(p):
                raise ClaimsError(f"{path}: claim {cid}: a precondition needs name, arm, op, bound (+ reduce); "
                                  f"got {sorted(p)}")
            if p["op"] not in ("<=", ">=", "<", ">"):
                raise ClaimsError(f"{path}: claim {cid}: precondition op must be <=, >=, < or >")
            if isinstance(p["bound"], dict) and (set(p["bound"]) - BOUND_KEYS or "reference" not in p["bound"]):
                raise ClaimsError(f"{path}: claim {cid}: precondition {p['name']}: a bound mapping needs 'reference' "
                                  f"(+ {sorted(BOUND_KEYS - {'reference'})}); got {sorted(p['bound'])}")
            _check_arm(path, cid, f"precondition {p['name']}", p["arm"])
    return doc


def _check_arm(path, cid, name, arm):
    bad = set(arm) - ARM_KEYS
    if bad:
        raise ClaimsError(f"{path}: claim {cid}: {name}: unknown keys {sorted(bad)}; valid: {sorted(ARM_KEYS)}")
    if arm.get("source") not in ("json", "csv_rows", "curve", "constant"):
        raise ClaimsError(f"{path}: claim {cid}: {name}: source must be json, csv_rows, curve or constant")


@dataclass
class Context:
    """Where to read: repository root, tier, template variables, and the reference numbers of the claims file."""
    root: Path
    tier: str
    variables: dict = field(default_factory=dict)
    references: dict = field(default_factory=dict)

    def fill(self, template: str, stratum: str, seed: str | None = None) -> str:
        """Fill the template's variables; inner ones first, so '{kf_t7_run_{stratum}}' works."""
        values = {"tier": self.tier, "stratum": stratum, "stratum_slug": slug(stratum), **self.variables}
        if seed is not None:
            values["seed"] = seed
        out = template
        for _ in range(4):
            new = re.sub(r"\{([^{}]+)\}", lambda m: str(_lookup(values, m.group(1), m.group(0))), out)
            if new == out:
                break
            out = new
        left = [k for k in re.findall(r"\{([^{}]+)\}", out) if k != "seed"]
        if left:
            raise MissingVariable(f"template {template!r}: variable(s) {left} not given in this tier")
        return out

    def reference(self, table: str, stratum: str) -> float | None:
        t = self.references.get(table) or {}
        for k, v in t.items():
            if slug(k) == slug(stratum):
                return float(v)
        return None


def _lookup(values: dict, key: str, unfilled: str):
    """'{name}' -> values[name]; '{name|default}' -> values[name] if given, else default."""
    name, _, default = key.partition("|")
    if name in values:
        return values[name]
    return default if "|" in key else unfilled


def _seed_files(ctx: Context, template: str, stratum: str) -> list[tuple[int, Path]]:
    """Every (seed, file) of a per-seed template (one '{seed}' in it), sorted by seed."""
    filled = ctx.fill(template, stratum)
    if "{seed}" not in filled:
        p = ctx.root / filled
        return [(0, p)] if p.exists() else []
    pattern = re.compile(re.escape(filled).replace(re.escape("{seed}"), r"(\d+)") + "$")
    base = ctx.root / filled.split("{seed}")[0]
    parent = base.parent if not str(filled.split("{seed}")[0]).endswith("/") else base
    if not parent.exists():
        return []
    out = []
    for p in parent.rglob(Path(filled).name):
        rel = p.relative_to(ctx.root).as_posix()
        m = pattern.match(rel)
        if m:
            out.append((int(m.group(1)), p))
    return sorted(out)


def _reduce(values, how: str) -> float:
    arr = np.asarray(list(values), dtype=float)
    if arr.size == 0:
        return float("nan")
    return float({"max": np.max, "min": np.min, "mean": np.mean}[how](arr))


def _dig(obj, key: str):
    for part in key.split("."):
        if not isinstance(obj, dict) or part not in obj:
            return None
        obj = obj[part]
    return obj


def arm_values(ctx: Context, arm: dict, stratum: str) -> np.ndarray:
    """The arm's values in one stratum, one per seed (empty when nothing ran)."""
    try:
        return _arm_values(ctx, arm, stratum)
    except MissingVariable:
        return np.array([])


def _arm_values(ctx: Context, arm: dict, stratum: str) -> np.ndarray:
    src = arm["source"]
    if src == "constant":
        v = (arm.get("values") or {})
        for k, x in v.items():
            if slug(k) == slug(stratum):
                return np.array([float(x)])
        return np.array([])
    if src == "csv_rows":
        p = ctx.root / ctx.fill(arm["path"], stratum)
        if not p.exists():
            return np.array([])
        df = pd.read_csv(p)
        method = arm.get("method")
        if isinstance(method, dict):  # {stratum: method}: the same role has another name in each preset
            method = next((m for k, m in method.items() if slug(k) == slug(stratum)), None)
            if method is None:
                return np.array([])
        if method is not None:
            df = df[df["method"].astype(str) == str(method)]
        if arm.get("columns"):
            cols = [c for c in df.columns if fnmatch.fnmatch(c, arm["columns"])]
            vals = [_reduce(r, arm.get("reduce", "min")) for r in df[cols].to_numpy(dtype=float)] if cols else []
        else:
            vals = df[arm.get("column", "score")].to_numpy(dtype=float)
        vals = np.asarray(vals, dtype=float)
        return vals[np.isfinite(vals)]
    out = []
    for _, p in _seed_files(ctx, arm["path"], stratum):
        if src == "json":
            v = _dig(read_json(p), ctx.fill(arm.get("key", "mean"), stratum))
            if isinstance(v, dict):
                v = _reduce(v.values(), arm.get("reduce", "max"))
            out.append(float("nan") if v is None else float(v))
        else:
            out.append(curve_stat(ctx, arm, stratum, pd.read_csv(p)))
    arr = np.asarray(out, dtype=float)
    return arr[np.isfinite(arr)]


def threshold_value(ctx: Context, arm: dict, stratum: str) -> float:
    """The threshold of a steps_to_threshold arm in one stratum (NaN when its reference did not run)."""
    t = arm.get("threshold") or {}
    if "value" in t:
        return float(t["value"])
    if "values" in t:
        for k, v in t["values"].items():
            if slug(k) == slug(stratum):
                return float(v)
        return float("nan")
    if "fraction" in t:
        frac = t["fraction"]
        if isinstance(frac, dict):
            frac = next((v for k, v in frac.items() if slug(k) == slug(stratum)), frac.get("default", float("nan")))
        ref = arm_values(ctx, t["of"], stratum)
        return float(frac) * float(ref.mean()) if ref.size else float("nan")
    raise ClaimsError(f"steps_to_threshold needs threshold: {{value}}, {{values}} or {{fraction, of}}; got {t}")


def curve_stat(ctx: Context, arm: dict, stratum: str, curve: pd.DataFrame) -> float:
    for col, val in (arm.get("filter") or {}).items():
        curve = curve[curve[col].astype(str) == ctx.fill(str(val), stratum)]
    x_col, y_col = arm.get("x", "env_steps"), arm["y"]
    curve = curve.sort_values(x_col, kind="mergesort")
    y = curve[y_col].to_numpy(dtype=float)
    x = curve[x_col].to_numpy(dtype=float)
    if y.size == 0:
        return float("nan")
    stat, window = arm.get("stat", "last_mean"), int(arm.get("window", 1))
    if stat == "last_mean":
        return float(np.nanmean(y[-window:]))
    if stat == "max":
        return float(np.nanmax(y))
    if stat == "plateau":
        # still rising? (mean of the last fraction f of training - mean of the f before it) / |mean before|
        f = float(arm.get("fraction", 0.1))
        end = x[-1]
        last, prev = y[x > end * (1 - f)], y[(x > end * (1 - 2 * f)) & (x <= end * (1 - f))]
        if last.size == 0 or prev.size == 0 or np.nanmean(prev) == 0:
            return float("nan")
        return float((np.nanmean(last) - np.nanmean(prev)) / abs(np.nanmean(prev)))
    if stat == "steps_to_threshold":
        thr = threshold_value(ctx, arm, stratum)
        if not math.isfinite(thr):
            return float("nan")
        smooth = pd.Series(y).rolling(window, min_periods=1).mean().to_numpy()
        hit = np.flatnonzero(smooth >= thr)
        # never reached: the last x, a lower bound (counted as censored by the caller)
        return float(x[hit[0]]) if hit.size else float(x[-1])
    raise ClaimsError(f"curve stat must be last_mean, max, plateau or steps_to_threshold; got {stat}")


def censored(ctx: Context, arm: dict, stratum: str) -> tuple[int, int]:
    """(seeds that never reached the threshold, seeds) of a steps_to_threshold arm."""
    if arm.get("source") != "curve" or arm.get("stat") != "steps_to_threshold":
        return 0, 0
    n_cens = n = 0
    for _, p in _seed_files(ctx, arm["path"], stratum):
        c = pd.read_csv(p)
        for col, val in (arm.get("filter") or {}).items():
            c = c[c[col].astype(str) == ctx.fill(str(val), stratum)]
        if c.empty:
            continue
        thr = threshold_value(ctx, arm, stratum)
        c = c.sort_values(arm.get("x", "env_steps"), kind="mergesort")
        smooth = c[arm["y"]].astype(float).rolling(int(arm.get("window", 1)), min_periods=1).mean()
        n += 1
        n_cens += int(not (smooth >= thr).any())
    return n_cens, n


# --------------------------------------------------------------------------------------------- statistics
def stratum_effect(t: np.ndarray, c: np.ndarray | None, s: np.ndarray | None, effect: str) -> float:
    """d_s of one stratum from the arms' values (see the module docstring)."""
    mt = float(np.mean(t))
    if effect == "value":
        return mt
    mc = float(np.mean(c))
    if effect == "difference":
        return mt - mc
    if effect == "relative":
        return (mt - mc) / abs(mc) if mc != 0 else float("nan")
    den = abs(float(np.mean(s)) - mc)
    return (mt - mc) / den if den != 0 else float("nan")


def bootstrap_effect(strata: list[dict], effect: str, reps: int = BOOT_REPS, seed: int = BOOT_SEED,
                     size: float = CI_SIZE) -> tuple[float, float, float]:
    """Point effect (mean of d_s over strata) and its stratified percentile-bootstrap interval.

    ``strata``: [{"t": values, "c": values or None, "s": values or None, "fixed": {"c", ...}}]: arms named in
    ``fixed`` are reference numbers and are not resampled."""
    def effect_of(samples):
        return float(np.mean([stratum_effect(d["t"], d.get("c"), d.get("s"), effect) for d in samples]))

    point = effect_of(strata)
    rng = np.random.default_rng(seed)
    boot = np.empty(reps)
    for r in range(reps):
        sample = []
        for d in strata:
            new = {}
            for k in ("t", "c", "s"):
                v = d.get(k)
                if v is None or k in d.get("fixed", set()) or len(v) == 1:
                    new[k] = v
                else:
                    new[k] = v[rng.integers(0, len(v), len(v))]
            sample.append(new)
        boot[r] = effect_of(sample)
    alpha = (1 - size) / 2
    boot = boot[np.isfinite(boot)]
    if boot.size == 0:
        return point, float("nan"), float("nan")
    lo, hi = np.quantile(boot, [alpha, 1 - alpha])
    return point, float(lo), float(hi)


def direction_verdict(lo: float, hi: float, direction: str, margin: float = 0.0, tolerance: float = 0.0) -> str:
    """supported / contradicted / inconclusive from an interval and the claimed direction (module docstring, 5)."""
    if not (math.isfinite(lo) and math.isfinite(hi)):
        return "inconclusive"
    if direction == "greater":
        return "supported" if lo > margin else "contradicted" if hi <= margin else "inconclusive"
    if direction == "less":
        return "supported" if hi < margin else "contradicted" if lo >= margin else "inconclusive"
    if direction == "equal":
        a, b = margin - tolerance, margin + tolerance
        if a <= lo and hi <= b:
            return "supported"
        return "contradicted" if hi < a or lo > b else "inconclusive"
    raise ClaimsError(f"direction must be one of {DIRECTIONS}, got {direction}")


def combine_each(verdicts: list[str]) -> str:
    """aggregate: each: supported if every stratum is, contradicted if any is, else inconclusive."""
    if verdicts and all(v == "supported" for v in verdicts):
        return "supported"
    return "contradicted" if "contradicted" in verdicts else "inconclusive"


def check_precondition(ctx: Context, pre: dict, stratum: str) -> tuple[bool, str]:
    """(met, what was found) for one precondition in one stratum; missing data is 'not met'."""
    vals = arm_values(ctx, pre["arm"], stratum)
    if vals.size == 0:
        return False, f"{pre['name']}: no data in {stratum}"
    got = _reduce(vals, pre.get("reduce", "mean"))
    bound = pre["bound"]
    if isinstance(bound, dict):
        row = bound.get("stratum", stratum)  # another game's reference: a teacher of the source game
        ref = ctx.reference(bound["reference"], row)
        if ref is None:
            return False, f"{pre['name']}: no reference '{bound['reference']}' for {row}"
        bound_v = float(bound.get("fraction", 1.0)) * ref
        shown = f"{bound.get('fraction', 1.0):g} x {ref:g} ({row}) = {bound_v:.4g}"
    else:
        bound_v, shown = float(bound), f"{float(bound):g}"
    ok = {"<=": got <= bound_v, ">=": got >= bound_v, "<": got < bound_v, ">": got > bound_v}[pre["op"]]
    return bool(ok), f"{pre['name']} in {stratum}: {got:.4g} {pre['op']} {shown}: {'met' if ok else 'NOT met'}"


# ------------------------------------------------------------------------------------------------ judging
def fmt(x: float) -> str:
    if x is None or not math.isfinite(x):
        return "n/a"
    return f"{x:.3g}" if abs(x) < 1000 else f"{x:,.0f}"


def judge(ctx: Context, claim: dict) -> dict:
    """One row of the scorecard: paper's evidence, ours, n seeds, verdict and notes."""
    row = {"id": claim["id"], "claim": claim["claim"], "where": claim["where"],
           "paper_evidence": claim.get("paper_evidence", ""), "paper_effect": claim.get("paper_effect", ""),
           "ours": "", "effect": float("nan"), "ci_low": float("nan"), "ci_high": float("nan"),
           "n_seeds": 0, "strata": "", "verdict": "", "rule": "", "notes": ""}
    if claim.get("testable", True) is False:
        row.update(verdict="not testable", notes=claim["reason"])
        return row
    comp = claim["comparison"]
    effect = comp.get("effect", "difference")
    arms = {"t": comp["treatment"], "c": comp.get("control") if effect != "value" else None,
            "s": comp.get("scale") if effect == "scaled" else None}
    fixed = {k for k, a in arms.items() if a is not None and (a.get("fixed") or a["source"] == "constant")}
    data, notes = [], []
    for stratum in comp["strata"]:
        d = {k: (arm_values(ctx, a, stratum) if a is not None else None) for k, a in arms.items()}
        if any(v is not None and v.size == 0 for v in d.values()):
            continue
        d.update(stratum=stratum, fixed=fixed)
        data.append(d)
        for k, a in arms.items():
            if a is not None:
                n_c, n = censored(ctx, a, stratum)
                if n_c:
                    notes.append(f"{stratum} {a.get('label', k)}: {n_c} of {n} seeds never reached the threshold "
                                 "(counted at their last step, a lower bound)")
    if not data:
        row.update(verdict="not run", notes="no stratum has every arm in this tier")
        return row
    row["strata"] = ", ".join(d["stratum"] for d in data)
    seeds = [len(d[k]) for d in data for k in ("t", "c", "s") if d.get(k) is not None and k not in fixed]
    n = min(seeds) if seeds else 0
    row["n_seeds"] = n
    failed = []
    for pre in claim.get("preconditions") or []:
        for d in data:
            ok, msg = check_precondition(ctx, pre, d["stratum"])
            notes.append(msg)
            if not ok:
                failed.append(msg)
    per = [(d["stratum"], stratum_effect(d["t"], d.get("c"), d.get("s"), effect)) for d in data]
    margin, tol = float(comp.get("margin", 0.0)), float(comp.get("tolerance", 0.0))
    if n < MIN_SEEDS:
        row["effect"] = float(np.mean([e for _, e in per]))
        row["ours"] = f"effect {fmt(row['effect'])} ({effect}); " + "; ".join(
            f"{d['stratum']}: " + " vs ".join(_per_seed(d[k]) for k in ("t", "c", "s") if d.get(k) is not None)
            for d in data)
        verdict = "inconclusive"
        notes.insert(0, f"{n} seeds < {MIN_SEEDS}: per-seed values and mean [min, max], no interval; at most "
                        "inconclusive")
    else:
        if comp.get("aggregate", "mean") == "each":
            verdicts = []
            cis = []
            for d in data:
                p, lo, hi = bootstrap_effect([d], effect)
                verdicts.append(direction_verdict(lo, hi, comp["direction"], margin, tol))
                cis.append(f"{d['stratum']} {fmt(p)} [{fmt(lo)}, {fmt(hi)}] {verdicts[-1]}")
            verdict = combine_each(verdicts)
            notes.insert(0, "per stratum: " + "; ".join(cis))
        point, lo, hi = bootstrap_effect(data, effect)
        if comp.get("aggregate", "mean") != "each":
            verdict = direction_verdict(lo, hi, comp["direction"], margin, tol)
        row.update(effect=point, ci_low=lo, ci_high=hi,
                   ours=f"{fmt(point)} [{fmt(lo)}, {fmt(hi)}] ({effect}, mean over {len(data)} strata)")
    if failed:
        verdict = "precondition not met"
    rule = {"greater": f"> {margin:g}", "less": f"< {margin:g}", "equal": f"within {margin:g} +- {tol:g}"}
    row.update(verdict=verdict, rule=f"{effect} {rule[comp['direction']]}", notes="; ".join(notes))
    return row


def _per_seed(v: np.ndarray) -> str:
    vals = ", ".join(fmt(x) for x in v)
    return f"[{vals}] mean {fmt(float(np.mean(v)))} [{fmt(float(np.min(v)))}, {fmt(float(np.max(v)))}]"


def scorecard(ctx_base: Context, claim_files: list) -> pd.DataFrame:
    rows = []
    for f in claim_files:
        doc = load_claims(f)
        ctx = Context(ctx_base.root, ctx_base.tier, ctx_base.variables, doc.get("references") or {})
        for c in doc["claims"]:
            try:
                row = judge(ctx, c)
            except Exception as e:  # one unreadable run file must not cost the tier its scorecard and report
                print(f"claims: {c['id']}: {type(e).__name__}: {e}", file=sys.stderr)
                row = {"id": c["id"], "claim": c["claim"], "where": c["where"],
                       "paper_evidence": c.get("paper_evidence", ""), "ours": "", "n_seeds": 0,
                       "verdict": "error", "notes": f"could not be judged: {type(e).__name__}: {e}"}
            row.update(quote=c["quote"], verdict_rule=c.get("verdict_rule", ""))
            rows.append({"paper": doc.get("paper", Path(f).parent.name), **row})
    return pd.DataFrame(rows)


def write_outputs(df: pd.DataFrame, tier: str, out_md, out_csv) -> None:
    with atomic_path(out_csv) as tmp:
        df.to_csv(tmp, index=False)
    counts = df["verdict"].value_counts()
    lines = [f"**Claims scorecard ({tier} tier).** One row per claim of `papers/<paper>/claims.yaml`. Ours: the "
             "effect (treatment against control, per the claim's effect measure, averaged over the strata that "
             f"ran) with its 95% stratified bootstrap interval over seeds ({BOOT_REPS} replicates, seed "
             f"{BOOT_SEED}); below {MIN_SEEDS} seeds per arm, the per-seed values and mean [min, max] instead, and "
             "the verdict is at most inconclusive. A claim whose precondition fails says so whatever its interval.",
             "",
             "Verdicts: " + ", ".join(f"{v} {int(counts.get(v, 0))}" for v in VERDICTS + ("error",)
                                      if v != "error" or counts.get(v, 0)), "",
             "| paper | claim | where | paper's evidence | ours | n seeds | verdict |",
             "|---|---|---|---|---|---:|---|"]
    for r in df.itertuples(index=False):
        pe = _cell(r.paper_effect)
        evidence = _cell(r.paper_evidence) + (f" (effect {pe})" if pe else "")
        lines.append(f"| {r.paper} | **{r.id}**: {_cell(r.claim)} | {_cell(r.where)} | {evidence} | "
                     f"{_cell(r.ours) or '-'} | {r.n_seeds} | {r.verdict} |")
    lines += ["", "Per claim: the paper's words, the test, and what was checked (preconditions, censoring, "
              "per-stratum intervals):", ""]
    for r in df.itertuples(index=False):
        test = f" Test: {_cell(r.verdict_rule)}." if _cell(r.verdict_rule) else ""
        notes = f" {_cell(r.notes)}." if _cell(r.notes) else ""
        lines.append(f"- **{r.id}** ({r.verdict}): \u201c{_cell(r.quote)}\u201d ({_cell(r.where)}).{test}{notes}")
    Path(out_md).parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(out_md) as tmp:
        tmp.write_text("\n".join(lines) + "\n")


def _cell(s) -> str:
    return str(s if s is not None and s == s else "").replace("|", "\\|").replace("\n", " ").strip()


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--tier", required=True)
    ap.add_argument("--claims", nargs="+", required=True, help="claims.yaml files")
    ap.add_argument("--out-md", required=True)
    ap.add_argument("--out-csv", required=True)
    ap.add_argument("--root", default=".", help="the directory runs/ and teachers/ are under")
    ap.add_argument("--var", action="append", default=[], help="template variable KEY=VALUE (repeatable)")
    a = ap.parse_args(argv)
    variables = dict(v.split("=", 1) for v in a.var)
    df = scorecard(Context(Path(a.root), a.tier, variables), a.claims)
    write_outputs(df, a.tier, a.out_md, a.out_csv)


if __name__ == "__main__":
    from common.cli import run

    run(main)
