# Engram's Python env worker: hosts a group of Gymnasium envs for Engram's runtime over a binary pipe.
#
# Started by engram-envs (envs/src/python/pool.rs) as `python -c <this file>` with its settings as
# JSON in ENGRAM_PY_WORKER. The protocol runs on the process's original stdin/stdout, which are
# moved to private descriptors first; the env's own prints then go to stderr (Engram's log).
# Every message is a little-endian u32 length followed by that many bytes.
#
# Rust -> worker:  b"R" + per env (u8 has_seed, u64 seed)                       reset every env
#                  b"S" + u8 autoreset + per env (u8 cmd) + f64[n * action_len]  step (cmd 0),
#                                                                               reset (1), keep (2)
#                  b"Q"                                                          quit
# worker -> Rust:  first b"H" + JSON spec, or b"E" + error text (then exit)
#                  per command b"O" + per env (u8 fault, f32 reward, u8 terminated, u8 truncated,
#                  u8 has_final) + f32 obs[n * obs_dim] + f32 final obs[finals * obs_dim]
#                  + per fault (u32 env, u32 len, utf-8 traceback)
import importlib
import importlib.util
import json
import math
import os
import signal
import struct
import sys
import traceback

SEED_STRIDE = 1_000_003


def load(target):
    """`module.path:attr` or `path/to/file.py:attr` -> the object."""
    module_name, sep, attr = target.rpartition(":")
    if not sep or not module_name or not attr:
        raise ValueError(f"`{target}` is not of the form `module.path:name` (or `file.py:name`)")
    if module_name.endswith(".py"):
        spec = importlib.util.spec_from_file_location("engram_user_" + str(abs(hash(module_name))), module_name)
        if spec is None:
            raise ImportError(f"cannot load `{module_name}`")
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    else:
        module = importlib.import_module(module_name)
    obj = module
    for part in attr.split("."):
        obj = getattr(obj, part)
    return obj


def make_env(cfg):
    import gymnasium

    kwargs = cfg["kwargs"]
    if cfg["kind"] == "gymnasium":
        env = gymnasium.make(cfg["target"], **kwargs)
    else:
        env = load(cfg["target"])(**kwargs)
    for wrapper in cfg["wrappers"]:
        env = load(wrapper)(env)
    return env


def bound(x):
    x = float(x)
    return None if math.isinf(x) or math.isnan(x) else x


class Codec:
    """Engram's flat f32 encoding of one env's observation and action spaces."""

    def __init__(self, env):
        from gymnasium import spaces

        self.spaces = spaces
        obs, act = env.observation_space, env.action_space
        self.obs_space = obs
        self.obs_box = isinstance(obs, spaces.Box)
        self.obs_json, self.obs_dim = self.describe_obs(obs)
        self.act_space = act
        self.act_json, self.act_len = self.describe_action(act)

    def describe_obs(self, space, where="observation space"):
        s = self.spaces
        if isinstance(space, s.Box):
            flat = space.low.size
            return {"type": "box", "low": [bound(v) for v in space.low.reshape(-1)],
                    "high": [bound(v) for v in space.high.reshape(-1)],
                    "shape": list(space.shape) or [1]}, flat
        if isinstance(space, s.Discrete):
            return {"type": "discrete", "n": int(space.n)}, int(space.n)
        if isinstance(space, s.MultiDiscrete):
            if len(space.nvec.shape) != 1:
                raise TypeError(f"{where}: a MultiDiscrete of shape {space.nvec.shape} is not supported (only 1-D)")
            nvec = [int(n) for n in space.nvec]
            return {"type": "multi_discrete", "nvec": nvec}, sum(nvec)
        if isinstance(space, s.MultiBinary):
            n = int(math.prod(space.shape))
            return {"type": "box", "low": [0.0] * n, "high": [1.0] * n, "shape": list(space.shape)}, n
        if isinstance(space, (s.Dict, s.Tuple)):
            self.check_flattenable(space, where)
            return self.describe_obs(s.flatten_space(space), where)
        raise TypeError(f"{where}: {space!r} is not supported; Engram takes Box, Discrete, MultiDiscrete, "
                        "MultiBinary and Dict/Tuple of those (flattened); wrap the env to convert it "
                        "(env.python_wrappers)")

    def check_flattenable(self, space, where):
        s = self.spaces
        inner = space.spaces.items() if isinstance(space, s.Dict) else enumerate(space.spaces)
        for key, sub in inner:
            if isinstance(sub, (s.Dict, s.Tuple)):
                self.check_flattenable(sub, f"{where}[{key!r}]")
            elif not isinstance(sub, (s.Box, s.Discrete, s.MultiDiscrete, s.MultiBinary)):
                raise TypeError(f"{where}[{key!r}]: {sub!r} is not supported (Engram flattens Dict and Tuple "
                                "spaces of Box, Discrete, MultiDiscrete and MultiBinary); drop or convert it "
                                "with a wrapper (env.python_wrappers), e.g. minigrid.wrappers:ImgObsWrapper")

    def describe_action(self, space):
        s = self.spaces
        if isinstance(space, s.Discrete):
            return {"type": "discrete", "n": int(space.n)}, 1
        if isinstance(space, s.MultiDiscrete) and len(space.nvec.shape) == 1:
            return {"type": "multi_discrete", "nvec": [int(n) for n in space.nvec]}, len(space.nvec)
        if isinstance(space, s.MultiBinary) and len(space.shape) == 1:
            n = int(space.shape[0])
            return {"type": "multi_discrete", "nvec": [2] * n}, n
        if isinstance(space, s.Box):
            return {"type": "box", "low": [bound(v) for v in space.low.reshape(-1)],
                    "high": [bound(v) for v in space.high.reshape(-1)],
                    "shape": list(space.shape) or [1]}, space.low.size
        raise TypeError(f"action space: {space!r} is not supported; Engram takes Discrete, MultiDiscrete, "
                        "1-D MultiBinary and Box actions")

    def write_obs(self, obs, out):
        if self.obs_box:
            out[:] = self.np.asarray(obs, dtype=self.np.float32).reshape(-1)
        else:
            out[:] = self.spaces.flatten(self.obs_space, obs)

    def action(self, row):
        s, np, space = self.spaces, self.np, self.act_space
        if isinstance(space, s.Discrete):
            return int(row[0]) + int(space.start)
        if isinstance(space, s.MultiDiscrete):
            return row.astype(space.dtype) + space.start
        if isinstance(space, s.MultiBinary):
            return row.astype(space.dtype)
        return row.astype(space.dtype).reshape(space.shape)


def main():
    # Ctrl-C reaches the whole process group: Engram stops with a checkpoint and then closes its
    # workers, which must live until then. If Engram dies, the pipe closes and the worker exits.
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    proto_in = os.fdopen(os.dup(0), "rb", buffering=0)
    proto_out = os.fdopen(os.dup(1), "wb", buffering=0)
    os.dup2(os.open(os.devnull, os.O_RDONLY), 0)
    os.dup2(2, 1)

    def send(payload):
        proto_out.write(struct.pack("<I", len(payload)) + payload)

    def recv():
        head = read_exact(4)
        return read_exact(struct.unpack("<I", head)[0])

    def read_exact(n):
        buf = bytearray(n)
        view, got = memoryview(buf), 0
        while got < n:
            k = proto_in.readinto(view[got:])
            if not k:
                sys.exit(0)  # Engram went away
            got += k
        return bytes(buf)

    cfg = json.loads(os.environ["ENGRAM_PY_WORKER"])
    try:
        sys.path[:0] = cfg.get("sys_path", [])
        import numpy as np

        Codec.np = np
        for name in cfg["imports"]:
            importlib.import_module(name)
        envs = [make_env(cfg) for _ in range(cfg["num_envs"])]
        codec = Codec(envs[0])
        spec = getattr(envs[0], "spec", None)
        max_steps = getattr(spec, "max_episode_steps", None) if spec is not None else None
        send(b"H" + json.dumps({
            "observation_space": codec.obs_json,
            "action_space": codec.act_json,
            "max_episode_steps": max_steps,
        }).encode())
    except BaseException as e:  # noqa: BLE001 - reported to Engram, which names the env and the fix
        text = "".join(traceback.format_exception(type(e), e, e.__traceback__))
        send(b"E" + text.encode("utf-8", "replace"))
        return

    n, d, k = len(envs), codec.obs_dim, codec.act_len
    obs = np.zeros((n, d), dtype=np.float32)
    final = np.zeros((n, d), dtype=np.float32)
    seeds = [None] * n
    restarts = [0] * n
    head = struct.Struct("<BfBBB")

    def restart(i):
        try:
            envs[i].close()
        except Exception:  # noqa: BLE001 - the env is being replaced anyway
            pass
        restarts[i] += 1
        envs[i] = make_env(cfg)
        seed = None if seeds[i] is None else (seeds[i] + SEED_STRIDE * restarts[i]) % (1 << 63)
        codec.write_obs(envs[i].reset(seed=seed)[0], obs[i])

    while True:
        msg = recv()
        op = msg[:1]
        if op == b"Q":
            for env in envs:
                env.close()
            return
        heads, faults, finals = [], [], []
        if op == b"R":
            for i in range(n):
                has_seed, seed = struct.unpack_from("<BQ", msg, 1 + 9 * i)
                seeds[i] = seed if has_seed else None
                try:
                    codec.write_obs(envs[i].reset(seed=seeds[i])[0], obs[i])
                    heads.append(head.pack(0, 0.0, 0, 0, 0))
                except Exception:  # noqa: BLE001 - contained: reported, env restarted
                    faults.append((i, traceback.format_exc()))
                    restart(i)
                    heads.append(head.pack(1, 0.0, 0, 1, 0))
        else:
            autoreset = msg[1]
            cmds = msg[2:2 + n]
            actions = np.frombuffer(msg, dtype="<f8", offset=2 + n).reshape(n, k)
            for i in range(n):
                try:
                    if cmds[i] == 2:  # leave this env as it is
                        heads.append(head.pack(0, 0.0, 0, 0, 0))
                        continue
                    if cmds[i] == 1:
                        codec.write_obs(envs[i].reset()[0], obs[i])
                        heads.append(head.pack(0, 0.0, 0, 0, 0))
                        continue
                    o, r, term, trunc, _ = envs[i].step(codec.action(actions[i]))
                    codec.write_obs(o, obs[i])
                    has_final = 0
                    if (term or trunc) and autoreset:
                        final[len(finals)] = obs[i]
                        finals.append(i)
                        has_final = 1
                        codec.write_obs(envs[i].reset()[0], obs[i])
                    heads.append(head.pack(0, float(r), bool(term), bool(trunc), has_final))
                except Exception:  # noqa: BLE001 - contained: reported, env restarted
                    if finals and finals[-1] == i:
                        finals.pop()
                    faults.append((i, traceback.format_exc()))
                    restart(i)
                    heads.append(head.pack(1, 0.0, 0, 1, 0))
        parts = [b"O"] + heads + [obs.tobytes(), final[:len(finals)].tobytes()]
        for i, text in faults:
            data = text.encode("utf-8", "replace")
            parts.append(struct.pack("<II", i, len(data)) + data)
        send(b"".join(parts))


main()
