//! The policy's input rows: the observation, optionally followed by the previous action and reward.

use super::distribution::ActionKind;

/// Builds `[E, width]` policy inputs for E envs. With `prev_action_reward`, each row is the
/// observation, then the previous action (one-hot per categorical group, or the Gaussian action
/// as sent to the env), then the previous reward — zeros on an episode's first step (as
/// RLlib's `lstm_use_prev_action`/`lstm_use_prev_reward` and R2D2 do). A recurrent policy can
/// then tell what it did, which the observation alone may not show (e.g. T-Maze corridors).
#[derive(Debug, Clone)]
pub struct PolicyInput {
    obs_dim: usize,
    extra: usize,
    action: ActionKind,
    prev: Vec<f32>,
}

impl PolicyInput {
    /// Inputs for `num_envs` envs with `obs_dim` observations; `enabled` adds action and reward.
    pub fn new(enabled: bool, obs_dim: usize, action: &ActionKind, num_envs: usize) -> Self {
        let extra = Self::extra_width(enabled, action);
        PolicyInput {
            obs_dim,
            extra,
            action: action.clone(),
            prev: vec![0.0; num_envs * extra],
        }
    }

    /// Columns added after the observation.
    pub fn extra_width(enabled: bool, action: &ActionKind) -> usize {
        if !enabled {
            return 0;
        }
        match action {
            ActionKind::Categorical(groups) => groups.iter().sum::<usize>() + 1,
            ActionKind::Gaussian(d) => d + 1,
        }
    }

    /// Width of one input row.
    pub fn width(&self) -> usize {
        self.obs_dim + self.extra
    }

    /// Input rows for observations `[E, obs_dim]`.
    pub fn rows(&self, obs: &[f32]) -> Vec<f32> {
        if self.extra == 0 {
            return obs.to_vec();
        }
        let n = obs.len() / self.obs_dim;
        let mut out = Vec::with_capacity(n * self.width());
        for e in 0..n {
            out.extend_from_slice(&obs[e * self.obs_dim..(e + 1) * self.obs_dim]);
            out.extend_from_slice(&self.prev[e * self.extra..(e + 1) * self.extra]);
        }
        out
    }

    /// The input row of env `e` for one observation (e.g. a final observation).
    pub fn row(&self, e: usize, obs: &[f32]) -> Vec<f32> {
        let mut out = obs.to_vec();
        out.extend_from_slice(&self.prev[e * self.extra..(e + 1) * self.extra]);
        out
    }

    /// Remember the categorical actions `[E, groups]` just taken and their rewards.
    pub fn record_int(&mut self, actions: &[i64], rewards: &[f32]) {
        let ActionKind::Categorical(groups) = &self.action else {
            return;
        };
        if self.extra == 0 {
            return;
        }
        let k = groups.len();
        for (e, row) in self.prev.chunks_mut(self.extra).enumerate() {
            row.fill(0.0);
            let mut offset = 0;
            for (g, &size) in groups.iter().enumerate() {
                let a = actions[e * k + g].clamp(0, size as i64 - 1) as usize;
                row[offset + a] = 1.0;
                offset += size;
            }
            row[offset] = rewards[e];
        }
    }

    /// Remember the Gaussian actions `[E, d]` as sent to the env and their rewards.
    pub fn record_float(&mut self, actions: &[f32], rewards: &[f32]) {
        let ActionKind::Gaussian(d) = self.action else {
            return;
        };
        if self.extra == 0 {
            return;
        }
        for (e, row) in self.prev.chunks_mut(self.extra).enumerate() {
            row[..d].copy_from_slice(&actions[e * d..(e + 1) * d]);
            row[d] = rewards[e];
        }
    }

    /// Forget the previous action and reward of envs whose episode starts now.
    pub fn reset(&mut self, starts: &[bool]) {
        if self.extra == 0 {
            return;
        }
        for (row, &s) in self.prev.chunks_mut(self.extra).zip(starts) {
            if s {
                row.fill(0.0);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rows_append_one_hot_actions_and_rewards_and_reset_at_episode_starts() {
        let mut input = PolicyInput::new(true, 2, &ActionKind::Categorical(vec![3, 2]), 2);
        assert_eq!(input.width(), 2 + 3 + 2 + 1);
        let obs = [1.0, 2.0, 3.0, 4.0];
        assert_eq!(input.rows(&obs)[2..8], [0.0; 6]);
        input.record_int(&[2, 1, 0, 0], &[0.5, -1.0]);
        let rows = input.rows(&obs);
        assert_eq!(rows[..8], [1.0, 2.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.5]);
        assert_eq!(rows[8..], [3.0, 4.0, 1.0, 0.0, 0.0, 1.0, 0.0, -1.0]);
        input.reset(&[false, true]);
        assert_eq!(input.rows(&obs)[10..], [0.0; 6]);
        assert_eq!(input.row(0, &[9.0, 9.0])[2..], rows[2..8]);
        let off = PolicyInput::new(false, 2, &ActionKind::Categorical(vec![3]), 2);
        assert_eq!(off.rows(&obs), obs);
    }
}
