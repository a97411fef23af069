//! V-trace targets and policy-gradient advantages (Espeholt et al. 2018) with episode ends inside a chunk.

/// One chunk's data, time-major `[T, E]` (index `t * num_envs + e`).
#[derive(Debug, Clone, Copy)]
pub struct VtraceInput<'a> {
    /// Rewards `r_t`.
    pub rewards: &'a [f32],
    /// Values `V(x_t)` under the learning policy.
    pub values: &'a [f32],
    /// `V(x_T)` per env: the value of the observation after the last step (used when the
    /// last step did not end the episode).
    pub bootstrap: &'a [f32],
    /// `V(final observation)` where the episode was truncated at `t` (ignored elsewhere).
    pub final_values: &'a [f32],
    /// The episode terminated at `t` (no bootstrap).
    pub terminated: &'a [bool],
    /// The episode was truncated at `t` (bootstrap from `final_values[t]`, no trace across).
    pub truncated: &'a [bool],
    /// `log π(a_t|x_t) − log μ(a_t|x_t)`: learning minus behaviour log-probabilities.
    pub log_rhos: &'a [f32],
    /// Envs per step.
    pub num_envs: usize,
}

/// Discount and clipping thresholds.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct VtraceParams {
    /// Discount γ.
    pub gamma: f32,
    /// Trace decay λ multiplying the traces `c_t` (1 in the paper).
    pub lambda: f32,
    /// ρ̄: clip of the importance weight in the temporal differences.
    pub rho_bar: f32,
    /// c̄: clip of the trace-cutting weights.
    pub c_bar: f32,
    /// Clip of the importance weight in the policy-gradient advantage (ρ̄ in the paper).
    pub pg_rho_bar: f32,
}

impl Default for VtraceParams {
    fn default() -> Self {
        VtraceParams {
            gamma: 0.99,
            lambda: 1.0,
            rho_bar: 1.0,
            c_bar: 1.0,
            pg_rho_bar: 1.0,
        }
    }
}

/// V-trace results, time-major `[T, E]`.
#[derive(Debug, Clone, PartialEq)]
pub struct VtraceOutput {
    /// Value targets `v_t`.
    pub vs: Vec<f32>,
    /// Policy-gradient advantages `min(ρ̄_pg, ρ_t) (r_t + γ v_{t+1} − V(x_t))`, without the
    /// clipped importance weight folded in for PPO-style use: see [`VtraceOutput::pg_rhos`].
    pub advantages: Vec<f32>,
    /// The clipped importance weights `min(ρ̄_pg, ρ_t)` of the policy-gradient term.
    pub pg_rhos: Vec<f32>,
}

/// Compute V-trace targets and advantages.
///
/// For each env, backwards in time, with `done_t = terminated_t || truncated_t` and the
/// next-state value `n_t` = 0 if terminated, `final_values[t]` if truncated, `bootstrap` after
/// the last step, else `V(x_{t+1})`:
/// `δ_t = min(ρ̄, ρ_t)(r_t + γ n_t − V(x_t))`,
/// `v_t − V(x_t) = δ_t + γ λ min(c̄, ρ_t) (v_{t+1} − V(x_{t+1}))` (the second term is dropped
/// when `done_t`: no trace crosses an episode end), and the advantage uses `v_{t+1}` in place of
/// `V(x_{t+1})`.
pub fn vtrace(input: VtraceInput<'_>, params: VtraceParams) -> VtraceOutput {
    let n = input.num_envs;
    let len = input.rewards.len();
    debug_assert!(n > 0 && len % n == 0);
    for (name, l) in [
        ("values", input.values.len()),
        ("final_values", input.final_values.len()),
        ("terminated", input.terminated.len()),
        ("truncated", input.truncated.len()),
        ("log_rhos", input.log_rhos.len()),
    ] {
        assert_eq!(l, len, "vtrace: `{name}` has {l} entries, rewards {len}");
    }
    assert_eq!(
        input.bootstrap.len(),
        n,
        "vtrace: one bootstrap value per env"
    );
    let steps = len / n;
    let mut vs = vec![0.0f32; len];
    let mut advantages = vec![0.0f32; len];
    let mut pg_rhos = vec![0.0f32; len];
    let g = params.gamma;
    for e in 0..n {
        // v_{t+1} − V(x_{t+1}) of the step after t (0 after the chunk: v_T = V(x_T)).
        let mut next_correction = 0.0f32;
        for t in (0..steps).rev() {
            let i = t * n + e;
            let rho = input.log_rhos[i].exp();
            let next_value = if input.terminated[i] {
                0.0
            } else if input.truncated[i] {
                input.final_values[i]
            } else if t + 1 == steps {
                input.bootstrap[e]
            } else {
                input.values[i + n]
            };
            let done = input.terminated[i] || input.truncated[i];
            let delta =
                rho.min(params.rho_bar) * (input.rewards[i] + g * next_value - input.values[i]);
            let trace = if done {
                0.0
            } else {
                g * params.lambda * rho.min(params.c_bar) * next_correction
            };
            let correction = delta + trace;
            vs[i] = input.values[i] + correction;
            let next_vs = if done || t + 1 == steps {
                next_value
            } else {
                vs[i + n]
            };
            pg_rhos[i] = rho.min(params.pg_rho_bar);
            advantages[i] = input.rewards[i] + g * next_vs - input.values[i];
            next_correction = correction;
        }
    }
    VtraceOutput {
        vs,
        advantages,
        pg_rhos,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn on_policy_without_clipping_is_the_n_step_return() {
        // ρ = 1 everywhere, λ = 1: v_t is the discounted return bootstrapped at the end.
        let r = [1.0, 2.0, 3.0];
        let v = [0.5, 0.25, 0.125];
        let out = vtrace(
            VtraceInput {
                rewards: &r,
                values: &v,
                bootstrap: &[10.0],
                final_values: &[0.0; 3],
                terminated: &[false; 3],
                truncated: &[false; 3],
                log_rhos: &[0.0; 3],
                num_envs: 1,
            },
            VtraceParams {
                gamma: 0.5,
                ..Default::default()
            },
        );
        let v2 = 3.0 + 0.5 * 10.0;
        let v1 = 2.0 + 0.5 * v2;
        let v0 = 1.0 + 0.5 * v1;
        for (got, want) in out.vs.iter().zip([v0, v1, v2]) {
            assert!((got - want).abs() < 1e-5, "{:?}", out.vs);
        }
        assert!((out.advantages[0] - (1.0 + 0.5 * v1 - 0.5)).abs() < 1e-5);
    }

    #[test]
    fn termination_cuts_the_trace_and_the_bootstrap() {
        let out = vtrace(
            VtraceInput {
                rewards: &[1.0, 1.0],
                values: &[3.0, 4.0],
                bootstrap: &[100.0],
                final_values: &[0.0; 2],
                terminated: &[true, false],
                truncated: &[false; 2],
                log_rhos: &[0.0; 2],
                num_envs: 1,
            },
            VtraceParams::default(),
        );
        assert_eq!(out.vs[0], 1.0);
        assert!((out.vs[1] - (1.0 + 0.99 * 100.0)).abs() < 1e-4);
    }
}
