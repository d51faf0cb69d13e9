"""Python replica of rapport's retention model (crates/core/src/scoring/retention.rs, btyd.rs):
MBG/NBD fitted by MAP, backtest calibration (features, ridge-Newton logistic, extension), trust
mixing, engagement-drop signal. Times in integer milliseconds from 1997-01-01T00:00Z."""
import sys, os
sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
import numpy as np, pandas as pd
from scipy.special import gammaln, expit
from scipy.optimize import minimize
from scipy.stats import gamma as gamma_dist, rankdata

DAY = 86_400_000
HALF = DAY // 2
PF = 1e-9

def bounded(p):
    p = np.asarray(p, float)
    return np.where(np.isfinite(p), np.clip(p, PF, 1 - PF), 0.5)

def logit(p):
    return np.log(p) - np.log1p(-p)

# ------------------------------------------------------------------------------------------ data
_cache = {}
def load():
    if 'ev' in _cache:
        return _cache['ev']
    from cdnow_retention import load_cdnow
    _, df = load_cdnow()
    df = df.sort_values(['customer_id', 'date', 'line'])
    day = (df.date - pd.Timestamp('1997-01-01')).dt.days.values.astype(np.int64)
    ev = dict(cid=df.customer_id.values, t=day * DAY + HALF, day=day, val=df.dollars.values)
    _cache['ev'] = ev
    return ev

def summaries(ev, at, custs=None):
    """Per-customer Summary as of `at` (events with t <= at), for customers in `custs` (sorted
    ids) or all with an event by then. Returns dict of arrays aligned with ids; ok=False where none."""
    m = ev['t'] <= at
    cid, t, day, val = ev['cid'][m], ev['t'][m], ev['day'][m], ev['val'][m]
    d = pd.DataFrame(dict(cid=cid, t=t, day=day, val=val))
    lastT = d.groupby('cid').t.max()
    d['rec'] = np.exp2(-(d.cid.map(lastT).values - d.t.values) / (14 * DAY))
    d['base'] = np.exp2(-(d.cid.map(lastT).values - d.t.values) / (90 * DAY))
    g = d.groupby('cid')
    s = pd.DataFrame(dict(first=g.t.min(), last=lastT, active_days=g.day.nunique(),
                          ltv=g.val.sum(), rec=g.rec.sum(), base=g.base.sum()))
    if custs is not None:
        s = s.reindex(custs)
    s['ok'] = s['first'].notna()
    return s

def sample(s, at):
    """activity_sample: x, t_x, T (days)."""
    x = (s.active_days.fillna(1).values - 1).astype(float)
    tx = (s['last'].values - s['first'].values) / DAY
    T = np.maximum((at - s['first'].values) / DAY, tx)
    return x, tx, T

def eng_drop(s, at):
    """engagement_drop signal at `at` (>= last event)."""
    el = (at - s['last'].values).clip(0)
    rec = s.rec.values * np.exp2(-el / (14 * DAY))
    base = s.base.values * np.exp2(-el / (90 * DAY))
    ratio = (rec / 14.0) / (base / 90.0)
    return np.clip(1 - ratio, 0, 1)

# -------------------------------------------------------------------------------------- MBG/NBD
CENTRE = np.log([1.0, 30.0, 1.0, 1.0]); SD = 0.5

def _terms(th, x, tx, T):
    r, al, a, b = np.exp(th)
    k = r + x
    txe = np.where(x == 0, 0.0, tx)
    ln_alive = (gammaln(r + x) - gammaln(r) - r * np.log1p(T / al) - x * np.log(al + T)
                + gammaln(b + x + 1) - gammaln(b) + gammaln(a + b) - gammaln(a + b + x + 1))
    lo = np.log(a) - np.log(b + x) + k * np.log1p((T - txe) / (al + txe))
    return ln_alive, lo

def fit_mbg(x, tx, T):
    """FitSamples::fit: whole days (floor), prior, MAP. x,tx,T exact; floored here."""
    txf, Tf = np.floor(tx), np.floor(T)
    txf = np.where(x == 0, 0.0, txf)
    key = pd.DataFrame(dict(x=x, tx=txf, T=Tf)).value_counts().reset_index()
    xs, txs, Ts, w = key.x.values, key.tx.values, key['T'].values, key.iloc[:, 3].values.astype(float)
    def f(th):
        if np.any(np.abs(th) > 25):
            return np.inf
        la, lo = _terms(th, xs, txs, Ts)
        ll = np.sum(w * (la + np.logaddexp(0, lo)))
        return -ll + np.sum((th - CENTRE) ** 2) / (2 * SD * SD)
    best = None
    for s0 in [CENTRE]:
        res = minimize(f, s0, method='Nelder-Mead', options=dict(maxiter=40000, xatol=1e-9, fatol=1e-10))
        res = minimize(f, res.x, method='Nelder-Mead', options=dict(maxiter=40000, xatol=1e-10, fatol=1e-11))
        if best is None or res.fun < best.fun:
            best = res
    return best.x

def p_none(th, h, x, tx, T):
    r, al, a, b = np.exp(th)
    _, lo = _terms(th, x, tx, T)
    pa = expit(-lo)
    k = r + x
    ln_zero = -k * np.log1p(h / (al + T))
    return np.clip(1 - pa * (-np.expm1(ln_zero)), 0, 1)

def typical_gap(th):
    r, al, a, b = np.exp(th)
    return al / gamma_dist.median(r)

# ------------------------------------------------------------------------------------- logistic
def fit_logistic(X, y, prior, ridge=1.0):
    w = np.array(prior, float)
    y = y.astype(float)
    for _ in range(50):
        z = X @ w
        p = expit(z)
        c = np.maximum(p * (1 - p), 1e-12)
        g = X.T @ (y - p) - ridge * (w - prior)
        H = (X * c[:, None]).T @ X + ridge * np.eye(len(w))
        step = np.linalg.solve(H, g)
        w = w + step
        if np.max(np.abs(step)) < 1e-9:
            break
    return w

def hessian(X, w, ridge=1.0):
    p = expit(X @ w); c = np.maximum(p * (1 - p), 1e-12)
    return (X * c[:, None]).T @ X + ridge * np.eye(len(w))

def feats(lo, x, tx, T, s):
    spend = np.where(s.active_days.values > 0, np.maximum(s.ltv.values, 0) / s.active_days.values, 0.0)
    return np.column_stack([np.ones_like(lo), lo, np.log1p(x), np.log1p(np.maximum(T - tx, 0)),
                            np.log1p(np.minimum(spend, 1e12))])

IDENT = np.array([0.0, 1.0, 0.0, 0.0, 0.0])

_FITS = {}
# ------------------------------------------------------------------------------------- pipeline
def backtest(ev, fit_at, first_ms, H, minimum=7.0, hprime=None, cols=(0, 1, 2, 3, 4)):
    """Backtest::new + fit. Returns dict or None. hprime overrides h' (days)."""
    hist = (fit_at - first_ms) / DAY
    hp = min(H, hist / 2) if hprime is None else hprime
    if hp < minimum:
        return None
    cut = fit_at - int(hp * DAY)
    mid = fit_at - int(hp * DAY / 2)
    sc = summaries(ev, cut)
    ids = sc.index.values
    sm = summaries(ev, mid, ids)
    sn = summaries(ev, fit_at, ids)
    stayed = sn['last'].values <= cut
    quiet = sm['last'].values <= cut
    x, tx, T = sample(sc, cut)
    sig = eng_drop(sc, np.maximum(cut, sc['last'].values))
    n1 = stayed.sum()
    if n1 < 20 or len(stayed) - n1 < 20:
        return None
    if cut not in _FITS:
        _FITS[cut] = fit_mbg(x, tx, T)
    th = _FITS[cut]
    p = p_none(th, hp, x, tx, T)
    F = feats(logit(bounded(p)), x, tx, T, sc)
    cols = list(cols)
    X = np.column_stack([F[:, cols], sig])
    wr = fit_logistic(X, stayed, np.r_[IDENT[cols], 0.0])
    w = np.r_[IDENT, 0.0]; w[cols] = wr[:-1]; w[5] = wr[-1]
    Hs = hessian(X, wr)
    se = np.full(6, np.nan); se[cols + [5]] = np.sqrt(np.diag(np.linalg.inv(Hs)))
    # extension
    ratio = bounded(p_none(th, hp, x, tx, T) / p_none(th, hp / 2, x, tx, T))
    Fe = feats(logit(ratio), x, tx, T, sc)[quiet]
    ye = stayed[quiet]
    if ye.sum() >= 20 and len(ye) - ye.sum() >= 20:
        we = IDENT.copy(); we[cols] = fit_logistic(Fe[:, cols], ye, IDENT[cols])
        see = np.full(5, np.nan); see[cols] = np.sqrt(np.diag(np.linalg.inv(hessian(Fe[:, cols], we[cols]))))
    else:
        we = IDENT.copy(); see = np.full(5, np.nan)
    return dict(se=se, see=see, hp=hp, cut=cut, th=th, w=w[:5], ws=w[5], we=we, ids=ids, x=x, tx=tx, T=T, s=sc,
                sig=sig, y=stayed, p=p, X=X, Fe=Fe, ye=ye, quiet=quiet)

def calibrated_p(th, cal, H, x, tx, T, s, sigpart, w=None, we=None):
    """calibrated_log_odds -> probability (full correction)."""
    w = cal['w'] if w is None else w
    we = cal['we'] if we is None else we
    hp = cal['hp']
    pH = bounded(p_none(th, H, x, tx, T))
    if hp >= H:
        return expit(feats(logit(pH), x, tx, T, s) @ w + sigpart)
    pb = bounded(p_none(th, hp, x, tx, T))
    c = expit(feats(logit(pb), x, tx, T, s) @ w + sigpart)
    ratio = bounded(pH / pb)
    e = expit(feats(logit(ratio), x, tx, T, s) @ we)
    return bounded(c * e)

def auc(score, pos):
    r = rankdata(score); n1 = pos.sum(); n0 = len(pos) - n1
    return (r[pos].sum() - n1 * (n1 + 1) / 2) / (n1 * n0)

def brier(p, y):
    return float(np.mean((p - y) ** 2))

CUTS = ["1997-01-31", "1997-02-28", "1997-03-31", "1997-06-30", "1997-09-30"]
def cut_day(c):
    return (pd.Timestamp(c) - pd.Timestamp('1997-01-01')).days

def matched(c):
    return (pd.Timestamp('1998-06-30') - pd.Timestamp(c)).days

def state(cut):
    """Everything at the top level for a cut (independent of H except the backtest)."""
    ev = load()
    C = cut_day(cut)
    ends = C * DAY + DAY  # events with day <= C
    m = ev['t'] < ends
    fit_at = int(ev['t'][m].max())
    first_ms = int(ev['t'][m].min())
    as_of = C * DAY + DAY - 1000
    s = summaries(ev, fit_at)
    ids = s.index.values
    x, tx, T = sample(s, fit_at)
    th = fit_mbg(x, tx, T)
    xa, txa, Ta = sample(s, as_of)
    sig = eng_drop(s, as_of)
    return dict(ev=ev, C=C, fit_at=fit_at, first=first_ms, as_of=as_of, s=s, ids=ids, th=th,
                xa=xa, txa=txa, Ta=Ta, sig=sig)

def labels(st, H):
    ev = st['ev']
    lo, hi = st['C'], st['C'] + H
    m = (ev['day'] > lo) & (ev['day'] <= hi)
    return ~np.isin(st['ids'], np.unique(ev['cid'][m]))
