//! PLACEHOLDER until the real module lands.

/// Which model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum BtydModel {
    /// BG/NBD.
    BgNbd,
    /// MBG/NBD.
    MbgNbd,
}

/// Parameters.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct BtydParams {
    /// Model.
    pub model: BtydModel,
    /// r.
    pub r: f64,
    /// alpha.
    pub alpha_days: f64,
    /// a.
    pub a: f64,
    /// b.
    pub b: f64,
}

/// One customer's summary.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct ActivitySample {
    /// x.
    pub repeat_days: u32,
    /// t_x.
    pub last_day: f64,
    /// T.
    pub age_days: f64,
}

/// Fit.
pub fn fit(
    _model: BtydModel,
    _samples: &[(ActivitySample, u32)],
    _warm_start: Option<BtydParams>,
) -> Option<BtydParams> {
    None
}

impl BtydParams {
    /// P(alive).
    pub fn p_alive(&self, s: &ActivitySample) -> f64 {
        let x = f64::from(s.repeat_days);
        let ratio =
            ((self.alpha_days + s.age_days) / (self.alpha_days + s.last_day)).powf(self.r + x);
        match self.model {
            BtydModel::BgNbd => {
                if s.repeat_days == 0 {
                    1.0
                } else {
                    1.0 / (1.0 + self.a / (self.b + x - 1.0) * ratio)
                }
            }
            BtydModel::MbgNbd => 1.0 / (1.0 + self.a / (self.b + x) * ratio),
        }
    }
    /// P(no activity in h).
    pub fn p_no_activity(&self, horizon_days: f64, s: &ActivitySample) -> f64 {
        let alive = self.p_alive(s);
        let x = f64::from(s.repeat_days);
        let stay = ((self.alpha_days + s.age_days) / (self.alpha_days + s.age_days + horizon_days))
            .powf(self.r + x);
        1.0 - alive + alive * stay
    }
}
