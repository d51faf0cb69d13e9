import sys, pickle, os, time
sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from replica import *

def score_current(st, bt, H, trust_override=None, cal_override=None):
    th = st['th']; x, tx, T, s = st['xa'], st['txa'], st['Ta'], st['s']
    pH = bounded(p_none(th, H, x, tx, T))
    if bt is None:
        return pH, 0.0
    pace = min(1.0, bt['hp'] / typical_gap(th))
    trust = min(1.0, 2 * bt['hp'] / H) * pace if trust_override is None else trust_override
    ws = trust * bt['ws']
    sigpart = ws * st['sig']
    plain = logit(pH) + sigpart
    if trust <= 0:
        return expit(plain), trust
    cal = bt if cal_override is None else cal_override
    pc = calibrated_p(th, cal, H, x, tx, T, s, sigpart)
    if trust >= 1:
        return pc, trust
    return bounded((1 - trust) * expit(plain) + trust * pc), trust

if __name__ == '__main__':
    cache = __import__('os').environ.get('NESTED_CACHE', '/tmp/nested-cache.pkl')
    C = pickle.load(open(cache, 'rb')) if os.path.exists(cache) else {}
    for cut in CUTS:
        t0 = time.time()
        st = state(cut)
        for H in (matched(cut), 90):
            bt = backtest(st['ev'], st['fit_at'], st['first'], H)
            y = labels(st, H)
            p, trust = score_current(st, bt, H)
            print(f"{cut} H={H} n={len(y)} rate={y.mean():.3f} base={brier(y.mean()*np.ones(len(y)), y):.4f} "
                  f"h'={bt['hp']} trust={trust:.3f} AUC={auc(p, y):.4f} Brier={brier(p, y):.4f} "
                  f"params={np.round(np.exp(st['th']),3)} w={np.round(bt['w'],3)} ws={bt['ws']:.3f} "
                  f"plainBrier={brier(bounded(p_none(st['th'],H,st['xa'],st['txa'],st['Ta'])),y):.4f} [{time.time()-t0:.0f}s]", flush=True)
