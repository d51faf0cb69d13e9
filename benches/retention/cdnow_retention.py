"""Does rapport's retention_risk rank CDNOW customers who leave above those who stay, as well as a
buy-till-you-die model (BG/NBD) does?

Data: the real CDNOW purchase log shipped by lifetimes 0.11.3 (23,570 customers, first purchase in
Q1 1997, purchases through 1998-06-30). Standard split: calibration 1997-01-01..1997-09-30 (39 weeks),
holdout 1997-10-01..1998-06-30 (39 weeks, 273 days). A customer is a "leaver" when they make no
purchase in the holdout, a "stayer" otherwise.

Scores (higher = more likely to leave), all computed from calibration data only:
  rapport retention_risk   every calibration purchase row streamed to a rapport server started here
                           (loopback, in memory), then GetCustomer(as_of=1997-09-30T23:59:59Z)
  BG/NBD 1 - P(alive)      BetaGeoFitter(penalizer_coef=0), at the calibration end
  BG/NBD -E[holdout buys]  minus the expected number of purchases in the 273 holdout days
  recency (days silent)    days since the last purchase at the calibration end
  -frequency               minus the number of purchase rows in calibration

Reported: ROC AUC for "leaver" (rank based, ties count half) and top-decile lift (leaver rate among
the 10 % highest scores / overall leaver rate; ties at the cut are shared pro rata).

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


def start_server(binary, models_dir, ready_timeout=60.0):
    port, mport = free_port(), free_port()
    log = tempfile.NamedTemporaryFile(prefix="rapport-retention-", suffix=".log", delete=False)
    proc = subprocess.Popen(
        [binary, "serve", "--grpc-addr", f"127.0.0.1:{port}", "--metrics-addr", f"127.0.0.1:{mport}",
         "--models-dir", models_dir],
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
            return proc, port, stop, log.name
        if time.monotonic() > deadline:
            stop()
            sys.exit(f"rapport not SERVING after {ready_timeout:.0f} s; log: {log.name}")
        time.sleep(0.25)


RISK_FACTORS = ["silence", "engagement_drop", "negative_sentiment", "worsening_sentiment",
                "open_complaints", "positive_contact", "recent_purchases"]
RISK_BIAS = -2.0  # docs/scoring.md default; used only to check the reasons add up to the risk


def rapport_scores(pb, channel, tenant, cal, customers):
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

    as_of = Timestamp()
    as_of.FromDatetime(AS_OF)
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
    logit = RISK_BIAS + sum(reasons.get(f, 0.0) for f in RISK_FACTORS)
    worst = np.max(np.abs(1 / (1 + np.exp(-logit)) - risk))
    print(f"  check: sigmoid(bias + risk-factor reasons) matches retention_risk to {worst:.1e}")
    return risk, reasons, totals, ingest_s, query_s


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


def main():
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rapport", required=True, help="path to the rapport binary")
    parser.add_argument("--models-dir", default=os.path.join(REPO, "models"))
    parser.add_argument("--stubs", default=None, help="directory for generated stubs (default: a temp dir)")
    args = parser.parse_args()
    wall0 = time.monotonic()

    from lifetimes import BetaGeoFitter, ModifiedBetaGeoFitter, ParetoNBDFitter
    from lifetimes.utils import calibration_and_holdout_data

    path, df = load_cdnow()
    print(f"CDNOW: {path}\n  {len(df)} purchase rows, {df.customer_id.nunique()} customers, "
          f"{df.date.min().date()} .. {df.date.max().date()}")
    cal = df[df.date <= CAL_END]
    hold = df[(df.date > CAL_END) & (df.date <= OBS_END)]
    customers = np.sort(df.customer_id.unique())
    print(f"  calibration rows {len(cal)}, holdout rows {len(hold)}")

    # Labels.
    leaver = ~np.isin(customers, hold.customer_id.unique())
    print(f"  leavers {leaver.sum()}, stayers {(~leaver).sum()} (leaver rate {leaver.mean():.3f})")

    # BTYD.
    summ = calibration_and_holdout_data(df, "customer_id", "date", calibration_period_end=CAL_END,
                                        observation_period_end=OBS_END, freq="D")
    summ = summ.reindex(customers)
    assert summ.notna().all().all(), "a customer is missing from the calibration summary"
    assert ((summ.frequency_holdout == 0).values == leaver).all()
    bgf = BetaGeoFitter(penalizer_coef=0.0)
    bgf.fit(summ["frequency_cal"], summ["recency_cal"], summ["T_cal"])
    print(f"BG/NBD fit: {bgf}  params {dict((k, round(float(v), 4)) for k, v in bgf.params_.items())}")
    p_alive = bgf.conditional_probability_alive(summ["frequency_cal"], summ["recency_cal"], summ["T_cal"])
    exp_buys = bgf.conditional_expected_number_of_purchases_up_to_time(
        HOLDOUT_DAYS, summ["frequency_cal"], summ["recency_cal"], summ["T_cal"])

    # Reference BTYD variants (not in the brief's list; shown because BG/NBD's P(alive) is 1 by
    # construction for customers with no repeat purchase, which MBG/NBD and Pareto/NBD do not assume).
    extra = []
    for label, fitter in [("MBG/NBD", ModifiedBetaGeoFitter(penalizer_coef=0.0)),
                          ("Pareto/NBD", ParetoNBDFitter(penalizer_coef=0.0))]:
        t0 = time.monotonic()
        try:
            fitter.fit(summ["frequency_cal"], summ["recency_cal"], summ["T_cal"])
        except Exception as e:  # report, do not fail the measurement
            print(f"{label} fit failed: {e}")
            continue
        print(f"{label} fit in {time.monotonic() - t0:.1f} s: "
              f"params {dict((k, round(float(v), 4)) for k, v in fitter.params_.items())}")
        x, t_x, big_t = (summ[c].values for c in ["frequency_cal", "recency_cal", "T_cal"])
        pa = np.asarray(fitter.conditional_probability_alive(x, t_x, big_t), dtype=float)
        eb = np.asarray(fitter.conditional_expected_number_of_purchases_up_to_time(
            HOLDOUT_DAYS, x, t_x, big_t), dtype=float)
        if not (np.isfinite(pa).all() and np.isfinite(eb).all()):
            print(f"{label}: non-finite predictions for {(~np.isfinite(pa)).sum()} / "
                  f"{(~np.isfinite(eb)).sum()} customers; row left out")
            continue
        extra += [(f"{label} 1 - P(alive)", 1.0 - pa), (f"{label} -E[holdout purchases]", -eb)]

    # Simple baselines.
    last = cal.groupby("customer_id").date.max().reindex(customers)
    days_silent = (pd.Timestamp(CAL_END) - last).dt.days.values
    rows_cal = cal.groupby("customer_id").size().reindex(customers).values

    # rapport: one server (loopback, in memory) for both tenants.
    import grpc

    pb = generate_stubs(args.stubs)
    proc, port, stop, log_name = start_server(args.rapport, args.models_dir)
    channel = grpc.insecure_channel(f"127.0.0.1:{port}")
    grpc.channel_ready_future(channel).result(timeout=10)
    # The protocol: every calibration purchase row is one event.
    risk, reasons, totals, ingest_s, query_s = rapport_scores(pb, channel, TENANT, cal, customers)
    # Variant: one event per customer and purchase day (value summed), i.e. the transactions BTYD sees
    # with freq="D"; same-day rows otherwise shrink rapport's "usual gap".
    per_day = (cal.groupby(["customer_id", "date"], as_index=False)
               .agg(line=("line", "min"), dollars=("dollars", "sum")))
    risk_day, _, _, _, _ = rapport_scores(pb, channel, TENANT + "-days", per_day, customers)
    channel.close()
    stop()
    os.unlink(log_name)  # kept (and named) only when the server fails to start

    scores = [
        ("rapport retention_risk", risk),
        ("BG/NBD 1 - P(alive)", 1.0 - np.asarray(p_alive)),
        ("BG/NBD -E[holdout purchases]", -np.asarray(exp_buys)),
        ("recency: days since last purchase", days_silent),
        ("-frequency: -calibration purchases", -rows_cal),
        ("rapport risk, one event per day (variant)", risk_day),
    ] + extra
    print(f"\nleavers {leaver.sum()}  stayers {(~leaver).sum()}  customers {len(customers)}")
    print(f"{'method':42s} {'AUC':>7s} {'top-10% lift':>13s} {'distinct':>9s}")
    for name, s in scores:
        print(f"{name:42s} {auc(s, leaver):7.4f} {top_decile_lift(s, leaver):13.3f} "
              f"{len(np.unique(np.round(s, 12))):9d}")
    print(f"(top-decile lift can be at most {1 / leaver.mean():.3f} here: 1 / leaver rate)")
    print("\npaired bootstrap, AUC(rapport retention_risk) - AUC(other), 200 resamples: mean [95 % interval]")
    for name, s in scores[1:]:
        m, lo, hi = paired_bootstrap(risk, np.asarray(s, dtype=float), leaver)
        print(f"  vs {name:40s} {m:+.4f} [{lo:+.4f}, {hi:+.4f}]")

    # How rapport's risk is made up.
    print("\nrapport retention_risk distribution:")
    qs = [0, 0.01, 0.1, 0.25, 0.5, 0.75, 0.9, 1]
    print("  quantiles " + "  ".join(f"{q:g}:{np.quantile(risk, q):.4f}" for q in qs))
    top = pd.Series(np.round(risk, 6)).value_counts()
    print(f"  most common value {top.index[0]:.6f} held by {top.iloc[0]} customers "
          f"({top.iloc[0] / len(risk):.1%}); risk >= 0.6 (RESCUE): {(risk >= 0.6).mean():.1%}")
    print("  mean log-odds contribution by risk factor (leavers / stayers):")
    for factor, contrib in sorted((f, c) for f, c in reasons.items() if f in RISK_FACTORS):
        print(f"    {factor:22s} {contrib[leaver].mean():+.4f} / {contrib[~leaver].mean():+.4f}"
              f"   (non-zero for {(contrib != 0).mean():.1%})")
    sil = reasons.get("silence", np.zeros(len(risk)))
    drop = reasons.get("engagement_drop", np.zeros(len(risk)))
    sil_cap, drop_near = sil >= 3.0 - 1e-6, drop >= 1.45  # drop 1.45 = recent rate under 1/30 of long-run
    sat = sil_cap & drop_near
    print(f"  silence at its cap (3.0) for {sil_cap.mean():.1%}; engagement_drop >= 1.45 (cap 1.5) for "
          f"{drop_near.mean():.1%}; both for {sat.mean():.1%}, leaver rate there {leaver[sat].mean():.3f}")
    if sat.sum() and leaver[sat].any() and (~leaver[sat]).any():
        print(f"    their risk spans {risk[sat].min():.4f}..{risk[sat].max():.4f}; AUC within them: rapport "
              f"{auc(risk[sat], leaver[sat]):.4f}, recency {auc(days_silent[sat], leaver[sat]):.4f}, "
              f"-frequency {auc(-rows_cal[sat], leaver[sat]):.4f}, "
              f"BG/NBD -E {auc(-np.asarray(exp_buys)[sat], leaver[sat]):.4f}")
    rest = ~sat
    if leaver[rest].any() and (~leaver[rest]).any():
        print(f"  the other {rest.sum()} (leaver rate {leaver[rest].mean():.3f}), AUC within them: rapport "
              f"{auc(risk[rest], leaver[rest]):.4f}, recency {auc(days_silent[rest], leaver[rest]):.4f}, "
              f"-frequency {auc(-rows_cal[rest], leaver[rest]):.4f}, "
              f"BG/NBD -E {auc(-np.asarray(exp_buys)[rest], leaver[rest]):.4f}")
        quiet = rest & (sil == 0)
        print(f"    of which silence = 0 (silent less than one usual gap): {quiet.sum()}, leaver rate "
              f"{leaver[quiet].mean():.3f}; AUC within them: rapport {auc(risk[quiet], leaver[quiet]):.4f}, "
              f"-frequency {auc(-rows_cal[quiet], leaver[quiet]):.4f}, "
              f"BG/NBD -E {auc(-np.asarray(exp_buys)[quiet], leaver[quiet]):.4f}")
    one = rows_cal == 1
    print(f"  customers with one calibration purchase row: {one.sum()} ({one.mean():.1%}); "
          f"AUC within them: rapport {auc(risk[one], leaver[one]):.4f}, "
          f"recency {auc(days_silent[one], leaver[one]):.4f}")
    many = ~one
    print(f"  customers with >= 2 rows: {many.sum()}; AUC within them: rapport "
          f"{auc(risk[many], leaver[many]):.4f}, BG/NBD 1-P(alive) "
          f"{auc(1 - np.asarray(p_alive)[many], leaver[many]):.4f}, BG/NBD -E "
          f"{auc(-np.asarray(exp_buys)[many], leaver[many]):.4f}")
    print(f"\nwall time {time.monotonic() - wall0:.1f} s (rapport ingest {ingest_s:.1f} s, "
          f"GetCustomer {query_s:.1f} s)")


if __name__ == "__main__":
    main()
