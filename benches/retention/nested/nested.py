import sys; sys.path.insert(0, __import__('os').path.dirname(__import__('os').path.abspath(__file__)))
from run_current import *
import json

def opt_weight(pp, pc, y):
    d = pp - pc
    den = np.sum(d * d)
    if den <= 0:
        return 0.0
    return float(np.clip(np.sum((pp - y) * d) / den, 0, 1))

def nested_eval(st, bt, cols=(0, 1, 2, 3, 4), cal_fn=None):
    """Inner backtest one level back: rapport's Backtest as if fitted at bt's cut c1 with horizon h'.
    Returns p_plain, p_corr (full), y at c1 over h', plus inner info."""
    c1, hp = bt['cut'], bt['hp']
    inner = backtest(st['ev'], c1, st['first'], hp, cols=cols)
    if inner is None:
        return None
    M1 = bt['th']; x, tx, T, s = bt['x'], bt['tx'], bt['T'], bt['s']
    pp = bounded(p_none(M1, hp, x, tx, T))
    cal = inner if cal_fn is None else cal_fn(inner)
    pc = calibrated_p(M1, cal, hp, x, tx, T, s, cal['ws'] * bt['sig'])
    tlen = min(1.0, 2 * inner['hp'] / hp) * min(1.0, inner['hp'] / typical_gap(M1))
    return dict(pp=pp, pc=pc, y=bt['y'], inner=inner, tlen=tlen)

def shrink(cal):
    """Positive-part James-Stein per coefficient towards the identity, by its standard error."""
    c = dict(cal)
    for key, sek, n in (('w', 'se', 5), ('we', 'see', 5)):
        d = cal[key] - IDENT
        se = cal[sek][:n]
        f = np.where(np.isfinite(se) & (np.abs(d) > 0), np.clip(1 - se**2 / np.maximum(d**2, 1e-300), 0, 1), 0.0)
        c[key] = IDENT + f * d
    return c

rows = []
for cut in CUTS:
    st = state(cut)
    for H in (matched(cut), 90):
        bt = backtest(st['ev'], st['fit_at'], st['first'], H)
        btP = backtest(st['ev'], st['fit_at'], st['first'], H, cols=(0, 1))
        y = labels(st, H)
        tcur = min(1.0, 2 * bt['hp'] / H) * min(1.0, bt['hp'] / typical_gap(st['th']))
        ext = min(1.0, 2 * bt['hp'] / H)
        R = {}
        def rec(name, p, t):
            R[name] = (auc(p, y), brier(p, y), t)
        rec('plain', score_current(st, bt, H, trust_override=0.0)[0], 0.0)
        rec('current', *score_current(st, bt, H))
        rec('full', score_current(st, bt, H, trust_override=1.0)[0], 1.0)
        ne = nested_eval(st, bt)
        nb = {k: brier(ne[k], ne['y']) for k in ('pp', 'pc')}
        wst = opt_weight(ne['pp'], ne['pc'], ne['y'])
        mix_len = bounded((1 - ne['tlen']) * ne['pp'] + ne['tlen'] * ne['pc'])
        nb['len'] = brier(mix_len, ne['y'])
        # A: trust = nested optimum weight
        rec('A nested-w*', score_current(st, bt, H, trust_override=wst)[0], wst)
        # B: nested optimum x extension share
        rec('B w*.ext', score_current(st, bt, H, trust_override=wst * ext)[0], wst * ext)
        # C: choose among {plain, current, full} by nested Brier of the analogues
        choice = min((nb['pp'], 0.0), (nb['len'], tcur), (nb['pc'], 1.0))[1]
        rec('C choose', score_current(st, bt, H, trust_override=choice)[0], choice)
        # E: gate: current trust if the nested correction gained at all, else 0
        tg = tcur if nb['pc'] < nb['pp'] else 0.0
        rec('E gate', score_current(st, bt, H, trust_override=tg)[0], tg)
        # H: length-based trust capped by the nested optimum
        th_ = min(tcur, wst)
        rec('H min(cur,w*)', score_current(st, bt, H, trust_override=th_)[0], th_)
        # F: Platt-only correction (intercept + slope), current trust / nested w*
        rec('F platt cur', score_current(st, btP, H)[0], tcur)
        neP = nested_eval(st, btP, cols=(0, 1))
        wP = opt_weight(neP['pp'], neP['pc'], neP['y'])
        rec('F2 platt w*', score_current(st, btP, H, trust_override=wP)[0], wP)
        rec('F3 platt full', score_current(st, btP, H, trust_override=1.0)[0], 1.0)
        # G: SE shrinkage, current trust; G2: shrinkage with nested w*
        btS = shrink(bt)
        rec('G shrink cur', score_current(st, bt, H, cal_override=btS)[0], tcur)
        neS = nested_eval(st, bt, cal_fn=shrink)
        wS = opt_weight(neS['pp'], neS['pc'], neS['y'])
        rec('G2 shrink w*', score_current(st, bt, H, trust_override=wS, cal_override=btS)[0], wS)
        info = dict(cut=cut, H=H, hp=bt['hp'], hpp=ne['inner']['hp'], tcur=tcur, wstar=wst, wP=wP, wS=wS,
                    nested_brier=nb, nested_tlen=ne['tlen'],
                    nestedP=dict(pp=brier(neP['pp'], neP['y']), pc=brier(neP['pc'], neP['y'])), R=R)
        rows.append(info)
        print(json.dumps(info, default=float), flush=True)
json.dump(rows, open(__import__('os').environ.get('NESTED_OUT', '/tmp/nested-results.json'), 'w'), default=float)
