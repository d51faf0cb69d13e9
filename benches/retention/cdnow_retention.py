"""How well does rapport's retention_risk predict which CDNOW customers make no purchase in the next
273 days, against buy-till-you-die models (BG/NBD, MBG/NBD, Pareto/NBD), recency and a logistic model?

Data: the real CDNOW purchase log shipped by lifetimes 0.11.3 (23,570 customers, first purchase in
Q1 1997, purchases through 1998-06-30). Standard split: calibration 1997-01-01..1997-09-30 (39 weeks),
holdout 1997-10-01..1998-06-30 (39 weeks, 273 days). A customer is a "leaver" when they make no
purchase in the holdout, a "stayer" otherwise.

Scores (higher = more likely to leave), all computed from calibration data only:
  rapport retention_risk   every calibration purchase row streamed to a rapport server started here
                           (loopback, in memory, scoring.retention_horizon_seconds = 273 days), then,
                           once the server has refitted the tenant's activity model on all of it,
                           GetCustomer(as_of=1997-09-30T23:59:59Z). A probability.
  <BTYD> P(no purchase in 273 d)  BG/NBD, MBG/NBD, Pareto/NBD (lifetimes, penalizer 0): probability
  <BTYD> -E[holdout purchases]    minus the expected number of purchases in the 273 holdout days (ranking)
  recency (days silent)    days since the last purchase at the calibration end (ranking)
  logistic (5-fold CV)     logistic regression on log recency, log frequency, log monetary, log age;
                           out-of-fold probabilities (a probability)

Reported: ROC AUC for "leaver" (rank based, ties count half); Brier score for the probabilities;
top-decile lift (leaver rate among the 10 % highest scores / overall leaver rate; ties at the cut are
shared pro rata); paired bootstrap of AUC differences; a calibration table per probability (deciles of
the predicted probability: mean predicted vs observed leaver share).

    python cdnow_retention.py --rapport /path/to/rapport [--models-dir models] [--stubs DIR]
"""
import argparse
import atexit
import datetime as dt
import os
import signal
import socket
import subprocess
import sys
import tempfile
import time

import numpy as np
import pandas as pd

HERE = os.path.dirname(os.path.abspath(__file__))
REPO = os.path.normpath(os.path.join(HERE, "..", ".."))
sys.path.insert(0, os.path.join(REPO, "examples", "python"))
from rapport_stubs import generate_stubs  # noqa: E402  (stubs from proto/, shared with the example)

CAL_END = "1997-09-30"
OBS_END = "1998-06-30"
HOLDOUT_DAYS = 273
AS_OF = dt.datetime(1997, 9, 30, 23, 59, 59, tzinfo=dt.timezone.utc)
TENANT = "cdnow"
CHUNK = 5000  # events per streaming Ingest call
# The server's config. Horizon = the holdout (273 d). A ranking pass every second, and a refit of the
# tenant's activity model at every pass (the default refits hourly, or when the tenant grew by a
# tenth since its last fit: a fit made late in the ingest, on >= 91 % of the customers, would
# otherwise stay). The fit is as of the tenant's latest event, so repeated fits on the same data
# give the same model; the script waits for two fits that end after the ingest (see wait_for_fit).
def server_config(horizon_days):
    return f"""[server]
ranking_pass_seconds = 1

[scoring]
retention_horizon_seconds = {horizon_days * 86400}
retention_refit_seconds = 1
"""


# --------------------------------------------------------------------------------------------- data
def load_cdnow():
    import lifetimes

    path = os.path.join(os.path.dirname(lifetimes.__file__), "datasets", "CDNOW_master.txt")
    rows = []
    with open(path) as f:
        for line_no, line in enumerate(f, start=1):
            parts = line.split()
            if len(parts) != 4 or not parts[0].isdigit():
                continue  # header
            cid, date, cds, dollars = parts
            rows.append((line_no, int(cid), date, int(cds), float(dollars)))
    df = pd.DataFrame(rows, columns=["line", "customer_id", "date", "cds", "dollars"])
    df["date"] = pd.to_datetime(df["date"], format="%Y%m%d")
    return path, df


# ------------------------------------------------------------------------------------------ metrics
def auc(score, positive):
    """ROC AUC of `score` for `positive` (Mann-Whitney U / n1 n0; ties count half)."""
    from scipy.stats import rankdata

    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    ranks = rankdata(score)  # average ranks for ties
    n1, n0 = positive.sum(), (~positive).sum()
    return (ranks[positive].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)


def top_decile_lift(score, positive, fraction=0.10):
    """Positive rate among the top `fraction` by score over the base rate; a tie group straddling
    the cut contributes in proportion to the part of it that fits (the expectation under random
    tie-breaking)."""
    score = np.asarray(score, dtype=float)
    positive = np.asarray(positive, dtype=bool)
    k = fraction * len(score)
    order = np.sort(score)[::-1]
    cut = order[int(np.ceil(k)) - 1]
    above = score > cut
    tied = score == cut
    take = k - above.sum()
    hits = positive[above].sum() + take * positive[tied].mean()
    return (hits / k) / positive.mean()


# ------------------------------------------------------------------------------------------ rapport
def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(binary, models_dir, horizon_days, ready_timeout=60.0):
    port, mport = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="rapport-retention-", suffix=".log", delete=False)
    confdir = tempfile.mkdtemp(prefix="rapport-retention-conf-")
    config = os.path.join(confdir, "rapport.toml")
    with open(config, "w") as f:
        f.write(server_config(horizon_days))
    atexit.register(lambda: (os.unlink(config), os.rmdir(confdir)))
    proc = subprocess.Popen(
        [binary, "serve", "--config", config, "--grpc-addr", f"127.0.0.1:{port}",
         "--metrics-addr", f"127.0.0.1:{mport}", "--models-dir", models_dir],
        stdout=log, stderr=subprocess.STDOUT,
    )

    def stop():
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()

    atexit.register(stop)
    # SIGTERM/SIGHUP run the atexit hook too, so the server never outlives the script.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda *_: sys.exit(f"stopped by signal"))
    deadline = time.monotonic() + ready_timeout
    while True:
        if proc.poll() is not None:
            sys.exit(f"rapport exited with {proc.returncode} before it was ready; log: {log.name}\n"
                     + open(log.name).read()[-2000:])
        ok = subprocess.run([binary, "health", "--server", f"http://127.0.0.1:{port}",
                             "--timeout-seconds", "2"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL).returncode == 0
        if ok:
            return proc, port, mport, stop, log.name
        if time.monotonic() > deadline:
            stop()
            sys.exit(f"rapport not SERVING after {ready_timeout:.0f} s; log: {log.name}")
        time.sleep(0.25)


RISK_FACTORS = ["activity", "engagement_drop", "negative_sentiment", "worsening_sentiment",
                "open_complaints", "positive_contact"]
RISK_BIAS = 0.0  # docs/scoring.md default; used only to check the reasons add up to the risk


def metric(text, name):
    """Sum of every sample of metric `name` in a Prometheus text exposition (0 when absent)."""
    total, seen = 0.0, False
    for line in text.splitlines():
        if line.startswith(name) and line[len(name):len(name) + 1] in (" ", "{"):
            total += float(line.rsplit(None, 1)[1])
            seen = True
    return total if seen else None


def wait_for_fit(mport, fits_needed=2, timeout=60.0):
    """Waits until rapport_retention_model_fits_total has risen by `fits_needed` since the call
    (the ingest has returned by then, so the second of those fits started after the last event was
    stored and saw all of them). Without the counter (an older server), sleeps 3 s: more than two
    1-second ranking passes. Returns (seconds waited, counter value)."""
    t0 = time.monotonic()
    start = metric(scrape(mport), FITS_METRIC)
    if start is None:
        time.sleep(3.0)
        return time.monotonic() - t0, float("nan")
    while True:
        now = metric(scrape(mport), FITS_METRIC)
        if now >= start + fits_needed:
            return time.monotonic() - t0, now
        if time.monotonic() - t0 > timeout:
            sys.exit(f"{FITS_METRIC} stayed at {now:g} for {timeout:.0f} s after ingest")
        time.sleep(0.1)


FITS_METRIC = "rapport_retention_model_fits_total"


def scrape(mport):
    import urllib.request

    with urllib.request.urlopen(f"http://127.0.0.1:{mport}/metrics", timeout=5) as r:
        return r.read().decode()


def rapport_scores(pb, channel, mport, tenant, cal, customers, as_of_time):
    """Streams `cal` (one event per row) as tenant `tenant`, then reads every customer's score."""
    from google.protobuf.timestamp_pb2 import Timestamp

    ipb, scp = pb["interaction_pb2"], pb["scoring_pb2"]
    ingest = pb["ingest_pb2_grpc"].IngestServiceStub(channel)
    scoring = pb["scoring_pb2_grpc"].ScoringServiceStub(channel)

    def ts(day):
        t = Timestamp()
        noon = dt.datetime(day.year, day.month, day.day, 12, tzinfo=dt.timezone.utc)
        t.FromDatetime(noon)
        return t

    events = [
        ipb.Interaction(event_id=f"cdnow-{line}", tenant_id=tenant, customer_id=str(cid),
                        channel=ipb.CHANNEL_WEB, kind=ipb.INTERACTION_KIND_PURCHASE,
                        direction=ipb.DIRECTION_INBOUND, occurred_at=ts(day), value=float(value))
        for line, cid, day, value in zip(cal["line"], cal["customer_id"], cal["date"], cal["dollars"])
    ]
    t0 = time.monotonic()
    totals = {"accepted": 0, "duplicates": 0, "rejected": 0}
    rejections = []
    for start in range(0, len(events), CHUNK):
        chunk = events[start:start + CHUNK]
        summary = ingest.Ingest(iter(chunk), timeout=300)
        totals["accepted"] += summary.accepted
        totals["duplicates"] += summary.duplicates
        totals["rejected"] += summary.rejected
        rejections.extend((start + r.index, r.event_id, r.reason) for r in summary.rejections)
    ingest_s = time.monotonic() - t0
    print(f"rapport ingest [{tenant}]: sent {len(events)} accepted {totals['accepted']} duplicates "
          f"{totals['duplicates']} rejected {totals['rejected']} in {ingest_s:.1f} s", flush=True)
    for r in rejections[:10]:
        print("  rejection:", r)
    if totals["accepted"] != len(events):
        sys.exit("rapport did not accept every event; see above")
    fit_wait_s, fits = wait_for_fit(mport)
    print(f"rapport activity model: waited {fit_wait_s:.1f} s after ingest for 2 more fits "
          f"(rapport_retention_model_fits_total = {fits:g})", flush=True)

    as_of = Timestamp()
    as_of.FromDatetime(as_of_time)
    t0 = time.monotonic()
    risk = np.empty(len(customers))
    reasons = {}
    window = 128
    for start in range(0, len(customers), window):
        futures = [
            scoring.GetCustomer.future(scp.GetCustomerRequest(tenant_id=tenant, customer_id=str(c),
                                                              as_of=as_of), timeout=60)
            for c in customers[start:start + window]
        ]
        for i, fut in enumerate(futures):
            s = fut.result()
            risk[start + i] = s.retention_risk
            for r in s.reasons:
                reasons.setdefault(r.factor, np.zeros(len(customers)))[start + i] = r.contribution
    query_s = time.monotonic() - t0
    print(f"rapport GetCustomer [{tenant}]: {len(customers)} customers in {query_s:.1f} s", flush=True)
    # The model is refitted every pass meanwhile; on unchanged data it must not move.
    again = [scoring.GetCustomer(scp.GetCustomerRequest(tenant_id=tenant, customer_id=str(c), as_of=as_of),
                                 timeout=60).retention_risk for c in customers[:200]]
    drift = np.max(np.abs(np.array(again) - risk[:200]))
    print(f"  check: 200 customers re-read {query_s:.1f} s later (after more refits) move by {drift:.1e}")
    logit = RISK_BIAS + sum(reasons.get(f, 0.0) for f in RISK_FACTORS)
    worst = np.max(np.abs(1 / (1 + np.exp(-logit)) - risk))
    print(f"  check: sigmoid(sum of risk-factor reasons) matches retention_risk to {worst:.1e}")
    if not worst <= 1e-9:
        sys.exit("sigma(sum of risk-factor contributions) does not reproduce retention_risk")
    return risk, reasons, totals, ingest_s, query_s, fit_wait_s


# --------------------------------------------------------------------------------------------- main
def paired_bootstrap(a, b, positive, reps=200, seed=7):
    """Bootstrap (customers resampled) of AUC(a) - AUC(b): mean and 95 % interval."""
    rng = np.random.default_rng(seed)
    n = len(positive)
    diffs = []
    for _ in range(reps):
        i = rng.integers(0, n, n)
        diffs.append(auc(a[i], positive[i]) - auc(b[i], positive[i]))
    return np.mean(diffs), np.quantile(diffs, 0.025), np.quantile(diffs, 0.975)


def brier(p, positive):
    return float(np.mean((np.asarray(p, dtype=float) - np.asarray(positive, dtype=float)) ** 2))


def calibration_table(p, positive, bins=10):
    """Deciles of the predicted probability (equal counts, by rank; ties broken by position):
    rows of (decile, n, min p, max p, mean p, observed leaver share)."""
    p = np.asarray(p, dtype=float)
    order = np.argsort(p, kind="stable")
    rows = []
    for d, idx in enumerate(np.array_split(order, bins), start=1):
        rows.append((d, len(idx), p[idx].min(), p[idx].max(), p[idx].mean(), positive[idx].mean()))
    return rows


BTYD_FIT_TIMEOUT_S = int(os.environ.get("BTYD_FIT_TIMEOUT_S", "120"))
_btyd_fits = {}


def fit_btyd(fitter, x, t_x, big_t, key):
    """lifetimes' fit of `fitter` as {parameter: value}, in a forked child bounded by
    BTYD_FIT_TIMEOUT_S (its Pareto/NBD optimiser can wander for many minutes on short histories);
    None when it does not end in time. Cached by `key` (the same cut's fit serves both horizons)."""
    import multiprocessing as mp

    if key in _btyd_fits:
        return _btyd_fits[key]
    # BTYD_CACHE=DIR keeps fits across runs (they depend only on the data and the cut).
    cache = os.environ.get("BTYD_CACHE")
    cache_file = cache and os.path.join(cache, "-".join(key).replace("/", "") + ".json")
    if cache_file and os.path.exists(cache_file):
        import json

        with open(cache_file) as f:
            _btyd_fits[key] = json.load(f)
        return _btyd_fits[key]

    def child(queue):
        fitter.fit(x, t_x, big_t)
        queue.put({k: float(v) for k, v in fitter.params_.items()})

    ctx = mp.get_context("fork")
    queue = ctx.Queue()
    proc = ctx.Process(target=child, args=(queue,))
    proc.start()
    try:
        fitted = queue.get(timeout=BTYD_FIT_TIMEOUT_S)
    except Exception:
        fitted = None
    proc.kill() if proc.is_alive() else None
    proc.join()
    _btyd_fits[key] = fitted
    if cache_file and fitted is not None:
        import json

        os.makedirs(cache, exist_ok=True)
        with open(cache_file, "w") as f:
            json.dump(fitted, f)
    return fitted


def p_none_gamma(p_alive, r, alpha, x, big_t, h):
    """P(no purchase in (T, T+h]) for BG/NBD and MBG/NBD: dead now, or alive (death only at a
    purchase, so alive throughout) with no purchase; given alive, lambda ~ Gamma(r + x, alpha + T):
    1 - P(alive) + P(alive) ((alpha + T) / (alpha + T + h))^(r + x)."""
    return 1.0 - p_alive + p_alive * np.exp((r + x) * (np.log(alpha + big_t) - np.log(alpha + big_t + h)))


def logistic_cv(features, positive, folds=5, seed=7):
    """Out-of-fold P(leaver) from a logistic regression (standardised features, sklearn defaults)."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    out = np.empty(len(positive))
    coefs = []
    for train, test in StratifiedKFold(folds, shuffle=True, random_state=seed).split(features, positive):
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
        model.fit(features[train], positive[train])
        out[test] = model.predict_proba(features[test])[:, 1]
        coefs.append(np.r_[model[-1].intercept_, model[-1].coef_[0]])
    return out, np.mean(coefs, axis=0)


GRID_CUTS = ["1997-01-31", "1997-02-28", "1997-03-31", "1997-06-30", "1997-09-30"]
DEFAULT_HORIZON_DAYS = 90  # rapport's default scoring.retention_horizon_seconds


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rapport", help="path to the rapport binary")
    parser.add_argument("--no-rapport", action="store_true", help="skip rapport (to test the rest)")
    parser.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    parser.add_argument("--stubs", default=None, help="directory for generated stubs (default: a temp dir)")
    parser.add_argument("--bootstrap", type=int, default=200, help="paired bootstrap resamples")
    parser.add_argument("--cut", default=CAL_END,
                        help="end of the history rapport and the models see (default: the standard 1997-09-30)")
    parser.add_argument("--horizon-days", type=int, default=None,
                        help="horizon and label window, days after the cut (default: to 1998-06-30, "
                             "273 days for the standard cut)")
    parser.add_argument("--grid", action="store_true",
                        help="every cut of GRID_CUTS, each with the horizon matched (to 1998-06-30) and "
                             "at rapport's default (90 days): one summary table, no bootstrap")
    args = parser.parse_args()
    if not args.rapport and not args.no_rapport:
        parser.error("--rapport PATH is required (or --no-rapport)")
    wall0 = time.monotonic()
    path, df = load_cdnow()
    print(f"CDNOW: {path}\n  {len(df)} purchase rows, {df.customer_id.nunique()} customers, "
          f"{df.date.min().date()} .. {df.date.max().date()}")
    pb = None
    if not args.no_rapport:
        pb = generate_stubs(args.stubs)
    if not args.grid:
        evaluate(args, df, pb, args.cut, args.horizon_days or matched_horizon_days(args.cut), verbose=True)
        print(f"\nwall time {time.monotonic() - wall0:.1f} s")
        return
    results = []
    for cut in GRID_CUTS:
        for horizon in (matched_horizon_days(cut), DEFAULT_HORIZON_DAYS):
            print(f"\n=== cut {cut}, horizon {horizon} d ===", flush=True)
            results.append(evaluate(args, df, pb, cut, horizon, verbose=False))
    print_grid(results)
    print(f"\nwall time {time.monotonic() - wall0:.1f} s")


def matched_horizon_days(cut):
    """The horizon that ends where the data end (273 days for the standard cut)."""
    return int((pd.Timestamp(OBS_END) - pd.Timestamp(cut)).days)


def max_decile_gap(p, positive):
    return max(abs(ob - mp) for _, _, _, _, mp, ob in calibration_table(p, positive))


def print_grid(results):
    """One row per (cut, horizon): counts, base rate, and AUC / Brier / largest decile gap of each
    probability; rapport's row is checked against the issue's bar (Brier at most the base rate's
    and every BTYD's, AUC at least the best BTYD P(none)'s - 0.005)."""
    print("\nsummary: AUC / Brier / largest decile gap (|observed - predicted|)")
    names = []
    for r in results:
        names += [n.split(" P(")[0] for n, _ in r["probs"] if n.split(" P(")[0] not in names]
    short = {"rapport retention_risk": "rapport", "logistic (5-fold CV)": "logistic (CV, on labels)"}
    header = f"{'cut':10s} {'h d':>4s} {'customers':>9s} {'leave':>6s} {'base Brier':>10s}"
    for n in names:
        header += f" | {short.get(n, n.split(' P(')[0]):^22s}"
    print(header + " | bar met")
    for r in results:
        line = f"{r['cut']:10s} {r['horizon']:4d} {r['customers']:9d} {r['rate']:6.3f} {r['base_brier']:10.4f}"
        by_name = {n.split(" P(")[0]: p for n, p in r["probs"]}
        for n in names:
            p = by_name.get(n)
            line += (f" | {'n/a (no fit)':^22s}" if p is None else
                     f" | {auc(p, r['leaver']):.3f} {brier(p, r['leaver']):.4f} {max_decile_gap(p, r['leaver']):.3f}")
        if "rapport retention_risk" in dict(r["probs"]):
            rp = dict(r["probs"])["rapport retention_risk"]
            btyd = [p for n, p in r["probs"] if "NBD" in n]
            ok = (brier(rp, r["leaver"]) <= min([r["base_brier"]] + [brier(p, r["leaver"]) for p in btyd])
                  and auc(rp, r["leaver"]) >= max(auc(p, r["leaver"]) for p in btyd) - 0.005)
            line += f" | {'yes' if ok else 'NO'}"
        print(line)


def evaluate(args, df, pb, cut, horizon_days, verbose):
    """Everything for one cut and horizon: rapport and the baselines on the customers seen by
    `cut`, labelled by a purchase in (cut, cut + horizon_days]."""
    from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
    from lifetimes.utils import calibration_and_holdout_data

    CAL_END = cut
    HOLDOUT_DAYS = horizon_days
    OBS_END = str((pd.Timestamp(cut) + pd.Timedelta(days=horizon_days)).date())
    if pd.Timestamp(OBS_END) > df.date.max():
        sys.exit(f"cut {cut} + {horizon_days} d ends after the data ({df.date.max().date()})")
    AS_OF = dt.datetime.combine(pd.Timestamp(cut).date(), dt.time(23, 59, 59), tzinfo=dt.timezone.utc)
    cal = df[df.date <= CAL_END]
    hold = df[(df.date > CAL_END) & (df.date <= OBS_END)]
    customers = np.sort(cal.customer_id.unique())
    print(f"  calibration rows {len(cal)}, holdout rows {len(hold)}")

    # Labels.
    leaver = ~np.isin(customers, hold.customer_id.unique())
    print(f"  leavers {leaver.sum()}, stayers {(~leaver).sum()} (leaver rate {leaver.mean():.3f})")

    # BTYD.
    summ = calibration_and_holdout_data(df[df.date <= OBS_END], "customer_id", "date", calibration_period_end=CAL_END,
                                        observation_period_end=OBS_END, freq="D")
    summ = summ.reindex(customers)
    assert summ.notna().all().all(), "a customer is missing from the calibration summary"
    assert ((summ.frequency_holdout == 0).values == leaver).all()
    x, t_x, big_t = (summ[c].values.astype(float) for c in ["frequency_cal", "recency_cal", "T_cal"])
    btyd_prob, btyd_rank, params = [], [], {}
    for label, fitter in [("BG/NBD", BetaGeoFitter(penalizer_coef=0.0)),
                          ("MBG/NBD", ModifiedBetaGeoFitter(penalizer_coef=0.0)),
                          ("Pareto/NBD", ParetoNBDFitter(penalizer_coef=0.0))]:
        t0 = time.monotonic()
        fitted = fit_btyd(fitter, x, t_x, big_t, key=(label, cut))
        if fitted is None:
            print(f"  {label}: lifetimes' fit did not end within {BTYD_FIT_TIMEOUT_S} s; left out of this case")
            continue
        fitter.params_ = pd.Series(fitted)
        params[label] = fitted
        print(f"{label} fit in {time.monotonic() - t0:.1f} s: "
              f"params {dict((k, round(v, 4)) for k, v in params[label].items())}")
        eb = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(
            HOLDOUT_DAYS, x, t_x, big_t), dtype=float)
        if label == "Pareto/NBD" and not verbose:
            p0 = np.asarray(fitter.conditional_probability_of_n_purchases_up_to_time(
                0, HOLDOUT_DAYS, x, t_x, big_t), dtype=float)
        elif label == "Pareto/NBD":
            # lifetimes 0.11.3: eq. (16) of Fader & Hardie, "Deriving the Conditional PMF of the
            # Pareto/NBD Model" (2014), P(X(T, T+t) = n | x, t_x, T), here with n = 0.
            p0 = np.asarray(fitter.conditional_probability_of_n_purchases_up_to_time(
                0, HOLDOUT_DAYS, x, t_x, big_t), dtype=float)
            # Check it is a pmf consistent with the model's conditional expectation: on a sample,
            # sum_n P(n) ~ 1 and sum_n n P(n) ~ E[X(T, T+t)].
            s = np.arange(0, len(x), 97)
            pmf = np.array([np.asarray(fitter.conditional_probability_of_n_purchases_up_to_time(
                n, HOLDOUT_DAYS, x[s], t_x[s], big_t[s]), dtype=float) for n in range(60)])
            print(f"  Pareto/NBD pmf check on {len(s)} customers: max |sum P(n) - 1| "
                  f"{np.max(np.abs(pmf.sum(0) - 1)):.1e}, max |sum n P(n) - E| "
                  f"{np.max(np.abs((np.arange(60)[:, None] * pmf).sum(0) - eb[s])):.1e} (n < 60)")
        else:
            pa = np.asarray(fitter.conditional_probability_alive(x, t_x, big_t), dtype=float)
            pr = params[label]
            p0 = p_none_gamma(pa, pr["r"], pr["alpha"], x, big_t, HOLDOUT_DAYS)
        if not (np.isfinite(p0).all() and np.isfinite(eb).all()):
            # lifetimes' optimiser can end on a degenerate optimum on short histories (BG/NBD at the
            # two-month cut with a 487-day horizon): reported and left out rather than guessed.
            print(f"  {label}: non-finite predictions ({np.mean(~np.isfinite(p0)):.1%} of P(none)); "
                  f"left out of this case")
            continue
        btyd_prob.append((f"{label} P(no purchase in {HOLDOUT_DAYS} d)", p0))
        btyd_rank.append((f"{label} -E[holdout purchases]", -eb))

    # Recency and the logistic model (features from calibration rows, not purchase days).
    g = cal.groupby("customer_id")
    last = g.date.max().reindex(customers)
    first = g.date.min().reindex(customers)
    end = pd.Timestamp(CAL_END)
    days_silent = (end - last).dt.days.values.astype(float)
    rows_cal = g.size().reindex(customers).values.astype(float)
    dollars_cal = g.dollars.sum().reindex(customers).values.astype(float)
    age = (end - first).dt.days.values.astype(float)
    feats = np.column_stack([np.log1p(days_silent), np.log(rows_cal), np.log1p(dollars_cal), np.log1p(age)])
    t0 = time.monotonic()
    p_logit, coef = logistic_cv(feats, leaver)
    print(f"logistic (5-fold CV) in {time.monotonic() - t0:.1f} s; mean standardised coefficients: "
          f"intercept {coef[0]:+.3f}, log(1+recency d) {coef[1]:+.3f}, log rows {coef[2]:+.3f}, "
          f"log(1+$) {coef[3]:+.3f}, log(1+age d) {coef[4]:+.3f}")

    probs = []  # (name, probability of leaving)
    ranks = [("recency: days since last purchase", days_silent)]
    if not args.no_rapport:
        import grpc

        proc, port, mport, stop, log_name = start_server(args.rapport, args.models_dir, horizon_days)
        channel = grpc.insecure_channel(f"127.0.0.1:{port}")
        grpc.channel_ready_future(channel).result(timeout=10)
        # The protocol: every calibration purchase row is one event.
        risk, reasons, totals, ingest_s, query_s, fit_wait_s = rapport_scores(
            pb, channel, mport, TENANT, cal, customers, AS_OF)
        channel.close()
        stop()
        os.unlink(log_name)  # kept (and named) only when the server fails to start
        probs.append(("rapport retention_risk", risk))
    probs += btyd_prob + [("logistic (5-fold CV)", p_logit)]
    scores = probs + btyd_rank + ranks

    print(f"\nleavers {leaver.sum()}  stayers {(~leaver).sum()}  customers {len(customers)}  "
          f"(Brier of the constant {leaver.mean():.3f}: {brier(np.full(len(leaver), leaver.mean()), leaver):.4f})")
    print(f"{'method':40s} {'AUC':>7s} {'Brier':>7s} {'top-10% lift':>13s} {'mean p':>7s} {'distinct':>9s}")
    for name, s in scores:
        is_p = any(name == n for n, _ in probs)
        b = f"{brier(s, leaver):7.4f}" if is_p else f"{'-':>7s}"
        m = f"{np.mean(s):7.4f}" if is_p else f"{'-':>7s}"
        print(f"{name:40s} {auc(s, leaver):7.4f} {b} {top_decile_lift(s, leaver):13.3f} {m} "
              f"{len(np.unique(np.round(s, 12))):9d}")
    print(f"(top-decile lift can be at most {1 / leaver.mean():.3f} here: 1 / leaver rate)")

    result = {"cut": cut, "horizon": horizon_days, "customers": len(customers), "rate": leaver.mean(),
              "base_brier": brier(np.full(len(leaver), leaver.mean()), leaver), "leaver": leaver,
              "probs": probs}
    if not args.no_rapport:
        print(f"rapport: mean risk {risk.mean():.3f}, risk >= 0.6 (RESCUE) {(risk >= 0.6).mean():.1%}; "
              f"decile predicted / observed: " + ", ".join(
                  f"{mp:.2f}/{ob:.2f}" for _, _, _, _, mp, ob in calibration_table(risk, leaver)))
    if not verbose:
        return result
    ref_name, ref = scores[0]
    t0 = time.monotonic()
    print(f"\npaired bootstrap, AUC({ref_name}) - AUC(other), {args.bootstrap} resamples: "
          f"mean [95 % interval]")
    for name, s in scores[1:]:
        m, lo, hi = paired_bootstrap(ref, np.asarray(s, dtype=float), leaver, reps=args.bootstrap)
        print(f"  vs {name:40s} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]")
    boot_s = time.monotonic() - t0

    print("\ncalibration: deciles of the predicted P(leaver); mean predicted vs observed leaver share")
    for name, p in probs:
        print(f"  {name}")
        print(f"    {'decile':>6s} {'n':>5s} {'p range':>15s} {'predicted':>9s} {'observed':>8s} {'diff':>7s}")
        for d, n, lo, hi, mp, ob in calibration_table(p, leaver):
            print(f"    {d:6d} {n:5d} {lo:7.3f}-{hi:7.3f} {mp:9.3f} {ob:8.3f} {ob - mp:+7.3f}")

    if not args.no_rapport:
        print("\nrapport retention_risk distribution:")
        qs = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 0.99, 1]
        print("  quantiles " + "  ".join(f"{q:g}:{np.quantile(risk, q):.4f}" for q in qs))
        top = pd.Series(np.round(risk, 6)).value_counts()
        print(f"  most common value {top.index[0]:.6f} held by {top.iloc[0]} customers "
              f"({top.iloc[0] / len(risk):.1%}); risk >= 0.6 (RESCUE): {(risk >= 0.6).mean():.1%}")
        print("  mean log-odds contribution by reason (leavers / stayers):")
        for factor, contrib in sorted(reasons.items()):
            tag = "" if factor in RISK_FACTORS else "   (not a risk factor)"
            print(f"    {factor:22s} {contrib[leaver].mean():+.4f} / {contrib[~leaver].mean():+.4f}"
                  f"   (non-zero for {(contrib != 0).mean():.1%}){tag}")
        one = rows_cal == 1
        bg_p0 = dict(btyd_prob).get("BG/NBD P(no purchase in {} d)".format(HOLDOUT_DAYS), np.full(len(risk), np.nan))
        print(f"  customers with one calibration purchase row: {one.sum()} ({one.mean():.1%}), leaver "
              f"rate {leaver[one].mean():.3f}; mean risk {risk[one].mean():.3f}; AUC within them: rapport "
              f"{auc(risk[one], leaver[one]):.4f}, recency {auc(days_silent[one], leaver[one]):.4f}")
        many = ~one
        print(f"  customers with >= 2 rows: {many.sum()}, leaver rate {leaver[many].mean():.3f}; mean risk "
              f"{risk[many].mean():.3f}; AUC within them: rapport {auc(risk[many], leaver[many]):.4f}, "
              f"BG/NBD P(none) {auc(bg_p0[many], leaver[many]):.4f}, "
              f"Pareto/NBD -E {auc(btyd_rank[-1][1][many], leaver[many]):.4f}")
        print(f"\ntimes: rapport ingest {ingest_s:.1f} s, fit wait {fit_wait_s:.1f} s, GetCustomer "
              f"{query_s:.1f} s, bootstrap {boot_s:.1f} s")
    return result




if __name__ == "__main__":
    main()
