/* An Engram environment plugin in plain C: `RememberBitC-v0`, written against engram_env.h.
 *
 * The task: the first observation shows a bit as a cue (+1 or -1), then `delay` blank steps
 * follow; on the step whose query flag is 1 the agent must act the bit (0 or 1). Reward +1 for
 * the right answer, -1 for a wrong one; the episode then terminates.
 *
 * Build: cc -shared -fPIC -O2 -I ../../envs/include remember_bit.c -o libremember_bit.so
 * Load:  engram envs check --plugin ./libremember_bit.so remember-bit-c/RememberBitC-v0
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "engram_env.h"

/* One environment instance. */
typedef struct {
    long delay;       /* blank steps between cue and answer */
    long t;           /* steps taken in this episode */
    int bit;          /* the bit to remember */
    uint64_t rng;     /* SplitMix64 state */
    char spec[512];   /* this instance's EnvSpec as JSON */
    char error[256];  /* message of the last failed call */
    char render[128]; /* text of the last render */
} RememberBit;

static const char *METADATA =
    "{\"name\":\"remember-bit-c\",\"envs\":[{\"id\":\"RememberBitC-v0\","
    "\"summary\":\"(C plugin) remember the first observation's bit and act it after `delay` "
    "blank steps (+1/-1)\","
    "\"kwargs\":[{\"name\":\"delay\",\"kind\":{\"type\":\"int\",\"min\":0,\"max\":100000},"
    "\"default\":5,\"doc\":\"blank steps between the cue and the answer\"}]}]}";

/* Failures of `create` are per thread, as the ABI asks. */
static _Thread_local char create_error_text[256];
static _Thread_local int create_failed;

static uint64_t next_u64(uint64_t *state) {
    uint64_t z = (*state += 0x9E3779B97F4A7C15ull);
    z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
    z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
    return z ^ (z >> 31);
}

static void write_obs(const RememberBit *env, float *obs) {
    obs[0] = env->t == 0 ? (env->bit ? 1.0f : -1.0f) : 0.0f;
    obs[1] = env->t == env->delay ? 1.0f : 0.0f;
}

static const char *metadata(void) { return METADATA; }

/* Reads `"delay": N` from the host's kwargs JSON (the host has already checked it against the
 * declared spec and filled in the default, so it is always there and in range). */
static EnvHandle create(const char *id, const char *kwargs_json) {
    create_failed = 0;
    if (strcmp(id, "RememberBitC-v0") != 0) {
        snprintf(create_error_text, sizeof create_error_text, "unknown id `%s`", id);
        create_failed = 1;
        return NULL;
    }
    const char *key = strstr(kwargs_json, "\"delay\"");
    const char *colon = key ? strchr(key, ':') : NULL;
    if (!colon) {
        snprintf(create_error_text, sizeof create_error_text, "kwargs lack `delay`: %s",
                 kwargs_json);
        create_failed = 1;
        return NULL;
    }
    RememberBit *env = calloc(1, sizeof *env);
    if (!env) {
        snprintf(create_error_text, sizeof create_error_text, "out of memory");
        create_failed = 1;
        return NULL;
    }
    env->delay = strtol(colon + 1, NULL, 10);
    env->rng = 0x5DEECE66Dull;
    snprintf(env->spec, sizeof env->spec,
             "{\"id\":\"%s\",\"observation_space\":{\"type\":\"box\",\"low\":[-1.0,-1.0],"
             "\"high\":[1.0,1.0],\"shape\":[2]},\"action_space\":{\"type\":\"discrete\",\"n\":2},"
             "\"max_episode_steps\":null}",
             id);
    return env;
}

static const char *create_error(void) { return create_failed ? create_error_text : NULL; }

static const char *spec(EnvHandle handle) { return ((RememberBit *)handle)->spec; }

static int32_t reset(EnvHandle handle, uint8_t has_seed, uint64_t seed, float *obs,
                     uintptr_t obs_len) {
    RememberBit *env = handle;
    if (obs_len != 2) {
        snprintf(env->error, sizeof env->error, "observation buffer of %zu, expected 2",
                 (size_t)obs_len);
        return STATUS_ERROR;
    }
    if (has_seed) env->rng = seed ^ 0x5DEECE66Dull;
    env->t = 0;
    env->bit = (int)(next_u64(&env->rng) >> 63);
    write_obs(env, obs);
    return STATUS_OK;
}

static int32_t step(EnvHandle handle, uint32_t action_kind, const int64_t *ints,
                    uintptr_t ints_len, const float *floats, uintptr_t floats_len, float *obs,
                    uintptr_t obs_len, StepOut *out) {
    (void)floats;
    (void)floats_len;
    RememberBit *env = handle;
    if (action_kind != ACTION_DISCRETE || ints_len != 1 || obs_len != 2) {
        snprintf(env->error, sizeof env->error, "expected one discrete action and 2 observations");
        return STATUS_ERROR;
    }
    int answered = env->t == env->delay;
    env->t += 1;
    write_obs(env, obs);
    out->reward = answered ? (ints[0] == env->bit ? 1.0f : -1.0f) : 0.0f;
    out->terminated = (uint8_t)answered;
    out->truncated = 0;
    return STATUS_OK;
}

static const char *render_text(EnvHandle handle) {
    RememberBit *env = handle;
    snprintf(env->render, sizeof env->render, "t=%ld of %ld (answer due at t=%ld)", env->t,
             env->delay + 1, env->delay);
    return env->render;
}

static const char *error(EnvHandle handle) { return ((RememberBit *)handle)->error; }

static void destroy(EnvHandle handle) { free(handle); }

static const PluginVtable VTABLE = {
    .abi_version = ENGRAM_ENV_ABI_VERSION,
    .metadata = metadata,
    .create = create,
    .create_error = create_error,
    .spec = spec,
    .reset = reset,
    .step = step,
    .render_text = render_text,
    .error = error,
    .destroy = destroy,
};

/* The entry point Engram looks up. */
const PluginVtable *engram_env_plugin(void) { return &VTABLE; }
