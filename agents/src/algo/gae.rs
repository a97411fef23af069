//! Generalised advantage estimation that bootstraps on truncation and not on termination.

/// One rollout's per-step data, time-major `[T, E]` (index `t * E + e`).
#[derive(Debug, Clone, Copy)]
pub struct GaeInput<'a> {
    /// Rewards `r_t`.
    pub rewards: &'a [f32],
    /// Values `V(s_t)` under the acting policy.
    pub values: &'a [f32],
    /// The episode reached a terminal state at step t (no bootstrap).
    pub terminated: &'a [bool],
    /// The episode was cut at step t (bootstrap from `final_values`).
    pub truncated: &'a [bool],
    /// `V(final observation)` at steps that were truncated (ignored elsewhere).
    pub final_values: &'a [f32],
    /// `V(s_T)` per env: the value after the last step, for rollouts that end mid-episode.
    pub last_values: &'a [f32],
    /// Number of envs `E`.
    pub num_envs: usize,
}

/// Advantages and returns (`advantage + value`), time-major like the input.
///
/// At a step that terminated, `δ = r − V(s)`; at a step that was truncated (and not
/// terminated), `δ = r + γ V(s_final) − V(s)`; both cut the GAE recursion, since the next
/// step belongs to another episode. Elsewhere `δ = r + γ V(s') − V(s)` and
/// `A_t = δ_t + γ λ A_{t+1}`, with `V(s_T)` and `A_T = 0` after the last step.
pub fn gae(input: GaeInput<'_>, gamma: f32, lambda: f32) -> (Vec<f32>, Vec<f32>) {
    let e = input.num_envs;
    let n = input.rewards.len();
    let t_len = n / e;
    let mut adv = vec![0.0f32; n];
    for env in 0..e {
        let mut next_adv = 0.0f32;
        let mut next_value = input.last_values[env];
        for t in (0..t_len).rev() {
            let i = t * e + env;
            let v = input.values[i];
            let r = input.rewards[i];
            let a = if input.terminated[i] {
                r - v
            } else if input.truncated[i] {
                r + gamma * input.final_values[i] - v
            } else {
                r + gamma * next_value - v + gamma * lambda * next_adv
            };
            adv[i] = a;
            next_adv = a;
            next_value = v;
        }
    }
    let returns = adv.iter().zip(input.values).map(|(a, v)| a + v).collect();
    (adv, returns)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: &[f32], b: &[f32]) {
        assert_eq!(a.len(), b.len());
        for (x, y) in a.iter().zip(b) {
            assert!((x - y).abs() < 1e-5, "{a:?} vs {b:?}");
        }
    }

    #[test]
    fn hand_computed_with_termination_and_truncation() {
        // One env, 5 steps: terminated at t=1, truncated at t=3, rollout ends mid-episode.
        let (g, l) = (0.9f32, 0.5f32);
        let rewards = [1.0, 2.0, 0.5, 1.0, 3.0];
        let values = [0.5, 1.0, 0.2, 0.4, 0.3];
        let terminated = [false, true, false, false, false];
        let truncated = [false, false, false, true, false];
        let final_values = [0.0, 0.0, 0.0, 2.0, 0.0];
        let last = [1.5];
        let (adv, ret) = gae(
            GaeInput {
                rewards: &rewards,
                values: &values,
                terminated: &terminated,
                truncated: &truncated,
                final_values: &final_values,
                last_values: &last,
                num_envs: 1,
            },
            g,
            l,
        );
        // t=4: δ = 3 + 0.9*1.5 - 0.3 = 4.05; A = 4.05
        // t=3 (truncated): δ = 1 + 0.9*2.0 - 0.4 = 2.4; A = 2.4
        // t=2: δ = 0.5 + 0.9*0.4 - 0.2 = 0.66; A = 0.66 + 0.45*2.4 = 1.74
        // t=1 (terminated): A = 2 - 1 = 1
        // t=0: δ = 1 + 0.9*1.0 - 0.5 = 1.4; A = 1.4 + 0.45*1 = 1.85
        close(&adv, &[1.85, 1.0, 1.74, 2.4, 4.05]);
        close(&ret, &[2.35, 2.0, 1.94, 2.8, 4.35]);
    }

    #[test]
    fn envs_are_independent_in_time_major_layout() {
        // Two envs interleaved; env 1 terminates at t=0 and must not leak into env 0.
        let rewards = [1.0, 5.0, 1.0, 0.0];
        let values = [0.0; 4];
        let terminated = [false, true, false, false];
        let truncated = [false; 4];
        let (adv, _) = gae(
            GaeInput {
                rewards: &rewards,
                values: &values,
                terminated: &terminated,
                truncated: &truncated,
                final_values: &[0.0; 4],
                last_values: &[0.0, 0.0],
                num_envs: 2,
            },
            1.0,
            1.0,
        );
        close(&adv, &[2.0, 5.0, 1.0, 0.0]);
    }
}
