"""Engram's native envs as Gymnasium envs: `engram.make`, `engram.make_vec`, `gymnasium.make("engram/...")`."""

import gymnasium
import numpy as np
import pytest
from gymnasium.utils.env_checker import check_env
from gymnasium.vector import AutoresetMode, SyncVectorEnv

import engram

# One env of each space shape: Box/Discrete (CartPole), Box/Box (Pendulum), MultiDiscrete
# observations (T-Maze), POPGym's, a sequence task.
CHECKED = [
    ("CartPole-v1", {}),
    ("Pendulum-v1", {}),
    ("TMaze-Passive-v0", {"corridor_length": 5}),
    ("TMaze-Active-v0", {"corridor_length": 5}),
    ("MemoryChain-v0", {}),
    ("popgym-RepeatPreviousEasy-v0", {}),
    ("popgym-CountRecallEasy-v0", {}),
    ("Copy-v0", {}),
]


@pytest.mark.parametrize("env_id,kwargs", CHECKED)
def test_make_passes_gymnasiums_checker(env_id, kwargs):
    env = engram.make(env_id, **kwargs)
    check_env(env, skip_render_check=True)
    env_ansi = engram.make(env_id, render_mode="ansi", **kwargs)
    check_env(env_ansi)
    env_ansi.reset(seed=1)
    assert isinstance(env_ansi.render(), str)


def test_every_engram_env_is_registered_with_gymnasium():
    ids = [env_id for env_id, _ in engram.list_envs()]
    assert "TMaze-Passive-v0" in ids
    for env_id in ids:
        assert f"engram/{env_id}" in gymnasium.registry, env_id
    env = gymnasium.make("engram/TMaze-Passive-v0", corridor_length=7, render_mode="ansi")
    obs, info = env.reset(seed=0)
    assert env.observation_space.contains(obs)
    frame = env.render()
    assert isinstance(frame, str) and frame
    check_env(env.unwrapped)


def test_cartpole_equals_gymnasiums_own_step_for_step():
    ours, theirs = engram.make("CartPole-v1"), gymnasium.make("CartPole-v1")
    rng = np.random.default_rng(0)
    for seed in (0, 1, 42):
        a, _ = ours.reset(seed=seed)
        b, _ = theirs.reset(seed=seed)
        np.testing.assert_array_equal(a, b)
        for _ in range(600):
            action = int(rng.integers(2))
            a, ra, ta, ua, _ = ours.step(action)
            b, rb, tb, ub, _ = theirs.step(action)
            np.testing.assert_array_equal(a, b)
            assert (ra, ta, ua) == (rb, tb, ub)
            if ta or ua:
                break
    # reset() without a seed continues the RNG stream, as Gymnasium's does.
    np.testing.assert_array_equal(ours.reset()[0], theirs.reset()[0])


@pytest.mark.parametrize("mode", [AutoresetMode.NEXT_STEP, AutoresetMode.SAME_STEP])
@pytest.mark.parametrize(
    "env_id,kwargs",
    [("TMaze-Passive-v0", {"corridor_length": 3}), ("Pendulum-v1", {}), ("CartPole-v1", {})],
)
def test_make_vec_equals_sync_vector_env_of_make(env_id, kwargs, mode):
    n = 5
    ours = engram.make_vec(env_id, n, autoreset_mode=mode, **kwargs)
    theirs = SyncVectorEnv(
        [lambda: engram.make(env_id, **kwargs) for _ in range(n)], autoreset_mode=mode
    )
    assert ours.single_observation_space == theirs.single_observation_space
    assert ours.single_action_space == theirs.single_action_space
    assert ours.observation_space == theirs.observation_space
    assert ours.metadata["autoreset_mode"] == mode
    theirs.action_space.seed(7)
    a, _ = ours.reset(seed=11)
    b, _ = theirs.reset(seed=11)
    np.testing.assert_array_equal(a, b)
    ended = 0
    for _ in range(400):
        action = theirs.action_space.sample()
        a, ra, ta, ua, ia = ours.step(action)
        b, rb, tb, ub, ib = theirs.step(action)
        assert ours.observation_space.contains(a)
        np.testing.assert_array_equal(a, b)
        np.testing.assert_array_equal(ra, rb)
        assert ra.dtype == rb.dtype == np.float64
        np.testing.assert_array_equal(ta, tb)
        np.testing.assert_array_equal(ua, ub)
        assert ta.dtype == np.bool_ and ua.dtype == np.bool_
        assert sorted(ia) == sorted(ib)
        if "final_obs" in ib:
            np.testing.assert_array_equal(ia["_final_obs"], ib["_final_obs"])
            for i in np.flatnonzero(ib["_final_obs"]):
                np.testing.assert_array_equal(ia["final_obs"][i], ib["final_obs"][i])
            ended += int(ib["_final_obs"].sum())
        ended += int((tb | ub).sum()) if mode == AutoresetMode.NEXT_STEP else 0
    assert ended > 0, "no episode ended: the autoreset path was not compared"


def test_gymnasium_make_vec_uses_the_native_vector_env():
    env = gymnasium.make_vec("engram/TMaze-Passive-v0", num_envs=3, corridor_length=4)
    assert isinstance(env.unwrapped, engram.EngramVectorEnv)
    obs, _ = env.reset(seed=0)
    assert obs.shape[0] == 3
    obs, *_ = env.step(env.action_space.sample())
    assert env.observation_space.contains(obs)


def test_make_vec_seeds_env_i_with_seed_plus_i():
    vec = engram.make_vec("CartPole-v1", 3)
    obs, _ = vec.reset(seed=5)
    for i in range(3):
        one, _ = engram.make("CartPole-v1").reset(seed=5 + i)
        np.testing.assert_array_equal(obs[i], one)
    again, _ = vec.reset(seed=[5, 6, 7])
    np.testing.assert_array_equal(obs, again)
    with pytest.raises(ValueError, match="seed \\+ i"):
        vec.reset(seed=[1, 1, 1])


def test_copy_false_returns_a_view_of_the_buffer():
    vec = engram.make_vec("CartPole-v1", 4, copy=False)
    first, _ = vec.reset(seed=0)
    kept = first.copy()
    vec.step(np.zeros(4, dtype=np.int64))
    assert not np.array_equal(first, kept), "copy=False should hand out the live buffer"


def test_render_ansi_for_every_vector_env():
    vec = engram.make_vec("TMaze-Passive-v0", 2, render_mode="ansi", corridor_length=4)
    vec.reset(seed=0)
    frames = vec.render()
    assert len(frames) == 2 and all(isinstance(f, str) and f for f in frames)


def test_bad_input_is_a_clear_error():
    with pytest.raises(engram.EngramError, match="TMaze-Passive-v0"):
        engram.make("TMaze-Pasive-v0")
    with pytest.raises(engram.EngramError, match="corridor_length"):
        engram.make("TMaze-Passive-v0", corridor_length=-3)
    with pytest.raises(engram.EngramError, match="no argument `colour`"):
        engram.make("TMaze-Passive-v0", colour=1)
    with pytest.raises(ValueError, match="render_mode"):
        engram.make("CartPole-v1", render_mode="human")
    with pytest.raises(ValueError, match="ansi"):
        engram.make("TMaze-Passive-v0", render_mode="rgb_array")
    with pytest.raises(ValueError, match="shape"):
        engram.make_vec("CartPole-v1", 4).step(np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match="autoreset_mode"):
        engram.make_vec("CartPole-v1", 2, autoreset_mode=AutoresetMode.DISABLED)
    env = engram.make("CartPole-v1")
    with pytest.raises(engram.EngramError, match="reset"):
        env.step(0)  # before reset
    env.reset(seed=0)
    with pytest.raises(engram.EngramError):
        env.step(5)  # outside Discrete(2)
    done = False
    while not done:
        _, _, term, trunc, _ = env.step(0)
        done = term or trunc
    with pytest.raises(engram.EngramError, match="reset"):
        env.step(0)  # after the episode ended
